//! The project's own ResNet8 models, end to end through QuantGraph: the committed files
//! match their manifest, the QDQ models are fully quantized, and QuantGraph's numbers match
//! Python onnxruntime's (fixtures written by models/evaluate.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::scheduler::NodeOutcome;
use quantgraph_nodes::value::{Cell, Report};
use quantgraph_nodes::{file, Scheduler, Value};
use sha2::Digest;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cifar_dir() -> PathBuf {
    let dir = std::env::var_os("QUANTGRAPH_CIFAR10")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/cifar10"));
    assert!(dir.join("test_batch.bin").is_file(), "CIFAR-10 not found at {}: set QUANTGRAPH_CIFAR10", dir.display());
    dir
}

const MODELS: [&str; 3] = ["resnet8_fp32.onnx", "resnet8_int8_qdq.onnx", "resnet8_u8s8_qdq.onnx"];

#[test]
fn committed_models_match_the_manifest() {
    let manifest = json(&repo().join("models/manifest.json"));
    for name in MODELS {
        let bytes = std::fs::read(repo().join("models").join(name)).unwrap();
        let sha = format!("{:x}", sha2::Sha256::digest(&bytes));
        assert_eq!(manifest["models"][name]["sha256"], sha, "{name}");
        assert_eq!(manifest["models"][name]["size_bytes"], bytes.len(), "{name}");
        let top1 = manifest["models"][name]["top1"].as_f64().unwrap();
        assert!(top1 >= 0.80, "{name}: top-1 {top1} is below the 80 % target");
    }
    for name in ["mobilenetv2_fp32.onnx", "mobilenetv2_int8_qdq.onnx"] {
        let bytes = std::fs::read(repo().join("models").join(name)).unwrap();
        let entry = &manifest["mobilenetv2"]["models"][name];
        assert_eq!(entry["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)), "{name}");
        assert_eq!(entry["size_bytes"], bytes.len(), "{name}");
    }
    let fp32 = manifest["models"]["resnet8_fp32.onnx"]["top1"].as_f64().unwrap();
    for q in &MODELS[1..] {
        let t = manifest["models"][q]["top1"].as_f64().unwrap();
        assert!((t - fp32).abs() <= 0.01, "{q}: {t} vs FP32 {fp32}");
    }
}

#[test]
fn qdq_models_wrap_every_conv_and_gemm_input_and_weight_in_qdq_pairs() {
    let registry = quantgraph_app::registry().unwrap();
    for name in &MODELS[1..] {
        let mut g = Graph::new();
        let m = g.add_node(&registry, "onnx.model", [0.0, 0.0]).unwrap();
        g.set_param(m, "path", repo().join("models").join(name).to_string_lossy().as_ref().into()).unwrap();
        let e = Scheduler::new(Arc::new(registry.clone())).evaluate(&g, &[]);
        let Some(Value::Model(model)) = e.outputs(m).and_then(|o| o.get("model")).cloned() else {
            panic!("{:?}", e.error(m))
        };
        let producer: std::collections::HashMap<&str, &quantgraph_nodes::value::OpInfo> =
            model.info.nodes.iter().flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n))).collect();
        let inits: std::collections::HashSet<&str> = model.info.initializers.iter().map(|i| i.name.as_str()).collect();
        let mut checked = 0;
        for op in model.info.nodes.iter().filter(|n| n.op_type == "Conv" || n.op_type == "Gemm") {
            for (i, input) in op.inputs.iter().enumerate() {
                let p = producer
                    .get(input.as_str())
                    .unwrap_or_else(|| panic!("{name}: {} input {input} has no producer", op.name));
                assert_eq!(p.op_type, "DequantizeLinear", "{name}: {} input {i} ({input}) is not dequantized", op.name);
                if i == 0 {
                    // The activation: DQ of a Q.
                    let q = producer.get(p.inputs[0].as_str()).unwrap();
                    assert_eq!(q.op_type, "QuantizeLinear", "{name}: {}", op.name);
                } else {
                    // Weight (and bias): DQ of a quantized initializer.
                    assert!(
                        inits.contains(p.inputs[0].as_str()),
                        "{name}: {} weight {input} is not a stored quantized tensor",
                        op.name
                    );
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 10, "{name}: ResNet8 has 9 convolutions and 1 dense layer");
    }
}

fn load_default(registry: &quantgraph_nodes::NodeRegistry) -> Graph {
    let (mut g, report) = file::load(&repo().join("assets/graphs/default.qgraph"), registry).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g
}

fn report(e: &quantgraph_nodes::Evaluation, node: NodeId) -> Arc<Report> {
    match e.outputs(node).and_then(|o| o.get("report")) {
        Some(Value::Table(r)) => r.clone(),
        _ => panic!("no report: {:?}", e.outcomes.get(&node)),
    }
}

/// All 10,000 test images through QuantGraph give exactly Python onnxruntime's counts.
#[test]
fn correct_prediction_counts_equal_python_onnxruntime() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let reference = json(&repo().join("tests/fixtures/ort_reference.json"));
    let manifest = json(&repo().join("models/manifest.json"));
    let mut g = load_default(&registry);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 0.into()).unwrap();
    for probe in ["probe_fp32", "probe_int8"] {
        let p = g.find_node(probe).unwrap();
        g.set_param(p, "capture", "outputs".into()).unwrap();
        g.set_param(p, "batch_size", 500.into()).unwrap();
    }
    // B: the s8s8 model, then the u8s8 model.
    let int8 = g.find_node("int8").unwrap();
    let compare = g.find_node("compare").unwrap();
    let s = Scheduler::new(registry);
    for (b_model, _) in [("resnet8_int8_qdq.onnx", 0), ("resnet8_u8s8_qdq.onnx", 1)] {
        g.set_param(int8, "path", format!("../../models/{b_model}").into()).unwrap();
        let e = s.evaluate(&g, &[compare]);
        let r = report(&e, compare);
        assert_eq!(r.summary["samples"], 10_000.0);
        let want_a = common::reference_on_this_cpu(&reference, "resnet8_fp32.onnx")["correct"].as_f64().unwrap();
        let want_b = common::reference_on_this_cpu(&reference, b_model)["correct"].as_f64().unwrap();
        assert_eq!(r.summary["correct_a"], want_a, "FP32");
        assert_eq!(r.summary["correct_b"], want_b, "{b_model}");
        assert_eq!(manifest["models"][b_model]["correct"], reference["models"][b_model]["correct"]);
        // The first predictions, sample by sample.
        let probe = g.find_node("probe_int8").unwrap();
        let Some(Value::Activations(a)) = e.outputs(probe).and_then(|o| o.get("activations")) else { panic!() };
        let first: Vec<u64> = a.predictions.as_ref().unwrap().top1[..50].iter().map(|p| u64::from(*p)).collect();
        let want: Vec<u64> = common::reference_on_this_cpu(&reference, b_model)["first_predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(first, want, "{b_model}");
    }
}

fn cell_f64(t: &quantgraph_nodes::value::Table, row: &[Cell], col: &str) -> Option<f64> {
    row.get(t.column(col)?)?.as_f64()
}

/// Per-layer SQNR over all of the first 1,000 test images agrees with
/// onnxruntime.quantization.qdq_loss_debug on them (float32 sums there) within 0.01 dB;
/// where the quantizer removed a Relu, QuantGraph's corrected qdq_err is shown beside ORT's.
#[test]
fn per_layer_sqnr_matches_qdq_loss_debug() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let fixture = json(&repo().join("tests/fixtures/qdq_loss_debug.json"));
    let mut g = load_default(&registry);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    // The fixture's images (the first 1,000): every one of them is in the per-layer figures.
    let n = fixture["samples"].as_u64().unwrap();
    assert!(n >= 1000, "{n}");
    g.set_param(ds, "count", n.into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    let e = Scheduler::new(registry).evaluate(&g, &[compare]);
    let r = report(&e, compare);
    let t = r.table("per_layer").unwrap();
    let ort = &fixture["models"]["resnet8_int8_qdq.onnx"];
    let (mut matched, mut corrected) = (0, 0);
    for row in &t.rows {
        let name = row[t.column("tensor").unwrap()].to_string();
        let b = row[t.column("b_tensor").unwrap()].to_string();
        let how = row[t.column("pairing").unwrap()].to_string();
        let Some(tensor) = b.strip_suffix("_DequantizeLinear_Output") else { continue };
        let Some(want) = ort.get(tensor) else { continue };
        let sqnr = cell_f64(t, row, "sqnr_db").unwrap();
        let ort_sqnr = cell_f64(t, row, "ort_sqnr_db").unwrap_or(sqnr);
        assert!(
            (ort_sqnr - want["xmodel_err"].as_f64().unwrap()).abs() < 0.01,
            "{name}: xmodel {ort_sqnr} vs ORT {}",
            want["xmodel_err"]
        );
        let qdq = cell_f64(t, row, "qdq_err_db").unwrap();
        match cell_f64(t, row, "ort_qdq_err_db") {
            Some(ort_qdq) => {
                // The Relu was removed: ORT's figure includes the Relu's clipping.
                assert!(
                    (ort_qdq - want["qdq_err"].as_f64().unwrap()).abs() < 0.01,
                    "{name}: {ort_qdq} vs {}",
                    want["qdq_err"]
                );
                assert!(qdq > ort_qdq + 10.0, "{name}: corrected qdq_err {qdq} should be far above ORT's {ort_qdq}");
                assert!(how.contains("Relu removed by the quantizer"), "{how}");
                corrected += 1;
            }
            None => {
                assert!(
                    (qdq - want["qdq_err"].as_f64().unwrap()).abs() < 0.01,
                    "{name}: qdq {qdq} vs ORT {}",
                    want["qdq_err"]
                );
                matched += 1;
            }
        }
    }
    assert!(corrected >= 5, "the Relu-removed tensors of ResNet8: {corrected}");
    assert!(matched >= 5, "{matched}");
}

/// The editor's promise, headless: editing one QDQ scale re-runs only the override, the
/// INT8 probe and what depends on them; the FP32 branch stays cached.
#[test]
fn editing_a_qdq_scale_reruns_only_the_int8_branch() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = load_default(&registry);
    let s = Scheduler::new(registry.clone());
    let e = s.evaluate(&g, &[]);
    for (id, o) in &e.outcomes {
        assert!(matches!(o, NodeOutcome::Ready { .. }), "{}: {o:?}", g.display_name(&registry, *id));
    }
    let r1 = report(&e, g.find_node("compare").unwrap());
    let plot_before = e.outputs(g.find_node("sqnr_plot").unwrap()).unwrap().clone();
    s.take_log();
    let over = g.find_node("override").unwrap();
    g.set_param(over, "edits", serde_json::json!([{"tensor": "/Relu_output_0", "scale": 0.05}])).unwrap();
    let e = s.evaluate(&g, &[]);
    let mut ran: Vec<String> = s.take_log().iter().map(|l| g.node(l.node).unwrap().label.clone().unwrap()).collect();
    ran.sort();
    assert_eq!(
        ran,
        ["class_plot", "compare", "confusion_plot", "int8_histogram", "override", "probe_int8", "sqnr_plot"]
    );
    let r2 = report(&e, g.find_node("compare").unwrap());
    assert_eq!(r1.summary["correct_a"], r2.summary["correct_a"]);
    assert_ne!(r1.summary.get("min_sqnr_db"), r2.summary.get("min_sqnr_db"));
    let plot_after = e.outputs(g.find_node("sqnr_plot").unwrap()).unwrap().clone();
    assert_ne!(format!("{:?}", plot_before.get("plot")), format!("{:?}", plot_after.get("plot")));
    // The override's changes table shows the original beside the new value.
    let Some(Value::Table(changes)) = e.outputs(over).and_then(|o| o.get("changes")) else { panic!() };
    let t = &changes.tables[0];
    assert_eq!(t.rows[0][0].to_string(), "/Relu_output_0");
    assert_eq!(cell_f64(t, &t.rows[0], "new"), Some(f64::from(0.05f32)));
    let _ = PortRef::new(over, "model");
}

/// Streamed per-layer metrics over every sample equal a float64 numpy computation on the
/// full arrays (tests/fixtures/stream_reference.json, made by models/stream_reference.py
/// from the first 100 test images), for any batch size, the Relu-corrected qdq_err included;
/// so do the per-sample SQNRs of the drill-down samples.
#[test]
fn streamed_per_layer_metrics_equal_numpy_float64_for_any_batch_size() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let fixture = json(&repo().join("tests/fixtures/stream_reference.json"));
    let mut g = load_default(&registry);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 100.into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    let s = Scheduler::new(registry);
    let mut by_batch: Vec<BTreeMap<(String, String), f64>> = Vec::new();
    for batch in [7, 100] {
        for probe in ["probe_fp32", "probe_int8"] {
            let p = g.find_node(probe).unwrap();
            g.set_param(p, "batch_size", batch.into()).unwrap();
        }
        let e = s.evaluate(&g, &[compare]);
        let r = report(&e, compare);
        let t = r.table("per_layer").unwrap();
        let col = |row: &[Cell], c: &str| cell_f64(t, row, c);
        let mut sqnrs = BTreeMap::new();
        let (mut matched, mut corrected) = (0, 0);
        for want in fixture["pairs"].as_array().unwrap() {
            let (a, b) = (want["a"].as_str().unwrap(), want["b"].as_str().unwrap());
            let Some(row) = t.rows.iter().find(|row| {
                row[t.column("tensor").unwrap()].to_string() == a && row[t.column("b_tensor").unwrap()].to_string() == b
            }) else {
                assert_eq!(a, "input", "pair {a} ↔ {b} missing from the table");
                continue;
            };
            matched += 1;
            let sqnr = col(row, "sqnr_db").unwrap();
            assert!((sqnr - want["sqnr_db"].as_f64().unwrap()).abs() < 1e-4, "{a}: {sqnr} vs {}", want["sqnr_db"]);
            for m in ["mse", "mae", "max_abs", "cosine"] {
                let (got, exp) = (col(row, m).unwrap(), want[m].as_f64().unwrap());
                // The largest error is one element's: float rounding of ONNX Runtime's kernels,
                // which differ between the CPU that made the reference (AVX-512) and others
                // (AVX2), moves it by a few 1e-6; sums over every element move far less.
                let tol = if m == "max_abs" { 1e-5 } else { 1e-6 };
                assert!((got - exp).abs() <= tol * exp.abs().max(1e-12), "{a} {m}: {got} vs {exp}");
            }
            if let Some(exp) = want["qdq_err_db"].as_f64() {
                // Where the quantizer removed a Relu, the plain pre-vs-post figure is ORT's column.
                let got = col(row, "ort_qdq_err_db").or_else(|| col(row, "qdq_err_db"));
                if let Some(got) = got.filter(|_| exp < 300.0) {
                    assert!((got - exp).abs() < 1e-4, "{a} qdq_err: {got} vs {exp}");
                }
            }
            // The Relu the quantizer removed, put back: max(pre, 0) against the Q/DQ output.
            if let Some(exp) = want["qdq_err_relu_db"].as_f64() {
                assert!(col(row, "ort_qdq_err_db").is_some(), "{a}: the Relu removal was not detected");
                let got = col(row, "qdq_err_db").unwrap();
                assert!((got - exp).abs() < 1e-4, "{a} Relu-corrected qdq_err: {got} vs {exp}");
                corrected += 1;
            }
            sqnrs.insert((a.to_owned(), b.to_owned()), sqnr);
        }
        assert!(matched >= 15, "only {matched} pairs matched");
        assert_eq!(corrected, 7, "ResNet8's Relu-removed pairs");
        // Drill-down samples: per-sample SQNR per layer equals the direct computation.
        let d = r.table("sample_layers").unwrap();
        assert!(!d.rows.is_empty());
        let mut checked = 0;
        for row in &d.rows {
            let sample = row[d.column("sample").unwrap()].as_f64().unwrap() as usize;
            let tensor = row[d.column("tensor").unwrap()].to_string();
            let Some(want) = fixture["pairs"].as_array().unwrap().iter().find(|p| p["a"] == tensor.as_str()) else {
                continue;
            };
            let got = row[d.column("sqnr_db").unwrap()].as_f64().unwrap();
            let exp = want["per_sample_sqnr_db"][sample].as_f64().unwrap();
            assert!((got - exp).abs() < 1e-4, "sample {sample} {tensor}: {got} vs {exp}");
            checked += 1;
        }
        assert!(checked >= 20 * 10, "{checked}");
        // Flips are drilled down, and predictions equal Python onnxruntime's.
        let flips = fixture["top1_a"]
            .as_array()
            .unwrap()
            .iter()
            .zip(fixture["top1_b"].as_array().unwrap())
            .filter(|(x, y)| x != y)
            .count();
        let flipped: std::collections::BTreeSet<u64> = d
            .rows
            .iter()
            .filter(|r| r[d.column("why").unwrap()].to_string() == "flip")
            .map(|r| r[d.column("sample").unwrap()].as_f64().unwrap() as u64)
            .collect();
        assert!(flips > 0);
        assert_eq!(flipped.len(), flips, "every flipped sample has its per-layer rows");
        assert_eq!(r.summary["flips"], flips as f64);
        // Each flip shows both models' probabilities of their own top-1 (at least 1/10 each).
        let f = r.table("flips").unwrap();
        for row in &f.rows {
            for c in ["p_a_pct", "p_b_pct"] {
                let p = row[f.column(c).unwrap()].as_f64().unwrap();
                assert!((10.0..=100.0).contains(&p), "{c} = {p}");
            }
        }
        by_batch.push(sqnrs);
    }
    for (k, x) in &by_batch[0] {
        let y = by_batch[1][k];
        assert!((x - y).abs() <= 1e-9 * x.abs(), "{k:?}: batch 7 gives {x}, batch 100 {y}");
    }
}

/// After an edit of one Q/DQ pair, the probe recomputes only the statistics of tensors
/// downstream of it and the comparator only the pairs the edit reached; the result equals a
/// from-scratch evaluation of the edited graph. Not bit for bit: with fewer tensors captured,
/// ONNX Runtime fuses some float ops (e.g. around the final Gemm) and rounds in another
/// order; activations agree to ~1e-7 relative (measured: 5e-7 absolute on logits of ~10).
/// Error metrics are differences of nearly equal tensors and amplify that by the SQNR
/// factor, so they are compared to 1e-5 relative, SQNR to 1e-4 dB.
#[test]
fn an_edit_recomputes_only_what_it_reaches_and_equals_a_fresh_evaluation() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = load_default(&registry);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 96.into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    let probe = g.find_node("probe_int8").unwrap();
    let s = Scheduler::new(registry.clone());
    s.evaluate(&g, &[compare]);
    let over = g.find_node("override").unwrap();
    g.set_param(over, "edits", serde_json::json!([{"tensor": "/stage3/Relu_1_output_0", "scale": 0.05}])).unwrap();
    let e = s.evaluate(&g, &[compare]);
    let incremental = report(&e, compare);
    let reused = incremental.notes.iter().find(|n| n.contains("pairs reused")).expect("pairs reused");
    // "k of m pairs reused …": the pairs upstream of stage 3, not those after it.
    let words: Vec<&str> = reused.split_whitespace().collect();
    let (k, m): (usize, usize) = (words[0].parse().unwrap(), words[2].parse().unwrap());
    assert!(k >= m / 2 && k < m, "{reused}");
    let Some(Value::Activations(acts)) = e.outputs(probe).and_then(|o| o.get("activations")).cloned() else { panic!() };
    assert!(acts.notes.iter().any(|n| n.contains("statistics of") && n.contains("reused")), "{:?}", acts.notes);

    quantgraph_app::clear_reuse_caches();
    let fresh_e = Scheduler::new(registry).evaluate(&g, &[compare]);
    let fresh = report(&fresh_e, compare);
    assert!(!fresh.notes.iter().any(|n| n.contains("reused")), "{:?}", fresh.notes);
    let (t1, t2) = (incremental.table("per_layer").unwrap(), fresh.table("per_layer").unwrap());
    assert_eq!(t1.rows.len(), t2.rows.len());
    let db = |c: &str| c.ends_with("_db");
    for (r1, r2) in t1.rows.iter().zip(&t2.rows) {
        for ((c1, c2), col) in r1.iter().zip(r2).zip(&t1.columns) {
            match (c1.as_f64(), c2.as_f64()) {
                (Some(x), Some(y)) if db(col) => assert!((x - y).abs() <= 1e-4, "{col}: {r1:?} vs {r2:?}"),
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-5 * y.abs().max(1e-12), "{col}: {r1:?} vs {r2:?}"),
                _ => assert_eq!(c1.to_string(), c2.to_string()),
            }
        }
    }
    for (k, v) in &fresh.summary {
        let tol = if k.ends_with("_db") { 1e-4 } else { 1e-9 };
        assert!((incremental.summary[k] - v).abs() <= tol, "{k}: {} vs {v}", incremental.summary[k]);
    }
    let Some(Value::Activations(fresh_acts)) = fresh_e.outputs(probe).and_then(|o| o.get("activations")).cloned()
    else {
        panic!()
    };
    for (name, t) in &acts.tensors {
        let f = &fresh_acts.tensors[name];
        assert!((t.stats.mean - f.stats.mean).abs() <= 1e-6 * f.stats.mean.abs().max(1e-9), "{name}");
        assert_eq!(t.stats.histogram.counts.len(), f.stats.histogram.counts.len(), "{name}");
        // The histogram's range follows the (edited) Q/DQ pair that reads the tensor.
        assert_eq!(
            (t.stats.histogram.lo, t.stats.histogram.hi),
            (f.stats.histogram.lo, f.stats.histogram.hi),
            "{name}"
        );
        assert_eq!(t.stats.histogram.counts, f.stats.histogram.counts, "{name}");
    }
}

#[test]
fn probes_whose_pass_the_comparator_runs_get_what_a_probe_alone_gets() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = load_default(&registry);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 80.into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    quantgraph_app::clear_reuse_caches();
    // The default graph: the comparator runs both probes' passes within its own.
    let fused = Scheduler::new(registry.clone()).evaluate(&g, &[compare]);
    let fused_report = report(&fused, compare);
    for label in ["probe_fp32", "probe_int8"] {
        let probe = g.find_node(label).unwrap();
        quantgraph_app::clear_reuse_caches();
        // Asked for alone, a probe runs its own pass.
        let alone = Scheduler::new(registry.clone()).evaluate(&g, &[probe]);
        let get = |e: &quantgraph_nodes::Evaluation| match e.outputs(probe).and_then(|o| o.get("activations")) {
            Some(Value::Activations(a)) => a.clone(),
            other => panic!("{label}: {other:?}"),
        };
        let (f, a) = (get(&fused), get(&alone));
        assert!(!f.is_pending() && f.pending.is_none(), "{label}: the evaluation reports the finished value");
        assert!(a.pending.is_none());
        assert_eq!(f.predictions, a.predictions, "{label}");
        assert_eq!(f.tensors.keys().collect::<Vec<_>>(), a.tensors.keys().collect::<Vec<_>>(), "{label}");
        for (name, t) in &f.tensors {
            let (x, y) = (&t.stats, &a.tensors[name].stats);
            assert!(x.count > 0 && x.count == y.count, "{label} {name}: {} vs {} values", x.count, y.count);
            let close = |p: f64, q: f64| (p - q).abs() <= 1e-6 * q.abs().max(1e-6);
            assert!(close(x.mean, y.mean) && close(x.std, y.std), "{label} {name}: {x:?} vs {y:?}");
            assert!(close(f64::from(x.min), f64::from(y.min)) && close(f64::from(x.max), f64::from(y.max)));
            assert_eq!(x.histogram, y.histogram, "{label} {name}");
            assert_eq!(t.tensor.shape, a.tensors[name].tensor.shape, "{label} {name}");
        }
        // The comparator's accuracy is that of the probe's predictions.
        let acc = a.predictions.as_ref().and_then(|p| p.accuracy()).unwrap();
        let key = if label == "probe_fp32" { "accuracy_a" } else { "accuracy_b" };
        assert!((fused_report.summary[key] - acc).abs() < 1e-12, "{key}: {:?} vs {acc}", fused_report.summary);
    }
}
