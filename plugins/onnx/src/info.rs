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
    // QOperator ops carry their tensors' scales and zero points as inputs: one entry per
    // quantized input, weight and output.
    for node in &graph.node {
        let Some(slots) = qlinear_slots(&node.op_type) else { continue };
        for (role, data, s, z) in slots {
            let (Some(scale_name), Some(tensor)) = (node.input.get(s), qlinear_tensor(node, role, data)) else {
                continue;
            };
            let Some(scales) = inits.get(scale_name.as_str()).and_then(|t| t.floats()) else { continue };
            let zp_name = node.input.get(z).cloned().unwrap_or_default();
            let zp = inits.get(zp_name.as_str());
            let zero_points = zp.and_then(|t| t.ints()).unwrap_or_else(|| vec![0; scales.len().max(1)]);
            let dtype = zp.map(|t| proto::dtype_name(t.data_type).to_owned()).unwrap_or_else(|| "uint8".into());
            qdq_params.insert(scale_name.as_str());
            if !zp_name.is_empty() {
                qdq_params.insert(node.input[z].as_str());
            }
            let is_weight = role == QRole::Weight;
            qdq.push(QdqEntry {
                node: node.name.clone(),
                op_type: format!("{} {}", node.op_type, role.name()),
                input: if role == QRole::Output { String::new() } else { tensor.clone() },
                output: if role == QRole::Output { tensor.clone() } else { String::new() },
                scale_name: scale_name.clone(),
                zero_point_name: zp_name,
                axis: (scales.len() > 1).then_some(if is_weight { 0 } else { 1 }),
                scales,
                zero_points,
                dtype,
                float_tensor: tensor,
                is_weight,
            });
        }
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

/// Element type of every tensor: declared (inputs, outputs, value_info, initializers), else
/// propagated over the ops in graph order (QuantizeLinear → its zero point's type,
/// DequantizeLinear → its scale's type, Cast → `to`, QLinear ops → their output zero
/// point's type, Shape/Size/ArgMax → int64, most others → their first typed input's).
/// Tensors whose type cannot be worked out are absent.
pub fn tensor_types(model: &ModelProto) -> BTreeMap<String, i32> {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut ty: BTreeMap<String, i32> = BTreeMap::new();
    for t in &graph.initializer {
        ty.insert(t.name.clone(), t.data_type);
    }
    for v in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
        if let Some(t) = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).filter(|t| t.elem_type != 0) {
            ty.insert(v.name.clone(), t.elem_type);
        }
    }
    for node in &graph.node {
        let input_ty = |k: usize| node.input.get(k).and_then(|i| ty.get(i)).copied();
        let int_attr = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i as i32);
        let out_ty: Option<i32> = match node.op_type.as_str() {
            "QuantizeLinear" => input_ty(2).or(int_attr("output_dtype").filter(|t| *t != 0)).or(Some(proto::UINT8)),
            "DequantizeLinear" => input_ty(1).or(Some(proto::FLOAT)),
            "DynamicQuantizeLinear" => Some(proto::UINT8),
            "Cast" => int_attr("to"),
            "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => Some(7),
            "QLinearConv" | "QLinearMatMul" | "QLinearAdd" | "QLinearMul" => input_ty(7),
            "QLinearGlobalAveragePool" | "QLinearAveragePool" | "QLinearSigmoid" | "QLinearLeakyRelu" => input_ty(4),
            "QGemm" => input_ty(8).or(Some(proto::FLOAT)),
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Not"
            | "IsNaN" | "IsInf" => Some(9),
            "Constant" => {
                node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()).map(|t| t.data_type)
            }
            _ => node.input.iter().filter_map(|i| ty.get(i)).copied().next(),
        };
        // The rule types the first output only: other outputs (TopK's and MaxPool's indices,
        // Dropout's mask, ...) have types of their own and stay untyped unless declared.
        if let (Some(t), Some(o)) = (out_ty, node.output.first()) {
            ty.entry(o.clone()).or_insert(t);
        }
    }
    ty
}

/// Scale and zero point of each quantized activation made by a QOperator op
/// (QLinearConv, QLinearAdd, QGemm, …, QuantizeLinear), and of what only moves such a tensor
/// (Flatten, Reshape, Transpose, …): how a probe dequantizes what it captures.
pub fn quantized_tensors(model: &ModelProto) -> BTreeMap<String, (f32, i32, String)> {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let inits: BTreeMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let param = |node: &proto::NodeProto, s: usize, z: usize| -> Option<(f32, i32, String)> {
        let scale = inits.get(node.input.get(s)?.as_str())?.floats()?;
        let zp = node.input.get(z).and_then(|n| inits.get(n.as_str()));
        let zero = zp.and_then(|t| t.ints()).and_then(|v| v.first().copied()).unwrap_or(0);
        let dtype = zp.map(|t| proto::dtype_name(t.data_type).to_owned()).unwrap_or_else(|| "uint8".into());
        (scale.len() == 1).then(|| (scale[0], zero, dtype))
    };
    let mut out: BTreeMap<String, (f32, i32, String)> = BTreeMap::new();
    for node in &graph.node {
        let output_slot =
            qlinear_slots(&node.op_type).and_then(|slots| slots.into_iter().find(|(role, ..)| *role == QRole::Output));
        let q = match node.op_type.as_str() {
            "QuantizeLinear" => param(node, 1, 2),
            _ if output_slot.is_some() => output_slot.and_then(|(_, _, s, z)| param(node, s, z)),
            "Flatten" | "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" | "Identity" | "MaxPool" => {
                node.input.first().and_then(|i| out.get(i)).cloned()
            }
            _ => None,
        };
        if let (Some(q), Some(o)) = (q, node.output.first()) {
            out.insert(o.clone(), q);
        }
    }
    out
}

/// Activations a probe can capture: outputs of ops that compute on data (not constants or
/// shapes), float ones, and the int8/uint8 outputs of QOperator ops (dequantized with their
/// scale and zero point; see [`quantized_tensors`]). A QuantizeLinear's output is left out:
/// the DequantizeLinear after it gives the same values as floats. Tensors whose type
/// cannot be worked out are left out too (a probe says how many), so a session never fails
/// for an output declared with the wrong type.
pub fn capturable(model: &ModelProto) -> (Vec<String>, usize) {
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let types = tensor_types(model);
    let quantized = quantized_tensors(model);
    let mut constant: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: BTreeSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let (mut out, mut untyped) = (Vec::new(), 0);
    for node in &graph.node {
        let all_const = node.input.iter().all(|i| i.is_empty() || constant.contains(i.as_str()));
        if all_const || matches!(node.op_type.as_str(), "Constant" | "Shape" | "Size" | "ConstantOfShape") {
            for o in &node.output {
                constant.insert(o.as_str());
            }
            continue;
        }
        if node.op_type == "QuantizeLinear" {
            continue;
        }
        for o in &node.output {
            if outputs.contains(o.as_str()) || o.is_empty() {
                continue;
            }
            match types.get(o) {
                Some(&proto::FLOAT) => out.push(o.clone()),
                Some(&(proto::INT8 | proto::UINT8)) if quantized.contains_key(o) => out.push(o.clone()),
                Some(_) => {}
                None => untyped += 1,
            }
        }
    }
    (out, untyped)
}

/// Float activations a probe can capture (see [`capturable`]).
pub fn float_activations(model: &ModelProto) -> Vec<String> {
    let types = tensor_types(model);
    capturable(model).0.into_iter().filter(|t| types.get(t) == Some(&proto::FLOAT)).collect()
}

/// A graph output declaration for `name` with its element type.
pub fn typed_output(name: &str, elem_type: i32) -> proto::ValueInfoProto {
    let mut v = proto::float_output(name);
    if let Some(t) = v.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()) {
        t.elem_type = elem_type;
    }
    v
}

/// Which quantized tensor of a QOperator op a scale/zero point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QRole {
    Input,
    Weight,
    Output,
}

impl QRole {
    pub fn name(self) -> &'static str {
        match self {
            QRole::Input => "input",
            QRole::Weight => "weight",
            QRole::Output => "output",
        }
    }
}

/// `(role, data input index, scale input index, zero-point input index)` of each quantized
/// tensor of a QOperator op (ONNX and com.microsoft); the output's data index is unused.
pub fn qlinear_slots(op: &str) -> Option<Vec<(QRole, usize, usize, usize)>> {
    use QRole::*;
    Some(match op {
        "QLinearConv" | "QLinearMatMul" => vec![(Input, 0, 1, 2), (Weight, 3, 4, 5), (Output, 0, 6, 7)],
        "QLinearAdd" | "QLinearMul" => vec![(Input, 0, 1, 2), (Input, 3, 4, 5), (Output, 0, 6, 7)],
        "QGemm" => vec![(Input, 0, 1, 2), (Weight, 3, 4, 5), (Output, 0, 7, 8)],
        "QLinearGlobalAveragePool" | "QLinearAveragePool" | "QLinearSigmoid" | "QLinearLeakyRelu" => {
            vec![(Input, 0, 1, 2), (Output, 0, 3, 4)]
        }
        "QLinearConcat" => vec![(Output, 0, 0, 1)],
        _ => return None,
    })
}

fn qlinear_tensor(node: &proto::NodeProto, role: QRole, data: usize) -> Option<String> {
    match role {
        QRole::Output => node.output.first().cloned(),
        _ => node.input.get(data).cloned(),
    }
}

/// A content digest of every tensor of the model: equal digests mean the same computation
/// of the same inputs. Initializers hash their type, dims and data (not their names); model
/// inputs their position; an op's outputs hash the op (type, domain, attributes) and its
/// inputs' digests. So an edit of one Q/DQ pair's scale changes the digests of exactly the
/// tensors downstream of it: what a probe or comparator can reuse from an earlier run.
pub fn tensor_digests(model: &ModelProto) -> BTreeMap<String, u64> {
    use prost::Message;
    use xxhash_rust::xxh3::Xxh3;
    let empty = GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut d: BTreeMap<String, u64> = BTreeMap::new();
    for t in &graph.initializer {
        let mut h = Xxh3::new();
        h.update(b"init");
        h.update(&t.data_type.to_le_bytes());
        h.update(&(t.dims.len() as u64).to_le_bytes());
        for x in &t.dims {
            h.update(&x.to_le_bytes());
        }
        h.update(&t.raw_data);
        for x in &t.float_data {
            h.update(&x.to_le_bytes());
        }
        for x in &t.int32_data {
            h.update(&x.to_le_bytes());
        }
        for x in &t.int64_data {
            h.update(&x.to_le_bytes());
        }
        for x in &t.double_data {
            h.update(&x.to_le_bytes());
        }
        for x in &t.uint64_data {
            h.update(&x.to_le_bytes());
        }
        for s in &t.string_data {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s);
        }
        for e in &t.external_data {
            h.update(e.key.as_bytes());
            h.update(e.value.as_bytes());
        }
        d.insert(t.name.clone(), h.digest());
    }
    for (i, input) in graph.input.iter().enumerate() {
        d.entry(input.name.clone()).or_insert_with(|| xxhash_rust::xxh3::xxh3_64(format!("input {i}").as_bytes()));
    }
    // Op semantics depend on the opset (defaults change between versions).
    let opsets: BTreeMap<&str, i64> = model.opset_import.iter().map(|o| (o.domain.as_str(), o.version)).collect();
    for node in &graph.node {
        let mut h = Xxh3::new();
        h.update(node.op_type.as_bytes());
        h.update(b"\0");
        h.update(node.domain.as_bytes());
        h.update(b"\0");
        let domain = if node.domain == "ai.onnx" { "" } else { node.domain.as_str() };
        h.update(&opsets.get(domain).copied().unwrap_or(0).to_le_bytes());
        h.update(&(node.attribute.len() as u64).to_le_bytes());
        for a in &node.attribute {
            // FLOAT, INT, STRING, TENSOR, FLOATS, INTS are fully decoded; anything else (a
            // subgraph, strings, ...) is not, so such an op gets a digest no other run shares.
            if !matches!(a.r#type, 0..=4 | 6 | 7) {
                static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                h.update(b"opaque");
                h.update(&NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
                h.update(&std::process::id().to_le_bytes());
            }
            let bytes = a.encode_to_vec();
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        for i in &node.input {
            // An input nobody makes (a malformed model) hashes its name.
            let x = d.get(i).copied().unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(i.as_bytes()));
            h.update(&x.to_le_bytes());
        }
        let base = h.digest();
        for (k, o) in node.output.iter().enumerate() {
            let mut h = Xxh3::with_seed(base);
            h.update(&(k as u64).to_le_bytes());
            d.insert(o.clone(), h.digest());
        }
    }
    d
}
