//! The scheduler: evaluates only what is asked for and not already known, off the
//! caller's thread.
//!
//! * **Content-addressed.** A node's key is a hash of its kind id and version, its params,
//!   the identity of the files it reads, and its upstream keys (see [`Scheduler::plan`]).
//!   A result is stored under its key, so it is never "stale": an edit changes keys, and
//!   an undo finds the old results again.
//! * **Demand-driven.** A request names target nodes (none: every sink); only their
//!   ancestors are considered, and of those only the ones whose key is not cached run.
//! * **Parallel and cancellable.** Ready nodes run on a thread pool. A newer request
//!   cancels running work whose key it no longer needs, and supersedes the older
//!   request's event stream, so no stale result is delivered as current.
//! * **Contained failures.** A node that errors or panics fails alone; nodes downstream
//!   are blocked by it; the rest of the graph still evaluates.
//! * **Bounded cache.** Results are evicted least-recently-used first when the cache is
//!   over its memory budget (keys of the request in flight are pinned).
//! * **Files.** `plan.rs` resolves a request into keys, `cache.rs` holds results, `run.rs`
//!   runs a plan on the coordinator thread and the worker pool; this file is the API.
//! * **Execution log.** Every evaluation is logged ([`Scheduler::execution_log`]) so tests
//!   can assert exactly what ran.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::error::NodeError;
use crate::graph::{Graph, NodeId, PortRef};
use crate::kind::{EvalContext, Inputs, NodeKind, Outputs};
use crate::param::Params;
use crate::registry::NodeRegistry;

mod cache;
mod plan;
mod run;

use cache::Cache;
use plan::{Plan, PlanNode};
use run::{Coordinator, Msg};

/// A content hash identifying one node's result.
pub type Key = u128;

/// Default cache budget: 2 GiB.
pub const DEFAULT_BUDGET_BYTES: usize = 2 << 30;

/// What happened to one node of a request. Sent on the request's [`RunHandle`].
#[derive(Debug, Clone)]
pub enum Event {
    /// Needs to run, waiting for its inputs or a worker.
    Queued {
        node: NodeId,
    },
    Started {
        node: NodeId,
    },
    Progress {
        node: NodeId,
        fraction: f32,
        message: String,
    },
    Finished {
        node: NodeId,
        duration: Duration,
        outputs: Arc<Outputs>,
    },
    /// Its result was already known.
    Cached {
        node: NodeId,
        outputs: Arc<Outputs>,
    },
    Failed {
        node: NodeId,
        error: NodeError,
    },
    /// Not run because an upstream node failed.
    Blocked {
        node: NodeId,
        by: NodeId,
    },
    Cancelled {
        node: NodeId,
    },
    /// Every node of the request has settled.
    Done,
    /// A newer request replaced this one; no more events follow.
    Superseded,
}

/// The settled state of one node.
#[derive(Debug, Clone)]
pub enum NodeOutcome {
    Ready { outputs: Arc<Outputs>, cached: bool, duration: Option<Duration> },
    Failed(NodeError),
    Blocked { by: NodeId },
    Cancelled,
}

impl NodeOutcome {
    pub fn outputs(&self) -> Option<&Arc<Outputs>> {
        match self {
            NodeOutcome::Ready { outputs, .. } => Some(outputs),
            _ => None,
        }
    }
    pub fn error(&self) -> Option<&NodeError> {
        match self {
            NodeOutcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The result of a request, once settled.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub outcomes: BTreeMap<NodeId, NodeOutcome>,
    /// A newer request replaced this one before it settled.
    pub superseded: bool,
}

impl Evaluation {
    pub fn outputs(&self, node: NodeId) -> Option<&Arc<Outputs>> {
        self.outcomes.get(&node).and_then(NodeOutcome::outputs)
    }
    pub fn error(&self, node: NodeId) -> Option<&NodeError> {
        self.outcomes.get(&node).and_then(NodeOutcome::error)
    }
}

/// One evaluation in the execution log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub node: NodeId,
    pub kind: String,
    pub key: Key,
}

struct Shared {
    cache: Mutex<Cache>,
    errors: Mutex<HashMap<Key, NodeError>>,
    log: Mutex<Vec<LogEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handle on one request: its events, and its nodes' keys.
pub struct RunHandle {
    pub generation: u64,
    events: Receiver<Event>,
    keys: BTreeMap<NodeId, Key>,
}

impl RunHandle {
    /// The events received so far, without waiting.
    pub fn try_events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The key each node of the request has.
    pub fn keys(&self) -> &BTreeMap<NodeId, Key> {
        &self.keys
    }

    /// Block until the request settles (or is superseded).
    pub fn wait(self) -> Evaluation {
        let mut eval = Evaluation::default();
        collect(&mut eval, self.events.iter());
        eval
    }
}

/// Fold events into an evaluation; returns true once the request has settled.
pub fn collect(eval: &mut Evaluation, events: impl IntoIterator<Item = Event>) -> bool {
    for event in events {
        match event {
            Event::Finished { node, duration, outputs } => {
                eval.outcomes.insert(node, NodeOutcome::Ready { outputs, cached: false, duration: Some(duration) });
            }
            Event::Cached { node, outputs } => {
                eval.outcomes.insert(node, NodeOutcome::Ready { outputs, cached: true, duration: None });
            }
            Event::Failed { node, error } => {
                eval.outcomes.insert(node, NodeOutcome::Failed(error));
            }
            Event::Blocked { node, by } => {
                eval.outcomes.insert(node, NodeOutcome::Blocked { by });
            }
            Event::Cancelled { node } => {
                eval.outcomes.insert(node, NodeOutcome::Cancelled);
            }
            Event::Done => {
                // Probes whose pass a downstream node ran: their finished values.
                for o in eval.outcomes.values_mut() {
                    if let NodeOutcome::Ready { outputs, .. } = o {
                        *outputs = settled(outputs);
                    }
                }
                return true;
            }
            Event::Superseded => {
                eval.superseded = true;
                return true;
            }
            Event::Queued { .. } | Event::Started { .. } | Event::Progress { .. } => {}
        }
    }
    false
}

/// `outputs` with every pending pass that someone has run filled in (see
/// [`crate::value::Activations::settled`]); the same `Arc` when nothing changes.
pub fn settled(outputs: &Arc<Outputs>) -> Arc<Outputs> {
    let finished = |v: &crate::Value| matches!(v, crate::Value::Activations(a) if a.pending.as_ref().is_some_and(|p| p.0.resolved().is_some()));
    if !outputs.values().any(finished) {
        return outputs.clone();
    }
    Arc::new(outputs.iter().map(|(k, v)| (k.clone(), v.settled())).collect())
}

/// Evaluates graphs. One coordinator thread plus a worker pool; dropping the scheduler
/// cancels running work and stops the threads.
pub struct Scheduler {
    registry: Arc<NodeRegistry>,
    shared: Arc<Shared>,
    inbox: Sender<Msg>,
    generation: AtomicU64,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    pub fn new(registry: Arc<NodeRegistry>) -> Self {
        Self::with_budget(registry, DEFAULT_BUDGET_BYTES)
    }

    /// A scheduler whose cache holds at most about `budget_bytes`.
    pub fn with_budget(registry: Arc<NodeRegistry>, budget_bytes: usize) -> Self {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                total_bytes: 0,
                budget_bytes,
                tick: 0,
                pinned: HashSet::new(),
            }),
            errors: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let (tx, rx) = unbounded();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2) + 2;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("quantgraph-worker-{i}"))
            .build()
            .ok();
        let mut coordinator =
            Coordinator { shared: shared.clone(), pool, inbox: tx.clone(), running: HashMap::new(), active: None };
        let thread =
            std::thread::Builder::new().name("quantgraph-scheduler".into()).spawn(move || coordinator.run(rx)).ok();
        Self { registry, shared, inbox: tx, generation: AtomicU64::new(0), thread }
    }

    pub fn registry(&self) -> &Arc<NodeRegistry> {
        &self.registry
    }

    /// Compute each needed node's key for a request, without running anything.
    pub fn keys(&self, graph: &Graph, targets: &[NodeId]) -> BTreeMap<NodeId, Key> {
        self.plan(graph, targets).nodes.into_iter().map(|(id, n)| (id, n.key)).collect()
    }

    /// Whether a node's current result is cached (it is "clean").
    pub fn is_cached(&self, key: Key) -> bool {
        lock(&self.shared.cache).entries.contains_key(&key)
    }

    /// The cached outputs for a key.
    pub fn cached(&self, key: Key) -> Option<Arc<Outputs>> {
        lock(&self.shared.cache).get(key)
    }

    /// Ask for `targets` (none: every sink) to be brought up to date. Returns at once;
    /// the work runs on the scheduler's threads and reports on the handle. A request
    /// supersedes the previous one.
    pub fn request(&self, graph: &Graph, targets: &[NodeId]) -> RunHandle {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let plan = self.plan(graph, targets);
        let keys = plan.nodes.iter().map(|(id, n)| (*id, n.key)).collect();
        let (tx, rx) = unbounded();
        if self.inbox.send(Msg::Plan(plan, tx.clone())).is_err() {
            let _ = tx.send(Event::Superseded);
        }
        RunHandle { generation, events: rx, keys }
    }

    /// Request and wait until settled.
    pub fn evaluate(&self, graph: &Graph, targets: &[NodeId]) -> Evaluation {
        self.request(graph, targets).wait()
    }

    /// Cancel everything in flight (the Stop button).
    pub fn cancel(&self) {
        let _ = self.inbox.send(Msg::CancelAll);
    }

    /// Forget remembered failures, so failed nodes run again on the next request.
    pub fn forget_errors(&self) {
        let _ = self.inbox.send(Msg::ForgetErrors);
    }

    /// Every evaluation so far, in the order they started.
    pub fn execution_log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).clone()
    }

    /// Return the log and clear it.
    pub fn take_log(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.shared.log))
    }

    /// Bytes held by the cache now.
    pub fn cache_bytes(&self) -> usize {
        lock(&self.shared.cache).total_bytes
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.inbox.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
