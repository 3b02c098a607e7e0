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
use crate::param::{self, Params};
use crate::registry::NodeRegistry;

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

/// A node as the scheduler will run it.
#[derive(Clone)]
struct PlanNode {
    key: Key,
    kind: Option<Arc<dyn NodeKind>>,
    kind_id: String,
    params: Params,
    /// `(input port, upstream node, upstream output port)`.
    inputs: Vec<(String, NodeId, String)>,
    static_error: Option<NodeError>,
}

/// A request, resolved into keys.
struct Plan {
    nodes: BTreeMap<NodeId, PlanNode>,
    order: Vec<NodeId>,
    base_dir: Option<PathBuf>,
}

enum Msg {
    Plan(Plan, Sender<Event>),
    Progress { key: Key, fraction: f32, message: String },
    Done { key: Key, result: Result<Outputs, NodeError>, duration: Duration },
    CancelAll,
    ForgetErrors,
    Shutdown,
}

struct CacheEntry {
    outputs: Arc<Outputs>,
    size_bytes: usize,
    last_used: u64,
}

/// Results by key, bounded by a memory budget, evicted least-recently-used first.
struct Cache {
    entries: HashMap<Key, CacheEntry>,
    total_bytes: usize,
    budget_bytes: usize,
    tick: u64,
    pinned: HashSet<Key>,
}

impl Cache {
    fn get(&mut self, key: Key) -> Option<Arc<Outputs>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(&key).map(|e| {
            e.last_used = tick;
            e.outputs.clone()
        })
    }

    fn insert(&mut self, key: Key, outputs: Arc<Outputs>) {
        let size_bytes: usize = outputs.values().map(|v| v.size_bytes()).sum::<usize>() + 64;
        self.tick += 1;
        if let Some(old) = self.entries.insert(key, CacheEntry { outputs, size_bytes, last_used: self.tick }) {
            self.total_bytes -= old.size_bytes;
        }
        self.total_bytes += size_bytes;
        while self.total_bytes > self.budget_bytes {
            let victim = self
                .entries
                .iter()
                .filter(|(k, _)| !self.pinned.contains(k))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            if let Some(e) = self.entries.remove(&victim) {
                self.total_bytes -= e.size_bytes;
            }
        }
    }
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
            Event::Done => return true,
            Event::Superseded => {
                eval.superseded = true;
                return true;
            }
            Event::Queued { .. } | Event::Started { .. } | Event::Progress { .. } => {}
        }
    }
    false
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

    fn plan(&self, graph: &Graph, targets: &[NodeId]) -> Plan {
        let targets: Vec<NodeId> = if targets.is_empty() { graph.sinks() } else { targets.to_vec() };
        // Every ancestor of the targets.
        let mut needed = BTreeSet::new();
        let mut stack: Vec<NodeId> = targets.into_iter().filter(|t| graph.node(*t).is_some()).collect();
        while let Some(n) = stack.pop() {
            if needed.insert(n) {
                stack.extend(graph.inputs_of(n).into_iter().map(|(_, src)| src.node));
            }
        }
        let (order, cyclic): (Vec<NodeId>, BTreeSet<NodeId>) = match graph.topo_order() {
            Ok(order) => (order.into_iter().filter(|n| needed.contains(n)).collect(), BTreeSet::new()),
            Err(cycle) => {
                let cyclic: BTreeSet<NodeId> = cycle.into_iter().collect();
                let order = needed.iter().copied().filter(|n| !cyclic.contains(n)).collect();
                (order, cyclic)
            }
        };
        let mut nodes: BTreeMap<NodeId, PlanNode> = BTreeMap::new();
        for id in &cyclic {
            if needed.contains(id) {
                nodes.insert(*id, self.static_failure(graph, *id, NodeError::failed("this node is on a cycle")));
            }
        }
        let mut full_order: Vec<NodeId> = cyclic.iter().copied().filter(|n| needed.contains(n)).collect();
        for id in order {
            let plan_node = self.plan_node(graph, id, &nodes);
            nodes.insert(id, plan_node);
            full_order.push(id);
        }
        Plan { nodes, order: full_order, base_dir: graph.base_dir.clone() }
    }

    fn static_failure(&self, graph: &Graph, id: NodeId, error: NodeError) -> PlanNode {
        let (kind_id, params) = graph.node(id).map(|n| (n.kind.clone(), n.params.clone())).unwrap_or_default();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(b"failure\0");
        h.update(kind_id.as_bytes());
        h.update(serde_json::to_string(&params).unwrap_or_default().as_bytes());
        h.update(error.to_string().as_bytes());
        PlanNode { key: h.digest128(), kind: None, kind_id, params, inputs: Vec::new(), static_error: Some(error) }
    }

    fn plan_node(&self, graph: &Graph, id: NodeId, planned: &BTreeMap<NodeId, PlanNode>) -> PlanNode {
        let Some(node) = graph.node(id) else {
            return self.static_failure(graph, id, NodeError::failed("missing node"));
        };
        let Some(kind) = self.registry.get(&node.kind) else {
            return self.static_failure(graph, id, NodeError::UnknownKind(node.kind.clone()));
        };
        if node.kind_version > kind.version() {
            let msg = format!(
                "'{}' version {} is newer than this build's version {}",
                node.kind,
                node.kind_version,
                kind.version()
            );
            return self.static_failure(graph, id, NodeError::failed(msg));
        }
        if let Some((name, msg)) = param::validate(&kind.params(), &node.params).into_iter().next() {
            return self.static_failure(graph, id, NodeError::param(name, msg));
        }
        let mut inputs = Vec::new();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(kind.id().as_bytes());
        h.update(&kind.version().to_le_bytes());
        h.update(serde_json::to_string(&node.params).unwrap_or_default().as_bytes());
        if let Some(identity) = kind.external_identity(&node.params, graph.base_dir.as_deref()) {
            h.update(b"\0file\0");
            h.update(identity.as_bytes());
        }
        for port in kind.inputs(&node.params) {
            let Some(src) = graph.source_of(&PortRef::new(id, &port.name)) else {
                if port.optional {
                    continue;
                }
                return self.static_failure(graph, id, NodeError::input(&port.name, "not connected"));
            };
            let Some(src_node) = graph.node(src.node) else {
                return self.static_failure(graph, id, NodeError::input(&port.name, "wired to a missing node"));
            };
            if let Some(src_kind) = self.registry.get(&src_node.kind) {
                match src_kind.outputs(&src_node.params).into_iter().find(|p| p.name == src.port) {
                    Some(out) if out.ty == port.ty => {}
                    Some(out) => {
                        let msg = format!("{} output cannot feed a {} input", out.ty, port.ty);
                        return self.static_failure(graph, id, NodeError::input(&port.name, msg));
                    }
                    None => {
                        let msg = format!("wired to '{}', which {} does not have", src.port, src.node);
                        return self.static_failure(graph, id, NodeError::input(&port.name, msg));
                    }
                }
            }
            let upstream_key = planned.get(&src.node).map(|p| p.key).unwrap_or_default();
            h.update(b"\0in\0");
            h.update(port.name.as_bytes());
            h.update(&upstream_key.to_le_bytes());
            h.update(src.port.as_bytes());
            inputs.push((port.name.clone(), src.node, src.port.clone()));
        }
        PlanNode {
            key: h.digest128(),
            kind: Some(kind.clone()),
            kind_id: node.kind.clone(),
            params: node.params.clone(),
            inputs,
            static_error: None,
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Ready,
    Failed,
    Blocked(NodeId),
    Cancelled,
}

struct Active {
    plan: Plan,
    tx: Sender<Event>,
    state: HashMap<NodeId, State>,
    /// Nodes of the plan fed by each node.
    dependents: HashMap<NodeId, Vec<NodeId>>,
    /// Nodes of the plan with each key.
    by_key: HashMap<Key, Vec<NodeId>>,
    /// Position of each node in the plan's topological order.
    rank: HashMap<NodeId, usize>,
    done_sent: bool,
}

impl Active {
    fn set(&mut self, id: NodeId, state: State) {
        self.state.insert(id, state);
    }

    fn unsettled(&self) -> bool {
        self.state.values().any(|s| matches!(s, State::Pending | State::Running))
    }
}

struct Coordinator {
    shared: Arc<Shared>,
    pool: Option<rayon::ThreadPool>,
    inbox: Sender<Msg>,
    running: HashMap<Key, Arc<AtomicBool>>,
    active: Option<Active>,
}

impl Coordinator {
    fn run(&mut self, inbox: Receiver<Msg>) {
        for msg in inbox.iter() {
            match msg {
                Msg::Plan(plan, tx) => self.start(plan, tx),
                Msg::Progress { key, fraction, message } => {
                    if let Some(active) = &self.active {
                        for id in active.by_key.get(&key).into_iter().flatten() {
                            if active.state.get(id) == Some(&State::Running) {
                                let _ =
                                    active.tx.send(Event::Progress { node: *id, fraction, message: message.clone() });
                            }
                        }
                    }
                }
                Msg::Done { key, result, duration } => self.finish(key, result, duration),
                Msg::CancelAll => self.cancel_all(),
                Msg::ForgetErrors => lock(&self.shared.errors).clear(),
                Msg::Shutdown => {
                    for flag in self.running.values() {
                        flag.store(true, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
    }

    fn start(&mut self, plan: Plan, tx: Sender<Event>) {
        if let Some(old) = self.active.take() {
            let _ = old.tx.send(Event::Superseded);
        }
        let needed: HashSet<Key> = plan.nodes.values().map(|n| n.key).collect();
        for (key, flag) in &self.running {
            if !needed.contains(key) {
                flag.store(true, Ordering::Relaxed);
            }
        }
        let mut state = HashMap::new();
        {
            let mut cache = lock(&self.shared.cache);
            cache.pinned = needed;
            let errors = lock(&self.shared.errors);
            for id in &plan.order {
                let Some(node) = plan.nodes.get(id) else { continue };
                if let Some(outputs) = cache.get(node.key) {
                    state.insert(*id, State::Ready);
                    let _ = tx.send(Event::Cached { node: *id, outputs });
                } else if let Some(error) = errors.get(&node.key) {
                    state.insert(*id, State::Failed);
                    let _ = tx.send(Event::Failed { node: *id, error: error.clone() });
                } else {
                    state.insert(*id, State::Pending);
                    let _ = tx.send(Event::Queued { node: *id });
                }
            }
        }
        let mut dependents: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        let mut by_key: HashMap<Key, Vec<NodeId>> = HashMap::new();
        for (id, node) in &plan.nodes {
            by_key.entry(node.key).or_default().push(*id);
            for (_, up, _) in &node.inputs {
                dependents.entry(*up).or_default().push(*id);
            }
        }
        let rank = plan.order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let candidates = plan.order.clone();
        self.active = Some(Active { plan, tx, state, dependents, by_key, rank, done_sent: false });
        self.advance(candidates);
    }

    /// Look at `candidates` (and, when one settles without running, at its dependents):
    /// start each pending node whose inputs are ready, block those with failed inputs.
    fn advance(&mut self, candidates: Vec<NodeId>) {
        let Some(active) = self.active.as_mut() else { return };
        // A min-heap by topological rank, so upstream nodes settle first.
        let mut work: std::collections::BinaryHeap<std::cmp::Reverse<(usize, NodeId)>> =
            candidates.into_iter().filter_map(|id| active.rank.get(&id).map(|r| std::cmp::Reverse((*r, id)))).collect();
        let mut seen: HashSet<NodeId> = HashSet::new();
        while let Some(std::cmp::Reverse((_, id))) = work.pop() {
            if !seen.insert(id) || active.state.get(&id) != Some(&State::Pending) {
                continue;
            }
            let push_dependents =
                |active: &Active, work: &mut std::collections::BinaryHeap<std::cmp::Reverse<(usize, NodeId)>>| {
                    for d in active.dependents.get(&id).into_iter().flatten() {
                        if let Some(r) = active.rank.get(d) {
                            work.push(std::cmp::Reverse((*r, *d)));
                        }
                    }
                };
            let Some(node) = active.plan.nodes.get(&id) else { continue };
            if let Some(error) = node.static_error.clone() {
                active.set(id, State::Failed);
                let _ = active.tx.send(Event::Failed { node: id, error });
                push_dependents(active, &mut work);
                continue;
            }
            let mut blocked_by = None;
            let mut all_ready = true;
            for (_, up, _) in &node.inputs {
                match active.state.get(up) {
                    Some(State::Failed) | Some(State::Cancelled) => blocked_by = blocked_by.or(Some(*up)),
                    Some(State::Blocked(by)) => blocked_by = blocked_by.or(Some(*by)),
                    Some(State::Ready) => {}
                    Some(State::Pending) | Some(State::Running) | None => all_ready = false,
                }
            }
            if !all_ready {
                // Wait until every input has settled, so the "blocked by" node is the
                // first failed input in port order, whatever the timing.
                continue;
            }
            if let Some(by) = blocked_by {
                active.set(id, State::Blocked(by));
                let _ = active.tx.send(Event::Blocked { node: id, by });
                push_dependents(active, &mut work);
                continue;
            }
            if self.running.contains_key(&node.key) {
                // Already running (for an earlier request, or a twin node): attach to it.
                active.state.insert(id, State::Running);
                let _ = active.tx.send(Event::Started { node: id });
                continue;
            }
            // Gather the inputs from the cache.
            let mut inputs = Inputs::default();
            let mut missing = None;
            {
                let mut cache = lock(&self.shared.cache);
                for (port, up, up_port) in &node.inputs {
                    let up_key = active.plan.nodes.get(up).map(|n| n.key).unwrap_or_default();
                    match cache.get(up_key).and_then(|o| o.get(up_port).cloned()) {
                        Some(v) => {
                            inputs.0.insert(port.clone(), v);
                        }
                        None => missing = Some(port.clone()),
                    }
                }
            }
            if let Some(port) = missing {
                let error = NodeError::input(port, "the upstream node gave no value on this port");
                active.set(id, State::Failed);
                let _ = active.tx.send(Event::Failed { node: id, error });
                push_dependents(active, &mut work);
                continue;
            }
            let Some(kind) = node.kind.clone() else { continue };
            lock(&self.shared.log).push(LogEntry { node: id, kind: node.kind_id.clone(), key: node.key });
            let cancel = Arc::new(AtomicBool::new(false));
            self.running.insert(node.key, cancel.clone());
            active.state.insert(id, State::Running);
            let _ = active.tx.send(Event::Started { node: id });
            let key = node.key;
            let params = node.params.clone();
            let inbox = self.inbox.clone();
            let base_dir = active.plan.base_dir.clone();
            let job = move || {
                let progress_inbox = inbox.clone();
                let ctx = EvalContext::new(
                    cancel,
                    Box::new(move |fraction, message| {
                        let _ = progress_inbox.send(Msg::Progress { key, fraction, message: message.to_owned() });
                    }),
                    base_dir,
                );
                let started = Instant::now();
                let result = run_kind(kind.as_ref(), &ctx, &inputs, &params);
                let _ = inbox.send(Msg::Done { key, result, duration: started.elapsed() });
            };
            match &self.pool {
                Some(pool) => pool.spawn(job),
                None => {
                    std::thread::spawn(job);
                }
            }
        }
        if !active.done_sent && !active.unsettled() {
            active.done_sent = true;
            lock(&self.shared.cache).pinned.clear();
            let _ = active.tx.send(Event::Done);
        }
    }

    fn finish(&mut self, key: Key, result: Result<Outputs, NodeError>, duration: Duration) {
        let cancelled = self.running.remove(&key).is_some_and(|f| f.load(Ordering::Relaxed));
        let result = match result {
            Ok(outputs) => {
                let outputs = Arc::new(outputs);
                lock(&self.shared.cache).insert(key, outputs.clone());
                Ok(outputs)
            }
            Err(NodeError::Cancelled) => Err(None),
            Err(_) if cancelled => Err(None),
            Err(e) => {
                lock(&self.shared.errors).insert(key, e.clone());
                Err(Some(e))
            }
        };
        let mut candidates = Vec::new();
        if let Some(active) = self.active.as_mut() {
            let ids: Vec<NodeId> = active
                .by_key
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|id| active.state.get(id) == Some(&State::Running))
                .copied()
                .collect();
            for id in &ids {
                candidates.push(*id);
                candidates.extend(active.dependents.get(id).into_iter().flatten().copied());
            }
            for id in ids {
                match &result {
                    Ok(outputs) => {
                        active.state.insert(id, State::Ready);
                        tracing::debug!(node = %id, secs = duration.as_secs_f64(), "evaluated");
                        let _ = active.tx.send(Event::Finished { node: id, duration, outputs: outputs.clone() });
                    }
                    // Cancelled for an older request, but this one needs it: run again.
                    Err(None) => {
                        active.state.insert(id, State::Pending);
                    }
                    Err(Some(error)) => {
                        active.state.insert(id, State::Failed);
                        tracing::info!(node = %id, %error, "failed");
                        let _ = active.tx.send(Event::Failed { node: id, error: error.clone() });
                    }
                }
            }
        }
        self.advance(candidates);
    }

    fn cancel_all(&mut self) {
        for flag in self.running.values() {
            flag.store(true, Ordering::Relaxed);
        }
        if let Some(active) = self.active.as_mut() {
            for id in &active.plan.order {
                if let Some(st) = active.state.get_mut(id) {
                    if matches!(st, State::Pending | State::Running) {
                        *st = State::Cancelled;
                        let _ = active.tx.send(Event::Cancelled { node: *id });
                    }
                }
            }
        }
        self.advance(Vec::new());
    }
}

/// Run a kind, containing panics and checking that it gave every declared output.
fn run_kind(kind: &dyn NodeKind, ctx: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
    let result = catch_unwind(AssertUnwindSafe(|| kind.evaluate(ctx, inputs, params)));
    let outputs = match result {
        Ok(r) => r?,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            return Err(NodeError::Panicked(msg));
        }
    };
    for port in kind.outputs(params) {
        match outputs.get(&port.name) {
            Some(v) if v.port_type() == port.ty => {}
            Some(v) => {
                return Err(NodeError::failed(format!(
                    "output '{}' should be {} but the node gave {}",
                    port.name,
                    port.ty,
                    v.port_type()
                )))
            }
            None => return Err(NodeError::failed(format!("the node gave no value for output '{}'", port.name))),
        }
    }
    Ok(outputs)
}
