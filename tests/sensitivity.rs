//! The Sensitivity Sweep on the project's ResNet8: every layer's two variants, a sorted
//! table, and a mixed-precision model that really has the accuracy the table claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::value::{Cell, Report};
use quantgraph_nodes::{Scheduler, Value};
use quantgraph_onnx::{proto, sensitivity};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cifar_dir() -> PathBuf {
    std::env::var_os("QUANTGRAPH_CIFAR10").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data/cifar10"))
}

fn model(g: &mut Graph, registry: &quantgraph_nodes::NodeRegistry, path: &std::path::Path) -> NodeId {
    let m = g.add_node(registry, "onnx.model", [0.0, 0.0]).unwrap();
    g.set_param(m, "path", path.to_string_lossy().as_ref().into()).unwrap();
    m
}

fn dataset(g: &mut Graph, registry: &quantgraph_nodes::NodeRegistry, n: usize) -> NodeId {
    let ds = g.add_node(registry, "dataset.cifar10", [0.0, 0.0]).unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "count", n.into()).unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    ds
}

/// Held by tests that forget the sweep's remembered variants or count on them.
static MEMO_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn num(r: &Report, table: &str, row: &[Cell], col: &str) -> f64 {
    row[r.table(table).unwrap().column(col).unwrap()].as_f64().unwrap()
}

/// Every quantizer group removed: the model computes what the FP32 model does (float
/// weights from it, activations unquantized).
#[test]
fn removing_every_group_gives_the_fp32_model() {
    let (groups, convs) = every_group_removed_equals_fp32("models/resnet8_fp32.onnx", "models/resnet8_int8_qdq.onnx");
    assert!(groups >= 12, "{groups}");
    assert_eq!(convs, 9);
    // ORT's quantize_static folded a Clip(0, 6) and a Clip(1, 6) into Q/DQ pairs there: both
    // come back with their own bounds.
    let (groups, convs) = every_group_removed_equals_fp32(
        "tests/fixtures/calibrate/op_mix_fp32.onnx",
        "tests/fixtures/calibrate/op_mix_qdq.onnx",
    );
    assert!(groups >= 9, "{groups}");
    assert_eq!(convs, 4);
}

/// The sweep's groups of a QDQ model (their count, and how many are Convs), after checking
/// that the variant with all of them removed gives the FP32 model's logits to the bit.
fn every_group_removed_equals_fp32(fp32_path: &str, qdq_path: &str) -> (usize, usize) {
    let fp32 = proto::decode_model(&std::fs::read(repo().join(fp32_path)).unwrap()).unwrap();
    let qdq_bytes = std::fs::read(repo().join(qdq_path)).unwrap();
    let qdq = proto::decode_model(&qdq_bytes).unwrap();
    let (groups, notes) = sensitivity::groups(&qdq, &fp32, true).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let convs = groups.iter().filter(|g| g.op_type == "Conv").count();
    let all: Vec<&sensitivity::Group> = groups.iter().collect();
    let float = sensitivity::without(&qdq_bytes, &all).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("float.onnx"), &float).unwrap();

    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = Graph::new();
    let ds = dataset(&mut g, &registry, 64);
    let mut probes = Vec::new();
    for path in [repo().join(fp32_path), dir.path().join("float.onnx")] {
        let m = model(&mut g, &registry, &path);
        let p = g.add_node(&registry, "onnx.layer_probe", [0.0, 0.0]).unwrap();
        g.set_param(p, "capture", "outputs".into()).unwrap();
        g.connect(&registry, PortRef::new(m, "model"), PortRef::new(p, "model")).unwrap();
        g.connect(&registry, PortRef::new(ds, "dataset"), PortRef::new(p, "dataset")).unwrap();
        probes.push(p);
    }
    let e = Scheduler::new(registry).evaluate(&g, &probes);
    let logits: Vec<Vec<f32>> = probes
        .iter()
        .map(|p| match e.outputs(*p).and_then(|o| o.get("activations")) {
            Some(Value::Activations(a)) => a.tensors["logits"].tensor.data.clone(),
            other => panic!("{other:?} {:?}", e.outcomes.get(p)),
        })
        .collect();
    let max = logits[0].iter().zip(&logits[1]).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    // The removed pairs' dead nodes are pruned, so the model is the FP32 one, to the bit.
    assert_eq!(max, 0.0, "{qdq_path}: max |FP32 − all groups in float| = {max}");
    assert!(logits[0].len() >= 640, "{qdq_path}: {} logits", logits[0].len());
    (groups.len(), convs)
}

/// The sweep: a row per layer with both variants, sorted by what removing it gains; for two
/// layers, both variants' correct and agreeing counts equal those of the same variants built
/// by hand with the onnx Python API and run in Python onnxruntime
/// (tests/fixtures/sensitivity_reference.json, models/sensitivity_reference.py), and their
/// output SQNR agrees to 1e-4 dB; the mixed-precision model reaches the tolerance (or has
/// every layer in float), and probing it gives exactly the accuracy the table reports.
#[test]
fn sweep_ranks_layers_and_its_mixed_precision_model_has_the_reported_accuracy() {
    let _memo = MEMO_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    sensitivity::clear();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/sensitivity_reference.json")).unwrap(),
    )
    .unwrap();
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = Graph::new();
    let n = fixture["images"].as_u64().unwrap() as usize;
    let ds = dataset(&mut g, &registry, n);
    let a = model(&mut g, &registry, &repo().join("models/resnet8_fp32.onnx"));
    let b = model(&mut g, &registry, &repo().join("models/resnet8_int8_qdq.onnx"));
    let s = g.add_node(&registry, "onnx.sensitivity", [0.0, 0.0]).unwrap();
    g.set_param(s, "tolerance_pt", 0.0.into()).unwrap();
    g.connect(&registry, PortRef::new(a, "model"), PortRef::new(s, "fp32")).unwrap();
    g.connect(&registry, PortRef::new(b, "model"), PortRef::new(s, "qdq")).unwrap();
    g.connect(&registry, PortRef::new(ds, "dataset"), PortRef::new(s, "dataset")).unwrap();
    let p = g.add_node(&registry, "onnx.layer_probe", [0.0, 0.0]).unwrap();
    g.set_param(p, "capture", "outputs".into()).unwrap();
    g.connect(&registry, PortRef::new(s, "model"), PortRef::new(p, "model")).unwrap();
    g.connect(&registry, PortRef::new(ds, "dataset"), PortRef::new(p, "dataset")).unwrap();
    let sched = Scheduler::new(registry);
    let e = sched.evaluate(&g, &[p]);
    let Some(Value::Table(r)) = e.outputs(s).and_then(|o| o.get("report")).cloned() else {
        panic!("{:?}", e.outcomes.get(&s))
    };
    let t = r.table("sensitivity").unwrap();
    assert!(t.rows.len() >= 12);
    assert_eq!(r.summary["accuracy_fp32"], fixture["fp32"]["correct"].as_f64().unwrap() / n as f64);
    assert_eq!(r.summary["accuracy_int8"], fixture["int8"]["correct"].as_f64().unwrap() / n as f64);
    let mut checked = 0;
    for want in fixture["variants"].as_array().unwrap() {
        let layer = want["layer"].as_str().unwrap();
        let prefix = if want["variant"] == "only" { "only" } else { "all_but" };
        let row = t.rows.iter().find(|row| row[0].to_string() == layer).unwrap();
        let pct = |x: &serde_json::Value| (x.as_f64().unwrap() / n as f64 * 10000.0).round() / 100.0;
        assert_eq!(
            num(&r, "sensitivity", row, &format!("{prefix}_acc_pct")),
            pct(&want["correct"]),
            "{layer} {prefix}"
        );
        assert_eq!(
            num(&r, "sensitivity", row, &format!("{prefix}_agree_pct")),
            pct(&want["agree_with_fp32"]),
            "{layer} {prefix}"
        );
        // Float rounding of ONNX Runtime's kernels differs between the CPU that made the
        // reference (AVX-512) and others (AVX2): a few 1e-4 dB over the dataset.
        let sqnr = num(&r, "sensitivity", row, &format!("{prefix}_sqnr_db"));
        let want_sqnr = want["output_sqnr_db"].as_f64().unwrap();
        assert!((sqnr - want_sqnr).abs() < 2e-3, "{layer} {prefix}: {sqnr} vs {want_sqnr}");
        checked += 1;
    }
    assert_eq!(checked, 4);
    let gains: Vec<f64> = t.rows.iter().map(|row| num(&r, "sensitivity", row, "all_but_gain_pt")).collect();
    assert!(gains.windows(2).all(|w| w[0] >= w[1]), "sorted by gain: {gains:?}");
    for row in &t.rows {
        for col in ["only_acc_pct", "all_but_acc_pct", "only_agree_pct", "all_but_agree_pct"] {
            let v = num(&r, "sensitivity", row, col);
            assert!((0.0..=100.0).contains(&v), "{col} {v}");
        }
        assert!(num(&r, "sensitivity", row, "only_sqnr_db") > 10.0);
    }
    let fp32 = r.summary["accuracy_fp32"];
    let mixed = r.summary["accuracy_mixed"];
    let in_float = r.summary["groups_in_float"] as usize;
    assert!(mixed >= fp32 - 1e-12 || in_float == t.rows.len(), "{:?}", r.summary);
    let m = r.table("mixed_precision").unwrap();
    assert_eq!(m.rows.len(), in_float + 1);
    let Some(Value::Activations(acts)) = e.outputs(p).and_then(|o| o.get("activations")).cloned() else { panic!() };
    let probed = acts.predictions.as_ref().unwrap().accuracy().unwrap();
    assert!((probed - mixed).abs() < 1e-12, "probe of the mixed-precision model {probed} vs table {mixed}");

    // A second evaluation after a change elsewhere reruns nothing it remembers.
    g.set_param(s, "tolerance_pt", 100.0.into()).unwrap();
    let e = sched.evaluate(&g, &[s]);
    let Some(Value::Table(r2)) = e.outputs(s).and_then(|o| o.get("report")).cloned() else { panic!() };
    let note = r2.notes.iter().find(|n| n.contains("remembered")).unwrap();
    let words: Vec<&str> = note.split_whitespace().collect();
    let pos = words.iter().position(|w| *w == "remembered").unwrap();
    assert_eq!(words[pos - 1], words[0].trim_end_matches(';'), "every variant remembered: {note}");
    assert_eq!(r2.summary["groups_in_float"], 0.0);
}

/// The example graph `assets/graphs/fix-int8.qgraph` loads without warnings and evaluates
/// every node on a small slice.
#[test]
fn the_fix_int8_example_graph_runs() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let (mut g, report) =
        quantgraph_nodes::file::load(&repo().join("assets/graphs/fix-int8.qgraph"), &registry).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", 40.into()).unwrap();
    let cal = g.find_node("calibration").unwrap();
    g.set_param(cal, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(cal, "count", 32.into()).unwrap();
    let e = Scheduler::new(registry.clone()).evaluate(&g, &[]);
    for (id, o) in &e.outcomes {
        assert!(
            matches!(o, quantgraph_nodes::scheduler::NodeOutcome::Ready { .. }),
            "{}: {o:?}",
            g.display_name(&registry, *id)
        );
    }
    // The per-layer chart has FP32 and full INT8 as reference lines, at the sweep's values.
    let sweep = g.find_node("sweep").unwrap();
    let Some(Value::Table(r)) = e.outputs(sweep).and_then(|o| o.get("report")) else { panic!() };
    let plot = g.find_node("sensitivity_plot").unwrap();
    let Some(Value::Plot(p)) = e.outputs(plot).and_then(|o| o.get("plot")) else { panic!() };
    assert_eq!(
        p.levels,
        vec![
            (r.summary["accuracy_fp32_pct"], "accuracy_fp32_pct".to_owned()),
            (r.summary["accuracy_int8_pct"], "accuracy_int8_pct".to_owned())
        ]
    );
    assert_eq!(r.summary["accuracy_fp32_pct"], 100.0 * r.summary["accuracy_fp32"]);
    // Sweep → scale search → override → probe: the override applied the search's edits.
    let over = g.find_node("override").unwrap();
    let Some(Value::Table(c)) = e.outputs(over).and_then(|o| o.get("changes")) else { panic!() };
    let search = g.find_node("scale_search").unwrap();
    let Some(Value::Table(s)) = e.outputs(search).and_then(|o| o.get("edits")) else { panic!() };
    let edited = s.table("edits").unwrap().rows.len();
    assert_eq!(c.table("changes").unwrap().rows.iter().filter(|r| r[2].to_string() == "scale").count(), edited);
    // The search has the FP32 model: its pairs are scored against FP32's tensors.
    let t = s.table("search").unwrap();
    let against = t.column("error_against").unwrap();
    assert!(t.rows.iter().filter(|r| r[against].to_string() == "FP32").count() >= 9, "{:?}", s.notes);
}

/// `quantgraph export` of the sweep's mixed-precision model writes the model and a sidecar
/// with the accuracy the sweep measured and the dataset slice it used; of a model without an
/// accuracy of its own (an override), with the accuracy of the probe that runs it.
#[test]
fn exporting_the_mixed_precision_model_writes_a_sidecar_with_its_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.onnx");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_quantgraph"))
        .arg("export")
        .arg(repo().join("assets/graphs/fix-int8.qgraph"))
        .arg("sweep")
        .arg(&out)
        .args(["--set", &format!("cifar10_test.path={}", cifar_dir().display())])
        .args(["--set", "cifar10_test.per_class=0", "--set", "cifar10_test.count=40"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert!(proto::decode_model(&bytes).is_ok());
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("mixed.onnx.json")).unwrap()).unwrap();
    let summary = &sidecar["results"]["report"]["summary"];
    assert!(summary["accuracy_mixed"].as_f64().is_some(), "{sidecar}");
    let ds = sidecar["graph"].as_array().unwrap().iter().find(|n| n["kind"] == "dataset.cifar10").unwrap();
    assert_eq!(ds["params"]["count"], 40);
    // No probe reads the sweep's model directly: nothing measured beside the sweep's own.
    assert_eq!(sidecar["measured"], serde_json::json!([]), "{sidecar}");

    // The repaired model (the override after scale search) has no accuracy of its own: the
    // sidecar takes it from the probe that runs it, over that probe's 40 images.
    let out = dir.path().join("repaired.onnx");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_quantgraph"))
        .arg("export")
        .arg(repo().join("assets/graphs/fix-int8.qgraph"))
        .arg("override")
        .arg(&out)
        .args(["--set", &format!("cifar10_test.path={}", cifar_dir().display())])
        .args(["--set", &format!("calibration.path={}", cifar_dir().display())])
        .args(["--set", "cifar10_test.per_class=0", "--set", "cifar10_test.count=40"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("repaired.onnx.json")).unwrap()).unwrap();
    let measured = sidecar["measured"].as_array().unwrap();
    assert_eq!(measured.len(), 1, "{sidecar}");
    assert!(measured[0]["name"].as_str().unwrap().contains("probe_mixed"), "{sidecar}");
    assert_eq!(measured[0]["samples"], 40);
    let acc = measured[0]["top1_accuracy"].as_f64().unwrap();
    assert!((0.3..=1.0).contains(&acc) && (acc * 40.0 - (acc * 40.0).round()).abs() < 1e-9, "{acc}");
}

/// Variants run from the shared prefixes (the full QDQ model's and the all-float model's
/// values at cut points, kept once) give exactly what running each variant whole gives:
/// every cell of both tables and every summary figure, to the bit; and most variants do run
/// that way on this model.
#[test]
fn variants_run_from_shared_prefixes_equal_whole_runs() {
    let _memo = MEMO_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = Graph::new();
    let ds = dataset(&mut g, &registry, 300);
    let a = model(&mut g, &registry, &repo().join("models/resnet8_fp32.onnx"));
    let b = model(&mut g, &registry, &repo().join("models/resnet8_int8_qdq.onnx"));
    let s = g.add_node(&registry, "onnx.sensitivity", [0.0, 0.0]).unwrap();
    // A batch that does not divide the samples: the last, shorter batch runs shared too.
    g.set_param(s, "batch_size", 32.into()).unwrap();
    g.connect(&registry, PortRef::new(a, "model"), PortRef::new(s, "fp32")).unwrap();
    g.connect(&registry, PortRef::new(b, "model"), PortRef::new(s, "qdq")).unwrap();
    g.connect(&registry, PortRef::new(ds, "dataset"), PortRef::new(s, "dataset")).unwrap();
    let mut reports = Vec::new();
    for shared_mb in [0usize, 256] {
        g.set_param(s, "shared_mb", shared_mb.into()).unwrap();
        // Other tests in this binary may have remembered these variants: forget them.
        sensitivity::clear();
        let e = Scheduler::new(registry.clone()).evaluate(&g, &[s]);
        let Some(Value::Table(r)) = e.outputs(s).and_then(|o| o.get("report")).cloned() else {
            panic!("{:?}", e.outcomes.get(&s))
        };
        reports.push(r);
    }
    let (whole, shared) = (&reports[0], &reports[1]);
    assert_eq!(whole.summary["variants_shared"], 0.0, "{:?}", whole.summary);
    let run = shared.summary["variants_run"];
    assert!(run >= 31.0, "{:?}", shared.summary);
    // 23 of ResNet8's 31: the 'only' variants of stage 2 and later run from cuts of the FP32
    // model, whose names differ from the variants' (found by digest; by name only 14 would).
    assert!(shared.summary["variants_shared"] >= 20.0, "{:?}", shared.summary);
    // The FP32 model computes what the all-float variant does: its one run was the
    // reference and that prefix.
    assert!(
        shared.notes.iter().any(|n| n.starts_with("The FP32 model computes what the all-float")),
        "{:?}",
        shared.notes
    );
    assert!(!whole.notes.iter().any(|n| n.starts_with("The FP32 model computes what the all-float")));
    for key in ["accuracy_fp32", "accuracy_int8", "accuracy_mixed", "groups_in_float"] {
        assert_eq!(whole.summary[key].to_bits(), shared.summary[key].to_bits(), "{key}");
    }
    for name in ["sensitivity", "mixed_precision"] {
        let (x, y) = (whole.table(name).unwrap(), shared.table(name).unwrap());
        assert_eq!(x.rows.len(), y.rows.len(), "{name}");
        for (p, q) in x.rows.iter().zip(&y.rows) {
            assert_eq!(format!("{p:?}"), format!("{q:?}"), "{name}");
        }
    }
}

/// The sweep's report, from an evaluation.
fn sweep_report(e: &quantgraph_nodes::Evaluation, s: NodeId) -> Arc<Report> {
    match e.outputs(s).and_then(|o| o.get("report")).cloned() {
        Some(Value::Table(r)) => r,
        _ => panic!("{:?}", e.outcomes.get(&s)),
    }
}

/// A graph FP32 + INT8 (through a QDQ Override) + the first `n` test images → sweep.
fn sweep_graph(registry: &quantgraph_nodes::NodeRegistry, n: usize) -> (Graph, NodeId, NodeId) {
    let mut g = Graph::new();
    let ds = dataset(&mut g, registry, n);
    let a = model(&mut g, registry, &repo().join("models/resnet8_fp32.onnx"));
    let b = model(&mut g, registry, &repo().join("models/resnet8_int8_qdq.onnx"));
    let over = g.add_node(registry, "onnx.qdq_override", [0.0, 0.0]).unwrap();
    let s = g.add_node(registry, "onnx.sensitivity", [0.0, 0.0]).unwrap();
    // No mixed-precision steps: every variant is one of the sweep's 2n + 1.
    g.set_param(s, "tolerance_pt", 100.0.into()).unwrap();
    g.connect(registry, PortRef::new(b, "model"), PortRef::new(over, "model")).unwrap();
    g.connect(registry, PortRef::new(a, "model"), PortRef::new(s, "fp32")).unwrap();
    g.connect(registry, PortRef::new(over, "model"), PortRef::new(s, "qdq")).unwrap();
    g.connect(registry, PortRef::new(ds, "dataset"), PortRef::new(s, "dataset")).unwrap();
    (g, s, over)
}

/// Progress names the layer ("layer k of n: …") and the variant count; after an edit of one
/// Q/DQ pair the sweep runs only the variants in which that pair is still quantized (the
/// full model, "all but" the layers that do not read it, both variants of those that do)
/// and takes the others ("only" a layer that does not read it) from memory; the result
/// equals a sweep run afresh.
#[test]
fn a_one_pair_edit_reruns_only_the_variants_that_quantize_it() {
    let _memo = MEMO_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    sensitivity::clear();
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let (mut g, s, over) = sweep_graph(&registry, 120);
    let sched = Scheduler::new(registry.clone());
    let h = sched.request(&g, &[s]);
    let mut messages: Vec<String> = Vec::new();
    while let Some(e) = h.next_event(std::time::Duration::from_secs(120)) {
        match e {
            quantgraph_nodes::Event::Progress { node, message, .. } if node == s => messages.push(message),
            quantgraph_nodes::Event::Done | quantgraph_nodes::Event::Superseded => break,
            _ => {}
        }
    }
    let first = sched.evaluate(&g, &[s]);
    let r = sweep_report(&first, s);
    let layers = r.table("sensitivity").unwrap().rows.len();
    let total = 2 * layers + 1;
    assert_eq!(r.summary["variants_run"], total as f64, "{:?}", r.summary);
    for k in 1..=layers {
        let only = format!("layer {k} of {layers}: only '");
        let all_but = format!("layer {k} of {layers}: all but '");
        assert!(messages.iter().any(|m| m.starts_with(&only)), "no '{only}…' in {messages:?}");
        assert!(messages.iter().any(|m| m.starts_with(&all_but)), "no '{all_but}…' in {messages:?}");
    }
    assert!(messages.iter().any(|m| m.ends_with(&format!("({total}/{total})"))), "{messages:?}");

    g.set_param(over, "edits", serde_json::json!([{"tensor": "/Relu_output_0", "scale": 0.05}])).unwrap();
    let edited = sweep_report(&sched.evaluate(&g, &[s]), s);
    // The pair's tensor feeds two layers (stage 1's first conv and its Add): each of them
    // lists it, and its "only" and "all but" variants both still quantize it for the other.
    let t = r.table("sensitivity").unwrap();
    let col = t.column("quantizers").unwrap();
    let reached = t
        .rows
        .iter()
        .filter(|row| row[col].to_string().split(", ").any(|q| q == "/Relu_output_0" || q == "/Relu_output_0__act"))
        .count();
    assert_eq!(reached, 2, "{:?}", t.rows);
    assert_eq!(edited.summary["variants_run"], total as f64);
    assert_eq!(edited.summary["variants_remembered"], (layers - reached) as f64, "{:?}", edited.summary);
    // The edit reached the accuracy of the full model and of some variants.
    let changed = |name: &str| {
        let (x, y) = (r.table(name).unwrap(), edited.table(name).unwrap());
        x.rows.iter().zip(&y.rows).any(|(p, q)| p != q)
    };
    assert!(changed("sensitivity"));

    sensitivity::clear();
    let fresh = sweep_report(&Scheduler::new(registry).evaluate(&g, &[s]), s);
    assert_eq!(fresh.summary["variants_remembered"], 0.0);
    for name in ["sensitivity", "mixed_precision"] {
        let (x, y) = (edited.table(name).unwrap(), fresh.table(name).unwrap());
        assert_eq!(format!("{:?}", x.rows), format!("{:?}", y.rows), "{name}");
    }
    for key in ["accuracy_fp32", "accuracy_int8", "accuracy_mixed"] {
        assert_eq!(edited.summary[key].to_bits(), fresh.summary[key].to_bits(), "{key}");
    }
}

/// Grouped per tensor, every quantizer of the per-layer sweep is a row of its own.
#[test]
fn per_tensor_grouping_splits_layers_into_their_quantizers() {
    let _memo = MEMO_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let (mut g, s, _) = sweep_graph(&registry, 48);
    let sched = Scheduler::new(registry);
    let quantizers = |r: &Report| -> Vec<Vec<String>> {
        let t = r.table("sensitivity").unwrap();
        let col = t.column("quantizers").unwrap();
        t.rows.iter().map(|row| row[col].to_string().split(", ").map(str::to_owned).collect()).collect()
    };
    let by_layer = quantizers(&sweep_report(&sched.evaluate(&g, &[s]), s));
    g.set_param(s, "grouping", "tensor".into()).unwrap();
    let r = sweep_report(&sched.evaluate(&g, &[s]), s);
    let by_tensor = quantizers(&r);
    assert!(r.headline.as_deref().unwrap_or_default().contains("tensors in float"), "{:?}", r.headline);
    assert!(by_tensor.iter().all(|q| q.len() == 1), "{by_tensor:?}");
    // A tensor two layers read is in both layers' groups, once in the per-tensor sweep.
    let mut want: Vec<String> = by_layer.into_iter().flatten().collect();
    let mut got: Vec<String> = by_tensor.into_iter().flatten().collect();
    want.sort();
    want.dedup();
    got.sort();
    assert_eq!(got, want, "the same quantizers, one per row");
    assert!(got.len() > 15, "ResNet8 has more quantizers than layers: {}", got.len());
    assert_eq!(r.summary["variants_run"], (2 * got.len() + 1) as f64);
}

/// Esc during a sweep stops it within a batch or two, not at the end of the sweep.
#[test]
fn cancelling_a_sweep_stops_it_mid_way() {
    let _memo = MEMO_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    sensitivity::clear();
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let (g, s, _) = sweep_graph(&registry, 4000);
    let sched = Scheduler::new(registry);
    let h = sched.request(&g, &[s]);
    // Cancel once a few variants are done (an event, not a guess at timing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match h.next_event(std::time::Duration::from_secs(60)) {
            Some(quantgraph_nodes::scheduler::Event::Progress { node, message, .. })
                if node == s && message.ends_with("(3/31)") =>
            {
                break
            }
            Some(_) => assert!(std::time::Instant::now() < deadline, "the sweep never got to its third variant"),
            None => panic!("the sweep never got to its third variant"),
        }
    }
    let asked = std::time::Instant::now();
    sched.cancel();
    let e = h.wait();
    let took = asked.elapsed();
    assert!(matches!(e.outcomes[&s], quantgraph_nodes::NodeOutcome::Cancelled), "{:?}", e.outcomes[&s]);
    // A whole variant over 4,000 images takes over a second of a core here; a batch a few
    // milliseconds.
    assert!(took < std::time::Duration::from_millis(600), "stopping took {took:?}");
}
