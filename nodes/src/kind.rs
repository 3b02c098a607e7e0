//! The [`NodeKind`] trait: what a plugin implements to add a kind of node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::error::NodeError;
use crate::param::{KindParams, ParamSpec, Params};
use crate::value::{Activations, Dataset, ModelValue, PlotSpec, PortType, Predictions, Report, Tensor, Value};

/// A declared input or output port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Stable name, stored in graph files.
    pub name: String,
    pub ty: PortType,
    /// An optional input may stay unconnected.
    pub optional: bool,
}

impl PortSpec {
    pub fn new(name: &str, ty: PortType) -> Self {
        Self { name: name.into(), ty, optional: false }
    }
    pub fn optional(name: &str, ty: PortType) -> Self {
        Self { name: name.into(), ty, optional: true }
    }
}

/// A migration of a kind's params from `from_version` to `from_version + 1`.
pub struct Migration {
    pub from_version: u32,
    pub apply: fn(&mut Params) -> Result<(), String>,
}

/// A kind of node, as the engine and the editor see it: its schema as data and its params
/// as JSON. Plugins written in Rust implement [`TypedKind`] instead (params declared once
/// with [`params!`](crate::params), evaluation given the typed struct), which implements
/// this trait; implement it directly only for kinds whose schema is itself data.
///
/// Only `id`, `display_name`, `category`, `doc`, `params`, `inputs`, `outputs` and
/// `evaluate` are required.
pub trait NodeKind: Send + Sync + 'static {
    /// Stable, namespaced id stored in graph files, e.g. `"onnx.model"`.
    fn id(&self) -> &'static str;
    /// Version of this kind's params; bump it and add a [`Migration`] when they change.
    fn version(&self) -> u32 {
        1
    }
    fn display_name(&self) -> &'static str;
    /// Palette category, e.g. `"Data"`, `"Model"`, `"Analysis"`.
    fn category(&self) -> &'static str;
    /// One paragraph for users: what it does, what it needs, what it gives.
    fn doc(&self) -> &'static str;
    /// The parameter schema.
    fn params(&self) -> Vec<ParamSpec>;
    /// Input ports (may depend on params).
    fn inputs(&self, params: &Params) -> Vec<PortSpec>;
    /// Output ports (may depend on params).
    fn outputs(&self, params: &Params) -> Vec<PortSpec>;
    /// Compute the outputs. Runs on a worker thread; report progress and check
    /// cancellation through `ctx` when the work is long.
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError>;

    /// For kinds that read files: a string that changes when the files change (size and
    /// modification time, or a content hash). Folded into the cache key.
    fn external_identity(&self, _params: &Params, _base_dir: Option<&Path>) -> Option<String> {
        None
    }
    /// Migrations of old params, one step each.
    fn migrations(&self) -> Vec<Migration> {
        Vec::new()
    }
    /// For kinds that edit a model's quantization parameters: where edits go (see
    /// [`TensorEdits`]). The editor's Q/DQ table writes dragged scales and zero points there.
    fn tensor_edits(&self) -> Option<TensorEdits> {
        None
    }
    /// For kinds that show one tensor of chosen samples of two probes (see [`SampleMaps`]):
    /// the editor's flip drill-down sets those params and wires the probes there.
    fn sample_maps(&self) -> Option<SampleMaps> {
        None
    }
    /// Whether `evaluate` takes [`Activations`](crate::value::Activations) inputs whose pass
    /// is still pending and runs that pass within its own ([`PendingPass`](crate::value::PendingPass)):
    /// one pass over the batches for both. Other kinds get such inputs finished (the
    /// scheduler runs the pass first), and probes upstream of a kind that fuses leave their
    /// pass to it.
    fn fuses_pending(&self) -> bool {
        false
    }
    /// Check the kind's params declaration (every default reads into its field and writes
    /// back the same); the registry runs it when the kind is registered.
    fn check_params(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A kind of node with typed params: implement it on a plain struct, declare the params
/// struct with [`params!`](crate::params), and register the kind with
/// [`NodeRegistry::register`](crate::NodeRegistry::register). `evaluate` receives the
/// struct, read from the node's JSON params after any migrations: defaults filled, every
/// value checked against its spec, unknown names and record fields refused (the node
/// fails with an error naming the param).
///
/// Only `Params`, `id`, `display_name`, `category`, `doc`, `inputs`, `outputs` and
/// `evaluate` are required.
pub trait TypedKind: Send + Sync + 'static {
    /// The params struct (use [`NoParams`](crate::param::NoParams) for none).
    type Params: KindParams;
    /// Stable, namespaced id stored in graph files, e.g. `"onnx.model"`.
    fn id(&self) -> &'static str;
    /// Version of this kind's params; bump it and add a [`Migration`] when they change.
    fn version(&self) -> u32 {
        1
    }
    fn display_name(&self) -> &'static str;
    /// Palette category, e.g. `"Data"`, `"Model"`, `"Analysis"`.
    fn category(&self) -> &'static str;
    /// One paragraph for users: what it does, what it needs, what it gives.
    fn doc(&self) -> &'static str;
    /// Input ports (a kind whose ports depend on its params implements [`NodeKind`]).
    fn inputs(&self) -> Vec<PortSpec>;
    /// Output ports.
    fn outputs(&self) -> Vec<PortSpec>;
    /// Compute the outputs from the typed params. Runs on a worker thread; report progress
    /// and check cancellation through `ctx` when the work is long.
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &Self::Params) -> Result<Outputs, NodeError>;
    /// See [`NodeKind::external_identity`]; not called when the params do not read.
    fn external_identity(&self, _params: &Self::Params, _base_dir: Option<&Path>) -> Option<String> {
        None
    }
    /// Migrations of old params (JSON, before they are typed), one step each.
    fn migrations(&self) -> Vec<Migration> {
        Vec::new()
    }
    /// See [`NodeKind::tensor_edits`].
    fn tensor_edits(&self) -> Option<TensorEdits> {
        None
    }
    /// See [`NodeKind::sample_maps`].
    fn sample_maps(&self) -> Option<SampleMaps> {
        None
    }
    /// See [`NodeKind::fuses_pending`].
    fn fuses_pending(&self) -> bool {
        false
    }
}

impl<K: TypedKind> NodeKind for K {
    fn id(&self) -> &'static str {
        TypedKind::id(self)
    }
    fn version(&self) -> u32 {
        TypedKind::version(self)
    }
    fn display_name(&self) -> &'static str {
        TypedKind::display_name(self)
    }
    fn category(&self) -> &'static str {
        TypedKind::category(self)
    }
    fn doc(&self) -> &'static str {
        TypedKind::doc(self)
    }
    fn params(&self) -> Vec<ParamSpec> {
        K::Params::specs()
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        TypedKind::inputs(self)
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        TypedKind::outputs(self)
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let typed = K::Params::from_params(params)?;
        TypedKind::evaluate(self, ctx, inputs, &typed)
    }
    fn external_identity(&self, params: &Params, base_dir: Option<&Path>) -> Option<String> {
        let typed = K::Params::from_params(params).ok()?;
        TypedKind::external_identity(self, &typed, base_dir)
    }
    fn migrations(&self) -> Vec<Migration> {
        TypedKind::migrations(self)
    }
    fn tensor_edits(&self) -> Option<TensorEdits> {
        TypedKind::tensor_edits(self)
    }
    fn sample_maps(&self) -> Option<SampleMaps> {
        TypedKind::sample_maps(self)
    }
    fn fuses_pending(&self) -> bool {
        TypedKind::fuses_pending(self)
    }
    fn check_params(&self) -> Result<(), String> {
        crate::param::typed::check_declaration::<K::Params>()
    }
}

/// How a kind shows chosen samples of one tensor: the two probes' activations come in on
/// `a_input` and `b_input`; `tensor_param` (text) names the tensor and `samples_param`
/// (text) lists sample indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleMaps {
    pub a_input: &'static str,
    pub b_input: &'static str,
    pub tensor_param: &'static str,
    pub samples_param: &'static str,
}

/// How a kind takes per-tensor quantization edits: the model flows in on `model_input` and
/// out, edited, on `model_output`; `param` is a list param whose rows have the fields
/// `tensor` (name), `scale` (0: keep), `factor` (0: off) and `zero_point` (text, empty: keep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEdits {
    pub param: &'static str,
    pub model_input: &'static str,
    pub model_output: &'static str,
}

/// The identity of a file for cache keys: its size and modification time, or "missing".
pub fn file_identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{}:{}:{}", path.display(), m.len(), mtime)
        }
        Err(_) => format!("{}:missing", path.display()),
    }
}

/// Resolve a path param against the graph file's folder.
pub fn resolve_path(base_dir: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    match base_dir {
        Some(base) if p.is_relative() => base.join(p),
        _ => p.to_path_buf(),
    }
}

type ProgressFn = dyn Fn(f32, &str) + Send + Sync;

/// What a node sees while it evaluates.
pub struct EvalContext {
    cancel: Arc<AtomicBool>,
    progress: Box<ProgressFn>,
    base_dir: Option<PathBuf>,
    defer: bool,
}

impl EvalContext {
    pub fn new(cancel: Arc<AtomicBool>, progress: Box<ProgressFn>, base_dir: Option<PathBuf>) -> Self {
        Self { cancel, progress, base_dir, defer: false }
    }

    /// Set whether the node may leave a pass to the node that reads its output (see
    /// [`EvalContext::may_defer`]).
    pub fn with_defer(mut self, defer: bool) -> Self {
        self.defer = defer;
        self
    }

    /// Whether a node reading this one's output runs pending passes within its own
    /// ([`NodeKind::fuses_pending`]): a probe may then return its value with the pass
    /// pending. False unless the scheduler says so.
    pub fn may_defer(&self) -> bool {
        self.defer
    }

    /// A context that is never cancelled and drops progress, for tests and tools.
    pub fn detached(base_dir: Option<PathBuf>) -> Self {
        Self::new(Arc::new(AtomicBool::new(false)), Box::new(|_, _| {}), base_dir)
    }

    /// Report progress: `fraction` in 0..=1 and a short message.
    pub fn progress(&self, fraction: f32, message: &str) {
        (self.progress)(fraction.clamp(0.0, 1.0), message);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag [`EvalContext::is_cancelled`] reads, for a watcher that outlives a borrow of
    /// the context (one thread watching every ONNX Runtime run in the process).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// `Err(NodeError::Cancelled)` once the work has been cancelled.
    pub fn check_cancelled(&self) -> Result<(), NodeError> {
        if self.is_cancelled() {
            Err(NodeError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The folder of the graph file, which relative paths are relative to.
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    pub fn resolve_path(&self, path: &str) -> PathBuf {
        resolve_path(self.base_dir(), path)
    }
}

macro_rules! typed_getter {
    ($fn_name:ident, $variant:ident, $ty:ty) => {
        /// The input on `port`, or an error naming the port and the type found.
        pub fn $fn_name(&self, port: &str) -> Result<&Arc<$ty>, NodeError> {
            match self.get(port)? {
                Value::$variant(v) => Ok(v),
                other => {
                    Err(NodeError::input(port, format!("expected {}, found {}", PortType::$variant, other.port_type())))
                }
            }
        }
    };
}

/// The values on a node's connected inputs, by port name.
#[derive(Debug, Clone, Default)]
pub struct Inputs(pub BTreeMap<String, Value>);

impl Inputs {
    pub fn get(&self, port: &str) -> Result<&Value, NodeError> {
        self.0.get(port).ok_or_else(|| NodeError::input(port, "not connected"))
    }
    pub fn optional(&self, port: &str) -> Option<&Value> {
        self.0.get(port)
    }
    pub fn scalar(&self, port: &str) -> Result<f64, NodeError> {
        match self.get(port)? {
            Value::Scalar(x) => Ok(*x),
            other => Err(NodeError::input(port, format!("expected Scalar, found {}", other.port_type()))),
        }
    }
    typed_getter!(tensor, Tensor, Tensor);
    typed_getter!(dataset, Dataset, Dataset);
    typed_getter!(model, Model, ModelValue);
    typed_getter!(activations, Activations, Activations);
    typed_getter!(predictions, Predictions, Predictions);
    typed_getter!(table, Table, Report);
    typed_getter!(plot, Plot, PlotSpec);
}

/// A node's outputs, by port name.
pub type Outputs = BTreeMap<String, Value>;

/// Outputs with one port.
pub fn single(port: &str, value: Value) -> Outputs {
    let mut out = Outputs::new();
    out.insert(port.into(), value);
    out
}
