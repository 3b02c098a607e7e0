//! Pending passes (#8): a probe read by a node that fuses passes leaves its pass to that
//! node, so each model runs once per batch; every other reader gets the finished value, and
//! nothing is left pending after an evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::kind::single;
use quantgraph_nodes::value::{
    ActivationStream, Activations, Batch, BatchIter, ModelInfo, PassSink, PassWork, PendingHandle, PendingPass,
    ProbedTensor, Tensor, TensorRole, TensorStats,
};
use quantgraph_nodes::{
    params, EvalContext, Inputs, NodeError, NodeRegistry, Outputs, PortSpec, PortType, Scheduler, TypedKind, Value,
};

const SAMPLES: usize = 10;

/// Passes over the stream (each one: one run of "the model" over every sample).
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// Sample `i` has tensor "t" = [i, i].
struct Stream;

struct Iter {
    next: usize,
    batch: usize,
}

impl BatchIter for Iter {
    fn next_batch(&mut self, _: &EvalContext) -> Result<Option<Batch>, NodeError> {
        if self.next >= SAMPLES {
            return Ok(None);
        }
        let (start, end) = (self.next, (self.next + self.batch).min(SAMPLES));
        let data: Vec<f32> = (start..end).flat_map(|i| [i as f32, i as f32]).collect();
        self.next = end;
        Ok(Some(Batch { start, rows: end - start, tensors: BTreeMap::from([("t".into(), (vec![2], data))]) }))
    }
}

impl ActivationStream for Stream {
    fn names(&self) -> Vec<String> {
        vec!["t".into()]
    }
    fn samples(&self) -> usize {
        SAMPLES
    }
    fn open(&self, _: &[String], batch_size: usize) -> Result<Box<dyn BatchIter>, NodeError> {
        PASSES.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Iter { next: 0, batch: batch_size }))
    }
    fn batch_size(&self) -> usize {
        4
    }
}

/// The pass: the mean of "t".
struct Work;

struct Sink {
    sum: f64,
    count: usize,
}

impl PassWork for Work {
    fn names(&self) -> Vec<String> {
        vec!["t".into()]
    }
    fn sink(&self) -> Result<Box<dyn PassSink>, NodeError> {
        Ok(Box::new(Sink { sum: 0.0, count: 0 }))
    }
}

impl PassSink for Sink {
    fn add(&mut self, _: &EvalContext, batch: &Batch) -> Result<(), NodeError> {
        let (_, data) = &batch.tensors["t"];
        self.sum += data.iter().map(|x| f64::from(*x)).sum::<f64>();
        self.count += data.len();
        Ok(())
    }
    fn finish(self: Box<Self>, _: &EvalContext, _: Option<String>) -> Result<Activations, NodeError> {
        let stats = TensorStats { mean: self.sum / self.count as f64, count: self.count, ..TensorStats::default() };
        Ok(acts(stats, None))
    }
}

fn acts(stats: TensorStats, pending: Option<PendingHandle>) -> Activations {
    let t = ProbedTensor {
        name: "t".into(),
        role: TensorRole::Activation,
        tensor: Tensor { shape: vec![SAMPLES, 2], data: Vec::new() },
        stats,
        qdq: None,
        digest: 0,
    };
    Activations {
        model_name: "m".into(),
        model: Arc::new(ModelInfo::default()),
        tensors: BTreeMap::from([("t".into(), t)]),
        predictions: None,
        dataset: None,
        notes: Vec::new(),
        stream: Some(quantgraph_nodes::value::StreamHandle(Arc::new(Stream))),
        pending,
    }
}

params! {
    pub struct ProbeParams {
        pub millis: usize = int("Milliseconds before it returns", 0, 0, 10_000),
    }
}

#[derive(Default)]
struct Probe;

impl TypedKind for Probe {
    type Params = ProbeParams;
    fn id(&self) -> &'static str {
        "test.probe"
    }
    fn display_name(&self) -> &'static str {
        "Probe"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Activations with a pending pass."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("activations", PortType::Activations)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &ProbeParams) -> Result<Outputs, NodeError> {
        std::thread::sleep(std::time::Duration::from_millis(params.millis as u64));
        let stream = quantgraph_nodes::value::StreamHandle(Arc::new(Stream));
        let pending = Arc::new(PendingPass::new(Box::new(Work), stream));
        let value = if ctx.may_defer() {
            Arc::new(acts(TensorStats::default(), Some(PendingHandle(pending))))
        } else {
            pending.resolve(ctx)?
        };
        Ok(single("activations", Value::Activations(value)))
    }
}

params! {
    pub struct FuserParams {
        pub fail: bool = bool("Fail before the pass", false),
        pub tag: usize = int("Tag (fusers that differ only by it are not twins)", 0, 0, 100),
    }
}

/// Runs the probe's pass within its own (one pass of the stream for both) and gives the
/// mean it made; -1 when someone else had run it.
#[derive(Default)]
struct Fuser;

impl TypedKind for Fuser {
    type Params = FuserParams;
    fn id(&self) -> &'static str {
        "test.fuser"
    }
    fn display_name(&self) -> &'static str {
        "Fuser"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Runs pending passes within its own."
    }
    fn fuses_pending(&self) -> bool {
        true
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("a", PortType::Activations), PortSpec::optional("b", PortType::Activations)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &FuserParams) -> Result<Outputs, NodeError> {
        if params.fail {
            return Err(NodeError::failed("failing before the pass"));
        }
        let a = inputs.activations("a")?;
        let done = match a.claim()? {
            Some(mut claim) => {
                let stream = a.stream.as_ref().unwrap();
                let mut it = stream.0.open(&claim.names(), 4)?;
                while let Some(b) = it.next_batch(ctx)? {
                    claim.add(ctx, &b)?;
                }
                claim.finish(ctx, None)?
            }
            None => {
                a.resolve(ctx)?;
                return Ok(single("out", Value::Scalar(-1.0)));
            }
        };
        Ok(single("out", Value::Scalar(done.tensors["t"].stats.mean)))
    }
}

params! {
    pub struct ReaderParams {
        pub tag: usize = int("Tag (readers that differ only by it are not twins)", 0, 0, 100),
    }
}

/// Reads the probe's mean (not fusing: it gets the finished value).
#[derive(Default)]
struct Reader;

impl TypedKind for Reader {
    type Params = ReaderParams;
    fn id(&self) -> &'static str {
        "test.reader"
    }
    fn display_name(&self) -> &'static str {
        "Reader"
    }
    fn category(&self) -> &'static str {
        "Test"
    }
    fn doc(&self) -> &'static str {
        "Reads a probe's statistics."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("a", PortType::Activations)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("out", PortType::Scalar)]
    }
    fn evaluate(&self, _: &EvalContext, inputs: &Inputs, _: &ReaderParams) -> Result<Outputs, NodeError> {
        let a = inputs.activations("a")?;
        assert!(!a.is_pending(), "a reader that does not fuse gets the finished value");
        Ok(single("out", Value::Scalar(a.tensors["t"].stats.mean)))
    }
}

fn registry() -> Arc<NodeRegistry> {
    let mut r = NodeRegistry::new();
    r.register::<Probe>().unwrap();
    r.register::<Fuser>().unwrap();
    r.register::<Reader>().unwrap();
    Arc::new(r)
}

fn node(g: &mut Graph, r: &NodeRegistry, kind: &str, from: Option<NodeId>) -> NodeId {
    let id = g.add_node(r, kind, [0.0, 0.0]).unwrap();
    if let Some(from) = from {
        g.connect(r, PortRef::new(from, "activations"), PortRef::new(id, "a")).unwrap();
    }
    id
}

fn scalar(e: &quantgraph_nodes::Evaluation, id: NodeId) -> f64 {
    match e.outputs(id).and_then(|o| o.get("out")) {
        Some(Value::Scalar(x)) => *x,
        other => panic!("{other:?} {:?}", e.outcomes.get(&id)),
    }
}

/// The probe's value as the evaluation reports it: finished, with the pass's mean.
fn probe_mean(e: &quantgraph_nodes::Evaluation, id: NodeId) -> f64 {
    match e.outputs(id).and_then(|o| o.get("activations")) {
        Some(Value::Activations(a)) => {
            assert!(!a.is_pending() && a.pending.is_none(), "the evaluation reports the finished value");
            a.tensors["t"].stats.mean
        }
        other => panic!("{other:?}"),
    }
}

// Mean of t over samples 0..10 (each twice).
const MEAN: f64 = 4.5;

/// One test (the pass counter is process-wide): each case counts the passes it causes.
#[test]
fn a_pending_pass_runs_once_and_every_reader_sees_it_finished() {
    let r = registry();
    let passes = || PASSES.swap(0, Ordering::SeqCst);

    // Probe → fuser and readers: one pass, run by the fuser (whatever the order the nodes
    // were added in, so whatever their ranks); the readers wait for it.
    passes();
    for reader_first in [false, true, false, true, false, true] {
        let mut g = Graph::new();
        let p = node(&mut g, &r, "test.probe", None);
        let readers: Vec<NodeId> =
            if reader_first { (0..3).map(|_| node(&mut g, &r, "test.reader", Some(p))).collect() } else { Vec::new() };
        let f = node(&mut g, &r, "test.fuser", Some(p));
        let readers =
            if reader_first { readers } else { (0..3).map(|_| node(&mut g, &r, "test.reader", Some(p))).collect() };
        let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
        assert_eq!(scalar(&e, f), MEAN, "the fuser ran the probe's pass");
        for rd in readers {
            assert_eq!(scalar(&e, rd), MEAN);
        }
        assert_eq!(probe_mean(&e, p), MEAN);
        assert_eq!(passes(), 1, "one pass for the probe, the fuser and the readers");
    }
    // Two fusers of one probe: one runs the pass, the other waits for it (rather than wait
    // for it inside a worker) and reads the finished value.
    for _ in 0..4 {
        let mut g = Graph::new();
        let p = node(&mut g, &r, "test.probe", None);
        let fusers: Vec<NodeId> = (0..3)
            .map(|k| {
                let f = node(&mut g, &r, "test.fuser", Some(p));
                g.set_param(f, "tag", k.into()).unwrap();
                f
            })
            .collect();
        let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
        let mut got: Vec<f64> = fusers.iter().map(|f| scalar(&e, *f)).collect();
        got.sort_by(f64::total_cmp);
        assert_eq!(got, vec![-1.0, -1.0, MEAN], "one fuser ran the pass");
        assert_eq!(passes(), 1);
    }

    // The fuser's other input takes longer: the reader still waits for the fuser.
    let mut g = Graph::new();
    let p = node(&mut g, &r, "test.probe", None);
    let slow = node(&mut g, &r, "test.probe", None);
    g.set_param(slow, "millis", 300.into()).unwrap();
    let rd = node(&mut g, &r, "test.reader", Some(p));
    let f = node(&mut g, &r, "test.fuser", Some(p));
    g.connect(&r, PortRef::new(slow, "activations"), PortRef::new(f, "b")).unwrap();
    let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
    assert_eq!((scalar(&e, f), scalar(&e, rd)), (MEAN, MEAN), "the fuser ran the probe's pass");
    assert_eq!(probe_mean(&e, slow), MEAN, "the other probe's pass ran too (no fuser claims it)");
    assert_eq!(passes(), 2);

    let mut g = Graph::new();
    let p = node(&mut g, &r, "test.probe", None);
    node(&mut g, &r, "test.fuser", Some(p));
    let s = Scheduler::new(r.clone());
    s.evaluate(&g, &[]);
    passes();
    // Cached afterwards: nothing runs again, and the cached value is the finished one.
    let e = s.evaluate(&g, &[]);
    assert_eq!(probe_mean(&e, p), MEAN);
    assert_eq!(passes(), 0);

    // A probe read by nothing, or only by nodes that do not fuse: it runs its pass itself.
    for with_reader in [false, true] {
        let mut g = Graph::new();
        let p = node(&mut g, &r, "test.probe", None);
        let rd = with_reader.then(|| node(&mut g, &r, "test.reader", Some(p)));
        let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
        assert_eq!(probe_mean(&e, p), MEAN);
        if let Some(rd) = rd {
            assert_eq!(scalar(&e, rd), MEAN);
        }
        assert_eq!(passes(), 1);
    }

    // A fuser that fails before its pass: the probe's value is still finished (the
    // scheduler runs the pass), and the fuser's error is its own.
    let mut g = Graph::new();
    let p = node(&mut g, &r, "test.probe", None);
    let f = node(&mut g, &r, "test.fuser", Some(p));
    g.set_param(f, "fail", true.into()).unwrap();
    let s = Scheduler::new(r.clone());
    let e = s.evaluate(&g, &[]);
    assert!(e.outcomes[&f].error().is_some_and(|e| e.to_string().contains("failing before the pass")));
    assert_eq!(probe_mean(&e, p), MEAN);
    assert_eq!(passes(), 1);

    // A failing fuser and two readers: the readers run the pass once between them (the
    // second waits for the first rather than for a claim on a worker).
    for _ in 0..4 {
        let mut g = Graph::new();
        let p = node(&mut g, &r, "test.probe", None);
        let f = node(&mut g, &r, "test.fuser", Some(p));
        g.set_param(f, "fail", true.into()).unwrap();
        let readers: Vec<NodeId> = (0..2).map(|_| node(&mut g, &r, "test.reader", Some(p))).collect();
        g.set_param(readers[1], "tag", 1.into()).unwrap();
        let e = Scheduler::new(r.clone()).evaluate(&g, &[]);
        assert!(e.outcomes[&f].error().is_some());
        for rd in &readers {
            assert_eq!(scalar(&e, *rd), MEAN);
        }
        assert_eq!(probe_mean(&e, p), MEAN);
        assert_eq!(passes(), 1);
    }

    // Asking for the probe alone after its fuser was removed: the finished value, no new
    // pass.
    g.remove_node(f);
    let e = s.evaluate(&g, &[p]);
    assert_eq!(probe_mean(&e, p), MEAN);
    assert_eq!(passes(), 0);
}
