//! What probes capture: per-tensor statistics, histograms, predictions, streamed batches.

use super::*;

/// Summary statistics of one tensor over all samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub std: f64,
    pub count: usize,
    pub histogram: Histogram,
    /// NaN and infinite values, left out of everything above.
    #[serde(default)]
    pub non_finite: u64,
}

/// Counts of values in equal bins over `[lo, hi)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
    /// The exact grid of a probe's histogram (see [`crate::stats::StreamHistogram`]), which
    /// lets histograms of shards merge; `None` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<BinGrid>,
}

/// Bins `2^log2_width` wide, the first starting at `first · 2^log2_width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinGrid {
    pub log2_width: i32,
    pub first: i64,
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
    /// The pass that makes the statistics and predictions, when it has not run yet (they
    /// are empty here until then): the node reading this value runs it within its own pass
    /// (see [`PendingPass`]).
    pub pending: Option<PendingHandle>,
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
    /// How the batches are made, when a user should know (e.g. from kept values of an
    /// intermediate tensor, through part of the model only).
    fn describe(&self) -> Option<String> {
        None
    }
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
    /// `names` for the chosen samples only (in the order asked, one row each): what a view
    /// of a few samples needs, without a pass over the others. The default walks a whole
    /// pass and keeps those rows; a stream that can run single samples should do that.
    fn gather(
        &self,
        names: &[String],
        samples: &[usize],
        ctx: &crate::EvalContext,
    ) -> Result<Vec<Batch>, crate::NodeError> {
        let mut out: Vec<Option<Batch>> = vec![None; samples.len()];
        let mut it = self.open(names, self.batch_size())?;
        while let Some(b) = it.next_batch(ctx)? {
            for (slot, s) in out.iter_mut().zip(samples) {
                if (b.start..b.start + b.rows).contains(s) {
                    *slot = Some(b.row(*s - b.start));
                }
            }
        }
        out.into_iter()
            .zip(samples)
            .map(|(b, s)| b.ok_or_else(|| crate::NodeError::failed(format!("sample {s} is not in the stream"))))
            .collect()
    }
}

impl Batch {
    /// Row `k` of this batch as a batch of its own.
    pub fn row(&self, k: usize) -> Batch {
        let tensors = self
            .tensors
            .iter()
            .map(|(name, (shape, data))| {
                let item: usize = shape.iter().product();
                (name.clone(), (shape.clone(), data.get(k * item..(k + 1) * item).unwrap_or(&[]).to_vec()))
            })
            .collect();
        Batch { start: self.start + k, rows: 1, tensors }
    }
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
