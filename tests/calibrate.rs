//! The native Calibrate node against ONNX Runtime's `quantize_static`.
//!
//! MinMax on the calibration images `models/quantize.py` and `models/foreign.py` used (the
//! first 1,000 training images) must give the models those scripts committed: the same
//! Q/DQ nodes with the same names, every scale within 1e-6 relative, every zero point and
//! quantized weight equal, and the exact top-1 count on all 10,000 test images. Four
//! references: s8s8, u8s8, per-channel s8s8, and the foreign re-export (unfolded
//! BatchNormalization, NHWC Transposes, MatMul + Add, TF names); two more on 200 images
//! (`models/calibrate_reference.py`): symmetric activations, and a Softmax output. Percentile and Entropy are
//! checked against ORT's calibrators of the same name (`tests/fixtures/calibrate`, made by
//! `models/calibrate_reference.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use quantgraph_nodes::graph::{Graph, PortRef};
use quantgraph_nodes::value::{Cell, ModelValue, Report};
use quantgraph_nodes::{NodeId, NodeRegistry, Scheduler, Value};
use quantgraph_onnx::proto::{self, TensorProto};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cifar_dir() -> PathBuf {
    std::env::var_os("QUANTGRAPH_CIFAR10").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data/cifar10"))
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn loader(g: &mut Graph, registry: &NodeRegistry, split: &str, count: i64) -> NodeId {
    let ds = g.add_node(registry, "dataset.cifar10", [0.0, 0.0]).unwrap();
    g.set_param(ds, "path", cifar_dir().to_string_lossy().as_ref().into()).unwrap();
    g.set_param(ds, "split", split.into()).unwrap();
    g.set_param(ds, "count", count.into()).unwrap();
    g.set_param(ds, "per_class", 0.into()).unwrap();
    ds
}

/// A graph: FP32 model + the first `count` training images → Calibrate with `params`.
fn calibrate_graph(
    registry: &NodeRegistry,
    fp32: &str,
    count: i64,
    params: &[(&str, serde_json::Value)],
) -> (Graph, NodeId, NodeId) {
    let mut g = Graph::new();
    let ds = loader(&mut g, registry, "train", count);
    let m = g.add_node(registry, "onnx.model", [0.0, 0.0]).unwrap();
    g.set_param(m, "path", repo().join(fp32).to_string_lossy().as_ref().into()).unwrap();
    let cal = g.add_node(registry, "onnx.calibrate", [0.0, 0.0]).unwrap();
    for (k, v) in params {
        g.set_param(cal, k, v.clone()).unwrap();
    }
    g.connect(registry, PortRef::new(m, "model"), PortRef::new(cal, "model")).unwrap();
    g.connect(registry, PortRef::new(ds, "dataset"), PortRef::new(cal, "dataset")).unwrap();
    (g, ds, cal)
}

fn calibrated(e: &quantgraph_nodes::Evaluation, cal: NodeId) -> (Arc<ModelValue>, Arc<Report>) {
    let outs = e.outputs(cal).unwrap_or_else(|| panic!("{:?}", e.outcomes.get(&cal)));
    let Some(Value::Model(m)) = outs.get("model") else { panic!() };
    let Some(Value::Table(r)) = outs.get("quantization") else { panic!() };
    (m.clone(), r.clone())
}

fn inits(bytes: &[u8]) -> BTreeMap<String, TensorProto> {
    let m = proto::decode_model(bytes).unwrap();
    m.graph.unwrap().initializer.into_iter().map(|t| (t.name.clone(), t)).collect()
}

/// Nodes as `(op, name, inputs, outputs)`, sorted: the placement, independent of order.
fn nodes(bytes: &[u8]) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let m = proto::decode_model(bytes).unwrap();
    m.graph.unwrap().node.into_iter().map(|n| (n.op_type, n.name, n.input, n.output)).collect()
}

/// Every node input is made by an earlier node, an initializer or a graph input.
fn assert_sorted_and_complete(bytes: &[u8]) {
    let m = proto::decode_model(bytes).unwrap();
    let g = m.graph.unwrap();
    let mut known: BTreeSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    known.extend(g.input.iter().map(|i| i.name.clone()));
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            assert!(known.contains(i), "node '{}' reads '{i}' before anything makes it", n.name);
        }
        known.extend(n.output.iter().cloned());
    }
    for o in &g.output {
        assert!(known.contains(&o.name), "graph output '{}' is not made", o.name);
    }
}

/// The calibrated model equals ORT's: same nodes, same initializers (scales to 1e-6
/// relative, integers exactly), nothing more.
fn assert_same_as_ort(ours: &[u8], reference: &std::path::Path) {
    let theirs = std::fs::read(reference).unwrap();
    assert_sorted_and_complete(ours);
    let (a, b) = (nodes(ours), nodes(&theirs));
    let only_ours: Vec<_> = a.difference(&b).collect();
    let only_theirs: Vec<_> = b.difference(&a).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "nodes differ: ours only {only_ours:#?}\nORT only {only_theirs:#?}"
    );
    // The same IR version, opsets, graph inputs and outputs (names and types) as ORT's.
    let (ma, mb) = (proto::decode_model(ours).unwrap(), proto::decode_model(&theirs).unwrap());
    assert_eq!(ma.ir_version, mb.ir_version, "IR version");
    // The default domain's opset as ORT's (ORT's quantizer also imports every domain its
    // session knows, used or not), and every domain our nodes use imported.
    let default = |m: &proto::ModelProto| m.opset_import.iter().find(|o| o.domain.is_empty()).map(|o| o.version);
    assert_eq!(default(&ma), default(&mb), "default-domain opset");
    let g = ma.graph.clone().unwrap_or_default();
    for n in &g.node {
        assert!(ma.opset_import.iter().any(|o| o.domain == n.domain), "{}: domain '{}' not imported", n.name, n.domain);
    }
    let io = |m: &proto::ModelProto| {
        let g = m.graph.clone().unwrap_or_default();
        let ty = |v: &proto::ValueInfoProto| format!("{}:{:?}", v.name, v.r#type);
        (g.input.iter().map(ty).collect::<Vec<_>>(), g.output.iter().map(ty).collect::<Vec<_>>())
    };
    assert_eq!(io(&ma), io(&mb), "graph inputs and outputs");
    let (ia, ib) = (inits(ours), inits(&theirs));
    assert_eq!(ia.keys().collect::<Vec<_>>(), ib.keys().collect::<Vec<_>>(), "initializer names");
    let mut scales = 0;
    for (name, t) in &ib {
        let o = &ia[name];
        assert_eq!((o.data_type, &o.dims), (t.data_type, &t.dims), "{name}: type and shape");
        if t.data_type == proto::FLOAT {
            let (x, y) = (o.floats().unwrap(), t.floats().unwrap());
            assert_eq!(x.len(), y.len(), "{name}");
            for (u, v) in x.iter().zip(&y) {
                let rel = ((u - v).abs() / v.abs().max(f32::MIN_POSITIVE)) as f64;
                if name.ends_with("_scale") {
                    scales += 1;
                    assert!(rel <= 1e-6, "{name}: scale {u} vs ORT's {v}");
                } else {
                    assert_eq!(u, v, "{name}: float values are copied");
                }
            }
        } else if let Some(v) = t.ints() {
            assert_eq!(o.ints().unwrap(), v, "{name}: integer values");
        } else {
            assert_eq!(o, t, "{name}");
        }
    }
    assert!(scales >= 20, "the references have scales: {scales}");
}

#[test]
fn minmax_reproduces_quantize_static() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let s = Scheduler::new(registry.clone());
    let reference = json(&repo().join("tests/fixtures/ort_reference.json"));
    // (FP32 model, activations, per-channel, symmetric activations, calibration images, ORT's model)
    let cases: [(&str, &str, bool, bool, i64, &str); 7] = [
        ("models/resnet8_fp32.onnx", "int8", false, false, 1000, "models/resnet8_int8_qdq.onnx"),
        ("models/resnet8_fp32.onnx", "uint8", false, false, 1000, "models/resnet8_u8s8_qdq.onnx"),
        ("models/resnet8_fp32.onnx", "int8", true, false, 1000, "tests/fixtures/foreign/resnet8_perchannel_qdq.onnx"),
        (
            "tests/fixtures/foreign/foreign_fp32.onnx",
            "int8",
            false,
            false,
            1000,
            "tests/fixtures/foreign/foreign_int8_qdq.onnx",
        ),
        // Symmetric activations: the Relus stay, their inputs take the Relu's range.
        ("models/resnet8_fp32.onnx", "int8", false, true, 200, "tests/fixtures/calibrate/resnet8_symmetric_qdq.onnx"),
        // A Softmax output: its range is [0, 1].
        (
            "tests/fixtures/calibrate/resnet8_softmax_fp32.onnx",
            "int8",
            false,
            false,
            200,
            "tests/fixtures/calibrate/resnet8_softmax_qdq.onnx",
        ),
        // Clip(0, 6) and Clip(1, 6) folded, MaxPool, Concat, Mul by a constant, AveragePool,
        // a residual Add + Relu, a MatMul + Add head (models/calibrate_reference.py).
        (
            "tests/fixtures/calibrate/op_mix_fp32.onnx",
            "int8",
            false,
            false,
            200,
            "tests/fixtures/calibrate/op_mix_qdq.onnx",
        ),
    ];
    for (fp32, act, per_channel, symmetric, images, want) in cases {
        let (mut g, _, cal) = calibrate_graph(
            &registry,
            fp32,
            images,
            &[
                ("activations", act.into()),
                ("per_channel", per_channel.into()),
                ("symmetric_activations", symmetric.into()),
            ],
        );
        // The exact top-1 count on all 10,000 test images, for the project's two models.
        let counted = want.starts_with("models/");
        let probe = counted.then(|| {
            let test = loader(&mut g, &registry, "test", 0);
            let p = g.add_node(&registry, "onnx.layer_probe", [0.0, 0.0]).unwrap();
            g.set_param(p, "capture", "outputs".into()).unwrap();
            g.set_param(p, "batch_size", 500.into()).unwrap();
            g.connect(&registry, PortRef::new(cal, "model"), PortRef::new(p, "model")).unwrap();
            g.connect(&registry, PortRef::new(test, "dataset"), PortRef::new(p, "dataset")).unwrap();
            p
        });
        let targets: Vec<NodeId> = std::iter::once(cal).chain(probe).collect();
        let e = s.evaluate(&g, &targets);
        let (model, report) = calibrated(&e, cal);
        assert_same_as_ort(&model.bytes, &repo().join(want));
        let t = report.table("quantization").unwrap();
        assert!(t.rows.iter().any(|r| r[t.column("role").unwrap()].to_string() == "bias"), "{want}: biases listed");
        if let Some(p) = probe {
            let Some(Value::Activations(a)) = e.outputs(p).and_then(|o| o.get("activations")) else {
                panic!("{:?}", e.outcomes.get(&p))
            };
            let pred = a.predictions.as_ref().unwrap();
            let labels = pred.labels.as_ref().unwrap();
            assert_eq!(pred.top1.len(), 10_000);
            let correct = pred.top1.iter().zip(labels).filter(|(p, l)| p == l).count() as f64;
            let name = want.rsplit('/').next().unwrap();
            let want = common::reference_on_this_cpu(&reference, name)["correct"].as_f64().unwrap();
            assert_eq!(correct, want, "{name}: top-1 count");
        }
    }
}

fn ranges_of(report: &Report) -> BTreeMap<String, (f64, f64)> {
    let t = report.table("quantization").unwrap();
    let col = |name: &str| t.column(name).unwrap();
    t.rows
        .iter()
        .filter(|r| matches!(r[col("range_min")], Cell::Num(_)))
        .map(|r| (r[0].to_string(), (r[col("range_min")].as_f64().unwrap(), r[col("range_max")].as_f64().unwrap())))
        .collect()
}

/// Percentile (ORT defaults: 2,048 bins of |x|, 99.999, symmetric) and Entropy (2,048 bins,
/// 128 quantized bins) against ORT's calibrators on the first 200 training images.
///
/// Both histograms are NumPy's to the bit (float32 edges, the same index arithmetic), and on
/// this fixture every range equals ORT's to 1e-6 relative, which at least 90 % of the tensors
/// must keep doing. The rest may be one histogram bin off, never more: a value that lands
/// within an ulp of a bin edge (ONNX Runtime's kernels may round an activation differently on
/// another CPU) moves one count, and Entropy's KL divergences, summed in float32 by NumPy and
/// in float64 here, may order two near-equal candidates differently.
#[test]
fn percentile_and_entropy_agree_with_orts_calibrators() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let s = Scheduler::new(registry.clone());
    let fixture = json(&repo().join("tests/fixtures/calibrate/ranges.json"));
    let images = fixture["images"].as_i64().unwrap();
    for method in ["percentile", "entropy"] {
        let (g, _, cal) = calibrate_graph(
            &registry,
            "models/resnet8_fp32.onnx",
            images,
            &[("method", method.into()), ("bins", 2048.into()), ("batch_size", 64.into())],
        );
        let e = s.evaluate(&g, &[cal]);
        let (model, report) = calibrated(&e, cal);
        assert_sorted_and_complete(&model.bytes);
        let ours = ranges_of(&report);
        let want = fixture[method].as_object().unwrap();
        let minmax = fixture["minmax"].as_object().unwrap();
        let (mut checked, mut exact) = (0, 0);
        for (tensor, (lo, hi)) in &ours {
            let Some(w) = want.get(tensor) else { panic!("{method}: ORT calibrated no tensor '{tensor}'") };
            let (wl, wh) = (w[0].as_f64().unwrap(), w[1].as_f64().unwrap());
            // One bin: Entropy's span ±max|x|, Percentile's at most [0, max|x|].
            let m = &minmax[tensor];
            let absmax = m[0].as_f64().unwrap().abs().max(m[1].as_f64().unwrap().abs());
            let bin = if method == "entropy" { 2.0 * absmax / 2048.0 } else { absmax / 2048.0 };
            let close = |a: f64, b: f64, slack: f64| (a - b).abs() <= slack + 1e-6 * b.abs();
            assert!(
                close(*lo, wl, bin) && close(*hi, wh, bin),
                "{method} {tensor}: [{lo}, {hi}] vs ORT's [{wl}, {wh}]"
            );
            if close(*lo, wl, 0.0) && close(*hi, wh, 0.0) {
                exact += 1;
            }
            checked += 1;
        }
        assert!(checked >= 10, "{method}: {checked} tensors");
        // Every activation the model quantizes has a range from the method, and nothing else
        // does (a tensor left uncalibrated would otherwise go unnoticed).
        let m = proto::decode_model(&model.bytes).unwrap();
        let g = m.graph.unwrap_or_default();
        let initializers: std::collections::BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        let quantized: std::collections::BTreeSet<&str> = g
            .node
            .iter()
            .filter(|n| n.op_type == "QuantizeLinear")
            .filter_map(|n| n.input.first().map(String::as_str))
            .filter(|t| !initializers.contains(t))
            .collect();
        // A graph output's quantizer reads it renamed `<output>_QuantizeLinear_Input`; a
        // passthrough op (Flatten, Reshape, …) reuses its input's range, as ORT's does.
        let producer: std::collections::BTreeMap<&str, &str> =
            g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n.op_type.as_str()))).collect();
        let passthrough = ["Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "Identity"];
        for q in &quantized {
            let has = ours.contains_key(*q) || ours.contains_key(q.trim_end_matches("_QuantizeLinear_Input"));
            let shared = producer.get(q).is_some_and(|op| passthrough.contains(op));
            assert!(has || shared, "{method}: '{q}' is quantized with no range from the method");
        }
        for t in ours.keys() {
            let quantizes =
                quantized.contains(t.as_str()) || quantized.contains(format!("{t}_QuantizeLinear_Input").as_str());
            assert!(quantizes, "{method}: a range for '{t}', which the model does not quantize");
        }
        assert!(exact * 10 >= checked * 9, "{method}: only {exact} of {checked} ranges equal ORT's");
        // The methods do what they are for: Percentile clips some tensor below its maximum.
        if method == "percentile" {
            assert!(ours.iter().any(|(t, (_, hi))| *hi < minmax[t][1].as_f64().unwrap() * 0.999));
        }
    }
}

/// MSE runs end to end and never widens a range beyond MinMax's.
#[test]
fn mse_ranges_lie_inside_minmax() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let s = Scheduler::new(registry.clone());
    let (g, _, cal) = calibrate_graph(&registry, "models/resnet8_fp32.onnx", 100, &[("method", "mse".into())]);
    let e = s.evaluate(&g, &[cal]);
    let (model, report) = calibrated(&e, cal);
    assert_sorted_and_complete(&model.bytes);
    let t = report.table("quantization").unwrap();
    let col = |name: &str| t.column(name).unwrap();
    let mut narrower = 0;
    for r in t.rows.iter().filter(|r| matches!(r[col("range_min")], Cell::Num(_))) {
        let (lo, hi) = (r[col("range_min")].as_f64().unwrap(), r[col("range_max")].as_f64().unwrap());
        let (olo, ohi) = (r[col("observed_min")].as_f64().unwrap(), r[col("observed_max")].as_f64().unwrap());
        assert!(lo >= olo.min(0.0) - 1e-6 && hi <= ohi.max(0.0) + 1e-6, "{}: [{lo}, {hi}] vs [{olo}, {ohi}]", r[0]);
        if hi < ohi * 0.99 {
            narrower += 1;
        }
    }
    assert!(narrower > 0, "MSE clips some activation");
}

/// A model that is already quantized, and one with an integer input, are refused with what
/// was found.
#[test]
fn calibrate_refuses_models_it_cannot_quantize() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let s = Scheduler::new(registry.clone());
    for (model, want) in [
        ("models/resnet8_int8_qdq.onnx", "QuantizeLinear"),
        ("tests/fixtures/foreign/foreign_int8in_qdq.onnx", "float"),
    ] {
        let (g, _, cal) = calibrate_graph(&registry, model, 10, &[]);
        let e = s.evaluate(&g, &[cal]);
        let msg = format!("{:?}", e.outcomes.get(&cal).unwrap());
        assert!(msg.contains(want), "{model}: {msg}");
    }
}

/// A Gemm with beta ≠ 1 gets an int32 bias holding beta × bias and is written with beta 1
/// (ORT's quantizer scales the bias by beta and then sets beta to 1, dropping beta from the
/// result). ResNet8 with its Gemm's bias doubled and beta 0.5 computes the same function,
/// so it must calibrate to the same model: same nodes, same scales, same integer bias.
#[test]
fn a_gemm_beta_is_folded_into_its_int32_bias() {
    let registry = Arc::new(quantgraph_app::registry().unwrap());
    let bytes = std::fs::read(repo().join("models/resnet8_fp32.onnx")).unwrap();
    let model = proto::decode_model(&bytes).unwrap();
    let graph = model.graph.unwrap();
    let (gemm_index, gemm) = graph.node.iter().enumerate().find(|(_, n)| n.op_type == "Gemm").unwrap();
    let (bias_name, gemm_name) = (gemm.input[2].clone(), gemm.name.clone());
    let bias = graph.initializer.iter().find(|t| t.name == bias_name).unwrap();
    let mut doubled = bias.clone();
    doubled.set_floats(&bias.floats().unwrap().iter().map(|v| v * 2.0).collect::<Vec<_>>());
    let mut halved = gemm.clone();
    halved.attribute.retain(|a| a.name != "beta");
    halved.attribute.push(proto::AttributeProto { name: "beta".into(), f: 0.5, r#type: 1, ..Default::default() });
    halved.doc_string = "the classifier".into();
    let nodes_out = (0..graph.node.len())
        .map(|i| {
            if i == gemm_index {
                proto::NodeOut::New(halved.clone())
            } else {
                proto::NodeOut::Original { index: i, inputs: BTreeMap::new(), outputs: BTreeMap::new() }
            }
        })
        .collect();
    let rebuilt = proto::rebuild_graph(
        &bytes,
        proto::GraphRebuild {
            nodes: nodes_out,
            extra_initializers: vec![doubled],
            removed_initializers: [bias_name.clone()].into(),
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let beta_model = dir.path().join("resnet8_beta.onnx");
    std::fs::write(&beta_model, &rebuilt).unwrap();

    let s = Scheduler::new(registry.clone());
    let mut models = Vec::new();
    for path in [repo().join("models/resnet8_fp32.onnx"), beta_model] {
        let (g, _, cal) = calibrate_graph(&registry, path.to_str().unwrap(), 20, &[]);
        let e = s.evaluate(&g, &[cal]);
        let (m, report) = calibrated(&e, cal);
        models.push((m.bytes.to_vec(), report));
    }
    let (plain, folded) = (&models[0].0, &models[1].0);
    assert_sorted_and_complete(folded);
    assert_eq!(nodes(plain), nodes(folded), "same nodes, same names");
    let m = proto::decode_model(folded).unwrap();
    let gemm = m.graph.unwrap().node.into_iter().find(|n| n.op_type == "Gemm").unwrap();
    assert_eq!(gemm.attribute.iter().find(|a| a.name == "beta").map(|a| a.f), Some(1.0));
    assert_eq!(gemm.doc_string, "the classifier", "the rewritten Gemm keeps its documentation");
    let (ia, ib) = (inits(plain), inits(folded));
    assert_eq!(ia.keys().collect::<Vec<_>>(), ib.keys().collect::<Vec<_>>());
    let q = format!("{bias_name}_quantized");
    assert!(ib[&q].ints().unwrap().iter().any(|v| *v != 0), "the bias is quantized");
    for (name, t) in &ia {
        if t.data_type == proto::FLOAT {
            assert_eq!(t.floats(), ib[name].floats(), "{name}");
        } else {
            assert_eq!(t.ints(), ib[name].ints(), "{name}");
        }
    }
    // The sensitivity sweep's variant without the Gemm's quantizers restores its float bias
    // times the FP32 op's beta (the folded Gemm has beta 1): the same bias as for ResNet8.
    let variant = |qdq: &[u8], fp32: &[u8]| {
        let (qdq_model, fp32_model) = (proto::decode_model(qdq).unwrap(), proto::decode_model(fp32).unwrap());
        let (groups, _) = quantgraph_onnx::sensitivity::groups(&qdq_model, &fp32_model, true).unwrap();
        let gemm_groups: Vec<_> =
            groups.iter().filter(|g| g.rewires.iter().any(|(n, i, _)| *i == 2 && *n == gemm_name)).collect();
        assert_eq!(gemm_groups.len(), 1);
        inits(&quantgraph_onnx::sensitivity::without(qdq, &gemm_groups).unwrap())
    };
    let restored = format!("{bias_name}__float");
    let (a, b) = (variant(plain, &bytes), variant(folded, &rebuilt));
    assert_eq!(a[&restored].floats().unwrap(), bias.floats().unwrap());
    assert_eq!(b[&restored].floats(), a[&restored].floats());
}
