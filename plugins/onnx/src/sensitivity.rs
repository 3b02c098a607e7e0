//! `onnx.sensitivity`: which quantized layer costs accuracy, and a mixed-precision model
//! that keeps the worst ones in float.
//!
//! A QDQ model's quantizers are grouped per layer (the op that reads the dequantized
//! values: its input activations, weight and bias) or per tensor. A group is "removed" by
//! wiring its op straight to the float values: the tensor its QuantizeLinear read, or the
//! float weight from the FP32 model (same name without `_quantized`). For each group two
//! variants run over the dataset: *only this group quantized* (every other group removed)
//! and *all but this group* (this group removed), each giving top-1 accuracy, agreement
//! with FP32 and output SQNR against FP32. Variants are memoised by the digest of their
//! bytes and input, so a rerun after changing one thing runs only the variants it changed.
//!
//! The mixed-precision model starts from the full QDQ model and removes groups greedily,
//! largest "all but this" gain first, until top-1 accuracy is within the tolerance of FP32.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quantgraph_nodes::memo::Memo;
use quantgraph_nodes::value::{Cell, Dataset, Report, Table};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};

use crate::prefix::Prefix;
use crate::{model, probe, proto, runtime};

/// FP32 model + QDQ model + dataset → per-layer sensitivity and a mixed-precision model.
#[derive(Default)]
pub struct Sensitivity;

/// One group of quantizers, removable together.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The op (per layer) or float tensor (per tensor) it is named after.
    pub name: String,
    pub op_type: String,
    /// The float tensors its quantizers quantize.
    pub quantizers: Vec<String>,
    /// Input rewires that remove it: (node name, input index, float tensor).
    pub rewires: Vec<(String, usize, String)>,
    /// Float weights it needs (copied from the FP32 model under new names).
    pub weights: Vec<proto::TensorProto>,
    /// Activations it restores: where the quantizer removed a Relu or Clip (the Q/DQ pair
    /// did its clipping), the FP32 model's activation, copied after the float tensor.
    pub relus: Vec<proto::NodeProto>,
    /// DequantizeLinear nodes that make a model output, replaced by an Identity of the float
    /// value when the group is removed.
    pub replace: Vec<proto::NodeProto>,
}

/// The quantizers of a QDQ model, grouped per layer (`per_layer`) or per tensor, and notes
/// on quantizers that cannot be removed.
pub fn groups(
    qdq: &proto::ModelProto,
    fp32: &proto::ModelProto,
    per_layer: bool,
) -> Result<(Vec<Group>, Vec<String>), String> {
    let empty = proto::GraphProto::default();
    let g = qdq.graph.as_ref().unwrap_or(&empty);
    let fp32_inits: BTreeMap<&str, &proto::TensorProto> =
        fp32.graph.as_ref().map(|g| g.initializer.iter().map(|t| (t.name.as_str(), t)).collect()).unwrap_or_default();
    let inits: BTreeMap<&str, &proto::TensorProto> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let producer: BTreeMap<&str, &proto::NodeProto> =
        g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for n in &g.node {
        if n.name.is_empty() || !names.insert(n.name.as_str()) {
            return Err(format!(
                "the model has unnamed or duplicate node names ('{}' {}); QuantGraph edits nodes by name",
                n.name, n.op_type
            ));
        }
    }
    let mut out: Vec<Group> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut notes = Vec::new();
    // Every name in the model, so that restored activations get names of their own.
    let mut taken: BTreeSet<String> =
        g.node.iter().flat_map(|n| n.output.iter().cloned().chain([n.name.clone()])).collect();
    taken.extend(g.initializer.iter().map(|t| t.name.clone()));
    taken.extend(g.input.iter().map(|t| t.name.clone()));
    // The activation to restore after each quantized tensor, decided once per tensor.
    let fp32_graph = fp32.graph.clone().unwrap_or_default();
    let mut acts: BTreeMap<String, (proto::NodeProto, Vec<proto::TensorProto>)> = BTreeMap::new();
    for q in g.node.iter().filter(|n| n.op_type == "QuantizeLinear") {
        let Some(x) = q.input.first() else { continue };
        if acts.contains_key(x) {
            continue;
        }
        if let Some((node, extra)) = restore_activation(x, q, &inits, &fp32_graph, &taken) {
            taken.insert(node.name.clone());
            taken.extend(node.output.iter().cloned());
            taken.extend(extra.iter().map(|t| t.name.clone()));
            acts.insert(x.clone(), (node, extra));
        }
    }
    for n in &g.node {
        if matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear") {
            continue;
        }
        for (i, input) in n.input.iter().enumerate() {
            let Some(dq) = producer.get(input.as_str()).filter(|p| p.op_type == "DequantizeLinear") else { continue };
            let Some(q_in) = dq.input.first() else { continue };
            let mut relu = None;
            let (float, weight) = match producer.get(q_in.as_str()) {
                Some(q) if q.op_type == "QuantizeLinear" => match q.input.first() {
                    Some(x) => match acts.get(x.as_str()) {
                        Some((node, _)) => {
                            relu = acts.get(x.as_str()).cloned();
                            (node.output[0].clone(), None)
                        }
                        None => (x.clone(), None),
                    },
                    None => continue,
                },
                _ if inits.contains_key(q_in.as_str()) => {
                    let name = q_in.strip_suffix("_quantized").unwrap_or(q_in);
                    match fp32_inits.get(name) {
                        Some(t) if inits.get(q_in.as_str()).is_some_and(|q| q.dims == t.dims) => {
                            let mut w = (*t).clone();
                            w.name = format!("{name}__float");
                            // A Gemm whose beta the quantizer folded into its bias (beta 1 in
                            // the QDQ model): the float bias comes back multiplied by the FP32
                            // op's beta, so the op still computes A·B + beta·b.
                            if let Some(ratio) = gemm_beta_ratio(n, i, &fp32_graph) {
                                w = scaled_floats(&w, ratio).ok_or_else(|| {
                                    format!("the FP32 bias '{name}' of Gemm '{}' is not float32 data", n.name)
                                })?;
                            }
                            (w.name.clone(), Some(w))
                        }
                        _ => {
                            notes.push(format!(
                                "'{q_in}' ({} input {i}) stays quantized: the FP32 model has no initializer '{name}' of \
                                 its shape",
                                n.name
                            ));
                            continue;
                        }
                    }
                }
                _ => continue,
            };
            let label = float.trim_end_matches("__float").trim_end_matches("__relu").to_owned();
            let key = if per_layer { n.name.clone() } else { label.clone() };
            let grp = group_for(&mut out, &mut index, &key, if per_layer { &n.op_type } else { "" }, &label);
            if !per_layer && grp.op_type.is_empty() {
                grp.op_type = n.op_type.clone();
            }
            grp.rewires.push((n.name.clone(), i, float));
            if let Some(w) = weight {
                if !grp.weights.iter().any(|x| x.name == w.name) {
                    grp.weights.push(w);
                }
            }
            if let Some((r, bounds)) = relu {
                if !grp.relus.iter().any(|x| x.name == r.name) {
                    grp.relus.push(r);
                    for b in bounds {
                        if !grp.weights.iter().any(|w| w.name == b.name) {
                            grp.weights.push(b);
                        }
                    }
                }
            }
        }
    }
    // Quantized model outputs: the DequantizeLinear that makes one becomes an Identity of
    // the float value, in the group of the op that made it.
    let graph_outputs: BTreeSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    for dq in g.node.iter().filter(|n| n.op_type == "DequantizeLinear") {
        let Some(y) = dq.output.first().filter(|y| graph_outputs.contains(y.as_str())) else { continue };
        let Some(q) = dq.input.first().and_then(|i| producer.get(i.as_str())).filter(|q| q.op_type == "QuantizeLinear")
        else {
            continue;
        };
        let Some(x) = q.input.first() else { continue };
        let maker = producer.get(x.as_str()).map(|p| (p.name.clone(), p.op_type.clone()));
        let key = match (&maker, per_layer) {
            (Some((name, _)), true) => name.clone(),
            _ => x.clone(),
        };
        let op_type = maker.as_ref().map(|m| m.1.clone()).unwrap_or_default();
        let grp = group_for(&mut out, &mut index, &key, &op_type, x);
        let mut input = x.clone();
        if let Some((node, bounds)) = acts.get(x.as_str()) {
            input = node.output[0].clone();
            if !grp.relus.iter().any(|r| r.name == node.name) {
                grp.relus.push(node.clone());
                grp.weights.extend(bounds.iter().cloned());
            }
        }
        grp.replace.push(proto::NodeProto {
            input: vec![input],
            output: vec![y.clone()],
            name: dq.name.clone(),
            op_type: "Identity".into(),
            attribute: Vec::new(),
            doc_string: String::new(),
            domain: String::new(),
        });
    }
    Ok((out, notes))
}

/// The activation a quantizer removed after `x`, to restore when its Q/DQ pair goes: the
/// FP32 model's Relu or Clip that makes the tensor of that name (ONNX Runtime gives the op
/// before it the activation's output name), copied with its constant bounds; without such
/// a tensor in the FP32 model (other names), a Relu where the pair's range starts at 0.
fn restore_activation(
    x: &str,
    q: &proto::NodeProto,
    inits: &BTreeMap<&str, &proto::TensorProto>,
    fp32: &proto::GraphProto,
    taken: &BTreeSet<String>,
) -> Option<(proto::NodeProto, Vec<proto::TensorProto>)> {
    let fp32_inits: BTreeMap<&str, &proto::TensorProto> =
        fp32.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let maker = fp32.node.iter().find(|n| n.output.first().is_some_and(|o| o == x));
    let unique = |base: String| -> String {
        let mut name = base.clone();
        let mut k = 1;
        while taken.contains(&name) {
            name = format!("{base}{k}");
            k += 1;
        }
        name
    };
    let out = unique(format!("{x}__act"));
    let node = |op: &str, inputs: Vec<String>, attribute: Vec<proto::AttributeProto>| proto::NodeProto {
        input: inputs,
        output: vec![out.clone()],
        name: unique(format!("{x}__act_node")),
        op_type: op.into(),
        attribute,
        doc_string: String::new(),
        domain: String::new(),
    };
    match maker {
        Some(m) if m.op_type == "Relu" => Some((node("Relu", vec![x.to_owned()], Vec::new()), Vec::new())),
        Some(m) if m.op_type == "Clip" => {
            // Clip's bounds: attributes (opset < 11) or constant inputs, copied under new names.
            let mut inputs = vec![x.to_owned()];
            let mut extra = Vec::new();
            for bound in m.input.iter().skip(1) {
                if bound.is_empty() {
                    inputs.push(String::new());
                    continue;
                }
                let t = fp32_inits.get(bound.as_str())?;
                let mut t = (*t).clone();
                t.name = unique(format!("{x}__act_{bound}"));
                inputs.push(t.name.clone());
                extra.push(t);
            }
            Some((node("Clip", inputs, m.attribute.clone()), extra))
        }
        // The FP32 model has this tensor and no activation makes it: nothing was removed.
        Some(_) => None,
        None if fp32.input.iter().any(|i| i.name == x) => None,
        None if clips_at_zero(q, inits) => Some((node("Relu", vec![x.to_owned()], Vec::new()), Vec::new())),
        None => None,
    }
}

/// Whether a QuantizeLinear's range starts at 0 (its zero point is the type's minimum).
fn clips_at_zero(q: &proto::NodeProto, inits: &BTreeMap<&str, &proto::TensorProto>) -> bool {
    let Some(zp) = q.input.get(2).and_then(|z| inits.get(z.as_str())) else { return false };
    let Some(z) = zp.ints().and_then(|v| v.first().copied()) else { return false };
    z == quantgraph_nodes::value::qrange(proto::dtype_name(zp.data_type)).0
}

/// The group named `key` (made empty, with `op_type`, on first use), with `quantizer`
/// listed in it.
fn group_for<'g>(
    groups: &'g mut Vec<Group>,
    index: &mut BTreeMap<String, usize>,
    key: &str,
    op_type: &str,
    quantizer: &str,
) -> &'g mut Group {
    let k = *index.entry(key.to_owned()).or_insert_with(|| {
        groups.push(Group {
            name: key.to_owned(),
            op_type: op_type.to_owned(),
            quantizers: Vec::new(),
            rewires: Vec::new(),
            weights: Vec::new(),
            relus: Vec::new(),
            replace: Vec::new(),
        });
        groups.len() - 1
    });
    let grp = &mut groups[k];
    if !grp.quantizers.iter().any(|q| q == quantizer) {
        grp.quantizers.push(quantizer.to_owned());
    }
    grp
}

/// For the bias input of a Gemm: the FP32 op's beta over the QDQ op's (`None` when they are
/// equal or the op is not a Gemm's bias), found by node name.
fn gemm_beta_ratio(n: &proto::NodeProto, input: usize, fp32: &proto::GraphProto) -> Option<f32> {
    if n.op_type != "Gemm" || input != 2 {
        return None;
    }
    let beta = |node: &proto::NodeProto| crate::quantize::attr_f(node, "beta").unwrap_or(1.0);
    let original = fp32.node.iter().find(|m| m.name == n.name && m.op_type == "Gemm")?;
    let (want, have) = (beta(original), beta(n));
    (want != have && have != 0.0).then(|| want / have)
}

/// A float32 tensor with every value multiplied by `k`.
fn scaled_floats(t: &proto::TensorProto, k: f32) -> Option<proto::TensorProto> {
    let values: Vec<f32> = t.floats()?.iter().map(|v| v * k).collect();
    let mut out = t.clone();
    out.set_floats(&values);
    Some(out)
}

/// The QDQ model with the given groups removed (their ops read float values).
pub fn without(qdq_bytes: &[u8], groups: &[&Group]) -> Result<Vec<u8>, String> {
    let mut node_inputs: BTreeMap<String, BTreeMap<usize, String>> = BTreeMap::new();
    let mut extra = Vec::new();
    let mut nodes: Vec<proto::NodeProto> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for g in groups {
        for r in &g.relus {
            if seen.insert(r.name.clone()) {
                nodes.push(r.clone());
            }
        }
        for (node, i, float) in &g.rewires {
            node_inputs.entry(node.clone()).or_default().insert(*i, float.clone());
        }
        for w in &g.weights {
            if seen.insert(w.name.clone()) {
                extra.push(w.clone());
            }
        }
    }
    let replace_nodes: BTreeMap<String, proto::NodeProto> =
        groups.iter().flat_map(|g| g.replace.iter().map(|n| (n.name.clone(), n.clone()))).collect();
    if node_inputs.is_empty() && replace_nodes.is_empty() {
        return Ok(qdq_bytes.to_vec());
    }
    let rewired = proto::edit_model(
        qdq_bytes,
        proto::ModelEdit {
            node_inputs,
            extra_initializers: extra,
            extra_nodes: nodes,
            replace_nodes,
            ..proto::ModelEdit::default()
        },
    )?;
    // The removed pairs' Q/DQ nodes (and weights) are read by nothing now: dropped, so the
    // variant runs only what it computes and ONNX Runtime fuses as in a model written that way.
    proto::prune_dead(&rewired)
}

/// What one variant gives over the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub top1: Vec<u32>,
    /// ‖FP32 output‖² and ‖FP32 − variant‖² over all samples.
    pub sum_x2: f64,
    pub sum_d2: f64,
}

impl Outcome {
    fn new(samples: usize) -> Outcome {
        Outcome { top1: Vec::with_capacity(samples), sum_x2: 0.0, sum_d2: 0.0 }
    }

    /// One batch of outputs (first sample `start`, `item` values per sample): its top-1 and,
    /// against `reference` (all samples' FP32 outputs, flattened), its error sums.
    fn add_batch(&mut self, start: usize, item: usize, data: &[f32], reference: Option<&[f32]>) {
        self.top1.extend(probe::argmax_rows(data, item));
        if let Some(r) = reference {
            let at = start * item;
            if let Some(x) = r.get(at..at + data.len()) {
                for (p, q) in x.iter().zip(data.iter()) {
                    let (p, q) = (f64::from(*p), f64::from(*q));
                    self.sum_x2 += p * p;
                    self.sum_d2 += (p - q) * (p - q);
                }
            }
        }
    }

    fn accuracy(&self, labels: &[u32]) -> f64 {
        let right = self.top1.iter().zip(labels).filter(|(p, l)| p == l).count();
        right as f64 / self.top1.len().max(1) as f64
    }
    fn agreement(&self, reference: &[u32]) -> f64 {
        let same = self.top1.iter().zip(reference).filter(|(p, q)| p == q).count();
        same as f64 / self.top1.len().max(1) as f64
    }
    fn sqnr_db(&self) -> f64 {
        let eps = f64::EPSILON;
        20.0 * (self.sum_x2.sqrt().max(eps) / self.sum_d2.sqrt().max(eps)).log10()
    }
}

/// Variants' outcomes by (variant bytes digest, FP32 reference and images digest, batch).
static MEMO: Memo<(u64, u64, usize), Outcome> = Memo::new(4096, usize::MAX, |_| 0);

/// Forget memoised variants (tests that time or compare fresh runs).
pub fn clear() {
    MEMO.clear();
}

/// Run a model over the dataset: top-1 per sample and, against `reference` outputs (all
/// samples, flattened), the output's error sums; also the outputs themselves when `keep`.
#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &EvalContext,
    bytes: &[u8],
    feed: &runtime::Feed,
    dataset: &Dataset,
    batch: usize,
    threads: usize,
    reference: Option<&[f32]>,
    keep: bool,
) -> Result<(Outcome, Vec<f32>), NodeError> {
    let mut session = runtime::session(bytes, threads)?;
    let output = session.outputs().first().map(|o| o.name().to_owned()).unwrap_or_default();
    let mut out = Outcome::new(dataset.len());
    let mut kept = Vec::new();
    let n = dataset.len();
    let mut start = 0;
    while start < n {
        ctx.check_cancelled()?;
        let end = (start + batch).min(n);
        runtime::run_batch(
            ctx,
            &mut session,
            feed,
            &dataset.images,
            start,
            end,
            std::slice::from_ref(&output),
            |outs| {
                if let Some((_, shape, data)) = outs.first() {
                    out.add_batch(start, shape.iter().product(), data, reference);
                    if keep {
                        kept.extend_from_slice(data);
                    }
                }
                Ok(())
            },
        )?;
        start = end;
    }
    Ok((out, kept))
}

/// Whether the model `a` and the model in `b_bytes` compute their first outputs alike: the
/// same ops on the same weights from the same input ([`crate::info::tensor_digests`]), an
/// Identity that makes the output aside (a variant's quantized output becomes one).
fn same_computation(a: &proto::ModelProto, b_bytes: &[u8]) -> bool {
    let Ok(b) = proto::decode_model(b_bytes) else { return false };
    let first = |m: &proto::ModelProto| {
        let g = m.graph.as_ref()?;
        let mut name = g.output.first()?.name.clone();
        for _ in 0..g.node.len() {
            match g.node.iter().find(|n| n.output.first() == Some(&name)) {
                Some(n) if n.op_type == "Identity" && n.input.len() == 1 => name = n.input[0].clone(),
                _ => break,
            }
        }
        crate::info::tensor_digests(m).get(&name).copied()
    };
    first(a).is_some_and(|d| Some(d) == first(&b))
}

/// The first output of a plain session of `bytes` on the dataset's first and last batches
/// (the last may be shorter, and ONNX Runtime picks some kernels by shape): what a shortcut
/// to the same outputs is checked against, bit for bit.
fn whole_batches(
    ctx: &EvalContext,
    bytes: &[u8],
    feed: &runtime::Feed,
    dataset: &Dataset,
    batch: usize,
    threads: usize,
) -> Result<Vec<(usize, Vec<f32>)>, NodeError> {
    let n = dataset.len();
    let last = n.saturating_sub(1) / batch * batch;
    let mut starts = vec![0, last];
    starts.dedup();
    let mut session = runtime::session(bytes, threads)?;
    let output = session.outputs().first().map(|o| o.name().to_owned()).unwrap_or_default();
    let mut out = Vec::new();
    for start in starts.into_iter().filter(|s| *s < n) {
        let end = (start + batch).min(n);
        let got = runtime::run_batch(
            ctx,
            &mut session,
            feed,
            &dataset.images,
            start,
            end,
            std::slice::from_ref(&output),
            |outs| Ok(outs.first().map(|o| o.2.to_vec()).unwrap_or_default()),
        )?;
        out.push((start, got));
    }
    Ok(out)
}

/// Equal to the bit (and in length).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The FP32 outputs a prefix collection kept (`out`, `item` values per sample) as the
/// reference, when its first and last batches equal a plain run's bit for bit (its extra
/// outputs could change what ONNX Runtime fuses, and so the rounding); `None` where they
/// differ: the caller runs the FP32 model plainly.
#[allow(clippy::too_many_arguments)]
fn checked_reference(
    ctx: &EvalContext,
    bytes: &[u8],
    feed: &runtime::Feed,
    dataset: &Dataset,
    batch: usize,
    threads: usize,
    out: Vec<f32>,
    item: usize,
) -> Result<Option<(Outcome, Vec<f32>)>, NodeError> {
    let n = dataset.len();
    if out.len() != n * item {
        return Ok(None);
    }
    for (start, want) in whole_batches(ctx, bytes, feed, dataset, batch, threads)? {
        let end = (start + batch).min(n);
        if !same_bits(&out[start * item..end * item], &want) {
            tracing::debug!("the FP32 prefix's outputs differ from a plain run's on samples {start}..{end}");
            return Ok(None);
        }
    }
    let mut outcome = Outcome::new(n);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        outcome.add_batch(start, item, &out[start * item..end * item], None);
    }
    Ok(Some((outcome, out)))
}

/// Run a variant as its suffix from the latest cut of `prefixes` it shares ([`prefix`]), when
/// that spares at least a tenth of its nodes; `None` when there is no such cut or the
/// suffix's first or last batch differs from the whole variant's in any bit (ONNX Runtime
/// chose other kernels): the caller runs it whole.
#[allow(clippy::too_many_arguments)]
fn run_shared(
    ctx: &EvalContext,
    prefixes: &[Prefix],
    bytes: &[u8],
    feed: &runtime::Feed,
    dataset: &Dataset,
    batch: usize,
    threads: usize,
    reference: &[f32],
) -> Result<Option<Outcome>, NodeError> {
    let Ok(model) = proto::decode_model(bytes) else { return Ok(None) };
    let digests = crate::info::tensor_digests(&model);
    let Some(suffix) = prefixes.iter().filter_map(|p| p.suffix(&model, bytes, &digests)).min_by_key(|s| s.nodes) else {
        return Ok(None);
    };
    if suffix.nodes * 10 > suffix.of * 9 {
        return Ok(None);
    }
    let Ok(mut session) = runtime::session(&suffix.bytes, threads) else { return Ok(None) };
    // The whole variant's first and last batches, to check the suffix against.
    let want = whole_batches(ctx, bytes, feed, dataset, batch, threads)?;
    let n = dataset.len();
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let mut out = Outcome::new(n);
    for &start in &starts {
        ctx.check_cancelled()?;
        let end = (start + batch).min(n);
        let same = suffix.run_batch(ctx, &mut session, start, end, |item, data| {
            let same = want.iter().find(|(s, _)| *s == start).is_none_or(|(_, want)| same_bits(data, want));
            if same {
                out.add_batch(start, item.iter().product(), data, Some(reference));
            }
            Ok(same)
        })?;
        if !same {
            tracing::debug!(
                "a sweep variant's suffix differs from the whole variant on samples {start}..{end}: run whole"
            );
            return Ok(None);
        }
    }
    Ok(Some(out))
}

params! {
    /// The Sensitivity Sweep's params.
    pub struct SensitivityParams {
        pub grouping: String = choice("Grouping", "layer", &["layer", "tensor"]),
        pub tolerance_pt: f64 = float("Tolerance (accuracy points)", 0.2, 0.0, 100.0)
            .with_doc(
                "The mixed-precision model stops moving layers to float once its top-1 accuracy is within \
                 this many points of FP32.",
            ),
        pub batch_size: usize = int("Batch size", 16, 1, 65_536),
        pub shared_mb: usize = int("Memory for shared prefixes (MB)", 256, 0, 65_536)
            .with_doc(
                "Most variants compute their first layers exactly as the full QDQ model or the all-float \
                 model does: the sweep runs those two once, keeps their values at a few cut points (up to \
                 this much memory, the latest cuts first) and runs each variant from there. 0 runs every \
                 variant whole. The results are the same either way.",
            ),
    }
}

impl TypedKind for Sensitivity {
    type Params = SensitivityParams;
    fn id(&self) -> &'static str {
        "onnx.sensitivity"
    }
    fn display_name(&self) -> &'static str {
        "Sensitivity Sweep"
    }
    fn category(&self) -> &'static str {
        "Repair"
    }
    fn doc(&self) -> &'static str {
        "Which quantized layer costs accuracy. Groups the QDQ model's quantizers per layer (or per \
         tensor) and runs two variants per group over the dataset: only this group quantized (every \
         other group in float) and all but this group. Each gives top-1 accuracy, agreement with FP32 \
         and output SQNR; the table is sorted by what removing the group gains. Output 'model' is a \
         mixed-precision model: the full QDQ model with groups moved to float, largest gain first, \
         until accuracy is within the tolerance of FP32; the table 'mixed_precision' lists them. \
         Variants are remembered, so a rerun only runs what changed. Float weights come from the FP32 \
         model (same name without '_quantized')."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("fp32", PortType::Model),
            PortSpec::new("qdq", PortType::Model),
            PortSpec::new("dataset", PortType::Dataset),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("report", PortType::Table), PortSpec::new("model", PortType::Model)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &SensitivityParams) -> Result<Outputs, NodeError> {
        let fp32 = inputs.model("fp32")?;
        let qdq = inputs.model("qdq")?;
        let dataset = inputs.dataset("dataset")?;
        let batch = params.batch_size.max(1);
        let tolerance = params.tolerance_pt / 100.0;
        if dataset.is_empty() {
            return Err(NodeError::input("dataset", "expected at least one sample, found none"));
        }
        let fp32_proto = proto::decode_model(&fp32.bytes).map_err(|e| NodeError::file(e, &fp32.path))?;
        let qdq_proto = proto::decode_model(&qdq.bytes).map_err(|e| NodeError::file(e, &qdq.path))?;
        let (groups, mut notes) = groups(&qdq_proto, &fp32_proto, params.grouping.clone() == "layer")
            .map_err(|e| NodeError::input("qdq", format!("{e} ({})", qdq.path)))?;
        if groups.is_empty() {
            return Err(NodeError::input(
                "qdq",
                format!("expected a QDQ model with QuantizeLinear/DequantizeLinear pairs, found none ({})", qdq.path),
            ));
        }
        let feed_a = probe::feed_with(fp32, &fp32_proto, dataset, None)?;
        let feed_b = probe::feed_with(qdq, &qdq_proto, dataset, None)?;
        // Outcomes depend on the variant's bytes and images, and (through the SQNR against
        // the FP32 outputs) on the FP32 model and its images.
        let reference_id = {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&probe::input_digest(dataset, &feed_b).to_le_bytes());
            h.update(&probe::input_digest(dataset, &feed_a).to_le_bytes());
            h.update(&xxhash_rust::xxh3::xxh3_64(&fp32.bytes).to_le_bytes());
            h.digest()
        };
        let labels = dataset.labels.clone();

        let total = 2 * groups.len() + 1;
        let done = AtomicUsize::new(0);
        let reused = AtomicUsize::new(0);
        // Two variants at a time, one ONNX Runtime thread each (a thread per core, no
        // intra-op synchronisation): the sweep's runs are independent. A variant that runs
        // alone (full INT8, the mixed-precision steps) gets as many threads as rayon has (it
        // respects affinity and CPU quotas, which ONNX Runtime's default does not).
        // (The scheduler's pool has a thread or two more than the cores, so that a node
        // waiting on ONNX Runtime does not hold up the others: one variant per core.)
        let parallel =
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(rayon::current_num_threads()).max(1);
        let (threads, alone) = if qdq.threads > 0 {
            (qdq.threads, qdq.threads)
        } else if parallel > 1 {
            (1, parallel)
        } else {
            (0, 0)
        };
        // The shared prefixes (the full QDQ model's and the all-float variant's cut values),
        // made beside the FP32 reference when some variant of the sweep is not remembered,
        // else when the first variant has to run; none where they cannot be made.
        let prefixes: std::sync::OnceLock<Vec<Prefix>> = std::sync::OnceLock::new();
        let shared = AtomicUsize::new(0);
        let budget = params.shared_mb.saturating_mul(1 << 20) / 2;
        let all: Vec<&Group> = groups.iter().collect();
        let collect = |bytes: Result<Vec<u8>, String>| {
            let made = bytes
                .map_err(NodeError::failed)
                .and_then(|b| Prefix::collect(ctx, &b, &feed_b, dataset, batch, threads, budget, false));
            match made {
                Ok(p) if !p.is_empty() => Some(p),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!("no shared prefix: {e}");
                    None
                }
            }
        };
        let make_prefixes = || -> Vec<Prefix> {
            if budget == 0 {
                return Vec::new();
            }
            let (q, f) = rayon::join(|| collect(Ok(qdq.bytes.to_vec())), || collect(without(&qdq.bytes, &all)));
            q.into_iter().chain(f).collect()
        };
        let key_of = |bytes: &[u8]| (xxhash_rust::xxh3::xxh3_64(bytes), reference_id, batch);
        let remembered =
            |removed: &[&Group]| without(&qdq.bytes, removed).is_ok_and(|b| MEMO.get(&key_of(&b)).is_some());
        let need = budget > 0
            && !(remembered(&[])
                && groups.iter().all(|g| {
                    let others: Vec<&Group> = groups.iter().filter(|x| x.name != g.name).collect();
                    remembered(&others) && remembered(&[g])
                }));

        // FP32: the reference outputs and predictions; beside it, one thread each, the
        // shared prefixes. Where the FP32 model computes exactly what the all-float variant
        // does (the same computation digest of its output, fed the same), it is that prefix
        // itself: one run gives the reference and the cut values.
        ctx.progress(0.0, if need { "FP32 reference and shared prefixes" } else { "FP32 reference" });
        let fp32_threads = if need && fp32.threads == 0 { threads } else { fp32.threads };
        let plain_fp32 = || run(ctx, &fp32.bytes, &feed_a, dataset, batch, fp32_threads, None, true);
        let stands_in = need
            && probe::input_digest(dataset, &feed_a) == probe::input_digest(dataset, &feed_b)
            && without(&qdq.bytes, &all).is_ok_and(|b| same_computation(&fp32_proto, &b));
        let mut fp32_prefix = false;
        let (made, fp32_result) = if stands_in {
            let (q, f) = rayon::join(
                || collect(Ok(qdq.bytes.to_vec())),
                || Prefix::collect(ctx, &fp32.bytes, &feed_a, dataset, batch, fp32_threads, budget, true),
            );
            let mut f = f.unwrap_or_else(|e| {
                tracing::debug!("no shared prefix from the FP32 model: {e}");
                Prefix::default()
            });
            let checked = match f.output.take() {
                Some((out, item)) => {
                    checked_reference(ctx, &fp32.bytes, &feed_a, dataset, batch, fp32_threads, out, item)?
                }
                None => None,
            };
            fp32_prefix = checked.is_some() && !f.is_empty();
            let reference = match checked {
                Some(r) => Ok(r),
                None => plain_fp32(),
            };
            (Some(q.into_iter().chain((!f.is_empty()).then_some(f)).collect()), reference)
        } else {
            rayon::join(|| need.then(make_prefixes), plain_fp32)
        };
        let (fp32_out, reference) = fp32_result?;
        if let Some(made) = made {
            let _ = prefixes.set(made);
        }
        let variant = |removed: &[&Group], what: &str, threads: usize| -> Result<(Outcome, Vec<u8>), NodeError> {
            let bytes = without(&qdq.bytes, removed)
                .map_err(|e| NodeError::failed(format!("building the variant '{what}' failed: {e}")))?;
            let key = key_of(&bytes);
            let result = match MEMO.get(&key) {
                Some(o) => {
                    reused.fetch_add(1, Ordering::Relaxed);
                    o
                }
                None => {
                    let prefixes = prefixes.get_or_init(make_prefixes);
                    ctx.check_cancelled()?;
                    let o = match run_shared(ctx, prefixes, &bytes, &feed_b, dataset, batch, threads, &reference)? {
                        Some(o) => {
                            shared.fetch_add(1, Ordering::Relaxed);
                            o
                        }
                        None => run(ctx, &bytes, &feed_b, dataset, batch, threads, Some(&reference), false)?.0,
                    };
                    MEMO.put(key, o.clone());
                    o
                }
            };
            let k = done.fetch_add(1, Ordering::Relaxed) + 1;
            ctx.progress(k as f32 / total as f32, &format!("{what} ({k}/{total})"));
            Ok((result, bytes))
        };
        let (full, _) = variant(&[], "full INT8", alone)?;
        let n = groups.len();
        let jobs: Vec<(usize, bool)> = (0..n).flat_map(|k| [(k, true), (k, false)]).collect();
        let job = |(k, only): (usize, bool)| -> Result<Outcome, NodeError> {
            let g = &groups[k];
            if only {
                let others: Vec<&Group> = groups.iter().filter(|x| x.name != g.name).collect();
                variant(&others, &format!("layer {} of {n}: only '{}' quantized", k + 1, g.name), threads).map(|v| v.0)
            } else {
                variant(&[g], &format!("layer {} of {n}: all but '{}'", k + 1, g.name), threads).map(|v| v.0)
            }
        };
        // Each worker takes the next job in order: the early layers' variants share the least
        // and run longest, so they go first and the cheap ones fill in at the end (a split of
        // the list in halves left one core idle while the other ran the last long ones).
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let slots: Vec<std::sync::Mutex<Option<Result<Outcome, NodeError>>>> =
            jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let workers = parallel.min(jobs.len()).max(1);
        rayon::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|_| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = job(jobs[i]);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                });
            }
        });
        let mut outcomes = Vec::with_capacity(jobs.len());
        for slot in slots {
            match slot.into_inner().ok().flatten() {
                Some(Ok(o)) => outcomes.push(o),
                Some(Err(e)) => return Err(e),
                None => {
                    // A job not run because another failed (its error is in an earlier or a
                    // later slot), or cancelled.
                    ctx.check_cancelled()?;
                }
            }
        }
        if outcomes.len() != jobs.len() {
            return Err(NodeError::failed("a sweep variant did not run"));
        }
        let mut rows: Vec<(usize, Outcome, Outcome)> =
            outcomes.chunks_exact(2).enumerate().map(|(k, pair)| (k, pair[0].clone(), pair[1].clone())).collect();
        let acc_fp32 = fp32_out.accuracy(&labels);
        let acc_full = full.accuracy(&labels);
        rows.sort_by(|x, y| {
            let gain = |o: &Outcome| o.accuracy(&labels) - acc_full;
            gain(&y.2).total_cmp(&gain(&x.2)).then(y.2.sqnr_db().total_cmp(&x.2.sqnr_db())).then(x.0.cmp(&y.0))
        });
        let mut table = Table {
            name: "sensitivity".into(),
            columns: [
                "layer",
                "op",
                "quantizers",
                "only_acc_pct",
                "only_agree_pct",
                "only_sqnr_db",
                "all_but_acc_pct",
                "all_but_agree_pct",
                "all_but_sqnr_db",
                "all_but_gain_pt",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            rows: Vec::new(),
        };
        let pct = |x: f64| Cell::Num((x * 10000.0).round() / 100.0);
        for (k, only, all_but) in &rows {
            let g = &groups[*k];
            table.rows.push(vec![
                Cell::Text(g.name.clone()),
                Cell::Text(g.op_type.clone()),
                Cell::Text(g.quantizers.join(", ")),
                pct(only.accuracy(&labels)),
                pct(only.agreement(&fp32_out.top1)),
                Cell::Num(only.sqnr_db()),
                pct(all_but.accuracy(&labels)),
                pct(all_but.agreement(&fp32_out.top1)),
                Cell::Num(all_but.sqnr_db()),
                Cell::Num(((all_but.accuracy(&labels) - acc_full) * 10000.0).round() / 100.0),
            ]);
        }

        // Mixed precision: move groups to float, largest gain first, until within tolerance.
        let mut mixed = Table {
            name: "mixed_precision".into(),
            columns: ["step", "in_float", "accuracy_pct", "agreement_pct", "output_sqnr_db"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            rows: vec![vec![
                Cell::Int(0),
                Cell::Text(String::new()),
                pct(acc_full),
                pct(full.agreement(&fp32_out.top1)),
                Cell::Num(full.sqnr_db()),
            ]],
        };
        let mut in_float: Vec<&Group> = Vec::new();
        let mut best_bytes: Option<Vec<u8>> = None;
        let mut acc = acc_full;
        for (step, (k, _, _)) in rows.iter().enumerate() {
            if acc + 1e-12 >= acc_fp32 - tolerance {
                break;
            }
            in_float.push(&groups[*k]);
            let (o, bytes) = variant(&in_float, &format!("mixed precision: step {}", step + 1), alone)?;
            acc = o.accuracy(&labels);
            mixed.rows.push(vec![
                Cell::Int(step as i64 + 1),
                Cell::Text(groups[*k].name.clone()),
                pct(acc),
                pct(o.agreement(&fp32_out.top1)),
                Cell::Num(o.sqnr_db()),
            ]);
            best_bytes = Some(bytes);
        }
        let within = acc + 1e-12 >= acc_fp32 - tolerance;
        let out_model = match best_bytes {
            None => qdq.clone(),
            Some(bytes) => {
                let mut v = model::model_value(
                    &format!("{} (mixed precision: {} in float)", qdq.name, in_float.len()),
                    &qdq.path,
                    bytes,
                    qdq.threads,
                )?;
                v.changes = qdq.changes.clone();
                Arc::new(v)
            }
        };
        let mut report = Report {
            headline: Some(format!(
                "FP32 {:.2} % · INT8 {:.2} % · mixed precision {:.2} % with {} of {n} {} in float{}",
                100.0 * acc_fp32,
                100.0 * acc_full,
                100.0 * acc,
                in_float.len(),
                if params.grouping.clone() == "layer" { "layers" } else { "tensors" },
                if within { "" } else { " (not within the tolerance even with every group in float)" }
            )),
            // Rows are layers (op names) or tensors: the editor can draw them on the model.
            hints: quantgraph_nodes::value::ReportHints {
                open: vec!["sensitivity".into()],
                layers: Some(quantgraph_nodes::value::LayerTable {
                    table: "sensitivity".into(),
                    tensor_column: "layer".into(),
                }),
                ..Default::default()
            },
            ..Report::default()
        };
        report.summary.insert("accuracy_fp32".into(), acc_fp32);
        report.summary.insert("accuracy_int8".into(), acc_full);
        // In percent too, for reference lines on the per-layer accuracy chart.
        report.summary.insert("accuracy_fp32_pct".into(), 100.0 * acc_fp32);
        report.summary.insert("accuracy_int8_pct".into(), 100.0 * acc_full);
        report.summary.insert("accuracy_mixed".into(), acc);
        report.summary.insert("groups_in_float".into(), in_float.len() as f64);
        report.summary.insert("samples".into(), dataset.len() as f64);
        report.summary.insert("variants_run".into(), done.load(Ordering::Relaxed) as f64);
        report.summary.insert("variants_remembered".into(), reused.load(Ordering::Relaxed) as f64);
        report.summary.insert("variants_shared".into(), shared.load(Ordering::Relaxed) as f64);
        notes.push(format!(
            "{} variants over {} samples; {} remembered from earlier runs (same model bytes and images); {} run \
             from a shared prefix (the part they compute as the full QDQ model or the all-float variant does, \
             run once)",
            done.load(Ordering::Relaxed),
            dataset.len(),
            reused.load(Ordering::Relaxed),
            shared.load(Ordering::Relaxed)
        ));
        if fp32_prefix {
            notes.push(
                "The FP32 model computes what the all-float variant does: its run gave both the reference \
                 outputs and the prefix the 'only' variants share"
                    .into(),
            );
        }
        report.notes = notes;
        report.tables = vec![table, mixed];
        let mut out = Outputs::new();
        out.insert("report".into(), Value::Table(Arc::new(report)));
        out.insert("model".into(), Value::Model(out_model));
        Ok(out)
    }
}
