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

use quantgraph_nodes::kind::{file_identity, single, Migration};
use quantgraph_nodes::param::{parse_floats, ParamValue};
use quantgraph_nodes::value::{Dataset, Images, Layout, PreviewImage};
use quantgraph_nodes::{
    params, EvalContext, Inputs, NodeError, NodeRegistry, Outputs, PortSpec, PortType, TypedKind, Value,
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

params! {
    /// The Dataset Loader's params.
    pub struct LoaderParams {
        pub format: String = choice("Format", "cifar10-binary", &["cifar10-binary", "cifar10-python", "image-folder"]),
        pub path: String = path("Folder", "", &[], true)
            .with_doc("Empty: $QUANTGRAPH_CIFAR10, else ../shared/data/cifar10."),
        pub split: String = choice("Split", "test", &["test", "train"]),
        pub count: usize = int("Images (0: all)", 1000, 0, 10_000_000),
        pub per_class: usize = int("Images per class (0: off)", 0, 0, 1_000_000)
            .with_doc("When set, take this many images of each class instead of `count`."),
        pub offset: usize = int("Offset", 0, 0, 10_000_000),
        pub shuffle: bool = bool("Shuffle", false),
        pub seed: u64 = int("Seed", 0, 0, i64::from(u32::MAX)),
        pub classes: String = path("Class list", "", &["txt"], false).with_doc(
            "Image folders: a text file with one class per line in the model's output-index order \
             (a line may be 'id name', e.g. 'n01440764 tench'); class folders are matched by id. \
             Empty: sorted folder names.",
        ),
        pub labels_csv: String = path("Labels CSV", "", &["csv"], false).with_doc(
            "Image folders: a CSV of filename,label rows (filename relative to the folder, label an \
             output index or a class id from the class list); the images are its rows.",
        ),
        pub skip_unmapped: bool = bool("Skip folders not in the list", false).with_doc(
            "Skip class folders missing from the class list (named in the source line) instead of failing.",
        ),
        pub resize: String = choice("Resize", "none", &["none", "shorter-side", "exact", "letterbox"]).with_doc(
            "shorter-side: shorter side to N, the other in proportion (torchvision Resize(N)); exact: W×H; \
             letterbox: fit in W×H keeping the aspect, padded with grey 114.",
        ),
        pub resize_to: String = text("Resize to (N or WxH)", "").with_doc("e.g. 256 (shorter side) or 224x224."),
        pub filter: String = choice("Resampling", "bilinear", &["bilinear", "bicubic", "nearest"])
            .with_doc("As PIL's Image.resize does it (antialiased when shrinking)."),
        pub crop: String = text("Center crop (N or WxH)", "").with_doc("After resizing; e.g. 224. Empty: none."),
        pub normalize: String = choice("Normalize", "custom", &["custom", "imagenet", "raw", "unit", "minus-one-one"])
            .with_doc(
                "imagenet: /255 then mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]; raw: 0–255; \
                 unit: /255; minus-one-one: /127.5 − 1; custom: Pixel scale, Mean and Std below.",
            ),
        pub scale: String = choice("Pixel scale", "raw", &["raw", "unit"])
            .with_doc("custom normalization — raw: 0–255; unit: divided by 255."),
        pub mean: Vec<f64> = floats("Mean (per channel)", &[], -1e6, 1e6, &[0, 1, 3])
            .with_doc("e.g. 0.4914, 0.4822, 0.4465 (R, G, B), or one number for every channel; \
                       subtracted after scaling. Empty: none."),
        pub std: Vec<f64> = floats("Std (per channel)", &[], 1e-9, 1e6, &[0, 1, 3])
            .with_doc("e.g. 0.247, 0.243, 0.261 (R, G, B), or one number; divides after the mean (so \
                       positive: at least 1e-9). Empty: none."),
        pub channels: String = choice("Channel order", "RGB", &["RGB", "BGR"]),
        pub layout: String = choice("Layout", "NCHW", &["NCHW", "NHWC"]),
        pub shard: String = text("Shard (K/N, empty: all)", "").with_doc(
            "Only the K-th (from 0) of N contiguous slices of the selected images, for running one dataset \
             as N jobs (quantgraph run --shard K/N sets it; quantgraph merge combines the results).",
        ),
    }
}

impl TypedKind for Cifar10Loader {
    type Params = LoaderParams;
    fn id(&self) -> &'static str {
        "dataset.cifar10"
    }
    fn version(&self) -> u32 {
        2
    }
    fn migrations(&self) -> Vec<Migration> {
        // Version 1 stored mean and std as text ("0.5,0.5,0.5", "" for none); they are
        // lists of numbers now. Text that does not read fails the migration (the file loads
        // with a warning, and the node names the param).
        vec![Migration {
            from_version: 1,
            apply: |p| {
                for name in ["mean", "std"] {
                    if let Some(text) = p.get(name).and_then(|v| v.as_str()) {
                        let numbers = parse_floats(text).map_err(|e| format!("parameter '{name}': {e}"))?;
                        p.insert(name.to_owned(), ParamValue::to_json(&numbers));
                    }
                }
                Ok(())
            },
        }]
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
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("dataset", PortType::Dataset)]
    }
    fn evaluate(&self, ctx: &EvalContext, _: &Inputs, params: &LoaderParams) -> Result<Outputs, NodeError> {
        let p = params;
        let dir = data_dir(&p.path, ctx.base_dir());
        let source = Source::parse(&p.format, &p.split);
        let selection = formats::Selection {
            count: p.count,
            per_class: p.per_class,
            offset: p.offset,
            shuffle: p.shuffle,
            seed: p.seed,
            shard: formats::parse_shard(&p.shard)?,
        };
        // Bad preprocessing params fail before anything is read.
        let pre = Preprocess::from_params(&PreprocessParams {
            normalize: &p.normalize,
            scale: &p.scale,
            mean: &p.mean,
            std: &p.std,
            layout: &p.layout,
            resize: &p.resize,
            resize_to: &p.resize_to,
            filter: &p.filter,
            crop: &p.crop,
            channels: &p.channels,
        })?;
        let layout = if pre.layout_nhwc { Layout::Nhwc } else { Layout::Nchw };
        ctx.progress(0.1, "reading");
        let dataset = if let Source::ImageFolder { .. } = source {
            let optional_path = |p: &str| (!p.trim().is_empty()).then(|| ctx.resolve_path(p));
            let opts = formats::LabelOptions {
                classes_file: optional_path(&p.classes),
                csv_file: optional_path(&p.labels_csv),
                skip_unmapped: p.skip_unmapped,
            };
            folder_dataset(ctx, source, &dir, &selection, &opts, pre, layout)?
        } else {
            let raw = formats::load(source, &dir, &selection, ctx)?;
            ctx.progress(0.7, "preprocessing");
            memory_dataset(ctx, source, raw, pre, layout)?
        };
        Ok(single("dataset", Value::Dataset(Arc::new(dataset))))
    }
    fn external_identity(&self, params: &LoaderParams, base_dir: Option<&Path>) -> Option<String> {
        let dir = data_dir(&params.path, base_dir);
        let source = Source::parse(&params.format, &params.split);
        if let Source::ImageFolder { .. } = source {
            let mut parts = vec![formats::folder_identity(&source.folder(&dir))];
            for p in [&params.classes, &params.labels_csv] {
                if !p.trim().is_empty() {
                    parts.push(file_identity(&quantgraph_nodes::kind::resolve_path(base_dir, p)));
                }
            }
            return Some(parts.join(";"));
        }
        let files = source.identity_files(&dir);
        Some(files.iter().map(|f| file_identity(f)).collect::<Vec<_>>().join(";"))
    }
}

/// CIFAR-10: the 8-bit images stay in memory as read (3 KB an image) and become floats batch
/// by batch as the probes ask (resized too, where asked): one tensor of floats would be 4×
/// that (123 MB for the test set), and 10,000 images at 224×224 6 GB. Thumbnails are drawn
/// from the same bytes on demand.
fn memory_dataset(
    ctx: &EvalContext,
    source: Source,
    raw: RawImages,
    pre: Preprocess,
    layout: Layout,
) -> Result<Dataset, NodeError> {
    let preview: Vec<PreviewImage> = (0..raw.len().min(PREVIEW_COUNT)).map(|i| raw.thumbnail(i)).collect();
    let size = pre.output_size(raw.width as u32, raw.height as u32).ok_or_else(|| {
        NodeError::param(
            "crop",
            format!("a {:?} crop does not fit in {}×{} images after resizing", pre.crop, raw.width, raw.height),
        )
    })?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&raw.pixels);
    let identity = format!("memory {:016x} {} {}", h.digest(), raw.len(), pre.describe());
    let mut dataset = Dataset {
        images: Images::default(),
        layout,
        labels: raw.labels.clone(),
        class_names: raw.class_names.clone(),
        source_indices: raw.indices.clone(),
        source: format!("{} ({})", raw.origin, source.describe()),
        preprocessing: pre.describe(),
        preview,
        thumbnails: Arc::new(Vec::new()),
        before_after: None,
    };
    let geometric = pre.is_geometric();
    let (labels, indices) = (raw.labels.clone(), raw.indices.clone());
    let src = StreamSource::new(Items::Raw(Arc::new(raw)), labels, indices, pre, size, identity);
    if geometric {
        dataset.before_after = before_after(&src, 0);
    }
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
