//! Samples decoded and preprocessed batch by batch, as the probes ask for them: a folder of
//! 50,000 photos is a list of paths until a batch is needed, decoded on all cores, and the
//! last few batches are kept so that the two probes of a comparison decode each image once.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use quantgraph_nodes::value::{ImageSource, PreviewImage};
use quantgraph_nodes::NodeError;

use crate::formats::{self, RawImages};
use crate::preprocess::Preprocess;

/// Where the pixels come from.
pub enum Items {
    /// Image files, decoded on demand, with each file's identity (size, time) when listed.
    Files(Vec<PathBuf>, Vec<String>),
    /// Images already in memory (CIFAR-10), resized on demand.
    Raw(Arc<RawImages>),
}

/// Decoded batches kept for a second consumer.
const KEPT_BATCHES: usize = 4;
/// Longest side of an on-demand thumbnail.
const THUMBNAIL_SIDE: u32 = 64;

/// A decoded batch: its sample range and floats.
type KeptBatch = ((usize, usize), Arc<Vec<f32>>);

/// A streamed dataset.
pub struct StreamSource {
    items: Items,
    labels: Vec<u32>,
    indices: Vec<usize>,
    pre: Preprocess,
    width: u32,
    height: u32,
    identity: String,
    kept: Mutex<VecDeque<KeptBatch>>,
}

impl StreamSource {
    /// `width`×`height` is the output size every item has after preprocessing (checked
    /// per image as it is decoded).
    pub fn new(
        items: Items,
        labels: Vec<u32>,
        indices: Vec<usize>,
        pre: Preprocess,
        (width, height): (u32, u32),
        identity: String,
    ) -> Self {
        Self { items, labels, indices, pre, width, height, identity, kept: Mutex::new(VecDeque::new()) }
    }

    fn count(&self) -> usize {
        match &self.items {
            Items::Files(f, _) => f.len(),
            Items::Raw(r) => r.len(),
        }
    }

    /// The label of item `i`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels.get(i).copied().unwrap_or(0)
    }

    /// Item `i`, decoded (RGB, original size).
    pub fn original(&self, i: usize) -> Result<RgbImage, NodeError> {
        match &self.items {
            Items::Files(files, listed) => {
                let path = files.get(i).ok_or_else(|| {
                    NodeError::failed(format!("expected an image number below {}, found {i}", files.len()))
                })?;
                // A file changed since the folder was listed would mix old and new pixels
                // between results cached before and computed after.
                if listed.get(i).is_some_and(|id| *id != quantgraph_nodes::kind::file_identity(path)) {
                    return Err(NodeError::file(
                        "the image changed (or disappeared) since the folder was listed; evaluate again to re-read the folder",
                        path,
                    ));
                }
                decode_file(path)
            }
            Items::Raw(raw) => {
                let (w, h) = (raw.width, raw.height);
                let rgb = raw.interleaved(i).ok_or_else(|| {
                    NodeError::failed(format!("expected an image number below {}, found {i}", raw.len()))
                })?;
                RgbImage::from_raw(w as u32, h as u32, rgb)
                    .ok_or_else(|| NodeError::failed(format!("image {i}: expected {w}×{h} RGB pixels, found fewer")))
            }
        }
    }

    /// Item `i` resized and cropped (the 8-bit picture the model's input is made from).
    pub fn prepared(&self, i: usize) -> Result<RgbImage, NodeError> {
        let img = self.original(i)?;
        let (w, h) = img.dimensions();
        let out = self.pre.geometry(img).map_err(|e| self.item_error(i, &e))?;
        if out.dimensions() != (self.width, self.height) {
            return Err(self.item_error(
                i,
                &format!(
                    "expected {}×{} pixels after preprocessing like the other images, found {}×{} (from {w}×{h}); \
                     set Resize (and Crop) on the loader so every image comes out the same size",
                    self.width,
                    self.height,
                    out.width(),
                    out.height()
                ),
            ));
        }
        Ok(out)
    }

    fn item_error(&self, i: usize, what: &str) -> NodeError {
        match &self.items {
            Items::Files(files, _) => match files.get(i) {
                Some(p) => NodeError::file(what.to_owned(), p),
                None => NodeError::failed(what.to_owned()),
            },
            Items::Raw(_) => NodeError::failed(format!("image {i}: {what}")),
        }
    }

    fn decode_range(
        &self,
        start: usize,
        end: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<f32>, NodeError> {
        let item = 3 * (self.width * self.height) as usize;
        let mut out = vec![0f32; end.saturating_sub(start) * item];
        if start >= end {
            return Ok(out);
        }
        // In-memory images kept at their size (CIFAR-10 as it is): only the per-pixel part,
        // here, from the planar bytes (a few µs an image: threads would cost more).
        if let (Items::Raw(raw), false) = (&self.items, self.pre.is_geometric()) {
            let (w, h) = (raw.width, raw.height);
            let mut hwc = vec![0u8; 3 * w * h];
            for (k, dst) in out.chunks_exact_mut(item).enumerate() {
                let i = start + k;
                raw.interleaved_into(i, &mut hwc).ok_or_else(|| {
                    NodeError::failed(format!("expected an image number below {}, found {i}", raw.len()))
                })?;
                self.pre.write_floats(&hwc, w, h, dst);
            }
            return Ok(out);
        }
        let threads = cores().min(end - start).max(1);
        let per = (end - start).div_ceil(threads);
        let results: Vec<Result<(), NodeError>> = std::thread::scope(|s| {
            let handles: Vec<_> = out
                .chunks_mut(per * item)
                .enumerate()
                .map(|(t, chunk)| {
                    s.spawn(move || {
                        for (k, dst) in chunk.chunks_exact_mut(item).enumerate() {
                            if cancelled() {
                                return Err(NodeError::Cancelled);
                            }
                            let img = self.prepared(start + t * per + k)?;
                            self.pre.write_floats(img.as_raw(), self.width as usize, self.height as usize, dst);
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(NodeError::failed("an image decoder thread panicked"))))
                .collect()
        });
        for r in results {
            r?;
        }
        Ok(out)
    }
}

/// The cores to decode on (looked up once: it reads system files).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Decode one image file to RGB (grey is replicated, alpha dropped, as PIL's `convert("RGB")`).
pub fn decode_file(path: &std::path::Path) -> Result<RgbImage, NodeError> {
    let bytes = formats::read_data_file(path, formats::MAX_IMAGE_FILE_BYTES, "a PNG or JPEG image")?;
    // The image crate's default limits (512 MiB per decode) refuse decompression bombs.
    Ok(image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| NodeError::file(format!("cannot read the image ({e})"), path))?
        .decode()
        .map_err(|e| NodeError::file(format!("cannot decode the image ({e}); expected a PNG or JPEG image"), path))?
        .to_rgb8())
}

/// An RGB image as a preview, shrunk to fit `side`×`side`.
pub fn preview(img: &RgbImage, side: u32, index: usize, label: u32) -> PreviewImage {
    let (w, h) = img.dimensions();
    let img = if w.max(h) > side {
        let r = f64::from(side) / f64::from(w.max(h));
        let (tw, th) = (((f64::from(w) * r).round() as u32).max(1), ((f64::from(h) * r).round() as u32).max(1));
        image::imageops::resize(img, tw, th, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    PreviewImage { index, label, width: img.width(), height: img.height(), rgb: img.into_raw() }
}

impl ImageSource for StreamSource {
    fn len(&self) -> usize {
        self.count()
    }
    fn item_shape(&self) -> Vec<usize> {
        self.pre.item_shape(self.width as usize, self.height as usize)
    }
    fn batch(
        &self,
        start: usize,
        end: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Arc<Vec<f32>>, NodeError> {
        if let Ok(kept) = self.kept.lock() {
            if let Some((_, data)) = kept.iter().find(|(range, _)| *range == (start, end)) {
                return Ok(data.clone());
            }
        }
        let data = Arc::new(self.decode_range(start, end, cancelled)?);
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= KEPT_BATCHES {
                kept.pop_front();
            }
            kept.push_back(((start, end), data.clone()));
        }
        Ok(data)
    }
    fn identity(&self) -> String {
        self.identity.clone()
    }
    fn thumbnail(&self, i: usize) -> Option<PreviewImage> {
        let img = self.original(i).ok()?;
        Some(preview(&img, THUMBNAIL_SIDE, self.indices.get(i).copied().unwrap_or(i), *self.labels.get(i)?))
    }
    fn size_bytes(&self) -> usize {
        let items = match &self.items {
            Items::Files(f, listed) => f.len() * 64 + listed.iter().map(String::len).sum::<usize>(),
            Items::Raw(r) => r.pixels.len() + (r.labels.len() + r.indices.len()) * 8,
        };
        let kept = self.kept.lock().map_or(0, |k| k.iter().map(|(_, d)| d.len() * 4).sum());
        items + (self.labels.len() + self.indices.len()) * 8 + kept
    }
}
