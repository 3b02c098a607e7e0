//! Resize, crop and normalization against PIL + torchvision (fixtures written by
//! `models/preprocess_reference.py`: generated images, PNG and JPEG, six configurations).
//!
//! Tolerances, and why:
//! * PNG (lossless, so only resampling can differ): the 8-bit image after resize and crop
//!   must equal PIL's exactly (the resampler is a port of Pillow's); the floats must then
//!   equal numpy's float32 arithmetic to 1e-6.
//! * JPEG: the image crate's decoder (zune-jpeg) and PIL's libjpeg-turbo round the IDCT and
//!   the 4:2:0 chroma upsampling differently, so pixels differ at sharp colour edges. Measured
//!   on these fixtures: at most 12 levels on one pixel, 0.36 levels on average. The test
//!   allows 16 and 0.5; per case the floats may differ by that case's largest pixel
//!   difference carried through the normalization (÷ divisor ÷ smallest std).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use quantgraph_dataset::preprocess::{Preprocess, PreprocessParams};
use quantgraph_dataset::stream::decode_file;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/preprocess")
}

fn preprocess_of(cfg: &serde_json::Value) -> Preprocess {
    let resize_spec = cfg["resize"].as_str().unwrap();
    let (resize, to) = match resize_spec.split_once(':') {
        Some(("shorter", n)) => ("shorter-side", n.to_owned()),
        Some((kind, size)) => (kind, size.to_owned()),
        None => ("none", String::new()),
    };
    let crop = cfg["crop"].as_str().unwrap_or("").to_owned();
    Preprocess::from_params(&PreprocessParams {
        normalize: cfg["normalize"].as_str().unwrap(),
        layout: cfg["layout"].as_str().unwrap(),
        resize,
        resize_to: &to,
        filter: cfg["filter"].as_str().unwrap_or("bilinear"),
        crop: &crop,
        channels: cfg["channels"].as_str().unwrap(),
        ..Default::default()
    })
    .unwrap()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn resize_crop_and_normalize_match_pil() {
    let dir = fixtures();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "expected the full fixture set, found {} cases", cases.len());
    let mut jpeg_max = 0u8;
    let mut jpeg_sum = 0f64;
    let mut jpeg_count = 0usize;
    for case in cases {
        let image = case["image"].as_str().unwrap();
        let config = case["config"].as_str().unwrap();
        let pre = preprocess_of(&reference["configs"][config]);
        let img = decode_file(&dir.join("images").join(image)).unwrap();
        let out = pre.geometry(img).unwrap();
        let want_u8 = std::fs::read(dir.join(case["u8"].as_str().unwrap())).unwrap();
        let shape: Vec<u32> = case["u8_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!((out.height(), out.width()), (shape[0], shape[1]), "{image} {config}: size");
        let diffs: Vec<u8> = out.as_raw().iter().zip(&want_u8).map(|(a, b)| a.abs_diff(*b)).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let jpeg = image.ends_with(".jpg");
        if jpeg {
            jpeg_max = jpeg_max.max(max);
            jpeg_sum += diffs.iter().map(|d| f64::from(*d)).sum::<f64>();
            jpeg_count += diffs.len();
        } else {
            assert_eq!(max, 0, "{image} {config}: 8-bit pixels differ from PIL's by up to {max} levels");
        }
        // The floats, from our 8-bit image: numpy's float32 arithmetic.
        let mut got = vec![0f32; want_u8.len()];
        pre.write_floats(out.as_raw(), out.width() as usize, out.height() as usize, &mut got);
        let want = floats(&std::fs::read(dir.join(case["f32"].as_str().unwrap())).unwrap());
        assert_eq!(got.len(), want.len(), "{image} {config}: float count");
        // Pixel differences carried through the normalization, plus float rounding.
        let tolerance =
            f32::from(max) / pre.divisor / pre.std.map_or(1.0, |s| s.iter().copied().fold(f32::MAX, f32::min)) + 1e-6;
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tolerance, "{image} {config}: floats differ by {worst} (tolerance {tolerance})");
    }
    let mean = jpeg_sum / jpeg_count.max(1) as f64;
    assert!(jpeg_count > 0);
    assert!(jpeg_max <= 16 && mean <= 0.5, "JPEG decoders differ by up to {jpeg_max} levels, {mean:.3} on average");
}

#[test]
fn bad_sizes_and_crops_are_refused_naming_the_param() {
    let p = |resize: &str, to: &str, crop: &str| {
        Preprocess::from_params(&PreprocessParams {
            resize,
            resize_to: to,
            crop,
            normalize: "imagenet",
            layout: "NCHW",
            channels: "RGB",
            ..Default::default()
        })
    };
    assert!(p("shorter-side", "256", "224").is_ok());
    let err = p("shorter-side", "224", "256").unwrap_err().to_string();
    assert!(err.contains("crop") && err.contains("does not fit"), "{err}");
    let err = p("exact", "0x10", "").unwrap_err().to_string();
    assert!(err.contains("resize_to") && err.contains("found '0x10'"), "{err}");
    let err = p("shorter-side", "224x200", "").unwrap_err().to_string();
    assert!(err.contains("one size N"), "{err}");
    let err = p("letterbox", "abc", "").unwrap_err().to_string();
    assert!(err.contains("resize_to"), "{err}");
    let err = p("none", "", "-3").unwrap_err().to_string();
    assert!(err.contains("crop"), "{err}");
}
