//! Running a plan: the coordinator thread, the worker pool, cancellation and events.

use super::*;
use crate::Value;

pub(super) enum Msg {
    Plan(Plan, Sender<Event>),
    Progress { key: Key, fraction: f32, message: String },
    Done { key: Key, result: Result<Outputs, NodeError>, duration: Duration },
    CancelAll,
    ForgetErrors,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Pending,
    Running,
    Ready,
    Failed,
    Blocked(NodeId),
    Cancelled,
}

pub(super) struct Active {
    pub(super) plan: Plan,
    pub(super) tx: Sender<Event>,
    pub(super) state: HashMap<NodeId, State>,
    /// Nodes of the plan fed by each node.
    pub(super) dependents: HashMap<NodeId, Vec<NodeId>>,
    /// Nodes of the plan with each key.
    pub(super) by_key: HashMap<Key, Vec<NodeId>>,
    /// Position of each node in the plan's topological order.
    pub(super) rank: HashMap<NodeId, usize>,
    pub(super) done_sent: bool,
    /// Nodes held back while a node that fuses passes runs their inputs' pass.
    pub(super) waiting: HashSet<NodeId>,
    /// Nodes that run without waiting (nothing else ran that they could wait for).
    pub(super) forced: HashSet<NodeId>,
}

impl Active {
    pub(super) fn set(&mut self, id: NodeId, state: State) {
        self.state.insert(id, state);
    }

    pub(super) fn unsettled(&self) -> bool {
        self.state.values().any(|s| matches!(s, State::Pending | State::Running))
    }
}

pub(super) struct Coordinator {
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Option<rayon::ThreadPool>,
    pub(super) inbox: Sender<Msg>,
    pub(super) running: HashMap<Key, Arc<AtomicBool>>,
    pub(super) active: Option<Active>,
}

impl Coordinator {
    pub(super) fn run(&mut self, inbox: Receiver<Msg>) {
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

    pub(super) fn start(&mut self, plan: Plan, tx: Sender<Event>) {
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
        let mut dependents: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        let mut by_key: HashMap<Key, Vec<NodeId>> = HashMap::new();
        for (id, node) in &plan.nodes {
            by_key.entry(node.key).or_default().push(*id);
            for (_, up, _) in &node.inputs {
                dependents.entry(*up).or_default().push(*id);
            }
        }
        {
            let mut cache = lock(&self.shared.cache);
            cache.pinned = needed;
            let errors = lock(&self.shared.errors);
            for id in &plan.order {
                let Some(node) = plan.nodes.get(id) else { continue };
                // A value whose pass is still pending counts as known only while a node of
                // this plan that will run (not cached) runs that pass within its own; else
                // the node runs again, with its pass.
                let fused_here = dependents
                    .get(id)
                    .into_iter()
                    .flatten()
                    .any(|d| plan.nodes.get(d).is_some_and(|n| n.fuses() && !cache.entries.contains_key(&n.key)));
                let cached = cache.get(node.key).filter(|o| fused_here || !o.values().any(Value::is_pending));
                if let Some(outputs) = cached {
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
        let rank = plan.order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let candidates = plan.order.clone();
        self.active = Some(Active {
            plan,
            tx,
            state,
            dependents,
            by_key,
            rank,
            done_sent: false,
            waiting: HashSet::new(),
            forced: HashSet::new(),
        });
        self.advance(candidates);
    }

    /// Look at `candidates` (and, when one settles without running, at its dependents):
    /// start each pending node whose inputs are ready, block those with failed inputs.
    pub(super) fn advance(&mut self, candidates: Vec<NodeId>) {
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
            let fuses = kind.fuses_pending();
            if inputs.0.values().any(Value::is_pending) && should_wait(active, id, &inputs) {
                // A node that runs the input's pass within its own is running or about to:
                // wait for it rather than run that pass a second time (or block a worker
                // waiting for it).
                active.waiting.insert(id);
                continue;
            }
            active.waiting.remove(&id);
            // Probes may leave their pass to a node reading them that will run it.
            let defer = active.dependents.get(&id).into_iter().flatten().any(|d| {
                active.state.get(d) == Some(&State::Pending) && active.plan.nodes.get(d).is_some_and(PlanNode::fuses)
            });
            lock(&self.shared.log).push(LogEntry { node: id, kind: node.kind_id.clone(), key: node.key });
            let cancel = Arc::new(AtomicBool::new(false));
            self.running.insert(node.key, cancel.clone());
            active.state.insert(id, State::Running);
            let _ = active.tx.send(Event::Started { node: id });
            let params = node.params.clone();
            let base_dir = active.plan.base_dir.clone();
            let mut inputs = inputs;
            spawn_job(&self.pool, &self.inbox, node.key, cancel, base_dir, defer, move |ctx| {
                if !fuses {
                    resolve_pending(&mut inputs, ctx)?;
                }
                run_kind(kind.as_ref(), ctx, &inputs, &params)
            });
        }
        // Nodes held back for a pass someone else was to run, when nothing runs any more (the
        // fusing node that was to run it failed or was blocked): they run it themselves (no
        // job holds a claim they could wait for).
        if self.running.is_empty() && !active.waiting.is_empty() {
            let retry: Vec<NodeId> = active.waiting.drain().collect();
            active.forced.extend(retry.iter().copied());
            self.advance(retry);
            return;
        }
        if !active.done_sent && !active.unsettled() {
            // Values left with their pass pending (the fusing node that was to run it failed
            // or was blocked) are finished before the request is done, as their own nodes.
            let cancelled = active.state.values().any(|s| *s == State::Cancelled);
            let stale: Vec<NodeId> = if cancelled {
                Vec::new()
            } else {
                let mut cache = lock(&self.shared.cache);
                active
                    .plan
                    .order
                    .iter()
                    .filter(|id| active.state.get(id) == Some(&State::Ready))
                    .filter(|id| {
                        active.plan.nodes.get(id).is_some_and(|n| {
                            !self.running.contains_key(&n.key)
                                && cache.get(n.key).is_some_and(|o| o.values().any(Value::is_pending))
                        })
                    })
                    .copied()
                    .collect()
            };
            if !stale.is_empty() {
                self.settle(stale);
                return;
            }
            let Some(active) = self.active.as_mut() else { return };
            active.done_sent = true;
            lock(&self.shared.cache).pinned.clear();
            let _ = active.tx.send(Event::Done);
        }
    }

    pub(super) fn finish(&mut self, key: Key, result: Result<Outputs, NodeError>, duration: Duration) {
        // Nodes waiting for a fusing node to run their inputs' pass look again.
        let waiting: Vec<NodeId> =
            self.active.as_ref().map(|a| a.waiting.iter().copied().collect()).unwrap_or_default();
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
        let mut candidates = waiting;
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

    /// Run the pending passes of `ids`' values (Ready nodes), each as its node's job: it
    /// shows as running, and a failure of the pass is its failure.
    fn settle(&mut self, ids: Vec<NodeId>) {
        let Some(active) = self.active.as_mut() else { return };
        for id in ids {
            let Some(node) = active.plan.nodes.get(&id) else { continue };
            let key = node.key;
            if self.running.contains_key(&key) {
                // A twin (same key) is being settled: this node gets its result too.
                active.state.insert(id, State::Running);
                let _ = active.tx.send(Event::Started { node: id });
                continue;
            }
            let Some(outputs) = lock(&self.shared.cache).get(key) else { continue };
            let cancel = Arc::new(AtomicBool::new(false));
            self.running.insert(key, cancel.clone());
            active.state.insert(id, State::Running);
            let _ = active.tx.send(Event::Started { node: id });
            let base_dir = active.plan.base_dir.clone();
            spawn_job(&self.pool, &self.inbox, key, cancel, base_dir, false, move |ctx| {
                let mut values: Outputs = (*outputs).clone();
                finish_values(&mut values, ctx).map_err(|(_, e)| e)?;
                Ok(values)
            });
        }
    }

    pub(super) fn cancel_all(&mut self) {
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

/// Run `work` for `key` on the pool (a thread of its own without one), with a context that
/// reports its progress and sees `cancel`; its result comes back as `Msg::Done`.
fn spawn_job(
    pool: &Option<rayon::ThreadPool>,
    inbox: &Sender<Msg>,
    key: Key,
    cancel: Arc<AtomicBool>,
    base_dir: Option<PathBuf>,
    defer: bool,
    work: impl FnOnce(&EvalContext) -> Result<Outputs, NodeError> + Send + 'static,
) {
    let inbox = inbox.clone();
    let job = move || {
        let progress_inbox = inbox.clone();
        let ctx = EvalContext::new(
            cancel,
            Box::new(move |fraction, message| {
                let _ = progress_inbox.send(Msg::Progress { key, fraction, message: message.to_owned() });
            }),
            base_dir,
        )
        .with_defer(defer);
        let started = Instant::now();
        let result = work(&ctx);
        let _ = inbox.send(Msg::Done { key, result, duration: started.elapsed() });
    };
    match pool {
        Some(pool) => pool.spawn(job),
        None => {
            std::thread::spawn(job);
        }
    }
}

/// Whether `id`, which reads a value whose pass is pending, waits. A job never waits for a
/// pass someone else runs (on a worker that may be the one the other job needs): it waits
/// here while the pass is claimed (by any job, of this request or an older one) or while
/// another node reading the same value runs (it may claim it); and a node that does not fuse
/// passes waits for one that does and still can run ([`fuser_first`]).
fn should_wait(active: &Active, id: NodeId, inputs: &Inputs) -> bool {
    if active.forced.contains(&id) {
        return false;
    }
    if inputs.0.values().any(Value::is_claimed) {
        return true;
    }
    let Some(node) = active.plan.nodes.get(&id) else { return false };
    let other_running = node.inputs.iter().any(|(port, up, _)| {
        inputs.0.get(port).is_some_and(Value::is_pending)
            && active
                .dependents
                .get(up)
                .into_iter()
                .flatten()
                .any(|f| *f != id && active.state.get(f) == Some(&State::Running))
    });
    if other_running {
        return true;
    }
    !node.fuses() && fuser_first(active, id)
}

/// Whether a node that runs pending passes within its own ([`NodeKind::fuses_pending`])
/// reads one of `id`'s inputs and is running or still can run (none of its inputs failed,
/// and it does not wait for `id` itself).
fn fuser_first(active: &Active, id: NodeId) -> bool {
    let Some(node) = active.plan.nodes.get(&id) else { return false };
    node.inputs.iter().any(|(_, up, _)| {
        active.dependents.get(up).into_iter().flatten().any(|f| {
            let Some(fnode) = active.plan.nodes.get(f) else { return false };
            if *f == id || fnode.static_error.is_some() || !fnode.fuses() {
                return false;
            }
            match active.state.get(f) {
                Some(State::Running) => true,
                Some(State::Pending) => {
                    fnode.inputs.iter().all(|(_, u, _)| {
                        matches!(active.state.get(u), Some(State::Ready | State::Pending | State::Running))
                    }) && !upstream_of(active, *f).contains(&id)
                }
                _ => false,
            }
        })
    })
}

/// Every node of the plan upstream of `id`.
fn upstream_of(active: &Active, id: NodeId) -> HashSet<NodeId> {
    let mut seen = HashSet::new();
    let mut todo = vec![id];
    while let Some(n) = todo.pop() {
        for (_, up, _) in active.plan.nodes.get(&n).map(|n| n.inputs.as_slice()).unwrap_or_default() {
            if seen.insert(*up) {
                todo.push(*up);
            }
        }
    }
    seen
}

/// Finish every value whose pass is still pending (running it alone if no one has); an
/// error names the port of the value whose pass failed.
fn finish_values(values: &mut BTreeMap<String, Value>, ctx: &EvalContext) -> Result<(), (String, NodeError)> {
    for (port, v) in values.iter_mut() {
        if let Value::Activations(a) = v {
            if a.pending.is_some() {
                *v = Value::Activations(a.resolve(ctx).map_err(|e| (port.clone(), e))?);
            }
        }
    }
    Ok(())
}

/// Finish every input whose pass is still pending, before a kind that does not fuse passes
/// reads it.
fn resolve_pending(inputs: &mut Inputs, ctx: &EvalContext) -> Result<(), NodeError> {
    finish_values(&mut inputs.0, ctx).map_err(|(port, e)| crate::value::pass_failed(&port, e))
}

/// Run a kind, containing panics and checking that it gave every declared output.
pub(super) fn run_kind(
    kind: &dyn NodeKind,
    ctx: &EvalContext,
    inputs: &Inputs,
    params: &Params,
) -> Result<Outputs, NodeError> {
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
