//! Hostile but fair inputs to the ONNX node kinds: special files, size limits, external
//! data beside the model, zero-points of every quantized width.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use quantgraph_nodes::value::{Dataset, Layout, ModelValue, Tensor, Value};
use quantgraph_nodes::{EvalContext, Inputs, NodeError, NodeKind, Params};
use quantgraph_onnx::model::OnnxModel;
use quantgraph_onnx::probe::LayerProbe;
use quantgraph_onnx::proto::{
    self, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};
use quantgraph_onnx::qdq_override::QdqOverride;

fn load_params(p: Params) -> Result<Arc<ModelValue>, NodeError> {
    let out = OnnxModel.evaluate(&EvalContext::detached(None), &Inputs::default(), &p)?;
    match out.get("model") {
        Some(Value::Model(m)) => Ok(m.clone()),
        other => panic!("{other:?}"),
    }
}

fn load(path: &Path) -> Result<Arc<ModelValue>, NodeError> {
    let mut p = Params::new();
    p.insert("path".into(), path.to_string_lossy().as_ref().into());
    load_params(p)
}

fn float_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: proto::FLOAT,
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| proto::Dimension {
                            dim_value: (*d > 0).then_some(*d),
                            dim_param: (*d <= 0).then(|| "N".to_owned()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        ..NodeProto::default()
    }
}

fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "quantgraph-test".into(),
        producer_version: String::new(),
        metadata_props: Vec::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer,
            input: vec![float_info("x", &[0, 4])],
            output: vec![float_info("y", &[0, 4])],
            value_info: Vec::new(),
        }),
    }
    .encode_to_vec()
}

fn tensor(name: &str, data_type: i32, dims: &[i64]) -> TensorProto {
    TensorProto { name: name.into(), data_type, dims: dims.to_vec(), ..TensorProto::default() }
}

fn run_probe(m: &Arc<ModelValue>, rows: &[[f32; 4]]) -> Vec<f32> {
    let n = rows.len();
    let dataset = Arc::new(Dataset {
        images: Tensor::new(vec![n, 4], rows.iter().flatten().copied().collect()).into(),
        layout: Layout::Nchw,
        labels: vec![0; n],
        class_names: (0..4).map(|i| format!("c{i}")).collect(),
        source_indices: (0..n).collect(),
        source: "test".into(),
        preprocessing: "raw".into(),
        preview: Vec::new(),
        thumbnails: Arc::new(Vec::new()),
        before_after: None,
    });
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(m.clone()));
    inputs.0.insert("dataset".into(), Value::Dataset(dataset));
    let mut p = Params::new();
    p.insert("capture".into(), "outputs".into());
    let out = LayerProbe.evaluate(&EvalContext::detached(None), &inputs, &p).unwrap();
    let Some(Value::Activations(a)) = out.get("activations") else { panic!() };
    a.tensors["y"].tensor.data.clone()
}

/// External weights are read from the model's folder, whatever the working directory.
#[test]
fn external_data_is_read_beside_the_model_and_never_outside_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let bias: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
    std::fs::write(dir.path().join("weights.bin"), bias.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
        .unwrap();
    let external = |location: &str| {
        let mut b = tensor("b", proto::FLOAT, &[4]);
        b.data_location = 1;
        b.external_data = vec![
            StringStringEntryProto { key: "location".into(), value: location.into() },
            StringStringEntryProto { key: "offset".into(), value: "0".into() },
            StringStringEntryProto { key: "length".into(), value: "16".into() },
        ];
        model(vec![node("Add", &["x", "b"], "y")], vec![b], 13)
    };
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, external("weights.bin")).unwrap();
    let m = load(&path).unwrap();
    assert_eq!(
        run_probe(&m, &[[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 10.0, 10.0]]),
        vec![1., 2., 3., 4., 11., 12., 13., 14.]
    );

    for (location, why) in
        [("../weights.bin", "relative path inside the model's folder"), ("/etc/passwd", "relative path inside")]
    {
        std::fs::write(&path, external(location)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains(why) && err.ends_with("m.onnx"), "{location}: {err}");
    }
    std::fs::write(&path, external("missing.bin")).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("initializer 'b'") && err.contains("missing.bin"), "{err}");
}

#[test]
fn special_files_and_oversized_models_are_refused() {
    let err = load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert_eq!(err, "the model: expected a regular file, found a character device: /dev/zero");
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("expected a regular file, found a folder"), "{err}");
    let fifo = dir.path().join("pipe.onnx");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let err = load(&fifo).unwrap_err().to_string();
        assert!(err.contains("found a FIFO"), "{err}");
    }
    let big = dir.path().join("big.onnx");
    std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
    let mut p = Params::new();
    p.insert("path".into(), big.to_string_lossy().as_ref().into());
    p.insert("max_size_mib".into(), 1.into());
    let err = load_params(p).unwrap_err().to_string();
    assert!(err.starts_with("parameter 'max_size_mib': the model is too large"), "{err}");
}

#[test]
fn zero_points_of_every_width_round_trip() {
    for (dtype, values) in [
        (proto::INT4, vec![-8, 7, 0]),
        (proto::UINT4, vec![0, 15, 9]),
        (proto::INT8, vec![-128, 127, 0]),
        (proto::UINT8, vec![0, 255, 7]),
        (proto::INT16, vec![-32768, 32767, 1000]),
        (proto::UINT16, vec![0, 65535, 40000]),
        (proto::INT32, vec![i32::MIN, i32::MAX, 70000]),
    ] {
        for raw in [true, false] {
            let mut t = tensor("zp", dtype, &[3]);
            // Start from a stored tensor in the chosen style, then replace its values.
            if raw {
                t.raw_data = vec![0; 12];
            } else {
                t.int32_data = vec![0; 3];
            }
            t.set_ints(&values);
            let back = TensorProto::decode(t.encode_to_vec().as_slice()).unwrap();
            assert_eq!(back.ints().unwrap(), values, "{} raw={raw}", proto::dtype_name(dtype));
            if raw {
                let width = match dtype {
                    proto::INT4 | proto::UINT4 => 0, // packed
                    proto::INT8 | proto::UINT8 => 3,
                    proto::INT16 | proto::UINT16 => 6,
                    _ => 12,
                };
                if width > 0 {
                    assert_eq!(back.raw_data.len(), width, "{}", proto::dtype_name(dtype));
                } else {
                    assert_eq!(back.raw_data.len(), 2);
                }
            }
        }
    }
}

/// A Q/DQ pair with an int16 zero-point: an override to a value outside int8's range is
/// accepted, written at 16 bits, and ONNX Runtime runs the model with it.
#[test]
fn int16_zero_points_are_edited_at_their_width() {
    let dir = tempfile::tempdir().unwrap();
    let mut scale = tensor("s", proto::FLOAT, &[]);
    scale.set_floats(&[0.5]);
    let mut zp = tensor("zp", proto::INT16, &[]);
    zp.raw_data = 0i16.to_le_bytes().to_vec();
    let bytes = model(
        vec![node("QuantizeLinear", &["x", "s", "zp"], "q"), node("DequantizeLinear", &["q", "s", "zp"], "y")],
        vec![scale, zp],
        21,
    );
    let path = dir.path().join("q16.onnx");
    std::fs::write(&path, bytes).unwrap();
    let m = load(&path).unwrap();
    assert_eq!(m.info.qdq[0].dtype, "int16");
    let mut inputs = Inputs::default();
    inputs.0.insert("model".into(), Value::Model(m.clone()));
    let mut p = Params::new();
    p.insert("edits".into(), serde_json::json!([{"tensor": "x", "zero_point": "1000"}]));
    let out = QdqOverride.evaluate(&EvalContext::detached(None), &inputs, &p).unwrap();
    let Some(Value::Model(edited)) = out.get("model") else { panic!() };
    assert!(edited.info.qdq.iter().all(|e| e.zero_points == vec![1000]), "{:?}", edited.info.qdq);
    // q = round(x / 0.5) + 1000, saturated to int16; y = (q − 1000) · 0.5: exact for these.
    assert_eq!(run_probe(edited, &[[1.0, -2.5, 100.0, 0.25]]), vec![1.0, -2.5, 100.0, 0.0]);
    // int16's range is checked, not int8's.
    p.insert("edits".into(), serde_json::json!([{"tensor": "x", "zero_point": "40000"}]));
    let err = QdqOverride.evaluate(&EvalContext::detached(None), &inputs, &p).unwrap_err().to_string();
    assert!(err.contains("zero-point must be in [-32768, 32767] for int16, found 40000"), "{err}");
}
