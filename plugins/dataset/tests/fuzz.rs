//! Mutated CIFAR-10 binary batches, python pickles and PNG images through the Dataset
//! Loader: every case ends in a dataset or a node error, never a panic or an abort.
//! Cases: `QUANTGRAPH_FUZZ_CASES` (2,000 by default, split over the three formats).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quantgraph_dataset::Cifar10Loader;
use quantgraph_nodes::fuzz::{cases, Mutator};
use quantgraph_nodes::{EvalContext, Inputs, NodeKind, Params};

fn binary_batch(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072).map(move |p| ((p * 7 + i) % 256) as u8)))
        .collect()
}

/// A protocol-2 pickle of {b'data': bytes-as-list-free, b'labels': [..]} small enough to fuzz:
/// the dict, a labels list and a bytes payload (the loader rejects it, but it walks it).
fn small_pickle() -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'U', 6];
    p.extend_from_slice(b"labels");
    p.extend_from_slice(&[b']', b'q', 1, b'(', b'K', 3, b'K', 1, b'e', b'U', 4]);
    p.extend_from_slice(b"data");
    p.extend_from_slice(&[b'C', 8, 1, 2, 3, 4, 5, 6, 7, 8, b'u', b'.']);
    p
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn mutated_dataset_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let py = dir.path().join("py/cifar-10-batches-py");
    let imgs = dir.path().join("img/a");
    for d in [&bin, &py, &imgs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let seeds = [binary_batch(3), small_pickle(), png()];
    let mut m = Mutator::new(0x0da7_a5e7, &[b"\x80\x02", b"]a", b"}", b"K\xff", b"IHDR", b"IDAT"]);
    let mut ok = 0;
    for i in 0..cases(2000) {
        let which = i % 3;
        let bytes = m.mutate(&seeds[which]);
        let (path, params) = match which {
            0 => {
                std::fs::write(bin.join("test_batch.bin"), &bytes).unwrap();
                (bin.clone(), serde_json::json!({"count": 0, "per_class": 0}))
            }
            1 => {
                std::fs::write(py.join("test_batch"), &bytes).unwrap();
                (dir.path().join("py"), serde_json::json!({"format": "cifar10-python", "count": 0, "per_class": 0}))
            }
            _ => {
                std::fs::write(imgs.join("0.png"), &bytes).unwrap();
                (dir.path().join("img"), serde_json::json!({"format": "image-folder", "count": 0, "per_class": 0}))
            }
        };
        let mut p: Params = serde_json::from_value(params).unwrap();
        p.insert("path".into(), path.to_string_lossy().as_ref().into());
        if Cifar10Loader.evaluate(&EvalContext::detached(None), &Inputs::default(), &p).is_ok() {
            ok += 1;
        }
    }
    eprintln!("{ok} mutated dataset files loaded");
}
