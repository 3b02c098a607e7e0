//! Models from other exporters and quantizers (tests/fixtures/foreign, made by
//! models/foreign.py): QuantGraph pairs every layer with the right one, measures it as numpy
//! does on the same arrays, counts top-1 as Python onnxruntime does, and says "unpaired"
//! rather than printing a number for tensors that are not the same quantity.
//!
//! The fixtures differ from the project's models the way real ones do: unfolded
//! BatchNormalization, shortcut branch listed first with the Add's inputs swapped, TF-style
//! names, NHWC input and Transposes around ops, Reshape for Flatten, MatMul+Add for Gemm, no
//! value_info; an int8 NHWC input; ORT's QOperator format (QLinearConv, QLinearAdd, QGemm, with
//! int8 activations); per-channel weights.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, NodeId, PortRef};
use quantgraph_nodes::scheduler::NodeOutcome;
use quantgraph_nodes::value::{Report, Table};
use quantgraph_nodes::{file, Scheduler, Value};

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

/// The default graph with models A and B swapped for `a` and `b`, on the first `n` images.
fn graph(registry: &quantgraph_nodes::NodeRegistry, a: &str, b: &str, n: usize) -> Graph {
    let (mut g, report) = file::load(&repo().join("assets/graphs/default.qgraph"), registry).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let ds = g.find_node("cifar10_test").unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    g.set_param(ds, "count", n.into()).unwrap();
    for (node, model) in [("fp32", a), ("int8", b)] {
        let id = g.find_node(node).unwrap();
        g.set_param(id, "path", model_path(model).to_string_lossy().as_ref().into()).unwrap();
    }
    // B straight into its probe (the QDQ Override wants a QDQ model; B may be float).
    let (int8, probe) = (g.find_node("int8").unwrap(), g.find_node("probe_int8").unwrap());
    g.connect(registry, PortRef::new(int8, "model"), PortRef::new(probe, "model")).unwrap();
    g
}

fn model_path(name: &str) -> PathBuf {
    let ours = repo().join("models").join(name);
    if ours.is_file() {
        ours
    } else {
        repo().join("tests/fixtures/foreign").join(name)
    }
}

fn report(e: &quantgraph_nodes::Evaluation, g: &Graph, node: NodeId) -> Arc<Report> {
    match e.outputs(node).and_then(|o| o.get("report")) {
        Some(Value::Table(r)) => r.clone(),
        _ => {
            let failed: Vec<String> = e
                .outcomes
                .iter()
                .filter(|(_, o)| !matches!(o, NodeOutcome::Ready { .. }))
                .map(|(id, o)| format!("{}: {o:?}", g.node(*id).and_then(|n| n.label.clone()).unwrap_or_default()))
                .collect();
            panic!("no report: {failed:#?}")
        }
    }
}

fn text(t: &Table, row: &[quantgraph_nodes::value::Cell], col: &str) -> String {
    row[t.column(col).unwrap()].to_string()
}

fn num(t: &Table, row: &[quantgraph_nodes::value::Cell], col: &str) -> f64 {
    row[t.column(col).unwrap()].as_f64().unwrap()
}

/// Every known correspondence of every fixture pair: the row for A's tensor pairs it with the
/// right tensor of B, its SQNR equals numpy's on the same arrays, and the top-1 counts equal
/// Python onnxruntime's. Tolerance 1e-4 dB: both sides are float64 sums over the same
/// float32 activations from the same ONNX Runtime version (measured: < 1e-5 dB); a wrong
/// pair is off by several dB.
#[test]
fn foreign_models_pair_every_layer_correctly_and_match_numpy() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let reference = json(&repo().join("tests/fixtures/foreign/reference.json"));
    let n = reference["images"].as_u64().unwrap() as usize;
    for c in reference["correspondence"].as_array().unwrap() {
        let (a, b) = (c["a_model"].as_str().unwrap(), c["b_model"].as_str().unwrap());
        let g = graph(&registry, a, b, n);
        let compare = g.find_node("compare").unwrap();
        let e = Scheduler::new(registry.clone()).evaluate(&g, &[compare]);
        let r = report(&e, &g, compare);
        let t = r.table("per_layer").unwrap();
        for (model, key) in [(a, "correct_a"), (b, "correct_b")] {
            assert_eq!(
                r.summary[key],
                common::reference_on_this_cpu(&reference, model)["correct"].as_f64().unwrap(),
                "{a} vs {b}: {key} ({model})"
            );
        }
        for want in c["entries"].as_array().unwrap() {
            let (ta, tb, layer) =
                (want["a"].as_str().unwrap(), want["b"].as_str().unwrap(), want["layer"].as_str().unwrap());
            let row = t.rows.iter().find(|row| text(t, row, "tensor") == ta).unwrap_or_else(|| {
                let unpaired = r.table("unpaired").unwrap();
                panic!("{a} vs {b}: {layer} ({ta}) has no row; unpaired: {:#?}", unpaired.rows)
            });
            assert_eq!(text(t, row, "b_tensor"), tb, "{a} vs {b}: {layer} paired with the wrong tensor");
            let (got, exp) = (num(t, row, "sqnr_db"), want["sqnr_db"].as_f64().unwrap());
            if exp > 100.0 {
                // Two float models that compute the same: their difference is float rounding,
                // which differs between CPUs (ONNX Runtime's kernels for AVX2 and AVX-512 sum
                // in other orders), so only "equal up to rounding" is the same everywhere.
                assert!(got > 100.0, "{a} vs {b}: {layer} SQNR {got}: more than rounding apart (numpy: {exp})");
            } else {
                // A quantized model: the float rounding of the CPU's kernels moves a few values
                // across a rounding edge of their quantization step, and that grows layer by
                // layer (up to 0.01 dB on 64 images between AVX-512 and AVX2 kernels); a wrong
                // pairing or layout is tens of dB off (and pairings are checked by name above).
                assert!((got - exp).abs() < 0.05, "{a} vs {b}: {layer} SQNR {got} vs numpy {exp}");
            }
            if want["layout"] == "nhwc" {
                assert!(text(t, row, "pairing").contains("channels-last"), "{}", text(t, row, "pairing"));
            }
        }
        // Nothing measured outside the known correspondence but the model input.
        let known: Vec<&str> = c["entries"].as_array().unwrap().iter().map(|e| e["a"].as_str().unwrap()).collect();
        for row in &t.rows {
            let ta = text(t, row, "tensor");
            let how = text(t, row, "pairing");
            assert!(
                known.contains(&ta.as_str()) || how == "model input" || how.starts_with("ORT QDQ naming"),
                "{a} vs {b}: unexpected pair {ta} ↔ {} ({how})",
                text(t, row, "b_tensor")
            );
        }
    }
}

/// Tensors that pair by dataflow but are not the same quantity are rejected on the first
/// batch and listed as unpaired with the reason, not measured: here B's probe sees other
/// images (the next 16), so every pair is structurally right and numerically unrelated.
#[test]
fn unrelated_values_are_unpaired_not_measured() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = graph(&registry, "resnet8_fp32.onnx", "foreign_int8_qdq.onnx", 16);
    // B's probe gets a different dataset: the next 16 images. The graphs pair layer for
    // layer, but no activation is the same quantity as its partner.
    let ds_b = g.add_node(&registry, "dataset.cifar10", [0.0, 0.0]).unwrap();
    let ds_a = g.find_node("cifar10_test").unwrap();
    for (k, v) in g.node(ds_a).unwrap().params.clone() {
        g.set_param(ds_b, &k, v).unwrap();
    }
    g.set_param(ds_b, "offset", 16.into()).unwrap();
    let probe_b = g.find_node("probe_int8").unwrap();
    g.connect(&registry, PortRef::new(ds_b, "dataset"), PortRef::new(probe_b, "dataset")).unwrap();
    let compare = g.find_node("compare").unwrap();
    let e = Scheduler::new(registry).evaluate(&g, &[compare]);
    let r = report(&e, &g, compare);
    let t = r.table("per_layer").unwrap();
    let unpaired = r.table("unpaired").unwrap();
    let rejected =
        unpaired.rows.iter().filter(|row| text(unpaired, row, "reason").contains("failed verification")).count();
    assert!(rejected >= 2 * 10, "most layers should fail verification: {rejected}; rows left {:?}", t.rows.len());
    assert!(t.rows.len() <= 4, "{:#?}", t.rows);
}

/// Run a QDQ Override with `edits` on `model` and return the model it writes (re-read from
/// its bytes, so its Q/DQ table shows what is in the file ONNX Runtime loaded).
fn overridden(
    registry: &Arc<quantgraph_nodes::NodeRegistry>,
    model: &str,
    edits: serde_json::Value,
) -> Result<Arc<quantgraph_nodes::value::ModelValue>, String> {
    let mut g = Graph::new();
    let m = g.add_node(registry, "onnx.model", [0.0, 0.0]).unwrap();
    g.set_param(m, "path", model_path(model).to_string_lossy().as_ref().into()).unwrap();
    let o = g.add_node(registry, "onnx.qdq_override", [0.0, 0.0]).unwrap();
    g.connect(registry, PortRef::new(m, "model"), PortRef::new(o, "model")).unwrap();
    g.set_param(o, "edits", edits).unwrap();
    let e = Scheduler::new(registry.clone()).evaluate(&g, &[o]);
    match e.outputs(o).and_then(|x| x.get("model")) {
        Some(Value::Model(v)) => Ok(v.clone()),
        _ => Err(format!("{:?}", e.outcomes.get(&o))),
    }
}

/// A QOperator model's scales and zero points are the QLinear ops' inputs: the Q/DQ table
/// lists them (input, weight, output of every QLinearConv), and an override writes a model
/// ONNX Runtime loads with exactly the requested values, for the op that makes the tensor
/// and the op that reads it.
#[test]
fn qoperator_scales_are_listed_and_overridden() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let original = overridden(&registry, "resnet8_qop.onnx", serde_json::json!([])).unwrap();
    let convs = original.info.nodes.iter().filter(|n| n.op_type == "QLinearConv").count();
    assert_eq!(convs, 9);
    for role in ["input", "weight", "output"] {
        let n = original.info.qdq.iter().filter(|e| e.op_type == format!("QLinearConv {role}")).count();
        assert_eq!(n, convs, "QLinearConv {role} entries");
    }
    let out = original.info.qdq.iter().find(|e| e.op_type == "QLinearConv output").unwrap().clone();
    let tensor = out.float_tensor.clone();
    let edited = overridden(
        &registry,
        "resnet8_qop.onnx",
        serde_json::json!([{"tensor": tensor, "scale": 0.0625, "zero_point": "-3"}]),
    )
    .unwrap();
    let touching: Vec<_> = edited.info.qdq.iter().filter(|e| e.float_tensor == tensor).collect();
    assert!(touching.len() >= 2, "the op that makes it and the op that reads it: {touching:?}");
    for e in touching {
        assert_eq!((e.scales.as_slice(), e.zero_points.as_slice()), ([0.0625f32].as_slice(), [-3].as_slice()), "{e:?}");
    }
    // Everything else as it was.
    let unchanged = |v: &quantgraph_nodes::value::ModelValue| -> Vec<(String, Vec<f32>)> {
        v.info.qdq.iter().filter(|e| e.float_tensor != tensor).map(|e| (e.op_type.clone(), e.scales.clone())).collect()
    };
    assert_eq!(unchanged(&edited), unchanged(&original));
}

/// Per-channel scales: the table gives the channel count and range; an override sets one
/// channel, or scales every channel by a factor, and nothing else moves.
#[test]
fn per_channel_scales_are_edited_one_channel_or_all() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let original = overridden(&registry, "resnet8_perchannel_qdq.onnx", serde_json::json!([])).unwrap();
    let w = original.info.qdq.iter().find(|e| e.is_weight && e.scales.len() > 1).unwrap().clone();
    let table = original.info.qdq_table();
    let row = table.rows.iter().find(|r| r[0].to_string() == w.float_tensor).unwrap();
    assert_eq!(row[table.column("channels").unwrap()].as_f64(), Some(w.scales.len() as f64));
    assert_eq!(quantgraph_nodes::value::ModelInfo::qdq_channel_table(&w).rows.len(), w.scales.len());

    let one = overridden(
        &registry,
        "resnet8_perchannel_qdq.onnx",
        serde_json::json!([{"tensor": w.float_tensor, "scale": 0.001, "channel": "3"}]),
    )
    .unwrap();
    let got = one.info.qdq.iter().find(|e| e.node == w.node).unwrap();
    let mut want = w.scales.clone();
    want[3] = 0.001;
    assert_eq!(got.scales, want);
    // The histogram view draws one channel's range.
    let (qmin, qmax) = got.qrange();
    let zp = got.zero_points.get(3).copied().unwrap_or(0);
    assert_eq!(got.channel_range(3), Some(((qmin - zp) as f32 * 0.001, (qmax - zp) as f32 * 0.001)));
    assert_eq!(got.channel_range(0).unwrap().1, (qmax - got.zero_points[0]) as f32 * w.scales[0]);

    let all = overridden(
        &registry,
        "resnet8_perchannel_qdq.onnx",
        serde_json::json!([{"tensor": w.float_tensor, "factor": 2.0}]),
    )
    .unwrap();
    let got = all.info.qdq.iter().find(|e| e.node == w.node).unwrap();
    let doubled: Vec<f32> = w.scales.iter().map(|s| (f64::from(*s) * 2.0) as f32).collect();
    assert_eq!(got.scales, doubled);

    // Rows apply in order: every channel doubled, then channel 3 set (as the editor writes
    // them when one channel is edited after all of them), and channel 3's zero point.
    let both = overridden(
        &registry,
        "resnet8_perchannel_qdq.onnx",
        serde_json::json!([
            {"tensor": w.float_tensor, "factor": 2.0},
            {"tensor": w.float_tensor, "scale": 0.001, "channel": "3"},
            {"tensor": w.float_tensor, "zero_point": "0", "channel": "3"}
        ]),
    )
    .unwrap();
    let got = both.info.qdq.iter().find(|e| e.node == w.node).unwrap();
    let mut want = doubled.clone();
    want[3] = 0.001;
    assert_eq!(got.scales, want, "the factor stays on the other channels");

    let err = overridden(
        &registry,
        "resnet8_perchannel_qdq.onnx",
        serde_json::json!([{"tensor": w.float_tensor, "scale": 0.001, "channel": "999"}]),
    )
    .unwrap_err();
    assert!(err.contains("channel 999 does not exist"), "{err}");
}

/// Two unrelated models (the project's ResNet8 against the tiny test network, same input
/// and output shapes): no layer pairs, the outputs fail verification, and the report
/// prints no per-layer number at all; the unpaired table says why for each.
#[test]
fn unrelated_models_give_unpaired_not_numbers() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let tiny = repo().join("tests/fixtures/tiny/tiny_fp32.onnx");
    let mut g = graph(&registry, "resnet8_fp32.onnx", "resnet8_fp32.onnx", 16);
    let b = g.find_node("int8").unwrap();
    g.set_param(b, "path", tiny.to_string_lossy().as_ref().into()).unwrap();
    let compare = g.find_node("compare").unwrap();
    let e = Scheduler::new(registry).evaluate(&g, &[compare]);
    let r = report(&e, &g, compare);
    let t = r.table("per_layer").unwrap();
    assert!(t.rows.is_empty(), "{:#?}", t.rows);
    assert!(!r.summary.contains_key("min_sqnr_db"), "{:?}", r.summary);
    assert!(!r.headline.clone().unwrap_or_default().contains("SQNR"), "{:?}", r.headline);
    let u = r.table("unpaired").unwrap();
    let reasons: Vec<String> = u.rows.iter().map(|row| text(u, row, "reason")).collect();
    assert!(reasons.iter().any(|w| w.contains("failed verification")), "{reasons:#?}");
    assert!(reasons.iter().any(|w| w.contains("weights of this shape")), "{reasons:#?}");
    assert!(reasons.iter().all(|w| !w.is_empty()));
}

/// The rows of `name` for samples `want` from a full pass of a probe's stream (batch 64), as
/// a comparator would see them.
fn streamed_rows(
    acts: &quantgraph_nodes::value::Activations,
    name: &str,
    want: &[usize],
) -> Vec<(Vec<usize>, Vec<f32>)> {
    let ctx = quantgraph_nodes::EvalContext::detached(None);
    let mut it = acts.stream.as_ref().unwrap().0.open(&[name.to_owned()], 64).unwrap();
    let mut out = vec![(Vec::new(), Vec::new()); want.len()];
    while let Some(b) = it.next_batch(&ctx).unwrap() {
        for (slot, s) in out.iter_mut().zip(want) {
            if (b.start..b.start + b.rows).contains(s) {
                let row = b.row(s - b.start);
                *slot = row.tensors[name].clone();
            }
        }
    }
    out
}

/// Activation maps of a layer whose partner in B is channels-last (the foreign NHWC QDQ
/// model against our NCHW FP32): the asked sample comes first, then the flipped samples the
/// comparator lists; A's maps are A's values of that sample from a full streamed pass, and
/// B's are B's values moved to A's C×H×W order, so channel k of both is the same channel.
#[test]
fn activation_maps_show_asked_and_flipped_samples_in_a_layout() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let mut g = graph(&registry, "resnet8_fp32.onnx", "foreign_int8_qdq.onnx", 64);
    let compare = g.find_node("compare").unwrap();
    let e = Scheduler::new(registry.clone()).evaluate(&g, &[compare]);
    let r = report(&e, &g, compare);
    let t = r.table("per_layer").unwrap();
    let row = t
        .rows
        .iter()
        .find(|row| text(t, row, "pairing").contains("channels-last") && text(t, row, "tensor").contains("stage2"))
        .expect("a stage-2 pair with a channels-last partner");
    let (ta, tb) = (text(t, row, "tensor"), text(t, row, "b_tensor"));
    let flips: Vec<usize> =
        r.table("flips").unwrap().rows.iter().map(|row| row[0].as_f64().unwrap() as usize).collect();
    assert!(!flips.is_empty(), "the foreign INT8 model flips some of the 64 images");
    let asked = (0..64).find(|s| !flips.contains(s)).unwrap();

    let maps = g.add_node(&registry, "compare.activation_maps", [0.0, 0.0]).unwrap();
    for (probe, port) in [("probe_fp32", "a"), ("probe_int8", "b")] {
        let p = g.find_node(probe).unwrap();
        g.connect(&registry, PortRef::new(p, "activations"), PortRef::new(maps, port)).unwrap();
    }
    // Named by B's tensor: the pairing finds A's.
    g.set_param(maps, "tensor", tb.clone().into()).unwrap();
    g.set_param(maps, "samples", format!("{asked}, flips").into()).unwrap();
    g.set_param(maps, "max_samples", 4.into()).unwrap();
    let e = Scheduler::new(registry.clone()).evaluate(&g, &[maps]);
    let Some(Value::Plot(p)) = e.outputs(maps).and_then(|o| o.get("maps")) else {
        panic!("{:?}", e.outcomes.get(&maps))
    };
    let m = p.maps.as_ref().unwrap();
    assert_eq!((m.tensor_a.as_str(), m.tensor_b.as_str()), (ta.as_str(), tb.as_str()));
    let want: Vec<usize> = std::iter::once(asked).chain(flips.iter().copied()).take(4).collect();
    assert_eq!(m.samples.iter().map(|s| s.index).collect::<Vec<_>>(), want);
    assert_eq!(m.samples[0].why, "asked");
    assert!(m.samples[1..].iter().all(|s| s.why == "flip"));

    let acts = |probe: &str| match e.outputs(g.find_node(probe).unwrap()).and_then(|o| o.get("activations")) {
        Some(Value::Activations(a)) => a.clone(),
        _ => panic!("no activations from {probe}"),
    };
    let (a, b) = (acts("probe_fp32"), acts("probe_int8"));
    let rows_a = streamed_rows(&a, &ta, &want);
    let rows_b = streamed_rows(&b, &tb, &want);
    for (s, ((sa, xa), (sb, yb))) in m.samples.iter().zip(rows_a.iter().zip(&rows_b)) {
        let [c, h, w] = sa[..] else { panic!("A's shape {sa:?}") };
        assert_eq!((m.channels, m.height, m.width), (c, h, w));
        assert_eq!(sb, &vec![h, w, c], "B is channels-last");
        // One sample alone through ONNX Runtime against the same sample in a batch of 64:
        // the same kernels, so equal to float rounding.
        let close = |x: &[f32], y: &[f32]| {
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-5 * scale)
        };
        assert!(close(&s.a, xa), "sample {}: A's maps differ from the streamed values", s.index);
        let moved: Vec<f32> =
            (0..c).flat_map(|ci| (0..h * w).map(move |px| (ci, px))).map(|(ci, px)| yb[px * c + ci]).collect();
        assert!(close(&s.b, &moved), "sample {}: B's maps are not B's values in C×H×W order", s.index);
        assert_eq!(s.top1_a, a.predictions.as_ref().unwrap().top1.get(s.index).copied());
        assert_eq!(s.top1_b, b.predictions.as_ref().unwrap().top1.get(s.index).copied());
        assert!(s.thumbnail.is_some());
    }
    // A sample beyond the probes' is refused on the node, with what was expected.
    g.set_param(maps, "samples", "64".into()).unwrap();
    let e = Scheduler::new(registry).evaluate(&g, &[maps]);
    let err = format!("{:?}", e.outcomes.get(&maps));
    assert!(err.contains("expected indices below 64"), "{err}");
}
