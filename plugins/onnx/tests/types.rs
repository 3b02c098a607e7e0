//! Element types from the model, not guesses: a QOperator model stripped of value_info (as
//! tf2onnx writes them) still probes, with its int8 activations typed by propagation over
//! the ops, captured as int8 and dequantized with their op's output scale and zero point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use quantgraph_nodes::value::{Dataset, Layout, Tensor, Value};
use quantgraph_nodes::{EvalContext, Inputs, NodeKind, Params};
use quantgraph_onnx::probe::LayerProbe;
use quantgraph_onnx::{info, proto};

fn qop_without_value_info() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/foreign/resnet8_qop.onnx");
    let mut m = proto::decode_model(&std::fs::read(path).unwrap()).unwrap();
    m.graph.as_mut().unwrap().value_info.clear();
    m.encode_to_vec()
}

#[test]
fn types_propagate_over_qoperator_ops_without_value_info() {
    let m = proto::decode_model(&qop_without_value_info()).unwrap();
    let types = info::tensor_types(&m);
    let graph = m.graph.as_ref().unwrap();
    let conv_outputs: Vec<&String> =
        graph.node.iter().filter(|n| n.op_type == "QLinearConv").map(|n| &n.output[0]).collect();
    assert_eq!(conv_outputs.len(), 9);
    for o in &conv_outputs {
        assert_eq!(types.get(*o), Some(&proto::INT8), "{o}");
    }
    let (capturable, untyped) = info::capturable(&m);
    assert_eq!(untyped, 0);
    for o in conv_outputs {
        assert!(capturable.contains(o), "{o}");
    }
    let q = info::quantized_tensors(&m);
    assert!(q.values().all(|(s, _, _)| *s > 0.0));
}

#[test]
fn a_probe_captures_and_dequantizes_int8_activations() {
    let bytes = qop_without_value_info();
    let model =
        Arc::new(quantgraph_onnx::model::model_value("qop", "resnet8_qop.onnx (no value_info)", bytes, 1).unwrap());
    let n = 8;
    let mut s = 7u32;
    let data: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as f32
        })
        .collect();
    let dataset = Arc::new(Dataset {
        images: Tensor::new(vec![n, 3, 32, 32], data).into(),
        layout: Layout::Nchw,
        labels: vec![0; n],
        class_names: (0..10).map(|i| format!("c{i}")).collect(),
        source_indices: (0..n).collect(),
        source: "random".into(),
        preprocessing: "raw".into(),
        preview: Vec::new(),
        thumbnails: Arc::new(Vec::new()),
        before_after: None,
    });
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(model.clone()));
    inputs.0.insert("dataset".into(), Value::Dataset(dataset));
    let out = LayerProbe.evaluate(&EvalContext::detached(None), &inputs, &Params::new()).unwrap();
    let Some(Value::Activations(a)) = out.get("activations") else { panic!() };
    let conv = model.info.nodes.iter().find(|n| n.op_type == "QLinearConv").unwrap();
    let t = a.tensors.get(&conv.outputs[0]).expect("the int8 conv output is captured");
    let q = t.qdq.as_ref().expect("with its scale and zero point");
    let (lo, hi) = q.real_range().unwrap();
    assert!(t.stats.min >= lo - 1e-6 && t.stats.max <= hi + 1e-6, "{:?} outside [{lo}, {hi}]", t.stats);
    assert!(t.stats.max > t.stats.min, "dequantized values vary: {:?}", t.stats);
    assert!(a.notes.iter().any(|n| n.contains("dequantized")), "{:?}", a.notes);
}
