//! The Dataset Loader on generated fixtures (binary, python pickle, image folders) and,
//! when present, the real CIFAR-10 test batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use quantgraph_dataset::Cifar10Loader;
use quantgraph_nodes::value::{Dataset, Layout, Value};
use quantgraph_nodes::{EvalContext, Inputs, NodeError, NodeKind, Params};

fn run(params: serde_json::Value) -> Result<std::sync::Arc<Dataset>, NodeError> {
    let p: Params = serde_json::from_value(params).unwrap();
    let out = Cifar10Loader.evaluate(&EvalContext::detached(None), &Inputs::default(), &p)?;
    match out.get("dataset") {
        Some(Value::Dataset(d)) => Ok(d.clone()),
        other => panic!("{other:?}"),
    }
}

/// Every sample's floats.
fn pixels(d: &Dataset) -> Vec<f32> {
    d.images.batch(0, d.len(), &|| false).unwrap().to_vec()
}

/// A CIFAR-10 binary batch of `n` records: record k has label k % 10 and pixel bytes
/// (k + i) % 251.
fn binary_batch(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3073);
    for k in 0..n {
        out.push((k % 10) as u8);
        out.extend((0..3072).map(|i| ((k + i) % 251) as u8));
    }
    out
}

fn binary_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), binary_batch(n)).unwrap();
    dir
}

fn path_of(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

#[test]
fn binary_layout_reads_labels_pixels_and_selection() {
    let dir = binary_dir(40);
    let d = run(serde_json::json!({"path": path_of(dir.path()), "count": 0})).unwrap();
    assert_eq!(d.len(), 40);
    assert_eq!(d.images.shape(), vec![40, 3, 32, 32]);
    assert_eq!(d.labels[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert_eq!(d.class_names[3], "cat");
    // Raw 0–255, planar: element (k, c, y, x) is byte 1 + c·1024 + y·32 + x of record k.
    let k = 7;
    let i = 2 * 1024 + 5 * 32 + 9;
    assert_eq!(pixels(&d)[k * 3072 + i], ((k + i) % 251) as f32);
    // Per class with an offset: 2 of each class starting at record 10.
    let d = run(serde_json::json!({"path": path_of(dir.path()), "per_class": 2, "offset": 10})).unwrap();
    assert_eq!(d.len(), 20);
    assert_eq!(d.source_indices[0], 10);
    assert_eq!(d.labels.iter().filter(|l| **l == 3).count(), 2);
    // A seed always picks the same images; another seed others.
    let a = run(serde_json::json!({"path": path_of(dir.path()), "count": 5, "shuffle": true, "seed": 1})).unwrap();
    let b = run(serde_json::json!({"path": path_of(dir.path()), "count": 5, "shuffle": true, "seed": 1})).unwrap();
    let c = run(serde_json::json!({"path": path_of(dir.path()), "count": 5, "shuffle": true, "seed": 2})).unwrap();
    assert_eq!(a.source_indices, b.source_indices);
    assert_ne!(a.source_indices, c.source_indices);
    assert_eq!(d.preview.len(), 20);
    assert_eq!(d.preview[0].rgb.len(), 32 * 32 * 3);
}

#[test]
fn preprocessing_scales_normalises_and_lays_out() {
    let dir = binary_dir(3);
    let raw = run(serde_json::json!({"path": path_of(dir.path()), "count": 0})).unwrap();
    let d = run(serde_json::json!({"path": path_of(dir.path()), "count": 0, "scale": "unit", "mean": [0.5, 0.25, 0], "std": [0.5], "layout": "NHWC"})).unwrap();
    assert_eq!(d.layout, Layout::Nhwc);
    assert_eq!(d.images.shape(), vec![3, 32, 32, 3]);
    for (k, y, x, c) in [(0, 0, 0, 0), (1, 3, 4, 1), (2, 31, 31, 2)] {
        let nchw = pixels(&raw)[k * 3072 + c * 1024 + y * 32 + x];
        let nhwc = pixels(&d)[k * 3072 + (y * 32 + x) * 3 + c];
        let mean = [0.5, 0.25, 0.0][c];
        assert!((nhwc - (nchw / 255.0 - mean) / 0.5).abs() < 1e-6);
    }
    // Floats are made a batch at a time from the 8-bit records (held as such): any range,
    // the same values; an empty one is empty.
    assert_eq!(*d.images.batch(1, 3, &|| false).unwrap(), pixels(&d)[3072..]);
    assert!(d.images.batch(2, 2, &|| false).unwrap().is_empty());
    assert!(d.images.size_bytes() >= 3 * 3072, "the records count for the cache: {}", d.images.size_bytes());
    let err = run(serde_json::json!({"path": path_of(dir.path()), "mean": [1, 2]})).unwrap_err();
    assert_eq!(err.to_string(), "parameter 'mean': expected none, 1 or 3 numbers, found 2 numbers");
    // Version 1 stored them as text: a file of that version loads them as numbers.
    let mut params: quantgraph_nodes::Params =
        [("mean".to_owned(), serde_json::json!("0.5, 0.25,0")), ("std".to_owned(), serde_json::json!(""))].into();
    let kind = quantgraph_dataset::Cifar10Loader;
    let migrate = quantgraph_nodes::NodeKind::migrations(&kind);
    (migrate[0].apply)(&mut params).unwrap();
    assert_eq!(params["mean"], serde_json::json!([0.5, 0.25, 0.0]));
    assert_eq!(params["std"], serde_json::json!([]));
    let mut bad: quantgraph_nodes::Params = [("mean".to_owned(), serde_json::json!("1;2"))].into();
    assert_eq!(
        (migrate[0].apply)(&mut bad).unwrap_err(),
        "parameter 'mean': expected numbers separated by commas, found '1;2'"
    );
}

#[test]
fn bad_binary_files_name_the_file_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test_batch.bin");
    let mut bytes = binary_batch(3);
    bytes.truncate(3073 * 2 + 100);
    std::fs::write(&file, &bytes).unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path())})).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("expected a whole number of 3073-byte CIFAR-10 records, found 6246 bytes (truncated, or not the CIFAR-10 binary layout): {}", file.display())
    );
    let mut bytes = binary_batch(2);
    bytes[3073] = 200;
    std::fs::write(&file, &bytes).unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path())})).unwrap_err().to_string();
    assert!(err.starts_with("record 1 has label 200, but CIFAR-10 labels are 0–9"), "{err}");
    let missing = dir.path().join("nope");
    let err = run(serde_json::json!({"path": path_of(&missing)})).unwrap_err().to_string();
    assert!(err.starts_with("folder not found (expected CIFAR-10 in the binary layout"), "{err}");
    let err = run(serde_json::json!({"path": path_of(dir.path()), "split": "train"})).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin"), "{err}");
    let twenty = binary_dir(20);
    let err = run(serde_json::json!({"path": path_of(twenty.path()), "per_class": 3})).unwrap_err().to_string();
    assert_eq!(err, "parameter 'per_class': class 0 has only 2 images from offset 0, but 3 per class were asked for");
}

// ---- python layout: pickles written the way Python 2's cPickle wrote CIFAR-10 ----------

fn pickle_str(out: &mut Vec<u8>, s: &[u8]) {
    // SHORT_BINSTRING / BINSTRING (Python 2 str)
    if s.len() < 256 {
        out.push(b'U');
        out.push(s.len() as u8);
    } else {
        out.push(b'T');
        out.extend((s.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(s);
}

fn pickle_int(out: &mut Vec<u8>, v: u32) {
    out.push(b'J'); // BININT
    out.extend((v as i32).to_le_bytes());
}

/// numpy.core.multiarray._reconstruct(ndarray, (0,), 'b') + BUILD(state)
fn pickle_uint8_array(out: &mut Vec<u8>, rows: u32, cols: u32, data: &[u8]) {
    out.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
    out.extend_from_slice(b"cnumpy\nndarray\n");
    out.push(b'(');
    pickle_int(out, 0);
    out.push(b't');
    pickle_str(out, b"b");
    out.push(b'\x87'); // TUPLE3
    out.push(b'R'); // REDUCE
    out.push(b'(');
    pickle_int(out, 1);
    pickle_int(out, rows);
    pickle_int(out, cols);
    out.push(b'\x86'); // TUPLE2 (shape)
    out.extend_from_slice(b"cnumpy\ndtype\n");
    pickle_str(out, b"u1");
    out.push(b'\x89'); // NEWFALSE
    out.push(b'\x88'); // NEWTRUE
    out.push(b'\x87');
    out.push(b'R');
    out.push(b'(');
    pickle_int(out, 3);
    pickle_str(out, b"|");
    out.push(b'N');
    out.push(b'N');
    out.push(b'N');
    pickle_int(out, u32::MAX);
    pickle_int(out, u32::MAX);
    pickle_int(out, 0);
    out.push(b't');
    out.push(b'b'); // BUILD (dtype state)
    out.push(b'\x89'); // fortran order False
    pickle_str(out, data);
    out.push(b't');
    out.push(b'b'); // BUILD (array state)
}

fn python_batch(records: &[u8]) -> Vec<u8> {
    let n = records.len() / 3073;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for r in records.chunks_exact(3073) {
        labels.push(u32::from(r[0]));
        pixels.extend_from_slice(&r[1..]);
    }
    let mut out = vec![0x80, 2, b'}', b'('];
    pickle_str(&mut out, b"batch_label");
    pickle_str(&mut out, b"testing batch 1 of 1");
    pickle_str(&mut out, b"labels");
    out.extend_from_slice(b"](");
    for l in labels {
        pickle_int(&mut out, l);
    }
    out.push(b'e'); // APPENDS
    pickle_str(&mut out, b"data");
    pickle_uint8_array(&mut out, n as u32, 3072, &pixels);
    out.push(b'u'); // SETITEMS
    out.push(b'.');
    out
}

#[test]
fn python_layout_reads_the_same_images_as_the_binary_layout() {
    let bin = binary_dir(25);
    let py = tempfile::tempdir().unwrap();
    let sub = py.path().join("cifar-10-batches-py");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("test_batch"), python_batch(&binary_batch(25))).unwrap();
    let a = run(serde_json::json!({"path": path_of(bin.path()), "count": 0})).unwrap();
    let b = run(serde_json::json!({"path": path_of(py.path()), "format": "cifar10-python", "count": 0})).unwrap();
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.images, b.images);
    // A pickle that is not a CIFAR batch.
    std::fs::write(sub.join("test_batch"), b"\x80\x02]q\x00.").unwrap();
    let err = run(serde_json::json!({"path": path_of(py.path()), "format": "cifar10-python"})).unwrap_err().to_string();
    assert!(err.starts_with("expected a pickled dict with 'data' and 'labels'"), "{err}");
    // A pickle that would call a function: it is never executed, only refused.
    std::fs::write(sub.join("test_batch"), b"cos\nsystem\n(S'echo hi'\ntR.").unwrap();
    let err = run(serde_json::json!({"path": path_of(py.path()), "format": "cifar10-python"})).unwrap_err().to_string();
    assert!(err.contains("test_batch"), "{err}");
}

#[test]
fn image_folders_one_subfolder_per_class() {
    let dir = tempfile::tempdir().unwrap();
    for (c, class) in ["b_dog", "a_cat"].iter().enumerate() {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_pixel(8, 8, image::Rgb([c as u8 * 50 + i, 10, 20]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let d = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "count": 0})).unwrap();
    assert_eq!(d.class_names, vec!["a_cat", "b_dog"]);
    assert_eq!(d.labels, vec![0, 0, 1, 1]);
    assert_eq!(d.images.shape(), vec![4, 3, 8, 8]);
    assert_eq!(pixels(&d)[0], 50.0, "a_cat's first image has red 50");
    // A class with no images.
    std::fs::create_dir_all(dir.path().join("c_empty")).unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder"})).unwrap_err().to_string();
    assert_eq!(err, format!("class folder has no PNG or JPEG images: {}", dir.path().join("c_empty").display()));
    std::fs::remove_dir(dir.path().join("c_empty")).unwrap();
    // An image of another size.
    image::RgbImage::from_pixel(9, 8, image::Rgb([0, 0, 0])).save(dir.path().join("b_dog/odd.png")).unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder"})).unwrap_err().to_string();
    assert!(err.starts_with("expected 8×8 pixels like"), "{err}");
    assert!(err.ends_with("odd.png"), "{err}");
}

/// A folder of photos of different sizes, labelled by a class list (WordNet-style ids in
/// output order), resized and cropped; streamed batch by batch.
fn photo_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (c, class) in ["n02", "n01", "n03"].iter().enumerate() {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..3u32 {
            let (w, h) = (40 + 7 * i + c as u32, 30 + 5 * i);
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, (c * 60) as u8]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("classes.txt"), "n03 third class\nn01 first\nn02\nn04 unused\n").unwrap();
    dir
}

#[test]
fn photos_of_any_size_are_resized_cropped_and_streamed() {
    let dir = photo_folder();
    let base = serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "count": 0,
        "classes": path_of(&dir.path().join("classes.txt")), "resize": "shorter-side", "resize_to": "24",
        "crop": "20", "normalize": "imagenet"});
    let d = run(base.clone()).unwrap();
    // Labels follow the class list, not the sorted folder names.
    assert_eq!(d.class_names, vec!["n03 third class", "n01 first", "n02", "n04 unused"]);
    assert_eq!(d.labels, vec![1, 1, 1, 2, 2, 2, 0, 0, 0]);
    assert!(matches!(d.images, quantgraph_nodes::value::Images::Stream(_)), "an image folder is streamed");
    assert_eq!(d.images.shape(), vec![9, 3, 20, 20]);
    // Any batch equals the same samples of one full pass, whatever the batch boundaries.
    let all = pixels(&d);
    let item = 3 * 20 * 20;
    let part = d.images.batch(4, 7, &|| false).unwrap();
    assert_eq!(&all[4 * item..7 * item], &part[..]);
    // Sample 0 is n01/0.png (41×30): shorter side 24 → 32×24, crop 20×20, ImageNet
    // normalization; the same steps on the file directly give the same floats.
    let img = image::open(dir.path().join("n01/0.png")).unwrap().to_rgb8();
    let pre = quantgraph_dataset::Preprocess::from_params(&quantgraph_dataset::PreprocessParams {
        normalize: "imagenet",
        resize: "shorter-side",
        resize_to: "24",
        crop: "20",
        layout: "NCHW",
        channels: "RGB",
        ..Default::default()
    })
    .unwrap();
    let prepared = pre.geometry(img).unwrap();
    assert_eq!(prepared.dimensions(), (20, 20));
    let mut want = vec![0f32; item];
    pre.write_floats(prepared.as_raw(), 20, 20, &mut want);
    assert_eq!(&all[..item], &want[..]);
    // Before/after for the inspector; thumbnails decoded on demand.
    let (before, after) = d.before_after.clone().unwrap();
    assert_eq!((before.width, before.height, after.width, after.height), (41, 30, 20, 20));
    assert_eq!(d.thumbnail(8).unwrap().label, 0);
    assert_eq!(d.preview.len(), 9);
    // Cancelling stops decoding.
    assert!(matches!(d.images.batch(1, 9, &|| true), Err(NodeError::Cancelled)));
    // Without resizing, mixed sizes are refused up front, naming the file and the fix.
    let mut plain = base.clone();
    plain["resize"] = "none".into();
    plain["crop"] = "".into();
    let err = run(plain).unwrap_err().to_string();
    assert!(err.starts_with("expected 41×30 pixels like") && err.contains("found 48×35"), "{err}");
    assert!(err.contains("set Resize"), "{err}");
}

#[test]
fn class_folders_missing_from_the_class_list_are_reported() {
    let dir = photo_folder();
    std::fs::write(dir.path().join("short.txt"), "n01\nn02\n").unwrap();
    let params = serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "count": 0,
        "classes": path_of(&dir.path().join("short.txt")), "resize": "exact", "resize_to": "16x16"});
    let err = run(params.clone()).unwrap_err().to_string();
    assert!(err.contains("1 class folder(s) are not in the class list") && err.contains("n03"), "{err}");
    let mut skip = params;
    skip["skip_unmapped"] = true.into();
    let d = run(skip).unwrap();
    assert_eq!(d.len(), 6);
    assert_eq!(d.class_names, vec!["n01", "n02"]);
    assert!(d.source.contains("skipped 1 class folder(s)") && d.source.contains("n03"), "{}", d.source);
    // A class list naming one class twice is an error on the file.
    std::fs::write(dir.path().join("twice.txt"), "n01\nn01\n").unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder",
        "classes": path_of(&dir.path().join("twice.txt"))}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("listed twice"), "{err}");
}

#[test]
fn a_labels_csv_lists_the_images_and_their_labels() {
    let dir = photo_folder();
    std::fs::write(dir.path().join("labels.csv"), "filename,label\nn02/1.png,2\nn01/0.png,n03\n\"n03/2.png\",0\n")
        .unwrap();
    let params = serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "count": 0,
        "classes": path_of(&dir.path().join("classes.txt")), "labels_csv": path_of(&dir.path().join("labels.csv")),
        "resize": "exact", "resize_to": "16x16"});
    let d = run(params.clone()).unwrap();
    assert_eq!(d.labels, vec![2, 0, 0]);
    assert_eq!(d.images.shape(), vec![3, 3, 16, 16]);
    // A label that is neither an index nor a class, and a path out of the folder.
    std::fs::write(dir.path().join("bad.csv"), "n02/1.png,zebra\n").unwrap();
    let mut bad = params.clone();
    bad["labels_csv"] = path_of(&dir.path().join("bad.csv")).into();
    let err = run(bad.clone()).unwrap_err().to_string();
    assert!(err.contains("row 1: label 'zebra'"), "{err}");
    std::fs::write(dir.path().join("bad.csv"), "../n02/1.png,1\n").unwrap();
    let err = run(bad).unwrap_err().to_string();
    assert!(err.contains("outside the folder"), "{err}");
}

/// CIFAR-10 upscaled for an ImageNet-size model is resized batch by batch, not held whole.
#[test]
fn binary_layout_resized_is_streamed() {
    let dir = binary_dir(12);
    let d = run(serde_json::json!({"path": path_of(dir.path()), "count": 0, "resize": "exact", "resize_to": "64x64",
        "normalize": "unit", "layout": "NHWC", "channels": "BGR"}))
    .unwrap();
    assert_eq!(d.images.shape(), vec![12, 64, 64, 3]);
    assert!(matches!(d.images, quantgraph_nodes::value::Images::Stream(_)));
    // Thumbnails are drawn from the 8-bit records on demand (none kept as copies).
    assert!(d.thumbnails.is_empty());
    let t = d.thumbnail(11).unwrap();
    assert_eq!((t.width, t.height, t.label, t.rgb[0]), (32, 32, 1, 11));
    let data = d.images.batch(11, 12, &|| false).unwrap();
    // Record 11's pixel (c, y, x) is (11 + c·1024 + y·32 + x) % 251; a 2× bilinear upscale of a
    // smooth ramp keeps pixel (0, 0)'s value within a level of the source.
    let red00 = 11.0 / 255.0;
    let blue00 = ((11 + 2 * 1024) % 251) as f32 / 255.0;
    assert!((data[2] - red00).abs() < 2.0 / 255.0, "BGR: red is the last channel: {}", data[2]);
    assert!((data[0] - blue00).abs() < 2.0 / 255.0, "{}", data[0]);
}

fn cifar_dir() -> PathBuf {
    std::env::var_os("QUANTGRAPH_CIFAR10")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar10"))
}

#[test]
fn the_real_cifar10_test_batch() {
    let dir = cifar_dir();
    assert!(dir.join("test_batch.bin").is_file(), "CIFAR-10 not found at {}: set QUANTGRAPH_CIFAR10", dir.display());
    let d = run(serde_json::json!({"path": path_of(&dir), "per_class": 100})).unwrap();
    assert_eq!(d.len(), 1000);
    for c in 0..10 {
        assert_eq!(d.labels.iter().filter(|l| **l == c).count(), 100);
    }
    assert_eq!(
        d.class_names,
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    );
    // The README's check: per-channel means over the whole test split.
    let all = run(serde_json::json!({"path": path_of(&dir), "count": 0})).unwrap();
    assert_eq!(all.len(), 10_000);
    let plane = 1024;
    let data = pixels(&all);
    for (c, want) in [125.99, 123.69, 114.85].iter().enumerate() {
        let mut sum = 0f64;
        for k in 0..all.len() {
            sum += data[k * 3072 + c * plane..k * 3072 + (c + 1) * plane].iter().map(|v| f64::from(*v)).sum::<f64>();
        }
        let mean = sum / (all.len() * plane) as f64;
        assert!((mean - want).abs() < 0.01, "channel {c}: mean {mean}");
    }
}

/// A few kilobytes of nested lists used to overflow the decoder's stack and abort the
/// process; now the node fails with a message.
#[test]
fn deeply_nested_pickles_are_refused_not_a_crash() {
    let py = tempfile::tempdir().unwrap();
    let sub = py.path().join("cifar-10-batches-py");
    std::fs::create_dir_all(&sub).unwrap();
    let mut bomb = vec![0x80u8, 2];
    bomb.extend(std::iter::repeat_n(b']', 200_000));
    bomb.extend(std::iter::repeat_n(b'a', 199_999));
    bomb.push(b'.');
    std::fs::write(sub.join("test_batch"), &bomb).unwrap();
    let err = run(serde_json::json!({"path": path_of(py.path()), "format": "cifar10-python"})).unwrap_err().to_string();
    assert!(err.contains("not a usable pickle") && err.contains("containers"), "{err}");
    assert!(err.ends_with("test_batch"), "{err}");
    // 2,000 levels in 4 KB, the size of the reported case, on a small (worker-sized) stack.
    let mut small = vec![0x80u8, 2];
    small.extend(std::iter::repeat_n(b']', 2_000));
    small.extend(std::iter::repeat_n(b'a', 1_999));
    small.push(b'.');
    std::fs::write(sub.join("test_batch"), &small).unwrap();
    let path = path_of(py.path());
    let handle = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || run(serde_json::json!({"path": path, "format": "cifar10-python"})).map_err(|e| e.to_string()))
        .unwrap();
    let result = handle.join().expect("the decoder must not overflow the stack");
    assert!(result.is_err());
}

#[test]
fn special_files_and_non_finite_preprocessing_are_refused() {
    let bin = binary_dir(5);
    // JSON holds no NaN or infinity; out-of-range and non-positive values are what a file can
    // carry.
    // A std of 0 is refused by the param's range, so that `check` refuses what `run` would.
    for (param, value) in [
        ("mean", serde_json::json!([1e300])),
        ("std", serde_json::json!([0.5, -1, 0.5])),
        ("std", serde_json::json!([0])),
    ] {
        let err = run(serde_json::json!({"path": path_of(bin.path()), param: value})).unwrap_err().to_string();
        assert!(err.starts_with(&format!("parameter '{param}': expected numbers in")), "{err}");
    }
    assert!(run(serde_json::json!({"path": path_of(bin.path()), "mean": [0.5], "count": 0})).is_ok());
    // A FIFO where a batch file should be: refused at once, never read (which would block).
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("test_batch.bin");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let err = run(serde_json::json!({"path": path_of(dir.path())})).unwrap_err().to_string();
        assert!(err.contains("expected a regular file, found a FIFO"), "{err}");
    }
}

/// What would give wrong or stale numbers is refused where it starts: an image edited in
/// place changes the loader's cache identity and, mid-run, is an error; images that would
/// come out at different sizes fail on the loader; a CSV row naming a missing file, a label
/// that is both an index and another class's id, and a resize to gigapixels are errors.
#[test]
fn stale_images_mixed_outputs_and_oversized_resizes_are_refused() {
    let dir = photo_folder();
    let params: Params =
        serde_json::from_value(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder",
        "count": 0, "resize": "exact", "resize_to": "16x16"}))
        .unwrap();
    let before = Cifar10Loader.external_identity(&params, None).unwrap();
    let d = run(serde_json::to_value(&params).unwrap()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    image::RgbImage::from_pixel(41, 30, image::Rgb([1, 2, 3])).save(dir.path().join("n01/0.png")).unwrap();
    let after = Cifar10Loader.external_identity(&params, None).unwrap();
    assert_ne!(before, after, "an image edited in place changes the identity");
    let err = d.images.batch(0, 2, &|| false).unwrap_err().to_string();
    assert!(err.contains("changed (or disappeared) since the folder was listed") && err.ends_with("0.png"), "{err}");

    // Shorter-side without a crop: these images come out at different sizes.
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "count": 0,
        "resize": "shorter-side", "resize_to": "16"}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("after preprocessing") && err.contains("set Resize"), "{err}");

    std::fs::write(dir.path().join("missing.csv"), "n01/0.png,1\nn01/nope.png,1\n").unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "resize": "exact",
        "resize_to": "8x8", "labels_csv": path_of(&dir.path().join("missing.csv"))}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("row 2: expected an image file") && err.contains("nope.png"), "{err}");

    std::fs::write(dir.path().join("numbers.txt"), "7\n3\n").unwrap();
    std::fs::write(dir.path().join("ambiguous.csv"), "n01/0.png,3\n").unwrap();
    let err = run(serde_json::json!({"path": path_of(dir.path()), "format": "image-folder", "resize": "exact",
        "resize_to": "8x8", "classes": path_of(&dir.path().join("numbers.txt")),
        "labels_csv": path_of(&dir.path().join("ambiguous.csv"))}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("ambiguous"), "{err}");

    // A 1-pixel-wide strip resized by its shorter side would be gigapixels.
    let thin = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(thin.path().join("a")).unwrap();
    image::RgbImage::from_pixel(1, 20_000, image::Rgb([9, 9, 9])).save(thin.path().join("a/strip.png")).unwrap();
    let d = run(serde_json::json!({"path": path_of(thin.path()), "format": "image-folder", "resize": "shorter-side",
        "resize_to": "256", "crop": "224"}))
    .unwrap();
    let err = d.images.batch(0, 1, &|| false).unwrap_err().to_string();
    assert!(err.contains("more than the 64 Mpx") && err.ends_with("strip.png"), "{err}");
}
