//! The ONNX node kinds on the tiny fixture models (tests/fixtures/tiny, made by
//! models/make_fixtures.py from seeded random numbers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantgraph_nodes::value::{Dataset, Layout, Tensor, Value};
use quantgraph_nodes::{EvalContext, Inputs, NodeError, NodeKind, Params};
use quantgraph_onnx::model::OnnxModel;
use quantgraph_onnx::probe::LayerProbe;
use quantgraph_onnx::qdq_override::QdqOverride;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny").join(name)
}

fn load(name: &str) -> Result<Arc<quantgraph_nodes::value::ModelValue>, NodeError> {
    let mut p = Params::new();
    p.insert("path".into(), fixture(name).to_string_lossy().as_ref().into());
    let out = OnnxModel.evaluate(&EvalContext::detached(None), &Inputs::default(), &p)?;
    match out.get("model") {
        Some(Value::Model(m)) => Ok(m.clone()),
        other => panic!("{other:?}"),
    }
}

fn dataset(n: usize) -> Arc<Dataset> {
    // Seeded pseudo-random pixels (not dataset images).
    let mut s = 12345u32;
    let data: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as f32
        })
        .collect();
    Arc::new(Dataset {
        images: Tensor::new(vec![n, 3, 32, 32], data).into(),
        layout: Layout::Nchw,
        labels: (0..n as u32).map(|i| i % 10).collect(),
        class_names: (0..10).map(|i| format!("c{i}")).collect(),
        source_indices: (0..n).collect(),
        source: "random".into(),
        preprocessing: "raw".into(),
        preview: Vec::new(),
        thumbnails: Arc::new(Vec::new()),
        before_after: None,
    })
}

#[test]
fn model_describes_inputs_ops_params_and_qdq_table() {
    let m = load("tiny_fp32.onnx").unwrap();
    assert_eq!(m.info.inputs[0].name, "input");
    assert_eq!(m.info.inputs[0].dims, vec!["N", "3", "32", "32"]);
    assert_eq!(m.info.outputs[0].name, "logits");
    assert_eq!(m.info.param_count, 4 * 27 + 4 + 8 * 36 + 8 + 80 + 10);
    assert_eq!(
        m.info.nodes.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(),
        ["Conv", "Relu", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    );
    assert!(m.info.qdq.is_empty());

    let q = load("tiny_qdq.onnx").unwrap();
    let conv1: Vec<_> = q.info.qdq.iter().filter(|e| e.float_tensor == "relu1").collect();
    assert_eq!(conv1.len(), 2, "a Q and a DQ for relu1: {conv1:?}");
    assert!(conv1.iter().all(|e| e.dtype == "uint8" && e.scales.len() == 1 && e.scales[0] > 0.0));
    let w1: Vec<_> = q.info.qdq.iter().filter(|e| e.float_tensor == "w1").collect();
    assert_eq!(w1.len(), 1);
    assert!(w1[0].is_weight && w1[0].dtype == "int8" && w1[0].op_type == "DequantizeLinear");
    // Same parameter count as the float model: quantized weights replace float ones.
    assert_eq!(q.info.param_count, m.info.param_count);
}

#[test]
fn corrupt_and_non_onnx_files_fail_with_the_file_named() {
    for name in ["broken.onnx", "not_onnx.onnx"] {
        let err = load(name).unwrap_err().to_string();
        assert!(err.contains("not an ONNX model"), "{err}");
        assert!(err.ends_with(name), "{err}");
    }
    let err = load("missing.onnx").unwrap_err().to_string();
    assert!(err.starts_with("the model: cannot read"), "{err}");
}

fn override_with(
    model: &Arc<quantgraph_nodes::value::ModelValue>,
    edits: serde_json::Value,
) -> Result<quantgraph_nodes::Outputs, NodeError> {
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(model.clone()));
    let mut p = Params::new();
    p.insert("edits".into(), edits);
    QdqOverride.evaluate(&EvalContext::detached(None), &inputs, &p)
}

#[test]
fn qdq_override_changes_both_nodes_of_a_pair_and_records_the_originals() {
    let q = load("tiny_qdq.onnx").unwrap();
    let before = std::fs::read(fixture("tiny_qdq.onnx")).unwrap();
    let original = q.info.qdq.iter().find(|e| e.float_tensor == "relu1").unwrap().scales[0];
    let out = override_with(&q, serde_json::json!([{"tensor": "relu1", "scale": 0.5, "zero_point": "3"}])).unwrap();
    let Some(Value::Model(m)) = out.get("model") else { panic!() };
    let conv1: Vec<_> = m.info.qdq.iter().filter(|e| e.float_tensor == "relu1").collect();
    assert!(conv1.iter().all(|e| e.scales == vec![0.5] && e.zero_points == vec![3]), "{conv1:?}");
    // Nothing else changed.
    for (a, b) in q.info.qdq.iter().zip(&m.info.qdq) {
        if a.float_tensor != "relu1" {
            assert_eq!(a, b);
        }
    }
    let Some(Value::Table(changes)) = out.get("changes") else { panic!() };
    let t = &changes.tables[0];
    assert_eq!(t.rows.len(), 2, "{t:?}");
    assert_eq!(t.rows[0][2].to_string(), "scale");
    assert_eq!(t.rows[0][3].as_f64(), Some(f64::from(original)));
    assert_eq!(t.rows[0][4].as_f64(), Some(0.5));
    assert_eq!(m.changes.len(), 2);
    // The file on disk is untouched.
    assert_eq!(std::fs::read(fixture("tiny_qdq.onnx")).unwrap(), before);
}

#[test]
fn qdq_override_rejects_bad_values_naming_the_tensor() {
    let q = load("tiny_qdq.onnx").unwrap();
    let err = override_with(&q, serde_json::json!([{"tensor": "relu1", "zero_point": "300"}])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter 'edits': tensor 'relu1': zero-point must be in [0, 255] for uint8, found 300"
    );
    let err = override_with(&q, serde_json::json!([{"tensor": "nope", "scale": 0.1}])).unwrap_err();
    assert!(err.to_string().contains("no Q/DQ pair quantizes tensor 'nope'"), "{err}");
    let err = override_with(&q, serde_json::json!([{"tensor": "relu1", "scale": -1.0}])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter 'edits': item 1 ('relu1'), field 'scale': expected a number in [0, 1000000000], found -1"
    );
    let err = override_with(&q, serde_json::json!([{"tensor": "relu1", "scale": 1e-45}])).unwrap_err();
    assert!(err.to_string().contains("tensor 'relu1': scale must be positive and finite"), "{err}");
    // A float model is not a QDQ model.
    let f = load("tiny_fp32.onnx").unwrap();
    let err = override_with(&f, serde_json::json!([])).unwrap_err();
    assert!(err.to_string().contains("expected a QDQ model"), "{err}");
}

#[test]
fn qdq_override_bulk_rule_multiplies_matching_scales() {
    let q = load("tiny_qdq.onnx").unwrap();
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(q.clone()));
    let mut p = Params::new();
    p.insert("rule_op_type".into(), "Conv".into());
    p.insert("rule_factor".into(), 2.0.into());
    let out = QdqOverride.evaluate(&EvalContext::detached(None), &inputs, &p).unwrap();
    let Some(Value::Model(m)) = out.get("model") else { panic!() };
    for (a, b) in q.info.qdq.iter().zip(&m.info.qdq) {
        // Tensors feeding a Conv: the input, relu1 and the conv weights and biases.
        let feeds_conv = ["input", "relu1", "w1", "w2", "b1", "b2"].contains(&a.float_tensor.as_str());
        if feeds_conv {
            assert_eq!(b.scales[0], a.scales[0] * 2.0, "{}", a.float_tensor);
        } else {
            assert_eq!(b.scales, a.scales, "{}", a.float_tensor);
        }
    }
}

fn probe(
    model: &Arc<quantgraph_nodes::value::ModelValue>,
    ds: Arc<Dataset>,
    capture: &str,
) -> Result<Arc<quantgraph_nodes::value::Activations>, NodeError> {
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(model.clone()));
    inputs.0.insert("dataset".into(), Value::Dataset(ds));
    let mut p = Params::new();
    p.insert("capture".into(), capture.into());
    p.insert("batch_size".into(), 7.into());
    let out = LayerProbe.evaluate(&EvalContext::detached(None), &inputs, &p)?;
    match out.get("activations") {
        Some(Value::Activations(a)) => Ok(a.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_captures_activations_and_predictions() {
    let f = load("tiny_fp32.onnx").unwrap();
    let a = probe(&f, dataset(23), "all").unwrap();
    let names: Vec<&str> = a.tensors.keys().map(String::as_str).collect();
    assert_eq!(names, ["conv1", "conv2", "flat", "logits", "pool", "relu1", "relu2"]);
    let relu1 = &a.tensors["relu1"];
    assert_eq!(relu1.tensor.shape, vec![23, 4, 16, 16]);
    assert!(relu1.tensor.data.is_empty(), "activations are streamed, not kept");
    assert_eq!(relu1.stats.count, 23 * 4 * 16 * 16, "stats over all samples");
    assert!(relu1.stats.min >= 0.0);
    assert_eq!(relu1.stats.histogram.counts.iter().sum::<u64>(), 23 * 4 * 16 * 16, "histogram over all samples");
    // The stream gives the same values in any batch size, and the statistics are theirs.
    let stream = a.stream.as_ref().unwrap();
    let collect = |batch: usize| {
        let mut it = stream.0.open(&["relu1".into()], batch).unwrap();
        let mut all = Vec::new();
        while let Some(b) = it.next_batch(&EvalContext::detached(None)).unwrap() {
            all.extend_from_slice(&b.tensors["relu1"].1);
        }
        all
    };
    let (by5, by23) = (collect(5), collect(23));
    assert_eq!(by5.len(), 23 * 4 * 16 * 16);
    assert_eq!(by5, by23);
    let mean = by5.iter().map(|x| f64::from(*x)).sum::<f64>() / by5.len() as f64;
    let var = by5.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / by5.len() as f64;
    assert!((relu1.stats.mean - mean).abs() < 1e-9 * mean.abs().max(1.0));
    assert!((relu1.stats.std - var.sqrt()).abs() < 1e-9 * var.sqrt().max(1.0));
    assert_eq!(relu1.stats.max, by5.iter().copied().fold(f32::MIN, f32::max));
    assert_eq!(a.tensors["logits"].tensor.shape, vec![23, 10]);
    let p = a.predictions.as_ref().unwrap();
    assert_eq!(p.top1.len(), 23);
    // Predictions are the argmax of the logits.
    let logits = &a.tensors["logits"].tensor.data;
    for (i, t) in p.top1.iter().enumerate() {
        let row = &logits[i * 10..(i + 1) * 10];
        let best = row.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(row[*t as usize], best);
    }
}

#[test]
fn probe_of_a_qdq_model_offers_pre_and_post_tensors_with_their_qdq_pair() {
    let q = load("tiny_qdq.onnx").unwrap();
    let a = probe(&q, dataset(12), "all").unwrap();
    assert!(a.tensors.contains_key("relu1"), "{:?}", a.tensors.keys());
    let post = &a.tensors["relu1_DequantizeLinear_Output"];
    let qdq = post.qdq.as_ref().expect("post tensor knows its Q/DQ pair");
    let (lo, hi) = qdq.real_range().unwrap();
    // The post-DQ values lie on the grid inside the representable range.
    for v in &post.tensor.data {
        assert!(*v >= lo - 1e-5 && *v <= hi + 1e-5);
        let steps = v / qdq.scales[0] + qdq.zero_points[0] as f32;
        assert!((steps - steps.round()).abs() < 1e-3, "{v} is off the grid");
    }
    // The histogram range covers the clip range.
    assert!(post.stats.histogram.lo <= lo && post.stats.histogram.hi >= hi);
}

#[test]
fn probe_refuses_a_dataset_that_does_not_fit_the_model() {
    let f = load("tiny_fp32.onnx").unwrap();
    let ds = dataset(4);
    let mut small = (*ds).clone();
    small.images = Tensor::new(vec![4, 16, 16, 12], ds.images.dense().unwrap().data.clone()).into();
    small.layout = Layout::Nhwc;
    let err = probe(&f, Arc::new(small), "outputs").unwrap_err().to_string();
    assert!(
        err.starts_with(
            "input 'dataset': model input 'input' expects [N, 3, 32, 32], the dataset gives [4, 16, 16, 12] (NHWC)"
        ),
        "{err}"
    );
}

/// A channels-last dataset feeds a channels-first model (and the other way round):
/// transposed per batch, with the same results as the matching layout, and a note.
#[test]
fn probe_transposes_a_dataset_of_the_other_layout() {
    let f = load("tiny_fp32.onnx").unwrap();
    let ds = dataset(4);
    let mut nhwc = (*ds).clone();
    nhwc.layout = Layout::Nhwc;
    let src = ds.images.dense().unwrap();
    let mut data = vec![0f32; src.data.len()];
    for (n, img) in src.data.chunks_exact(3 * 32 * 32).enumerate() {
        for c in 0..3 {
            for p in 0..32 * 32 {
                data[n * 3072 + p * 3 + c] = img[c * 1024 + p];
            }
        }
    }
    nhwc.images = Tensor::new(vec![4, 32, 32, 3], data).into();
    let a = probe(&f, ds, "outputs").unwrap();
    let b = probe(&f, Arc::new(nhwc), "outputs").unwrap();
    assert_eq!(a.tensors["logits"].tensor.data, b.tensors["logits"].tensor.data);
    assert!(b.notes.iter().any(|n| n.contains("transposed NHWC → NCHW")), "{:?}", b.notes);
}

#[test]
fn qdq_override_can_edit_only_the_dequantize_node_of_a_pair() {
    let q = load("tiny_qdq.onnx").unwrap();
    let original = q.info.qdq.iter().find(|e| e.float_tensor == "relu1").unwrap().scales[0];
    let out = override_with(&q, serde_json::json!([{"tensor": "relu1", "scale": 0.5, "apply_to": "DQ only"}])).unwrap();
    let Some(Value::Model(m)) = out.get("model") else { panic!() };
    let pair: Vec<_> = m.info.qdq.iter().filter(|e| e.float_tensor == "relu1").collect();
    let quant = pair.iter().find(|e| e.op_type == "QuantizeLinear").unwrap();
    let dequant = pair.iter().find(|e| e.op_type == "DequantizeLinear").unwrap();
    assert_eq!(quant.scales, vec![original]);
    assert_eq!(dequant.scales, vec![0.5]);
    assert_ne!(quant.scale_name, dequant.scale_name, "the DQ got its own copy");
    // The model still runs, and its outputs changed (the DQ rescales relu1 by 0.5/original).
    let before = probe(&q, dataset(4), "outputs").unwrap();
    let after = probe(m, dataset(4), "outputs").unwrap();
    assert_ne!(before.tensors["logits"].tensor.data, after.tensors["logits"].tensor.data);
    let err = override_with(&q, serde_json::json!([{"tensor": "w1", "scale": 0.5, "apply_to": "Q only"}])).unwrap_err();
    assert!(err.to_string().contains("tensor 'w1' has no QuantizeLinear node to edit alone"), "{err}");

    // Two rows for the DQ alone compose: its scale from the first, its zero point from the
    // second (one copy of each parameter, not the second row's copy of the original scale).
    let out = override_with(
        &q,
        serde_json::json!([
            {"tensor": "relu1", "scale": 0.5, "apply_to": "DQ only"},
            {"tensor": "relu1", "zero_point": "3", "apply_to": "DQ only"}
        ]),
    )
    .unwrap();
    let Some(Value::Model(m)) = out.get("model") else { panic!() };
    let dequant = m.info.qdq.iter().find(|e| e.float_tensor == "relu1" && e.op_type == "DequantizeLinear").unwrap();
    assert_eq!((dequant.scales.clone(), dequant.zero_points.clone()), (vec![0.5], vec![3]));
}

/// A cancelled evaluation stops inside an ONNX Runtime run, not only between batches: the
/// terminate flag reaches the run (here set before it starts, so the outcome does not depend
/// on timing), which returns `Cancelled` long before the batch would have finished.
#[test]
fn cancellation_stops_inside_an_onnx_runtime_run() {
    use std::sync::atomic::AtomicBool;
    // The project's ResNet8 (a second per 2,048 images on one thread; the tiny model is too
    // quick to tell a stopped run from a finished one).
    let resnet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/resnet8_fp32.onnx");
    let f =
        quantgraph_onnx::model::model_value("resnet8", "resnet8_fp32.onnx", std::fs::read(resnet).unwrap(), 1).unwrap();
    let ds = dataset(2048);
    let feed = quantgraph_onnx::runtime::Feed { name: "input".into(), ..Default::default() };
    let mut session = quantgraph_onnx::runtime::session(&f.bytes, 1).unwrap();
    let outputs = vec!["logits".to_owned()];
    let live = EvalContext::detached(None);
    let t = std::time::Instant::now();
    quantgraph_onnx::runtime::run_batch(&live, &mut session, &feed, &ds.images, 0, 2048, &outputs, |_| Ok(())).unwrap();
    let full = t.elapsed();
    let cancelled = EvalContext::new(Arc::new(AtomicBool::new(true)), Box::new(|_, _| {}), None);
    let t = std::time::Instant::now();
    let r =
        quantgraph_onnx::runtime::run_batch(&cancelled, &mut session, &feed, &ds.images, 0, 2048, &outputs, |_| Ok(()));
    assert!(matches!(r, Err(NodeError::Cancelled)), "{:?}", r.err());
    assert!(t.elapsed() < full / 4, "cancelled run took {:?}, a full one {full:?}", t.elapsed());
}

/// Esc while ONNX Runtime runs: the flag set from another thread a moment after the run
/// started reaches the run through the process's watcher thread, which stops it before it
/// would have finished; the session then runs whole again with a live context.
#[test]
fn cancellation_during_a_run_stops_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let resnet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/resnet8_fp32.onnx");
    let f =
        quantgraph_onnx::model::model_value("resnet8", "resnet8_fp32.onnx", std::fs::read(resnet).unwrap(), 1).unwrap();
    let ds = dataset(4096);
    let feed = quantgraph_onnx::runtime::Feed { name: "input".into(), ..Default::default() };
    let mut session = quantgraph_onnx::runtime::session(&f.bytes, 1).unwrap();
    let outputs = vec!["logits".to_owned()];
    let live = EvalContext::detached(None);
    let t = std::time::Instant::now();
    quantgraph_onnx::runtime::run_batch(&live, &mut session, &feed, &ds.images, 0, 4096, &outputs, |_| Ok(())).unwrap();
    let full = t.elapsed();
    let flag = Arc::new(AtomicBool::new(false));
    let cancelled = EvalContext::new(flag.clone(), Box::new(|_, _| {}), None);
    let delay = full / 10;
    let t = std::time::Instant::now();
    let r = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(delay);
            flag.store(true, Ordering::Relaxed);
        });
        quantgraph_onnx::runtime::run_batch(&cancelled, &mut session, &feed, &ds.images, 0, 4096, &outputs, |_| Ok(()))
    });
    let took = t.elapsed();
    assert!(matches!(r, Err(NodeError::Cancelled)), "{:?}", r.err());
    // A full run again, so that both figures see the same load on a shared machine.
    let t = std::time::Instant::now();
    quantgraph_onnx::runtime::run_batch(&live, &mut session, &feed, &ds.images, 0, 4096, &outputs, |_| Ok(())).unwrap();
    let full = full.max(t.elapsed());
    // ONNX Runtime looks at the flag between nodes, and one Conv over 4,096 images is a
    // fifth of the run: it stops within a node or two of the flag, well before the end.
    // (Without the watcher the run finishes and returns Ok: the line above fails.)
    assert!(took < full * 4 / 5, "cancelled after {delay:?}, the run took {took:?}, a full one {full:?}");
}
