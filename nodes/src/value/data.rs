//! Dense tensors and datasets: what loaders make and models read.

use super::*;

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
    /// Thumbnails of samples kept in memory, for showing a flipped sample. Empty for a
    /// streamed dataset (the loader's), whose thumbnails are drawn on demand (see
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
