//! # quantgraph-dataset
//!
//! Dataset loader node kinds:
//!
//! * `dataset.cifar10` ([`Cifar10Loader`]) — CIFAR-10 in the official binary layout
//!   (`cifar-10-batches-bin`) or the python layout (`cifar-10-batches-py`, whose pickles
//!   are decoded as data only, never executed), and image folders (one subfolder per class).
//!
//! The default location of CIFAR-10 is `$QUANTGRAPH_CIFAR10`, else
//! `../shared/data/cifar10` relative to the working directory.

pub mod formats;
pub mod pickle_scan;
pub mod preprocess;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantgraph_nodes::kind::{file_identity, single};
use quantgraph_nodes::param::ParamReader;
use quantgraph_nodes::value::{Dataset, Images, Layout, PreviewImage};
use quantgraph_nodes::{
    EvalContext, Inputs, NodeError, NodeKind, NodeRegistry, Outputs, ParamSpec, Params, PortSpec, PortType, Value,
};

pub use formats::{RawImages, Source};
pub use preprocess::{Preprocess, PreprocessParams};
use quantgraph_nodes::value::ImageSource;
use stream::{Items, StreamSource};

/// Environment variable naming the CIFAR-10 folder.
pub const CIFAR10_ENV: &str = "QUANTGRAPH_CIFAR10";
/// Fallback location of CIFAR-10, relative to the working directory.
pub const CIFAR10_FALLBACK: &str = "../shared/data/cifar10";

/// Register this plugin's node kinds.
pub fn register_nodes(registry: &mut NodeRegistry) -> quantgraph_nodes::Result<()> {
    registry.register::<Cifar10Loader>()?;
    Ok(())
}

/// Where the data is: the `path` param resolved against the graph file, or (when empty)
/// `$QUANTGRAPH_CIFAR10`, or the fallback.
pub fn data_dir(path_param: &str, base_dir: Option<&Path>) -> PathBuf {
    if !path_param.is_empty() {
        return quantgraph_nodes::kind::resolve_path(base_dir, path_param);
    }
    match std::env::var_os(CIFAR10_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(CIFAR10_FALLBACK),
    }
}

/// Loads labelled images.
#[derive(Default)]
pub struct Cifar10Loader;

/// How many previews a dataset carries; thumbnails are kept for up to this many samples.
const PREVIEW_COUNT: usize = 32;
const THUMBNAIL_LIMIT: usize = 20_000;

impl NodeKind for Cifar10Loader {
    fn id(&self) -> &'static str {
        "dataset.cifar10"
    }
    fn display_name(&self) -> &'static str {
        "Dataset Loader"
    }
    fn category(&self) -> &'static str {
        "Data"
    }
    fn doc(&self) -> &'static str {
        "Reads labelled images: CIFAR-10 in the official binary layout (cifar-10-batches-bin: \
         test_batch.bin, data_batch_1..5.bin) or python layout (cifar-10-batches-py, pickles read \
         as data, never executed), or an image folder (one subfolder of PNG/JPEG files per class). \
         Chooses a subset (first N, or N per class, from an offset, optionally shuffled with a seed) \
         and preprocesses it (raw 0–255 or divided by 255, optional per-channel mean/std, NCHW or \
         NHWC). An empty path means $QUANTGRAPH_CIFAR10, else ../shared/data/cifar10."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice(
                "format",
                "Format",
                "cifar10-binary",
                &["cifar10-binary", "cifar10-python", "image-folder"],
            ),
            ParamSpec::path("path", "Folder", "", &[], true)
                .with_doc("Empty: $QUANTGRAPH_CIFAR10, else ../shared/data/cifar10."),
            ParamSpec::choice("split", "Split", "test", &["test", "train"]),
            ParamSpec::int("count", "Images (0: all)", 1000, 0, 10_000_000),
            ParamSpec::int("per_class", "Images per class (0: off)", 0, 0, 1_000_000)
                .with_doc("When set, take this many images of each class instead of `count`."),
            ParamSpec::int("offset", "Offset", 0, 0, 10_000_000),
            ParamSpec::bool("shuffle", "Shuffle", false),
            ParamSpec::int("seed", "Seed", 0, 0, i64::from(u32::MAX)),
            ParamSpec::path("classes", "Class list", "", &["txt"], false).with_doc(
                "Image folders: a text file with one class per line in the model's output-index order \
                 (a line may be 'id name', e.g. 'n01440764 tench'); class folders are matched by id. \
                 Empty: sorted folder names.",
            ),
            ParamSpec::path("labels_csv", "Labels CSV", "", &["csv"], false).with_doc(
                "Image folders: a CSV of filename,label rows (filename relative to the folder, label an \
                 output index or a class id from the class list); the images are its rows.",
            ),
            ParamSpec::bool("skip_unmapped", "Skip folders not in the list", false).with_doc(
                "Skip class folders missing from the class list (named in the source line) instead of failing.",
            ),
            ParamSpec::choice("resize", "Resize", "none", &["none", "shorter-side", "exact", "letterbox"]).with_doc(
                "shorter-side: shorter side to N, the other in proportion (torchvision Resize(N)); exact: W×H; \
                 letterbox: fit in W×H keeping the aspect, padded with grey 114.",
            ),
            ParamSpec::text("resize_to", "Resize to (N or WxH)", "").with_doc("e.g. 256 (shorter side) or 224x224."),
            ParamSpec::choice("filter", "Resampling", "bilinear", &["bilinear", "bicubic", "nearest"])
                .with_doc("As PIL's Image.resize does it (antialiased when shrinking)."),
            ParamSpec::text("crop", "Center crop (N or WxH)", "").with_doc("After resizing; e.g. 224. Empty: none."),
            ParamSpec::choice(
                "normalize",
                "Normalize",
                "custom",
                &["custom", "imagenet", "raw", "unit", "minus-one-one"],
            )
            .with_doc(
                "imagenet: /255 then mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]; raw: 0–255; \
                     unit: /255; minus-one-one: /127.5 − 1; custom: Pixel scale, Mean and Std below.",
            ),
            ParamSpec::choice("scale", "Pixel scale", "raw", &["raw", "unit"])
                .with_doc("custom normalization — raw: 0–255; unit: divided by 255."),
            ParamSpec::text("mean", "Mean (per channel)", "")
                .with_doc("e.g. 0.4914,0.4822,0.4465 — subtracted after scaling."),
            ParamSpec::text("std", "Std (per channel)", "")
                .with_doc("e.g. 0.247,0.243,0.261 — divides after the mean."),
            ParamSpec::choice("channels", "Channel order", "RGB", &["RGB", "BGR"]),
            ParamSpec::choice("layout", "Layout", "NCHW", &["NCHW", "NHWC"]),
            ParamSpec::text("shard", "Shard (K/N, empty: all)", "").with_doc(
                "Only the K-th (from 0) of N contiguous slices of the selected images, for running one dataset \
                 as N jobs (quantgraph run --shard K/N sets it; quantgraph merge combines the results).",
            ),
        ]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("dataset", PortType::Dataset)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let r = ParamReader::new(params, self.params());
        let dir = data_dir(&r.str("path")?, ctx.base_dir());
        let source = Source::parse(&r.str("format")?, &r.str("split")?);
        let selection = formats::Selection {
            count: r.usize("count")?,
            per_class: r.usize("per_class")?,
            offset: r.usize("offset")?,
            shuffle: r.bool("shuffle")?,
            seed: r.i64("seed")? as u64,
            shard: formats::parse_shard(&r.str("shard")?)?,
        };
        // Bad preprocessing params fail before anything is read.
        let text = |key: &str| r.str(key);
        let (normalize, scale, mean, std) = (text("normalize")?, text("scale")?, text("mean")?, text("std")?);
        let (layout, resize, resize_to) = (text("layout")?, text("resize")?, text("resize_to")?);
        let (filter, crop, channels) = (text("filter")?, text("crop")?, text("channels")?);
        let pre = Preprocess::from_params(&PreprocessParams {
            normalize: &normalize,
            scale: &scale,
            mean: &mean,
            std: &std,
            layout: &layout,
            resize: &resize,
            resize_to: &resize_to,
            filter: &filter,
            crop: &crop,
            channels: &channels,
        })?;
        let layout = if pre.layout_nhwc { Layout::Nhwc } else { Layout::Nchw };
        ctx.progress(0.1, "reading");
        let dataset = if let Source::ImageFolder { .. } = source {
            let optional_path = |key: &str| -> Result<Option<std::path::PathBuf>, NodeError> {
                let p = r.str(key)?;
                Ok((!p.trim().is_empty()).then(|| ctx.resolve_path(&p)))
            };
            let opts = formats::LabelOptions {
                classes_file: optional_path("classes")?,
                csv_file: optional_path("labels_csv")?,
                skip_unmapped: r.bool("skip_unmapped")?,
            };
            folder_dataset(ctx, source, &dir, &selection, &opts, pre, layout)?
        } else {
            let raw = formats::load(source, &dir, &selection, ctx)?;
            ctx.progress(0.7, "preprocessing");
            memory_dataset(ctx, source, raw, pre, layout)?
        };
        Ok(single("dataset", Value::Dataset(Arc::new(dataset))))
    }
    fn external_identity(&self, params: &Params, base_dir: Option<&Path>) -> Option<String> {
        let r = ParamReader::new(params, self.params());
        let dir = data_dir(&r.str("path").ok()?, base_dir);
        let source = Source::parse(&r.str("format").ok()?, &r.str("split").ok()?);
        if let Source::ImageFolder { .. } = source {
            let mut parts = vec![formats::folder_identity(&source.folder(&dir))];
            for key in ["classes", "labels_csv"] {
                let p = r.str(key).ok()?;
                if !p.trim().is_empty() {
                    parts.push(file_identity(&quantgraph_nodes::kind::resolve_path(base_dir, &p)));
                }
            }
            return Some(parts.join(";"));
        }
        let files = source.identity_files(&dir);
        Some(files.iter().map(|f| file_identity(f)).collect::<Vec<_>>().join(";"))
    }
}

/// CIFAR-10: the raw images are in memory; without resizing they become one tensor, with it
/// they are resized batch by batch (10,000 images at 224×224 would be 6 GB as one tensor).
fn memory_dataset(
    ctx: &EvalContext,
    source: Source,
    raw: RawImages,
    pre: Preprocess,
    layout: Layout,
) -> Result<Dataset, NodeError> {
    let thumbs: Vec<PreviewImage> = (0..raw.len().min(THUMBNAIL_LIMIT)).map(|i| raw.thumbnail(i)).collect();
    let mut dataset = Dataset {
        images: Images::default(),
        layout,
        labels: raw.labels.clone(),
        class_names: raw.class_names.clone(),
        source_indices: raw.indices.clone(),
        source: format!("{} ({})", raw.origin, source.describe()),
        preprocessing: pre.describe(),
        preview: thumbs.iter().take(PREVIEW_COUNT).cloned().collect(),
        thumbnails: Arc::new(thumbs),
        before_after: None,
    };
    if !pre.is_geometric() {
        dataset.images = Images::Dense(pre.apply(&raw));
        return Ok(dataset);
    }
    let size = pre.output_size(raw.width as u32, raw.height as u32).ok_or_else(|| {
        NodeError::param(
            "crop",
            format!("a {:?} crop does not fit in {}×{} images after resizing", pre.crop, raw.width, raw.height),
        )
    })?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&raw.pixels);
    let identity = format!("memory {:016x} {} {}", h.digest(), raw.len(), pre.describe());
    let (labels, indices) = (raw.labels.clone(), raw.indices.clone());
    let src = StreamSource::new(Items::Raw(Arc::new(raw)), labels, indices, pre, size, identity);
    dataset.before_after = before_after(&src, 0);
    ctx.progress(0.9, "ready");
    dataset.images = Images::Stream(Arc::new(src));
    Ok(dataset)
}

/// An image folder: listed now, decoded batch by batch as the probes consume it.
fn folder_dataset(
    ctx: &EvalContext,
    source: Source,
    dir: &Path,
    selection: &formats::Selection,
    opts: &formats::LabelOptions,
    pre: Preprocess,
    layout: Layout,
) -> Result<Dataset, NodeError> {
    let folder = source.folder(dir);
    if !folder.is_dir() {
        return Err(NodeError::file(format!("folder not found (expected {})", formats::expected(source)), &folder));
    }
    let listing = formats::list_image_folder(&folder, opts, ctx)?;
    let chosen = formats::select(&listing.labels, listing.class_names.len(), selection)?;
    let files: Vec<PathBuf> = chosen.iter().map(|&i| listing.files[i].clone()).collect();
    let labels: Vec<u32> = chosen.iter().map(|&i| listing.labels[i]).collect();
    // Identity: every chosen file's path, size and time, and the preprocessing.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let listed: Vec<String> = files.iter().map(|f| file_identity(f)).collect();
    for id in &listed {
        h.update(id.as_bytes());
    }
    let identity = format!("files {:016x} {} {}", h.digest(), files.len(), pre.describe());
    // The output size: fixed by the resize/crop, else that of the first image (each image is
    // checked against it as it is decoded; without resizing every header is checked now, so
    // a folder of mixed sizes fails here, naming the first odd file).
    let size = match pre.fixed_output_size() {
        Some(s) => s,
        None => {
            let dims = |f: &Path| {
                image::ImageReader::open(f)
                    .and_then(|r| r.with_guessed_format())
                    .map_err(|e| NodeError::file(format!("cannot read the image ({e})"), f))?
                    .into_dimensions()
                    .map_err(|e| NodeError::file(format!("cannot read the image's size ({e})"), f))
            };
            let first = files.first().ok_or_else(|| NodeError::file("no images selected", &folder))?;
            let (w, h) = dims(first)?;
            let want = pre.output_size(w, h).ok_or_else(|| {
                NodeError::file(format!("a {:?} crop does not fit in this {w}×{h} image", pre.crop), first)
            })?;
            // Every image must come out the same size: check the headers now, so a folder
            // of mixed sizes fails here, on the loader, naming the first odd file.
            for (k, f) in files.iter().enumerate() {
                if k % 256 == 0 {
                    ctx.check_cancelled()?;
                    ctx.progress(0.4 + 0.5 * k as f32 / files.len() as f32, "checking image sizes");
                }
                let (fw, fh) = dims(f)?;
                if pre.output_size(fw, fh) != Some(want) {
                    let what = if pre.is_geometric() {
                        format!(
                            "expected images that come out {}×{} after preprocessing like {} ({w}×{h}), found {fw}×{fh}, which \
                             comes out {}",
                            want.0,
                            want.1,
                            first.display(),
                            pre.output_size(fw, fh).map_or("too small to crop".to_owned(), |(a, b)| format!("{a}×{b}"))
                        )
                    } else {
                        format!("expected {w}×{h} pixels like {}, found {fw}×{fh}", first.display())
                    };
                    return Err(NodeError::file(
                        format!(
                            "{what}; set Resize (e.g. shorter-side 256) and Center crop (e.g. 224) so images of any size \
                             come out the same"
                        ),
                        f,
                    ));
                }
            }
            want
        }
    };
    let mut notes = listing.notes.clone();
    notes.insert(0, format!("{} ({})", folder.display(), source.describe()));
    let src =
        StreamSource::new(Items::Files(files, listed), labels.clone(), chosen.clone(), pre.clone(), size, identity);
    let mut preview = Vec::new();
    for i in 0..labels.len().min(PREVIEW_COUNT) {
        ctx.check_cancelled()?;
        if let Some(t) = src.thumbnail(i) {
            preview.push(t);
        }
    }
    let before_after = before_after(&src, 0);
    Ok(Dataset {
        images: Images::Stream(Arc::new(src)),
        layout,
        labels,
        class_names: listing.class_names,
        source_indices: chosen,
        source: notes.join("; "),
        preprocessing: pre.describe(),
        preview,
        thumbnails: Arc::new(Vec::new()),
        before_after,
    })
}

/// Sample `i` before preprocessing (shrunk for display) and after resizing and cropping.
fn before_after(src: &StreamSource, i: usize) -> Option<(PreviewImage, PreviewImage)> {
    let original = src.original(i).ok()?;
    let prepared = src.prepared(i).ok()?;
    let label = src.label(i);
    Some((stream::preview(&original, 160, i, label), stream::preview(&prepared, 160, i, label)))
}
