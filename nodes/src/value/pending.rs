//! A probe's pass that has not run yet, so that the node reading the probe can run it inside
//! its own pass over the same batches (one run of each model per batch, not two).
//!
//! A probe whose output feeds a node that fuses passes ([`crate::NodeKind::fuses_pending`],
//! the comparator) returns its [`Activations`] at once, with everything that needs no pass
//! (tensor names, Q/DQ pairs, digests, the stream) and a [`PendingPass`]. The comparator
//! [claims](PendingPass::claim) it, asks the stream for the pass's tensors along with its
//! own, and feeds each batch to the claim; the claim's [`finish`](Claim::finish) makes the
//! finished value, which every holder of the pending one then sees
//! ([`Activations::settled`]). Any other reader gets the finished value from the scheduler,
//! which [resolves](PendingPass::resolve) the pass alone (waiting while someone else runs it).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::*;
use crate::{EvalContext, NodeError};

/// Takes the batches of one pass and makes the finished [`Activations`] from them.
pub trait PassSink: Send {
    /// Add one batch; it carries at least [`PassWork::names`].
    fn add(&mut self, ctx: &EvalContext, batch: &Batch) -> Result<(), NodeError>;
    /// The finished value, after the last batch. `how` says how the batches were made when
    /// a user should know (e.g. "ran 5 of 40 ops, from …"; see [`BatchIter::describe`]).
    fn finish(self: Box<Self>, ctx: &EvalContext, how: Option<String>) -> Result<Activations, NodeError>;
}

/// What a deferred pass needs from the batches, and a fresh sink for them.
pub trait PassWork: Send + Sync {
    /// Tensors every batch must carry.
    fn names(&self) -> Vec<String>;
    /// A sink for one pass.
    fn sink(&self) -> Result<Box<dyn PassSink>, NodeError>;
}

enum PassState {
    Open,
    Claimed,
    Done(Arc<Activations>),
}

/// A pass not yet run (see the module doc).
pub struct PendingPass {
    work: Box<dyn PassWork>,
    stream: StreamHandle,
    state: Mutex<PassState>,
    changed: Condvar,
}

/// A shared [`PendingPass`]; equal when it is the same pass.
#[derive(Clone)]
pub struct PendingHandle(pub Arc<PendingPass>);

impl fmt::Debug for PendingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PendingHandle(done: {})", self.0.resolved().is_some())
    }
}

impl PartialEq for PendingHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PendingPass {
    /// A pass over `stream`'s batches (in its batch size) into `work`'s sinks.
    pub fn new(work: Box<dyn PassWork>, stream: StreamHandle) -> Self {
        Self { work, stream, state: Mutex::new(PassState::Open), changed: Condvar::new() }
    }

    fn state(&self) -> MutexGuard<'_, PassState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tensors every batch of the pass must carry.
    pub fn names(&self) -> Vec<String> {
        self.work.names()
    }

    /// The finished value, once someone has run the pass.
    pub fn resolved(&self) -> Option<Arc<Activations>> {
        match &*self.state() {
            PassState::Done(a) => Some(a.clone()),
            _ => None,
        }
    }

    /// Whether someone is running the pass now.
    pub fn is_claimed(&self) -> bool {
        matches!(*self.state(), PassState::Claimed)
    }

    /// Take the pass over, to feed it from another pass; `None` when it is done or someone
    /// else is running it. Dropping the claim unfinished (an error, a cancel) gives it back.
    pub fn claim(self: &Arc<Self>) -> Result<Option<Claim>, NodeError> {
        {
            let mut state = self.state();
            if !matches!(*state, PassState::Open) {
                return Ok(None);
            }
            *state = PassState::Claimed;
        }
        // Dropped (and the pass given back) if the sink cannot be made.
        let mut claim = Claim { pass: self.clone(), sink: None };
        claim.sink = Some(self.work.sink()?);
        Ok(Some(claim))
    }

    /// The finished value: the one someone else made (waiting while they run it), or made
    /// now by running the pass alone.
    pub fn resolve(self: &Arc<Self>, ctx: &EvalContext) -> Result<Arc<Activations>, NodeError> {
        loop {
            ctx.check_cancelled()?;
            {
                let state = self.state();
                match &*state {
                    PassState::Done(a) => return Ok(a.clone()),
                    PassState::Claimed => {
                        // Woken when the other run ends; a timeout to notice a cancel.
                        let _ = self.changed.wait_timeout(state, Duration::from_millis(100));
                        continue;
                    }
                    PassState::Open => {}
                }
            }
            let Some(mut claim) = self.claim()? else { continue };
            let n = self.stream.0.samples();
            let mut it = self.stream.0.open(&claim.names(), self.stream.0.batch_size())?;
            while let Some(b) = it.next_batch(ctx)? {
                claim.add(ctx, &b)?;
                let done = b.start + b.rows;
                ctx.progress(done as f32 / n.max(1) as f32, &format!("probing: {done}/{n} images"));
            }
            return claim.finish(ctx, it.describe());
        }
    }
}

/// The right to run a [`PendingPass`] (see [`PendingPass::claim`]).
pub struct Claim {
    pass: Arc<PendingPass>,
    sink: Option<Box<dyn PassSink>>,
}

impl Claim {
    /// Tensors every batch must carry.
    pub fn names(&self) -> Vec<String> {
        self.pass.names()
    }

    /// Add the next batch.
    pub fn add(&mut self, ctx: &EvalContext, batch: &Batch) -> Result<(), NodeError> {
        match self.sink.as_mut() {
            Some(s) => s.add(ctx, batch),
            None => Err(NodeError::failed("the probe's pass was already finished")),
        }
    }

    /// The finished value after the last batch, which every holder of the pending value
    /// then sees.
    pub fn finish(mut self, ctx: &EvalContext, how: Option<String>) -> Result<Arc<Activations>, NodeError> {
        let sink = self.sink.take().ok_or_else(|| NodeError::failed("the probe's pass was already finished"))?;
        let done = Arc::new(sink.finish(ctx, how)?);
        *self.pass.state() = PassState::Done(done.clone());
        self.pass.changed.notify_all();
        Ok(done)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut state = self.pass.state();
        if matches!(*state, PassState::Claimed) {
            *state = PassState::Open;
        }
        drop(state);
        self.pass.changed.notify_all();
    }
}

impl Activations {
    /// This value with its pass's figures: itself when no pass is pending, the finished
    /// value once someone ran the pass, else itself (statistics and predictions not there
    /// yet; see [`Activations::is_pending`]).
    pub fn settled(self: &Arc<Self>) -> Arc<Self> {
        match &self.pending {
            Some(p) => p.0.resolved().unwrap_or_else(|| self.clone()),
            None => self.clone(),
        }
    }

    /// Whether the statistics and predictions wait for a pass no one has run yet.
    pub fn is_pending(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.0.resolved().is_none())
    }

    /// The finished value, running the pending pass alone if no one has.
    pub fn resolve(self: &Arc<Self>, ctx: &EvalContext) -> Result<Arc<Self>, NodeError> {
        match &self.pending {
            Some(p) => p.0.resolve(ctx),
            None => Ok(self.clone()),
        }
    }

    /// The claim on this value's pending pass, when it is pending and no one runs it.
    pub fn claim(&self) -> Result<Option<Claim>, NodeError> {
        match &self.pending {
            Some(p) => p.0.claim(),
            None => Ok(None),
        }
    }
}

impl Value {
    /// The value with any pending pass's figures filled in where someone ran it (see
    /// [`Activations::settled`]); other values as they are.
    pub fn settled(&self) -> Value {
        match self {
            Value::Activations(a) => Value::Activations(a.settled()),
            other => other.clone(),
        }
    }

    /// Whether this is an [`Activations`] whose pass no one has run yet.
    pub fn is_pending(&self) -> bool {
        matches!(self, Value::Activations(a) if a.is_pending())
    }

    /// Whether this is an [`Activations`] whose pass someone is running now.
    pub fn is_claimed(&self) -> bool {
        matches!(self, Value::Activations(a) if a.pending.as_ref().is_some_and(|p| p.0.is_claimed()))
    }
}

/// The error of a node whose input's pending pass failed (run by it or for it), on that
/// input's port; a cancel stays a cancel.
pub fn pass_failed(port: &str, e: NodeError) -> NodeError {
    match e {
        NodeError::Cancelled => e,
        e => NodeError::input(port, format!("the pass of the probe feeding this port failed: {e}")),
    }
}
