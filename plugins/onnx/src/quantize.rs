//! Turn a float model into a QDQ model the way ONNX Runtime's `quantize_static`
//! (`QuantFormat.QDQ`) does, given each activation's calibrated range.
//!
//! [`plan`] walks the ops in graph order and marks what ORT's QDQ quantizer marks
//! (`onnxruntime/quantization/qdq_quantizer.py` and `operators/`, version 1.31):
//!
//! * Conv, ConvTranspose, Gemm: input 0 and output as activations, input 1 as a weight
//!   (per-channel on axis 0, 1 for ConvTranspose and for Gemm without `transB`, when asked),
//!   the bias as int32 with scale `input scale × weight scale`;
//! * MatMul: initializers as weights, the rest as activations;
//! * BatchNormalization, InstanceNormalization, LayerNormalization: input, scale (weight),
//!   bias (int32), outputs;
//! * Relu and Clip after a quantized tensor: removed, the op before them writing their output
//!   directly, when that tensor has no other reader and activations are asymmetric (the Q/DQ
//!   pair's range, calibrated after the activation, does its clipping); else kept and quantized;
//! * Reshape, Transpose, Squeeze, Unsqueeze, Flatten, AveragePool, Slice, TopK, MaxPool (opset
//!   ≥ 12): the output shares the input's scale and zero point, when the input is quantized;
//! * Add, Mul, GlobalAveragePool, Concat, Softmax, Sigmoid, LeakyRelu, ArgMax, CumSum: every
//!   float input and output (a constant input is quantized as an activation-typed initializer).
//!
//! Ops ORT quantizes with rules of their own that QuantGraph does not reproduce (Resize, Pad,
//! Split, Gather, GatherElements, Where) are left in float and named in the plan's notes.
//!
//! [`build`] then writes the model: weights stored quantized behind a DequantizeLinear, a
//! QuantizeLinear/DequantizeLinear pair after every quantized activation, with ORT's tensor
//! and node names (`T_scale`, `T_zero_point`, `T_QuantizeLinear`, `W_quantized`, …), and
//! scales and zero points computed with ORT's arithmetic (`compute_scale_zp`,
//! `quantize_nparray`, `quantize_bias_static_impl`, including the int32-bias weight-scale
//! adjustment). Everything of the original model that is not changed is copied byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use crate::info;
use crate::proto::{self, ModelProto, NodeProto, TensorProto};

/// What the quantized model stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Activations as int8 (`true`, ORT's s8s8) or uint8 (u8s8).
    pub activations_int8: bool,
    /// Symmetric activation ranges (ORT's `ActivationSymmetric`).
    pub activations_symmetric: bool,
    /// Per-channel weights.
    pub per_channel: bool,
}

impl Options {
    fn act_type(&self) -> i32 {
        if self.activations_int8 {
            proto::INT8
        } else {
            proto::UINT8
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Activation,
    /// A weight, per-channel on this axis when `Some`.
    Weight(Option<usize>),
}

#[derive(Debug, Clone)]
struct Marked {
    role: Role,
    /// Quantized with the parameters of this (input) tensor.
    shares: Option<String>,
}

#[derive(Debug, Clone)]
struct Bias {
    input: String,
    weight: String,
    /// A Gemm's beta: folded into the quantized values (the op's beta then set to 1).
    beta: f32,
    /// The op that reads it.
    node: usize,
}

/// Which tensors get quantized, before any range is known.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    marked: IndexMap<String, Marked>,
    /// Initializers marked as activations (an Add's constant): quantized from their values,
    /// never calibrated.
    constants: std::collections::BTreeSet<String>,
    biases: IndexMap<String, Bias>,
    removed: BTreeSet<usize>,
    /// Node outputs renamed (a removed Relu's input → its output).
    renamed: BTreeMap<String, String>,
    /// What was left in float, and why.
    pub notes: Vec<String>,
}

impl Plan {
    /// Activations that need a calibrated range (their own scale and zero point), in the
    /// order the quantizer marked them. Graph inputs among them are fed, not computed.
    pub fn calibrated(&self) -> Vec<String> {
        self.marked
            .iter()
            .filter(|(t, m)| m.role == Role::Activation && m.shares.is_none() && !self.constants.contains(*t))
            .map(|(t, _)| t.clone())
            .collect()
    }
    fn is_quantized(&self, t: &str) -> bool {
        self.marked.contains_key(t) || self.biases.contains_key(t)
    }
}

struct Graph<'a> {
    inits: BTreeMap<&'a str, &'a TensorProto>,
    types: BTreeMap<String, i32>,
    readers: BTreeMap<&'a str, usize>,
    inputs: BTreeSet<&'a str>,
    outputs: BTreeSet<&'a str>,
    opset: i64,
}

impl Graph<'_> {
    fn is_init(&self, t: &str) -> bool {
        self.inits.contains_key(t)
    }
    fn quantizable(&self, t: &str) -> bool {
        match self.inits.get(t) {
            Some(init) => init.data_type == proto::FLOAT,
            None => self.types.get(t) == Some(&proto::FLOAT),
        }
    }
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}
pub(crate) fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// The default-domain opset of a model.
pub fn opset(model: &ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(1, |o| o.version)
}

/// Decide what to quantize, as ORT's QDQ quantizer does.
pub fn plan(model: &ModelProto, opts: &Options) -> Result<Plan, String> {
    let empty = proto::GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let opset = opset(model);
    if opset < 10 {
        return Err(format!("expected a model of opset 10 or newer (QuantizeLinear), found opset {opset}"));
    }
    if opts.per_channel && opset < 13 {
        return Err(format!(
            "per-channel weights need opset 13 or newer (the axis of DequantizeLinear), found opset {opset}; \
             use per-tensor weights or convert the model"
        ));
    }
    let mut readers: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let g = Graph {
        inits: graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
        types: info::tensor_types(model),
        readers,
        inputs: graph.input.iter().map(|v| v.name.as_str()).collect(),
        outputs: graph.output.iter().map(|v| v.name.as_str()).collect(),
        opset,
    };
    if graph.node.iter().any(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
        return Err("expected a float model, found one that already has QuantizeLinear/DequantizeLinear nodes".into());
    }
    let mut p = Plan::default();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        // (A node's outputs are renamed only later, by the Relu or Clip that reads them.)
        let input = |k: usize| node.input.get(k).filter(|s| !s.is_empty()).cloned();
        let output = |k: usize| node.output.get(k).filter(|s| !s.is_empty()).cloned();
        let out0 = output(0);
        match node.op_type.as_str() {
            "Conv" | "ConvTranspose" | "Gemm" => {
                let (Some(x), Some(w)) = (input(0), input(1)) else { continue };
                mark_activation(&mut p, &g, &x);
                if let Some(o) = &out0 {
                    mark_activation(&mut p, &g, o);
                }
                let axis = match node.op_type.as_str() {
                    "Conv" => 0,
                    "ConvTranspose" => 1,
                    _ if attr_i(node, "transB").unwrap_or(0) != 0 => 0,
                    _ => 1,
                };
                mark_weight(&mut p, &g, &w, opts.per_channel.then_some(axis));
                if let Some(b) = input(2) {
                    let beta = if node.op_type == "Gemm" { attr_f(node, "beta").unwrap_or(1.0) } else { 1.0 };
                    if node.op_type == "Gemm" && !g.is_init(&b) {
                        p.notes.push(format!("the bias of Gemm '{}' is not a constant: left in float", node.name));
                    } else if !beta.is_finite() {
                        p.notes.push(format!("the bias of Gemm '{}' (beta {beta}) is left in float", node.name));
                    } else if beta != 1.0 && g.readers.get(b.as_str()).copied().unwrap_or(0) > 1 {
                        p.notes.push(format!(
                            "the bias of Gemm '{}' (beta {beta}) is read by other ops too: left in float",
                            node.name
                        ));
                    } else {
                        // beta ≠ 1: the int32 bias holds beta × bias at input scale × weight
                        // scale, and the op's beta becomes 1 (ORT's quantizer scales the bias
                        // by beta, then sets beta to 1, which drops beta from the result).
                        mark_bias(&mut p, &g, &b, &x, &w, beta, index);
                    }
                }
            }
            "MatMul" => {
                for t in node.input.iter().filter(|s| !s.is_empty()).cloned().chain(out0.clone()) {
                    if g.is_init(&t) {
                        mark_weight(&mut p, &g, &t, opts.per_channel.then_some(1));
                    } else {
                        mark_activation(&mut p, &g, &t);
                    }
                }
            }
            "BatchNormalization" | "InstanceNormalization" | "LayerNormalization" => {
                let (Some(x), Some(s)) = (input(0), input(1)) else { continue };
                mark_activation(&mut p, &g, &x);
                if g.is_init(&s) {
                    mark_weight(&mut p, &g, &s, opts.per_channel.then_some(1));
                } else {
                    mark_activation(&mut p, &g, &s);
                }
                if let Some(b) = input(2) {
                    mark_bias(&mut p, &g, &b, &x, &s, 1.0, index);
                }
                for k in 0..node.output.len() {
                    if let Some(o) = output(k) {
                        mark_activation(&mut p, &g, &o);
                    }
                }
            }
            "Relu" | "Clip" => {
                let (Some(x), Some(o)) = (input(0), out0) else { continue };
                if !p.is_quantized(&x) {
                    continue;
                }
                let removable = !opts.activations_symmetric
                    && g.quantizable(&o)
                    && !g.is_init(&x)
                    && g.readers.get(x.as_str()) == Some(&1)
                    && !g.outputs.contains(x.as_str())
                    && !g.inputs.contains(x.as_str());
                if removable {
                    p.renamed.insert(x.clone(), o.clone());
                    p.marked.shift_remove(&x);
                    p.removed.insert(index);
                } else {
                    mark_activation(&mut p, &g, &x);
                }
                mark_activation(&mut p, &g, &o);
            }
            "Reshape" | "Transpose" | "Squeeze" | "Unsqueeze" | "Flatten" | "AveragePool" | "Slice" | "TopK"
            | "MaxPool" => {
                if node.op_type == "MaxPool" && g.opset < 12 {
                    continue;
                }
                let (Some(x), Some(o)) = (input(0), out0) else { continue };
                if p.is_quantized(&x) && g.quantizable(&o) {
                    p.marked.insert(o, Marked { role: Role::Activation, shares: Some(x) });
                }
            }
            "Add" | "Mul" | "GlobalAveragePool" | "Concat" | "Softmax" | "Sigmoid" | "LeakyRelu" | "ArgMax"
            | "CumSum" => {
                let ins: Vec<String> = node.input.iter().filter(|s| !s.is_empty()).cloned().collect();
                let outs: Vec<String> = (0..node.output.len()).filter_map(output).collect();
                for t in ins.iter().chain(&outs) {
                    mark_activation(&mut p, &g, t);
                }
            }
            "Resize" | "Pad" | "Split" | "Gather" | "GatherElements" | "Where" => {
                *unsupported.entry(node.op_type.clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    for (op, n) in unsupported {
        p.notes.push(format!(
            "{n} {op} op(s) left in float (ONNX Runtime's quantizer has rules of its own for {op} that \
             QuantGraph does not reproduce)"
        ));
    }
    Ok(p)
}

fn mark_activation(p: &mut Plan, g: &Graph, t: &str) {
    if g.quantizable(t) && !p.marked.contains_key(t) {
        p.marked.insert(t.to_owned(), Marked { role: Role::Activation, shares: None });
        if g.is_init(t) {
            p.constants.insert(t.to_owned());
        }
    }
}

fn mark_weight(p: &mut Plan, g: &Graph, t: &str, axis: Option<usize>) {
    let Some(init) = g.inits.get(t) else {
        // A weight computed at run time is quantized like an activation.
        mark_activation(p, g, t);
        return;
    };
    if init.data_type != proto::FLOAT {
        return;
    }
    match axis.filter(|a| *a < init.dims.len()) {
        Some(a) => {
            p.marked.insert(t.to_owned(), Marked { role: Role::Weight(Some(a)), shares: None });
        }
        None => {
            if !p.marked.contains_key(t) {
                p.marked.insert(t.to_owned(), Marked { role: Role::Weight(None), shares: None });
            }
        }
    }
}

fn mark_bias(p: &mut Plan, g: &Graph, b: &str, input: &str, weight: &str, beta: f32, node: usize) {
    match g.inits.get(b) {
        Some(init) if init.data_type == proto::FLOAT => {
            if p.biases.contains_key(b) {
                p.notes.push(format!("bias '{b}' is shared by several ops: quantized with the first one's scale"));
                return;
            }
            p.biases.insert(b.to_owned(), Bias { input: input.to_owned(), weight: weight.to_owned(), beta, node });
        }
        _ => p.notes.push(format!("bias '{b}' is not a float constant: left in float")),
    }
}

/// ORT's `adjust_tensor_ranges`, applied to calibrated ranges before parameters are
/// computed: the input of a Relu or Clip with no other reader takes the activation's output
/// range (what the pair after it will hold), and a Softmax's output is [0, 1].
pub fn adjust_ranges(model: &ModelProto, ranges: &mut BTreeMap<String, (f32, f32)>) {
    let empty = proto::GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let mut readers: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    for n in &graph.node {
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else { continue };
        match n.op_type.as_str() {
            "Relu" | "Clip" if readers.get(x.as_str()) == Some(&1) => {
                if let (true, Some(r)) = (ranges.contains_key(x), ranges.get(y).copied()) {
                    ranges.insert(x.clone(), r);
                }
            }
            "Softmax" => {
                ranges.insert(y.clone(), (0.0, 1.0));
            }
            _ => {}
        }
    }
}

/// ORT's `get_qmin_qmax_for_qType` (no reduced range).
pub fn qrange(dtype: i32, symmetric: bool) -> (i32, i32) {
    match (dtype, symmetric) {
        (proto::INT8, true) => (-127, 127),
        (proto::INT8, false) => (-128, 127),
        _ => (0, 255),
    }
}

/// ORT's `compute_scale_zp`: the range is widened to hold 0 (and made symmetric when asked);
/// the scale is computed in float64 and stored as float32; the zero point is rounded half to
/// even.
pub fn scale_zero_point(rmin: f32, rmax: f32, qmin: i32, qmax: i32, symmetric: bool) -> (f32, i32) {
    let (mut lo, mut hi) = (rmin.min(0.0), rmax.max(0.0));
    if symmetric {
        let m = lo.abs().max(hi.abs());
        (lo, hi) = (-m, m);
    }
    let scale = (f64::from(hi) - f64::from(lo)) / f64::from(qmax - qmin);
    if scale.is_nan() || scale < f64::from(f32::MIN_POSITIVE) {
        return (1.0, 0);
    }
    let zp = if symmetric {
        (f64::from(qmin + qmax) / 2.0).round_ties_even()
    } else {
        (f64::from(qmin) - f64::from(lo) / scale).round_ties_even()
    };
    (scale as f32, zp.clamp(f64::from(qmin.min(-128)), f64::from(qmax.max(255))) as i32)
}

/// ORT's `quantize_nparray`: `round(x / scale) + zero_point` in float32, clipped to the type.
fn quantize_values(values: &[f32], scale: f32, zp: i32, dtype: i32) -> Vec<i32> {
    let range = qrange(dtype, false);
    values.iter().map(|&x| quantize_value(x, scale, zp, range)).collect()
}

/// One value as QuantizeLinear computes it: `round(x / scale) + zero_point` in float32
/// (half to even), clamped to `[qmin, qmax]`.
pub fn quantize_value(x: f32, scale: f32, zp: i32, (qmin, qmax): (i32, i32)) -> i32 {
    ((x / scale).round_ties_even() + zp as f32).clamp(qmin as f32, qmax as f32) as i32
}

#[derive(Debug, Clone)]
struct Params {
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    dtype: i32,
    axis: Option<usize>,
}

/// The quantization parameters the model got, a row per quantized tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub tensor: String,
    /// "activation", "weight" or "bias".
    pub role: &'static str,
    pub dtype: &'static str,
    pub scale: f32,
    pub zero_point: i32,
    /// Channels, for per-channel weights (their first channel's scale is `scale`).
    pub channels: usize,
    /// The tensor whose scale and zero point an activation shares, if it shares.
    pub shares: Option<String>,
}

/// The channel (along `axis`) of each flat index of `init`, and the channel count.
fn channel_of(init: &TensorProto, axis: usize) -> (impl Fn(usize) -> usize, usize) {
    let dims: Vec<usize> = init.dims.iter().map(|d| (*d).max(0) as usize).collect();
    let c = dims[axis];
    let inner = dims[axis + 1..].iter().product::<usize>().max(1);
    (move |i: usize| (i / inner) % c.max(1), c)
}

fn channels_of(init: &TensorProto, axis: usize, values: &[f32]) -> Vec<Vec<f32>> {
    let (channel, c) = channel_of(init, axis);
    let mut out = vec![Vec::with_capacity(values.len() / c.max(1)); c];
    for (i, v) in values.iter().enumerate() {
        out[channel(i)].push(*v);
    }
    out
}

fn min_max(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn scalar_tensor(name: String, dtype: i32, dims: Vec<i64>) -> TensorProto {
    TensorProto { name, data_type: dtype, dims, ..Default::default() }
}

fn float_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    let mut t = scalar_tensor(name, proto::FLOAT, dims);
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn int_tensor(name: String, dtype: i32, dims: Vec<i64>, values: &[i32]) -> TensorProto {
    let mut t = scalar_tensor(name, dtype, dims);
    t.set_ints(values);
    t
}

fn qdq_node(op: &str, name: String, inputs: [String; 3], output: String, axis: Option<usize>) -> NodeProto {
    NodeProto {
        input: inputs.to_vec(),
        output: vec![output],
        name,
        op_type: op.into(),
        attribute: axis
            .map(|a| proto::AttributeProto { name: "axis".into(), i: a as i64, r#type: 2, ..Default::default() })
            .into_iter()
            .collect(),
        doc_string: String::new(),
        domain: String::new(),
    }
}

/// Write the QDQ model. `ranges` holds the calibrated `(min, max)` of every tensor
/// [`Plan::calibrated`] names. Returns the model's bytes and a row per quantized tensor.
pub fn build(
    bytes: &[u8],
    model: &ModelProto,
    plan: &Plan,
    ranges: &BTreeMap<String, (f32, f32)>,
    opts: &Options,
) -> Result<(Vec<u8>, Vec<Row>), String> {
    let empty = proto::GraphProto::default();
    let graph = model.graph.as_ref().unwrap_or(&empty);
    let inits: BTreeMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let outputs: BTreeSet<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
    let act = opts.act_type();

    // 1. Parameters of every tensor with its own (weights first read from the initializers).
    let mut params: BTreeMap<String, Params> = BTreeMap::new();
    let mut weights: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (t, m) in &plan.marked {
        if m.shares.is_some() {
            continue;
        }
        if let Some(init) = inits.get(t.as_str()) {
            let values = init
                .floats()
                .ok_or_else(|| format!("initializer '{t}' is not stored as float32 data QuantGraph can read"))?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("initializer '{t}' holds NaN or infinite values"));
            }
            let (dtype, symmetric, axis) = match m.role {
                Role::Weight(axis) => (proto::INT8, true, axis),
                Role::Activation => (act, opts.activations_symmetric, None),
            };
            let (qmin, qmax) = qrange(dtype, symmetric);
            // A channel axis of length 0 has nothing per channel: per-tensor.
            let axis = axis.filter(|a| init.dims.get(*a).is_some_and(|d| *d > 0));
            let groups = match axis {
                Some(a) => channels_of(init, a, &values),
                None => vec![values.clone()],
            };
            let (scales, zero_points) = groups
                .iter()
                .map(|g| {
                    let (lo, hi) = if g.is_empty() { (0.0, 0.0) } else { min_max(g) };
                    scale_zero_point(lo, hi, qmin, qmax, symmetric)
                })
                .unzip();
            params.insert(t.clone(), Params { scales, zero_points, dtype, axis });
            weights.insert(t.clone(), values);
        } else {
            let Some(&(lo, hi)) = ranges.get(t) else {
                return Err(format!("no calibrated range for activation '{t}'"));
            };
            if !(lo.is_finite() && hi.is_finite()) {
                return Err(format!(
                    "activation '{t}' has no finite range (min {lo}, max {hi}): it is NaN or infinite"
                ));
            }
            let (qmin, qmax) = qrange(act, opts.activations_symmetric);
            let (s, z) = scale_zero_point(lo, hi, qmin, qmax, opts.activations_symmetric);
            params.insert(t.clone(), Params { scales: vec![s], zero_points: vec![z], dtype: act, axis: None });
        }
    }
    // Which tensor's parameters each tensor uses (itself, or the one it shares with).
    let mut source: BTreeMap<String, String> = BTreeMap::new();
    for (t, m) in &plan.marked {
        let mut s = m.shares.clone().unwrap_or_else(|| t.clone());
        let mut hops = 0;
        while let Some(next) = plan.marked.get(&s).and_then(|m| m.shares.clone()) {
            s = next;
            hops += 1;
            if hops > plan.marked.len() {
                break;
            }
        }
        if params.contains_key(&s) {
            source.insert(t.clone(), s);
        }
    }

    // 2. ORT's weight-scale adjustment, so an int32 bias is not clipped.
    adjust_for_bias(plan, &inits, &source, &mut params);

    // 3. New initializers and nodes.
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut head: Vec<NodeProto> = Vec::new();
    let mut after: BTreeMap<String, Vec<NodeProto>> = BTreeMap::new();
    let mut input_renames: BTreeMap<String, String> = BTreeMap::new();
    let mut output_renames: BTreeMap<String, String> = plan.renamed.clone();
    // Gemms whose beta went into their quantized bias: written with beta 1.
    let mut beta_folded: BTreeSet<usize> = BTreeSet::new();
    let mut removed_inits: BTreeSet<String> = BTreeSet::new();
    let mut rows: Vec<Row> = Vec::new();
    let dims_of = |p: &Params| -> Vec<i64> {
        if p.axis.is_some() {
            vec![p.scales.len() as i64]
        } else {
            vec![]
        }
    };
    for (t, m) in &plan.marked {
        let Some(src) = source.get(t) else { continue };
        let p = &params[src];
        if let Some(values) = weights.get(t) {
            let init = inits[t.as_str()];
            let q: Vec<i32> = match p.axis {
                Some(a) => {
                    let (channel, _) = channel_of(init, a);
                    let range = qrange(p.dtype, false);
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| quantize_value(x, p.scales[channel(i)], p.zero_points[channel(i)], range))
                        .collect()
                }
                None => quantize_values(values, p.scales[0], p.zero_points[0], p.dtype),
            };
            let qname = format!("{t}_quantized");
            new_inits.push(int_tensor(qname.clone(), p.dtype, init.dims.clone(), &q));
            new_inits.push(float_tensor(format!("{t}_scale"), dims_of(p), &p.scales));
            new_inits.push(int_tensor(format!("{t}_zero_point"), p.dtype, dims_of(p), &p.zero_points));
            let out = format!("{t}_DequantizeLinear_Output");
            head.push(qdq_node(
                "DequantizeLinear",
                format!("{t}_DequantizeLinear"),
                [qname, format!("{t}_scale"), format!("{t}_zero_point")],
                out.clone(),
                p.axis,
            ));
            input_renames.insert(t.clone(), out);
            removed_inits.insert(t.clone());
        } else {
            let (scale_name, zp_name) = (format!("{src}_scale"), format!("{src}_zero_point"));
            if src == t {
                new_inits.push(float_tensor(scale_name.clone(), vec![], &p.scales));
                new_inits.push(int_tensor(zp_name.clone(), p.dtype, vec![], &p.zero_points));
            }
            let (q_input, dq_output) = if outputs.contains(t.as_str()) {
                let renamed = format!("{t}_QuantizeLinear_Input");
                output_renames.insert(t.clone(), renamed.clone());
                (renamed, t.clone())
            } else {
                let o = format!("{t}_DequantizeLinear_Output");
                input_renames.insert(t.clone(), o.clone());
                (t.clone(), o)
            };
            let q_out = format!("{t}_QuantizeLinear_Output");
            let pair = vec![
                qdq_node(
                    "QuantizeLinear",
                    format!("{t}_QuantizeLinear"),
                    [q_input.clone(), scale_name.clone(), zp_name.clone()],
                    q_out.clone(),
                    None,
                ),
                qdq_node(
                    "DequantizeLinear",
                    format!("{t}_DequantizeLinear"),
                    [q_out, scale_name, zp_name],
                    dq_output,
                    None,
                ),
            ];
            after.entry(q_input).or_default().extend(pair);
        }
        rows.push(Row {
            tensor: t.clone(),
            role: if weights.contains_key(t) && matches!(m.role, Role::Weight(_)) { "weight" } else { "activation" },
            dtype: proto::dtype_name(p.dtype),
            scale: p.scales[0],
            zero_point: p.zero_points[0],
            channels: if p.axis.is_some() { p.scales.len() } else { 1 },
            shares: (src != t).then(|| src.clone()),
        });
    }
    for (b, info) in &plan.biases {
        let (Some(input), Some(w)) = (source.get(&info.input).and_then(|s| params.get(s)), params.get(&info.weight))
        else {
            continue;
        };
        let Some(init) = inits.get(b.as_str()) else { continue };
        let values = init.floats().ok_or_else(|| format!("bias '{b}' is not float32 data QuantGraph can read"))?;
        let bias_scales: Vec<f32> = w.scales.iter().map(|ws| input.scales[0] * ws).collect();
        let beta = f64::from(info.beta);
        let q: Vec<i32> = values
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let s = bias_scales[if bias_scales.len() > 1 { i % bias_scales.len() } else { 0 }];
                (f64::from(x) * beta / f64::from(s)).round_ties_even().clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                    as i32
            })
            .collect();
        if info.beta != 1.0 {
            beta_folded.insert(info.node);
        }
        let qname = format!("{b}_quantized");
        let per_channel = bias_scales.len() > 1;
        new_inits.push(int_tensor(qname.clone(), proto::INT32, init.dims.clone(), &q));
        new_inits.push(float_tensor(format!("{qname}_scale"), vec![bias_scales.len() as i64], &bias_scales));
        new_inits.push(int_tensor(
            format!("{qname}_zero_point"),
            proto::INT32,
            if per_channel { vec![bias_scales.len() as i64] } else { vec![] },
            &vec![0; if per_channel { bias_scales.len() } else { 1 }],
        ));
        head.push(qdq_node(
            "DequantizeLinear",
            format!("{b}_DequantizeLinear"),
            [qname.clone(), format!("{qname}_scale"), format!("{qname}_zero_point")],
            b.clone(),
            per_channel.then_some(0),
        ));
        removed_inits.insert(b.clone());
        rows.push(Row {
            tensor: b.clone(),
            role: "bias",
            dtype: "int32",
            scale: bias_scales[0],
            zero_point: 0,
            channels: bias_scales.len(),
            shares: None,
        });
    }

    // 4. The node list: weight and bias DequantizeLinears, pairs on graph inputs, then every
    // kept node followed by the pairs on what it makes.
    let mut nodes: Vec<proto::NodeOut> = head.into_iter().map(proto::NodeOut::New).collect();
    for v in &graph.input {
        for n in after.remove(&v.name).unwrap_or_default() {
            nodes.push(proto::NodeOut::New(n));
        }
    }
    for (index, node) in graph.node.iter().enumerate() {
        if plan.removed.contains(&index) {
            continue;
        }
        let inputs: BTreeMap<String, String> =
            node.input.iter().filter_map(|i| input_renames.get(i).map(|r| (i.clone(), r.clone()))).collect();
        let outs: Vec<String> = node.output.iter().map(|o| follow(&output_renames, o)).collect();
        let output_map: BTreeMap<String, String> =
            node.output.iter().zip(&outs).filter(|(a, b)| a != b).map(|(a, b)| (a.clone(), b.clone())).collect();
        if beta_folded.contains(&index) {
            let mut n = node.clone();
            n.input = node.input.iter().map(|i| inputs.get(i).cloned().unwrap_or_else(|| i.clone())).collect();
            n.output = outs.clone();
            for a in n.attribute.iter_mut().filter(|a| a.name == "beta") {
                a.f = 1.0;
            }
            nodes.push(proto::NodeOut::New(n));
        } else {
            nodes.push(proto::NodeOut::Original { index, inputs, outputs: output_map });
        }
        for o in &outs {
            for n in after.remove(o).unwrap_or_default() {
                nodes.push(proto::NodeOut::New(n));
            }
        }
    }
    if let Some((t, _)) = after.into_iter().next() {
        return Err(format!("internal: no op makes '{t}', which was to be quantized"));
    }
    // Value infos of tensors that no longer exist under their name.
    let mut gone: BTreeSet<String> = plan.renamed.keys().cloned().collect();
    gone.extend(output_renames.keys().cloned());
    let out = proto::rebuild_graph(
        bytes,
        proto::GraphRebuild {
            nodes,
            extra_initializers: new_inits,
            removed_initializers: removed_inits,
            dropped_value_info: gone,
            ..proto::GraphRebuild::default()
        },
    )?;
    Ok((drop_unused_initializers(&out)?, rows))
}

/// The model without initializers no node reads (a folded Clip's bounds, a float weight
/// whose quantized copy replaced it, or one the source model never used) and without the
/// graph inputs that named them, as ONNX Runtime's quantizer leaves its models
/// (`clean_initializers`); unchanged where a subgraph could read them by name.
fn drop_unused_initializers(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let m = proto::decode_model(bytes)?;
    let Some(g) = m.graph.as_ref() else { return Ok(bytes.to_vec()) };
    if g.node.iter().any(|n| n.attribute.iter().any(|a| a.r#type == 5 || a.r#type == 10)) {
        return Ok(bytes.to_vec());
    }
    let read: BTreeSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(g.output.iter().map(|o| o.name.as_str()))
        .collect();
    let unused: BTreeSet<String> =
        g.initializer.iter().filter(|t| !read.contains(t.name.as_str())).map(|t| t.name.clone()).collect();
    if unused.is_empty() {
        return Ok(bytes.to_vec());
    }
    proto::rebuild_graph(
        bytes,
        proto::GraphRebuild {
            nodes: (0..g.node.len())
                .map(|index| proto::NodeOut::Original {
                    index,
                    inputs: Default::default(),
                    outputs: Default::default(),
                })
                .collect(),
            removed_initializers: unused,
            ..proto::GraphRebuild::default()
        },
    )
}

/// Follow output renames (a removed Relu's input renamed to its output, then a graph output
/// renamed to its QuantizeLinear's input).
fn follow(renames: &BTreeMap<String, String>, t: &str) -> String {
    let mut cur = t.to_owned();
    for _ in 0..=renames.len() {
        match renames.get(&cur) {
            Some(next) if *next != cur => cur = next.clone(),
            _ => break,
        }
    }
    cur
}

/// ORT's `_adjust_weight_scale_for_int32_bias`: when `input scale × weight scale` is so small
/// that the bias would not fit an int32, the weight's scale grows by the ratio needed.
fn adjust_for_bias(
    plan: &Plan,
    inits: &BTreeMap<&str, &TensorProto>,
    source: &BTreeMap<String, String>,
    params: &mut BTreeMap<String, Params>,
) {
    let qrange = f64::from(i32::MAX) - f64::from(i32::MIN + 1);
    for (b, info) in &plan.biases {
        let Some(input_scale) = source.get(&info.input).and_then(|s| params.get(s)).map(|p| f64::from(p.scales[0]))
        else {
            continue;
        };
        let Some(values) = inits.get(b.as_str()).and_then(|t| t.floats()) else { continue };
        let values: Vec<f32> = values.iter().map(|v| v * info.beta).collect();
        let Some(w) = params.get_mut(&info.weight) else { continue };
        if w.dtype != proto::INT8 || w.zero_points.iter().any(|z| *z != 0) || w.scales.is_empty() {
            continue;
        }
        if w.axis.is_none() {
            let (lo, hi) = min_max(&values);
            let absmax = f64::from(lo.min(0.0)).abs().max(f64::from(hi.max(0.0)).abs());
            let smallest = 1.0001 * (2.0 * absmax) / qrange;
            let candidate = input_scale * f64::from(w.scales[0]);
            if candidate < smallest && candidate > 0.0 {
                w.scales[0] = (f64::from(w.scales[0]) * (smallest / candidate)) as f32;
            }
        } else {
            for (i, s) in w.scales.iter_mut().enumerate() {
                let Some(v) = values.get(i) else { break };
                let smallest = 1.0001 * (2.0 * f64::from(v.abs())) / qrange;
                let candidate = input_scale * f64::from(*s);
                if candidate < smallest && candidate > 0.0 {
                    *s = (f64::from(*s) * (smallest / candidate)) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_and_zero_point_follow_ort() {
        // uint8 asymmetric: [−1, 3] → scale 4/255, zp round(0 + 1/scale) = round(63.75) = 64.
        let (s, z) = scale_zero_point(-1.0, 3.0, 0, 255, false);
        assert_eq!(s, (4.0f64 / 255.0) as f32);
        assert_eq!(z, 64);
        // A range not holding 0 is widened to it.
        let (s, z) = scale_zero_point(0.5, 2.0, -128, 127, false);
        assert_eq!(s, (2.0f64 / 255.0) as f32);
        assert_eq!(z, -128);
        // Symmetric int8 weights: [−127, 127], zero point 0.
        let (s, z) = scale_zero_point(-0.3, 0.5, -127, 127, true);
        assert_eq!(s, (1.0f64 / 254.0) as f32);
        assert_eq!(z, 0);
        // A constant 0 tensor gets scale 1.
        assert_eq!(scale_zero_point(0.0, 0.0, 0, 255, false), (1.0, 0));
    }

    #[test]
    fn quantized_values_round_half_to_even_and_clip() {
        assert_eq!(quantize_values(&[0.5, 1.5, 2.5, -400.0, 400.0], 1.0, 0, proto::INT8), vec![0, 2, 2, -128, 127]);
        assert_eq!(quantize_values(&[0.0, -1.0], 0.5, 128, proto::UINT8), vec![128, 126]);
    }
}
