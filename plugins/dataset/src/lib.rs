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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantgraph_nodes::kind::{file_identity, single};
use quantgraph_nodes::param::ParamReader;
use quantgraph_nodes::value::{Dataset, Layout, PreviewImage};
use quantgraph_nodes::{
    EvalContext, Inputs, NodeError, NodeKind, NodeRegistry, Outputs, ParamSpec, Params, PortSpec, PortType, Value,
};

pub use formats::{RawImages, Source};
pub use preprocess::Preprocess;

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
            ParamSpec::choice("scale", "Pixel scale", "raw", &["raw", "unit"])
                .with_doc("raw: 0–255; unit: divided by 255."),
            ParamSpec::text("mean", "Mean (per channel)", "")
                .with_doc("e.g. 0.4914,0.4822,0.4465 — subtracted after scaling."),
            ParamSpec::text("std", "Std (per channel)", "")
                .with_doc("e.g. 0.247,0.243,0.261 — divides after the mean."),
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
        let pre = Preprocess::from_params(&r.str("scale")?, &r.str("mean")?, &r.str("std")?, &r.str("layout")?)?;
        ctx.progress(0.1, "reading");
        let raw = formats::load(source, &dir, &selection, ctx)?;
        ctx.progress(0.7, "preprocessing");
        let images = pre.apply(&raw);
        let thumbs: Vec<PreviewImage> = (0..raw.len().min(THUMBNAIL_LIMIT)).map(|i| raw.thumbnail(i)).collect();
        let dataset = Dataset {
            images,
            layout: if pre.layout_nhwc { Layout::Nhwc } else { Layout::Nchw },
            labels: raw.labels.clone(),
            class_names: raw.class_names.clone(),
            source_indices: raw.indices.clone(),
            source: format!("{} ({})", raw.origin, source.describe()),
            preprocessing: pre.describe(),
            preview: thumbs.iter().take(PREVIEW_COUNT).cloned().collect(),
            thumbnails: Arc::new(thumbs),
        };
        Ok(single("dataset", Value::Dataset(Arc::new(dataset))))
    }
    fn external_identity(&self, params: &Params, base_dir: Option<&Path>) -> Option<String> {
        let r = ParamReader::new(params, self.params());
        let dir = data_dir(&r.str("path").ok()?, base_dir);
        let files = Source::parse(&r.str("format").ok()?, &r.str("split").ok()?).identity_files(&dir);
        Some(files.iter().map(|f| file_identity(f)).collect::<Vec<_>>().join(";"))
    }
}
