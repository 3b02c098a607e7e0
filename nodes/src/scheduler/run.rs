//! Running a plan: the coordinator thread, the worker pool, cancellation and events.

use super::*;

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

    pub(super) fn finish(&mut self, key: Key, result: Result<Outputs, NodeError>, duration: Duration) {
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
