//! Port types and the values that flow on wires.
//!
//! The payload types here are plain data shared by all plugins (the dataset plugin makes a
//! [`Dataset`], the ONNX plugin reads it), so plugins agree on them without depending on
//! each other. Every payload sits behind an `Arc`: cloning a [`Value`] is cheap.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::images::{BatchData, ImageSource, Images};

/// The type of a port. A wire may only join ports of the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortType {
    Scalar,
    Text,
    Tensor,
    Dataset,
    Model,
    Activations,
    Predictions,
    Table,
    Plot,
}

impl PortType {
    pub const ALL: [PortType; 9] = [
        PortType::Scalar,
        PortType::Text,
        PortType::Tensor,
        PortType::Dataset,
        PortType::Model,
        PortType::Activations,
        PortType::Predictions,
        PortType::Table,
        PortType::Plot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PortType::Scalar => "Scalar",
            PortType::Text => "Text",
            PortType::Tensor => "Tensor",
            PortType::Dataset => "Dataset",
            PortType::Model => "Model",
            PortType::Activations => "Activations",
            PortType::Predictions => "Predictions",
            PortType::Table => "Table",
            PortType::Plot => "Plot",
        }
    }

    /// An RGB colour for drawing ports of this type.
    pub fn color_rgb(self) -> [u8; 3] {
        match self {
            PortType::Scalar => [200, 200, 200],
            PortType::Text => [160, 160, 120],
            PortType::Tensor => [90, 170, 255],
            PortType::Dataset => [240, 170, 60],
            PortType::Model => [180, 110, 250],
            PortType::Activations => [70, 200, 160],
            PortType::Predictions => [250, 110, 140],
            PortType::Table => [120, 220, 90],
            PortType::Plot => [250, 220, 80],
        }
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value on a wire.
#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    Text(Arc<str>),
    Tensor(Arc<Tensor>),
    Dataset(Arc<Dataset>),
    Model(Arc<ModelValue>),
    Activations(Arc<Activations>),
    Predictions(Arc<Predictions>),
    Table(Arc<Report>),
    Plot(Arc<PlotSpec>),
}

impl Value {
    pub fn port_type(&self) -> PortType {
        match self {
            Value::Scalar(_) => PortType::Scalar,
            Value::Text(_) => PortType::Text,
            Value::Tensor(_) => PortType::Tensor,
            Value::Dataset(_) => PortType::Dataset,
            Value::Model(_) => PortType::Model,
            Value::Activations(_) => PortType::Activations,
            Value::Predictions(_) => PortType::Predictions,
            Value::Table(_) => PortType::Table,
            Value::Plot(_) => PortType::Plot,
        }
    }

    /// Approximate heap size, for the scheduler's cache budget.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Scalar(_) => 8,
            Value::Text(t) => t.len(),
            Value::Tensor(t) => t.size_bytes(),
            Value::Dataset(d) => {
                d.images.size_bytes()
                    + d.labels.len() * 4
                    + d.preview.len() * 3072
                    + d.thumbnails.iter().map(|t| t.rgb.len()).sum::<usize>()
            }
            Value::Model(m) => m.bytes.len() + m.info.nodes.len() * 128,
            Value::Activations(a) => a.tensors.values().map(|t| t.tensor.size_bytes()).sum::<usize>() + 1024,
            Value::Predictions(p) => p.top1.len() * 4 + 64,
            Value::Table(r) => r.tables.iter().map(|t| t.rows.len() * t.columns.len() * 16).sum::<usize>() + 256,
            Value::Plot(p) => p.series.iter().map(|s| s.y.len() * 16).sum::<usize>() + 256,
        }
    }

    /// A one-line description of the value, for node bodies and the CLI.
    pub fn summary(&self) -> String {
        match self {
            Value::Scalar(x) => format!("{x}"),
            Value::Text(t) => t.chars().take(60).collect(),
            Value::Tensor(t) => format!("tensor {:?}", t.shape),
            Value::Dataset(d) => format!("{} images, {} classes", d.len(), d.class_names.len()),
            Value::Model(m) => format!(
                "{} ops, {} params{}",
                m.info.nodes.len(),
                m.info.param_count,
                if m.info.qdq.is_empty() { String::new() } else { format!(", {} Q/DQ", m.info.qdq.len()) }
            ),
            Value::Activations(a) => match &a.predictions {
                Some(p) => match p.accuracy() {
                    Some(acc) => format!("{} tensors, top-1 {:.1} %", a.tensors.len(), acc * 100.0),
                    None => format!("{} tensors, {} samples", a.tensors.len(), p.top1.len()),
                },
                None => format!("{} tensors", a.tensors.len()),
            },
            Value::Predictions(p) => format!("{} predictions", p.top1.len()),
            Value::Table(r) => r.headline.clone().unwrap_or_else(|| format!("{} tables", r.tables.len())),
            Value::Plot(p) => format!("{} plot: {}", p.kind.name(), p.title),
        }
    }

    /// A machine-readable rendering for `quantgraph run --json`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Scalar(x) => json!(x),
            Value::Text(t) => json!(t.as_ref()),
            Value::Tensor(t) => json!({"shape": t.shape, "len": t.data.len()}),
            Value::Dataset(d) => json!({"images": d.len(), "classes": d.class_names, "source": d.source}),
            Value::Model(m) => serde_json::to_value(m.info.as_ref()).unwrap_or(serde_json::Value::Null),
            Value::Activations(a) => json!({
                "model": a.model_name,
                "tensors": a.tensors.iter().map(|(k, v)| (k.clone(), serde_json::to_value(&v.stats).unwrap_or_default())).collect::<BTreeMap<_, _>>(),
                "accuracy": a.predictions.as_ref().and_then(|p| p.accuracy()),
                "notes": a.notes,
            }),
            Value::Predictions(p) => json!({"top1": p.top1, "accuracy": p.accuracy()}),
            Value::Table(r) => serde_json::to_value(r.as_ref()).unwrap_or_default(),
            Value::Plot(p) => serde_json::to_value(p.as_ref()).unwrap_or_default(),
        }
    }
}

/// A dense float32 tensor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
    pub fn size_bytes(&self) -> usize {
        self.data.len() * 4 + self.shape.len() * 8
    }
    /// Elements per leading-axis item (per sample).
    pub fn item_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// Memory layout of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// A small RGB thumbnail of one sample, for the editor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewImage {
    pub index: usize,
    pub label: u32,
    pub width: u32,
    pub height: u32,
    /// RGB, row-major, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// A labelled image dataset: preprocessed samples, in memory or decoded batch by batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[N, C, H, W]` or `[N, H, W, C]` (see `layout`).
    pub images: Images,
    pub layout: Layout,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    /// Index of each sample in its source (record number in the file, or file order).
    pub source_indices: Vec<usize>,
    /// Where the data came from (file or folder) and which split.
    pub source: String,
    /// Preprocessing, in words ("raw 0–255, NCHW").
    pub preprocessing: String,
    /// The first few samples as thumbnails.
    pub preview: Vec<PreviewImage>,
    /// Thumbnails of every sample (32×32 for CIFAR), for showing a flipped sample. Empty
    /// for a streamed dataset, whose thumbnails are decoded on demand (see
    /// [`Dataset::thumbnail`]).
    pub thumbnails: Arc<Vec<PreviewImage>>,
    /// One sample before and after preprocessing (the "after" drawn back to 0–255), for the
    /// inspector; `None` where preprocessing is only a scale.
    pub before_after: Option<(PreviewImage, PreviewImage)>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Sample `i` as a thumbnail: kept in memory, or decoded from a streamed source.
    pub fn thumbnail(&self, i: usize) -> Option<PreviewImage> {
        if let Some(t) = self.thumbnails.get(i) {
            return Some(t.clone());
        }
        match &self.images {
            Images::Stream(s) if i < s.len() => s.thumbnail(i),
            _ => None,
        }
    }
}

/// Shape and type of a model input/output or initializer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    /// Each dimension: a size, or a symbolic name ("N") for a dynamic one.
    pub dims: Vec<String>,
}

/// One operator of an ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpInfo {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// An initializer (weight) of an ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitializerInfo {
    pub name: String,
    pub dtype: String,
    pub dims: Vec<i64>,
    pub size_bytes: usize,
}

/// One QuantizeLinear or DequantizeLinear node and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QdqEntry {
    /// Node name.
    pub node: String,
    /// `QuantizeLinear` or `DequantizeLinear`.
    pub op_type: String,
    /// The node's data input (float for Q, quantized for DQ).
    pub input: String,
    /// The node's output.
    pub output: String,
    /// Name of the scale tensor (initializer).
    pub scale_name: String,
    pub zero_point_name: String,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
    /// `int8`, `uint8`, ...
    pub dtype: String,
    /// Quantization axis for per-axis parameters.
    pub axis: Option<i64>,
    /// The float tensor this pair quantizes (the Q input, or for a weight DQ the
    /// original weight name without `_quantized`).
    pub float_tensor: String,
    /// True when the quantized data is an initializer (a weight).
    pub is_weight: bool,
}

impl QdqEntry {
    /// `(qmin, qmax)` of the quantized type.
    pub fn qrange(&self) -> (i32, i32) {
        qrange(&self.dtype)
    }
    /// The representable real range `[(qmin−zp)·s, (qmax−zp)·s]` of the first channel.
    pub fn real_range(&self) -> Option<(f32, f32)> {
        self.channel_range(0)
    }
    /// The representable real range of channel `c` of a per-axis pair (the one range of a
    /// per-tensor pair for any `c`).
    pub fn channel_range(&self, c: usize) -> Option<(f32, f32)> {
        let (qmin, qmax) = self.qrange();
        let s = *self.scales.get(c).or(self.scales.first())?;
        let zp = *self.zero_points.get(c).or(self.zero_points.first()).unwrap_or(&0);
        Some(((qmin - zp) as f32 * s, (qmax - zp) as f32 * s))
    }
}

/// `(qmin, qmax)` of a quantized type name.
pub fn qrange(dtype: &str) -> (i32, i32) {
    match dtype {
        "uint8" => (0, 255),
        "int16" => (-32768, 32767),
        "uint16" => (0, 65535),
        "int4" => (-8, 7),
        "uint4" => (0, 15),
        "int32" => (i32::MIN, i32::MAX),
        _ => (-128, 127),
    }
}

/// What an inspector needs to know about an ONNX model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub nodes: Vec<OpInfo>,
    pub initializers: Vec<InitializerInfo>,
    pub param_count: u64,
    pub qdq: Vec<QdqEntry>,
    /// Type and shape of every tensor the model declares (inputs, outputs, value_info).
    #[serde(default)]
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl ModelInfo {
    /// The Q/DQ parameter table: one row per QuantizeLinear/DequantizeLinear node and per
    /// quantized input, weight and output of a QOperator op; per-axis parameters as their
    /// count and range (every channel: [`ModelInfo::qdq_channel_table`]).
    pub fn qdq_table(&self) -> Table {
        let short = |op: &str| match op {
            "QuantizeLinear" => "Q".to_owned(),
            "DequantizeLinear" => "DQ".to_owned(),
            other => other.to_owned(),
        };
        Table {
            name: "qdq".into(),
            columns: [
                "float tensor",
                "op",
                "node",
                "dtype",
                "channels",
                "scale",
                "zero point",
                "axis",
                "range lo",
                "range hi",
                "weight",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            rows: self
                .qdq
                .iter()
                .map(|e| {
                    let (lo, hi) = e.real_range().unwrap_or((f32::NAN, f32::NAN));
                    let (smin, smax) =
                        e.scales.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), s| (a.min(*s), b.max(*s)));
                    let (zmin, zmax) =
                        e.zero_points.iter().fold((i32::MAX, i32::MIN), |(a, b), z| (a.min(*z), b.max(*z)));
                    vec![
                        Cell::Text(e.float_tensor.clone()),
                        Cell::Text(short(&e.op_type)),
                        Cell::Text(e.node.clone()),
                        Cell::Text(e.dtype.clone()),
                        Cell::Int(e.scales.len() as i64),
                        if e.scales.len() == 1 {
                            Cell::Num(f64::from(e.scales[0]))
                        } else {
                            Cell::Text(format!("{smin:.4e} … {smax:.4e}"))
                        },
                        if e.zero_points.len() == 1 || zmin == zmax {
                            Cell::Int(i64::from(e.zero_points.first().copied().unwrap_or(0)))
                        } else {
                            Cell::Text(format!("{zmin} … {zmax}"))
                        },
                        Cell::Text(e.axis.map(|a| a.to_string()).unwrap_or_default()),
                        Cell::Num(f64::from(lo)),
                        Cell::Num(f64::from(hi)),
                        Cell::Text(if e.is_weight { "yes".into() } else { String::new() }),
                    ]
                })
                .collect(),
        }
    }

    /// Every channel of one per-axis Q/DQ entry: scale, zero point and representable range.
    pub fn qdq_channel_table(e: &QdqEntry) -> Table {
        let (qmin, qmax) = e.qrange();
        Table {
            name: format!("channels of {}", e.float_tensor),
            columns: ["channel", "scale", "zero point", "range lo", "range hi"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            rows: e
                .scales
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let z = e.zero_points.get(c).or(e.zero_points.first()).copied().unwrap_or(0);
                    vec![
                        Cell::Int(c as i64),
                        Cell::Num(f64::from(*s)),
                        Cell::Int(i64::from(z)),
                        Cell::Num(f64::from((qmin - z) as f32 * s)),
                        Cell::Num(f64::from((qmax - z) as f32 * s)),
                    ]
                })
                .collect(),
        }
    }
}

/// A change made by a QDQ override, shown beside the original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideChange {
    pub tensor: String,
    pub node: String,
    pub field: String,
    pub original: f64,
    pub new: f64,
}

/// A loaded ONNX model: its bytes (what a session is made from) and its description.
#[derive(Clone, PartialEq)]
pub struct ModelValue {
    pub name: String,
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    pub info: Arc<ModelInfo>,
    /// Intra-op threads for sessions made from this model.
    pub threads: usize,
    /// Edits made by QDQ overrides upstream (empty for a model read from a file).
    pub changes: Vec<OverrideChange>,
}

impl fmt::Debug for ModelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelValue")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("size_bytes", &self.bytes.len())
            .field("ops", &self.info.nodes.len())
            .field("qdq", &self.info.qdq.len())
            .field("changes", &self.changes)
            .finish()
    }
}

/// Summary statistics of one tensor over all samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub std: f64,
    pub count: usize,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
}

/// Role of a probed tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorRole {
    /// A model output.
    Output,
    /// An intermediate activation.
    Activation,
}

/// One probed tensor, all samples concatenated along the first axis.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedTensor {
    pub name: String,
    pub role: TensorRole,
    pub tensor: Tensor,
    pub stats: TensorStats,
    /// The Q/DQ pair this tensor passes through, if any (for drawing the grid).
    pub qdq: Option<QdqEntry>,
    /// Identity of its values over the probe's samples: the same digest means the same
    /// computation of the same inputs, so figures computed from it can be reused
    /// (0: unknown, never reused).
    pub digest: u64,
}

/// Top-1 predictions of a classifier.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Predictions {
    pub top1: Vec<u32>,
    pub labels: Option<Vec<u32>>,
    pub class_names: Vec<String>,
    /// The shape of the model output per sample (`[C]` for a classifier's scores);
    /// `top1` is the argmax over all of it.
    #[serde(default)]
    pub output_shape: Vec<usize>,
}

impl Predictions {
    /// Whether the output is one score per class of the dataset (`[C]`, axes of length 1
    /// aside, with C the number of class names); unknown shapes (older values) count as yes.
    pub fn is_classifier(&self) -> bool {
        match self.score_width() {
            Some(c) => self.class_names.is_empty() || c == self.class_names.len(),
            None => self.output_shape.is_empty(),
        }
    }
    /// C when the output per sample is `[C]` (axes of length 1 do not count: `[C, 1, 1]` is
    /// still C scores); `None` for any other or an unknown shape.
    pub fn score_width(&self) -> Option<usize> {
        let mut axes = self.output_shape.iter().copied().filter(|d| *d != 1);
        match (axes.next(), axes.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
    /// Correct top-1 predictions; `None` without labels or when the output is not a
    /// classifier's scores for the dataset's classes.
    pub fn correct(&self) -> Option<usize> {
        if !self.is_classifier() {
            return None;
        }
        let labels = self.labels.as_ref()?;
        Some(self.top1.iter().zip(labels).filter(|(p, l)| p == l).count())
    }
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.top1.len();
        if n == 0 {
            return None;
        }
        Some(self.correct()? as f64 / n as f64)
    }
}

/// Tensors captured by a layer probe.
///
/// A probe keeps statistics and histograms over every sample, the model outputs in full,
/// and no intermediate activations: those are streamed again, batch by batch, from
/// [`Activations::stream`] by whoever needs their values (the comparator), so memory does
/// not grow with the number of samples. A [`ProbedTensor`] without a stream carries its
/// data in `tensor` (hand-made values, tests).
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    pub model_name: String,
    pub model: Arc<ModelInfo>,
    pub tensors: BTreeMap<String, ProbedTensor>,
    pub predictions: Option<Predictions>,
    /// The dataset's per-sample source indices and thumbnails, if known.
    pub dataset: Option<Arc<Dataset>>,
    /// Remarks a user should see (e.g. "probing changed 3 predictions").
    pub notes: Vec<String>,
    /// Re-runs the probed model over the same samples, batch by batch.
    pub stream: Option<StreamHandle>,
}

/// One batch of streamed tensors: samples `start..start + rows`, and per tensor name its
/// shape per sample and its data (`rows` × that shape, row-major).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub start: usize,
    pub rows: usize,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Yields the batches of one pass, in sample order.
pub trait BatchIter: Send {
    /// The next batch, `None` after the last. Checks `ctx` for cancellation between runs.
    fn next_batch(&mut self, ctx: &crate::EvalContext) -> Result<Option<Batch>, crate::NodeError>;
}

/// Something that can run the probed model again over the probe's samples (implemented by
/// the ONNX plugin on ONNX Runtime; the engine and other plugins only see this trait).
pub trait ActivationStream: Send + Sync {
    /// Tensor names it can deliver.
    fn names(&self) -> Vec<String>;
    /// Samples in one pass.
    fn samples(&self) -> usize;
    /// Start a pass delivering `names` in batches of `batch_size` samples.
    fn open(&self, names: &[String], batch_size: usize) -> Result<Box<dyn BatchIter>, crate::NodeError>;
    /// The batch size the probe used (a comparator runs both sides with the smaller).
    fn batch_size(&self) -> usize;
}

/// A shared [`ActivationStream`]; equal when it is the same stream.
#[derive(Clone)]
pub struct StreamHandle(pub Arc<dyn ActivationStream>);

impl fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamHandle({} samples, {} tensors)", self.0.samples(), self.0.names().len())
    }
}

impl PartialEq for StreamHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A table cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Int(i64),
    Num(f64),
    Text(String),
}

impl Cell {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Num(x) => Some(*x),
            Cell::Text(_) => None,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Num(x) if x.is_infinite() => f.write_str(if *x > 0.0 { "inf" } else { "-inf" }),
            Cell::Num(x) => write!(f, "{x:.4}"),
            Cell::Text(t) => f.write_str(t),
        }
    }
}

/// `name` shortened to `max` characters by an ellipsis in the middle, keeping both ends
/// (tensor names differ at the end and start with their block).
pub fn elide_middle(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max || max < 3 {
        return name.to_owned();
    }
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    format!("{}…{}", chars[..head].iter().collect::<String>(), chars[chars.len() - tail..].iter().collect::<String>())
}

/// A named table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
    /// The table as CSV text (RFC 4180 quoting by the `csv` crate).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut ok = w.write_record(&self.columns).is_ok();
        for row in &self.rows {
            let cells = row.iter().map(|c| match c {
                Cell::Num(x) => format!("{x}"),
                other => other.to_string(),
            });
            ok &= w.write_record(cells).is_ok();
        }
        // Writing into memory cannot fail; an empty string says so if it ever did.
        match (ok, w.into_inner()) {
            (true, Ok(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// Metrics and tables (a comparator's output).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    pub headline: Option<String>,
    pub summary: BTreeMap<String, f64>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// The raw, mergeable content behind the figures (a comparator's per-sample outcomes and
    /// per-pair sums), when asked for: what `quantgraph merge` combines across shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<serde_json::Value>,
}

impl Report {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Kind of chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlotKind {
    Bar,
    Line,
    Histogram,
    Heatmap,
    ImageGrid,
}

impl PlotKind {
    pub fn name(self) -> &'static str {
        match self {
            PlotKind::Bar => "bar",
            PlotKind::Line => "line",
            PlotKind::Histogram => "histogram",
            PlotKind::Heatmap => "heatmap",
            PlotKind::ImageGrid => "image grid",
        }
    }
}

/// One data series of a chart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// A chart, ready to draw (egui_plot in the editor, PNG in headless runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotSpec {
    pub title: String,
    pub kind: PlotKind,
    pub x_label: String,
    pub y_label: String,
    /// Category labels for bar charts and heatmap columns.
    pub x_categories: Vec<String>,
    /// Heatmap row labels.
    pub y_categories: Vec<String>,
    pub series: Vec<Series>,
    /// Heatmap cells, row-major `y_categories.len() × x_categories.len()`.
    pub cells: Vec<f64>,
    /// Vertical marker lines (e.g. a quantization clip range), `(x, label)`.
    pub markers: Vec<(f64, String)>,
    /// Horizontal reference lines (e.g. FP32 and full-INT8 accuracy), `(y, label)`.
    #[serde(default)]
    pub levels: Vec<(f64, String)>,
    /// Images for an image grid, with captions.
    pub images: Vec<(PreviewImage, String)>,
}

impl PlotSpec {
    pub fn new(kind: PlotKind, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            kind,
            x_label: String::new(),
            y_label: String::new(),
            x_categories: Vec::new(),
            y_categories: Vec::new(),
            series: Vec::new(),
            cells: Vec::new(),
            markers: Vec::new(),
            levels: Vec::new(),
            images: Vec::new(),
        }
    }
}
