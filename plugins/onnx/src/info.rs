//! What a model inspector needs, read from the ONNX protobuf.

use std::collections::{BTreeMap, BTreeSet};

use quantgraph_nodes::value::{InitializerInfo, ModelInfo, OpInfo, QdqEntry, TensorInfo};

use crate::proto::{self, GraphProto, ModelProto, TensorProto, ValueInfoProto};

fn tensor_info(v: &ValueInfoProto) -> TensorInfo {
    let (dtype, dims) = match v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) {
        Some(t) => (
            proto::dtype_name(t.elem_type).to_owned(),
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match (&d.dim_value, &d.dim_param) {
                            (Some(v), _) => v.to_string(),
                            (None, Some(p)) if !p.is_empty() => p.clone(),
                            _ => "?".into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        None => ("unknown".into(), Vec::new()),
    };
    TensorInfo { name: v.name.clone(), dtype, dims }
}

/// The model's description: ops, tensors, initializers, and the Q/DQ parameter table.
pub fn model_info(model: &ModelProto) -> ModelInfo {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let inits: BTreeMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let producer_of: BTreeMap<&str, &proto::NodeProto> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut qdq = Vec::new();
    let mut qdq_params: BTreeSet<&str> = BTreeSet::new();
    for node in &graph.node {
        if node.op_type != "QuantizeLinear" && node.op_type != "DequantizeLinear" {
            continue;
        }
        let input = node.input.first().cloned().unwrap_or_default();
        let scale_name = node.input.get(1).cloned().unwrap_or_default();
        let zp_name = node.input.get(2).cloned().unwrap_or_default();
        for name in node.input.iter().skip(1) {
            qdq_params.insert(name.as_str());
        }
        let scales = inits.get(scale_name.as_str()).and_then(|t| t.floats()).unwrap_or_default();
        let zp = inits.get(zp_name.as_str());
        let zero_points = zp.and_then(|t| t.ints()).unwrap_or_else(|| vec![0; scales.len().max(1)]);
        let dtype = match zp {
            Some(t) => proto::dtype_name(t.data_type).to_owned(),
            None if node.op_type == "DequantizeLinear" => inits
                .get(input.as_str())
                .map(|t| proto::dtype_name(t.data_type).to_owned())
                .unwrap_or_else(|| "uint8".into()),
            None => "uint8".into(),
        };
        let axis = node.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).filter(|_| scales.len() > 1);
        let is_weight = node.op_type == "DequantizeLinear" && inits.contains_key(input.as_str());
        let float_tensor = if node.op_type == "QuantizeLinear" {
            input.clone()
        } else if is_weight {
            input.strip_suffix("_quantized").unwrap_or(&input).to_owned()
        } else {
            producer_of
                .get(input.as_str())
                .filter(|p| p.op_type == "QuantizeLinear")
                .and_then(|p| p.input.first().cloned())
                .unwrap_or_else(|| input.clone())
        };
        qdq.push(QdqEntry {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            input,
            output: node.output.first().cloned().unwrap_or_default(),
            scale_name,
            zero_point_name: zp_name,
            scales,
            zero_points,
            dtype,
            axis,
            float_tensor,
            is_weight,
        });
    }
    let initializers: Vec<InitializerInfo> = graph
        .initializer
        .iter()
        .map(|t| InitializerInfo {
            name: t.name.clone(),
            dtype: proto::dtype_name(t.data_type).to_owned(),
            dims: t.dims.clone(),
            size_bytes: t.element_count() * proto::dtype_size(t.data_type),
        })
        .collect();
    let param_count = graph
        .initializer
        .iter()
        .filter(|t| !qdq_params.contains(t.name.as_str()))
        .filter(|t| matches!(t.data_type, 1 | 2 | 3 | 6 | 10 | 11 | 16))
        .map(|t| t.element_count() as u64)
        .sum();
    let input_names: BTreeSet<&str> = inits.keys().copied().collect();
    ModelInfo {
        opset: model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0),
        producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_owned(),
        inputs: graph.input.iter().filter(|i| !input_names.contains(i.name.as_str())).map(tensor_info).collect(),
        outputs: graph.output.iter().map(tensor_info).collect(),
        nodes: graph
            .node
            .iter()
            .map(|n| OpInfo {
                name: n.name.clone(),
                op_type: n.op_type.clone(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
            })
            .collect(),
        initializers,
        param_count,
        qdq,
        tensors: graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
            .map(|v| (v.name.clone(), tensor_info(v)))
            .collect(),
    }
}

/// Float activations a probe can capture: outputs of ops that compute on data (not
/// constants, shapes or quantized values).
pub fn float_activations(model: &ModelProto) -> Vec<String> {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut constant: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let typed: BTreeMap<&str, i32> = graph
        .value_info
        .iter()
        .chain(&graph.output)
        .filter_map(|v| Some((v.name.as_str(), v.r#type.as_ref()?.tensor_type.as_ref()?.elem_type)))
        .collect();
    let outputs: BTreeSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut out = Vec::new();
    for node in &graph.node {
        let all_const = node.input.iter().all(|i| i.is_empty() || constant.contains(i.as_str()));
        if all_const || matches!(node.op_type.as_str(), "Constant" | "Shape" | "Size" | "ConstantOfShape") {
            for o in &node.output {
                constant.insert(o.as_str());
            }
            continue;
        }
        if node.op_type == "QuantizeLinear" {
            // Quantized (integer) values: not a float activation.
            continue;
        }
        for o in &node.output {
            if outputs.contains(o.as_str()) {
                continue;
            }
            match typed.get(o.as_str()) {
                Some(&t) if t != proto::FLOAT => {}
                _ => out.push(o.clone()),
            }
        }
    }
    out
}
