//! The pixels of a dataset: either one dense tensor in memory (tests, plugins that make
//! their samples) or a source that preprocesses samples batch by batch as a consumer asks
//! for them (the loader's: CIFAR-10's 8-bit records, image folders), so that neither a
//! folder of 50,000 photos nor the test set as floats is ever one tensor.

use std::fmt;
use std::sync::Arc;

use crate::value::{PreviewImage, Tensor};
use crate::NodeError;

/// Something that produces preprocessed samples on demand (implemented by the dataset
/// plugin for image folders).
pub trait ImageSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one sample (`[C, H, W]` or `[H, W, C]`).
    fn item_shape(&self) -> Vec<usize>;
    /// Samples `start..end`, preprocessed, as `(end − start) × item` floats. Checks
    /// `cancelled` between images.
    fn batch(
        &self,
        start: usize,
        end: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Arc<Vec<f32>>, NodeError>;
    /// A string that changes whenever any sample would (files, their sizes and times,
    /// preprocessing): results computed from the source are cached under it.
    fn identity(&self) -> String;
    /// Sample `i` as a small RGB thumbnail, decoded on demand.
    fn thumbnail(&self, i: usize) -> Option<PreviewImage>;
    /// Memory the source holds, for cache budgets (by default a file list's worth).
    fn size_bytes(&self) -> usize {
        self.len() * 64
    }
}

/// Samples of one batch: borrowed from a dense tensor, or the decoded batch a source keeps
/// (shared, not copied).
pub enum BatchData<'a> {
    Borrowed(&'a [f32]),
    Shared(Arc<Vec<f32>>),
}

impl fmt::Debug for BatchData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchData({} values)", self.len())
    }
}

impl std::ops::Deref for BatchData<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            BatchData::Borrowed(s) => s,
            BatchData::Shared(v) => v,
        }
    }
}

/// The preprocessed pixels of a dataset.
#[derive(Clone)]
pub enum Images {
    /// Every sample in memory: `[N, …item]`.
    Dense(Tensor),
    /// Decoded batch by batch.
    Stream(Arc<dyn ImageSource>),
}

impl Default for Images {
    fn default() -> Self {
        Images::Dense(Tensor::default())
    }
}

impl fmt::Debug for Images {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Images::Dense(t) => write!(f, "Images::Dense({:?})", t.shape),
            Images::Stream(s) => write!(f, "Images::Stream({} × {:?}, {})", s.len(), s.item_shape(), s.identity()),
        }
    }
}

impl PartialEq for Images {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Images::Dense(a), Images::Dense(b)) => a == b,
            (Images::Stream(a), Images::Stream(b)) => a.identity() == b.identity(),
            _ => false,
        }
    }
}

impl From<Tensor> for Images {
    fn from(t: Tensor) -> Self {
        Images::Dense(t)
    }
}

impl Images {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Images::Dense(t) => t.shape.first().copied().unwrap_or(0),
            Images::Stream(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one sample.
    pub fn item_shape(&self) -> Vec<usize> {
        match self {
            Images::Dense(t) => t.shape.iter().skip(1).copied().collect(),
            Images::Stream(s) => s.item_shape(),
        }
    }
    /// `[N, …item]`.
    pub fn shape(&self) -> Vec<usize> {
        let mut s = vec![self.len()];
        s.extend(self.item_shape());
        s
    }
    /// Floats per sample.
    pub fn item_len(&self) -> usize {
        self.item_shape().iter().product()
    }
    /// Memory held (as the source counts it for a stream).
    pub fn size_bytes(&self) -> usize {
        match self {
            Images::Dense(t) => t.size_bytes(),
            Images::Stream(s) => s.size_bytes(),
        }
    }
    /// The dense tensor, when the samples are all in memory.
    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            Images::Dense(t) => Some(t),
            Images::Stream(_) => None,
        }
    }
    /// Samples `start..end` as `(end − start) × item` floats: borrowed from a dense tensor,
    /// decoded for a stream.
    pub fn batch(
        &self,
        start: usize,
        end: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<BatchData<'_>, NodeError> {
        if start > end || end > self.len() {
            return Err(NodeError::failed(format!("samples {start}..{end} are out of range (0..{})", self.len())));
        }
        match self {
            Images::Dense(t) => {
                let item = t.item_len();
                t.data
                    .get(start * item..end * item)
                    .map(BatchData::Borrowed)
                    .ok_or_else(|| NodeError::failed(format!("samples {start}..{end} are out of range")))
            }
            Images::Stream(s) => {
                let data = s.batch(start, end, cancelled)?;
                let want = (end - start) * self.item_len();
                if data.len() != want {
                    return Err(NodeError::failed(format!(
                        "the image source gave {} values for samples {start}..{end}, expected {want}",
                        data.len()
                    )));
                }
                Ok(BatchData::Shared(data))
            }
        }
    }
    /// Feed the samples' identity to a digest: every float of a dense tensor, or the
    /// source's identity string.
    pub fn digest_into(&self, mut feed: impl FnMut(&[u8])) {
        match self {
            Images::Dense(t) => {
                for v in &t.data {
                    feed(&v.to_bits().to_le_bytes());
                }
            }
            Images::Stream(s) => feed(s.identity().as_bytes()),
        }
    }
}
