//! Which tensor of model B corresponds to which tensor of model A: by dataflow.
//!
//! Names cannot be trusted across exporters, and neither can op order (a ResNet's shortcut
//! Conv may be listed before or after the main-path Conv). So each model is reduced to its
//! float computation ([`canonical`]):
//!
//! * ops that only move or re-encode data are looked through: QuantizeLinear,
//!   DequantizeLinear, Identity, Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Cast,
//!   Dropout;
//! * ops that refine the op before them are folded into it: BatchNormalization, Relu, Clip,
//!   LeakyRelu, and Add/Sub/Mul/Div with a constant operand (a bias: Gemm ≡ MatMul + Add),
//!   when the op's output has no other reader;
//! * equivalent kinds get one name: QLinearConv/ConvInteger ≡ Conv, Gemm/MatMul/QLinearMatMul
//!   ≡ Dense, QLinearAdd ≡ Add, GlobalAveragePool/ReduceMean ≡ GlobalAveragePool, ….
//!
//! Then the two graphs are aligned from the inputs forward: an op of A pairs with the one op
//! of B of the same kind whose data inputs are the pairs of its own inputs (in any order for
//! Add/Mul), and whose weights have the same shape. No candidate, or more than one, leaves
//! the op unpaired with the reason.
//!
//! The tensor compared is, on each side, the op's output after what was folded into it; on a
//! QDQ model, the value after the Q/DQ pair that follows it (post-DequantizeLinear), with
//! the pre-quantization tensor kept for the Q/DQ pair's own error. Pairs are proposals: the
//! comparator verifies each on the first batch (shape up to NCHW↔NHWC, cosine) before using
//! it ([`verify`]).

use std::collections::{BTreeMap, BTreeSet};

use quantgraph_nodes::value::{Activations, ModelInfo, QdqEntry, TensorRole};

/// Pairing text when the quantizer removed a Relu and renamed the op before it after the
/// Relu's output (ONNX Runtime ≥ 1.2x): B's tensor `T` is pre-Relu.
pub const RELU_REMOVED: &str = "ORT QDQ naming, Relu removed by the quantizer";
/// Pairing text when the quantizer removed a Relu and kept the op's own output name: B's
/// dequantized tensor is compared with A's Relu output.
pub const RELU_REMOVED_BEFORE: &str = "ORT QDQ naming, Relu removed by the quantizer (compared with A's Relu output)";
/// Pairing text of a pair found by aligning the two graphs.
pub const DATAFLOW: &str = "dataflow";

/// The smallest first-batch cosine similarity for a pair to be used. A correct pair of an
/// INT8 model is far above it even when badly quantized (rounding and clipping error keep
/// the direction: ResNet8's worst layer is at 0.99; ±50 % scale errors stay above 0.97),
/// because verification compares B's *pre-quantization* tensor where it has one, so a
/// scale the user drags does not decide whether a pair is used. Two unrelated activations
/// of the same shape are far below (post-Relu activations of different channels: 0.3–0.7).
pub const MIN_COSINE: f64 = 0.9;

/// One pair of tensors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    /// B's pre-quantization tensor, when B is a QDQ model and it was captured.
    pub b_pre: Option<String>,
    /// The op of A that makes `a`.
    pub op: String,
    /// How the pair was made, in words.
    pub how: String,
    /// Set when the quantizer removed a Relu: A's tensor ONNX Runtime would have used.
    pub ort_a: Option<String>,
    pub relu_removed: bool,
}

/// A tensor left without a partner, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Unpaired {
    pub tensor: String,
    pub reason: String,
}

/// The pairs, in A's graph order, and what could not be paired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub unpaired_a: Vec<Unpaired>,
    pub unpaired_b: Vec<Unpaired>,
}

impl Pairing {
    pub fn unpaired_a_names(&self) -> Vec<&str> {
        self.unpaired_a.iter().map(|u| u.tensor.as_str()).collect()
    }
    pub fn unpaired_b_names(&self) -> Vec<&str> {
        self.unpaired_b.iter().map(|u| u.tensor.as_str()).collect()
    }
}

/// Where a tensor's value comes from in the canonical graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Src {
    /// The i-th data input of the model.
    Input(usize),
    /// The i-th canonical op.
    Op(usize),
}

/// One op of the float computation, with what was folded into it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonOp {
    /// Canonical kind (`Conv`, `Dense`, `Add`, …).
    pub kind: String,
    /// The op type as written in the model.
    pub op_type: String,
    pub inputs: Vec<Src>,
    /// Sorted dims of the weight, when the op has one.
    pub weight: Option<Vec<i64>>,
    /// The op's own output.
    pub base_out: String,
    /// The output after the folded ops.
    pub out: String,
    /// Op types folded into it, in order.
    pub folded: Vec<String>,
    /// Every tensor it owns (its outputs, folded and looked-through ones).
    pub owned: Vec<String>,
}

/// A model reduced to its float computation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Canonical {
    /// Data inputs, in order.
    pub inputs: Vec<String>,
    pub ops: Vec<CanonOp>,
    pub owner: BTreeMap<String, Src>,
}

fn looked_through(op: &str) -> bool {
    matches!(
        op,
        "QuantizeLinear"
            | "DequantizeLinear"
            | "Identity"
            | "Transpose"
            | "Reshape"
            | "Flatten"
            | "Squeeze"
            | "Unsqueeze"
            | "Cast"
            | "Dropout"
    )
}

fn foldable(op: &str) -> bool {
    matches!(op, "BatchNormalization" | "Relu" | "Clip" | "LeakyRelu" | "Add" | "Sub" | "Mul" | "Div")
}

/// One name for ops that compute the same thing.
pub fn canonical_kind(op: &str) -> &str {
    match op {
        "QLinearConv" | "ConvInteger" => "Conv",
        "Gemm" | "MatMul" | "QLinearMatMul" | "MatMulInteger" | "FusedMatMul" => "Dense",
        "QLinearAdd" => "Add",
        "QLinearMul" => "Mul",
        "QLinearGlobalAveragePool" | "GlobalAveragePool" | "ReduceMean" => "GlobalAveragePool",
        "QLinearAveragePool" => "AveragePool",
        "QLinearSigmoid" => "Sigmoid",
        "QLinearConcat" => "Concat",
        "QLinearSoftmax" => "Softmax",
        "QLinearLeakyRelu" => "LeakyRelu",
        other => other,
    }
}

fn commutative(kind: &str) -> bool {
    matches!(kind, "Add" | "Mul" | "Sum" | "Max" | "Min")
}

/// Reduce a model to its float computation (see the module doc).
pub fn canonical(m: &ModelInfo) -> Canonical {
    let inits: BTreeMap<&str, &Vec<i64>> = m.initializers.iter().map(|i| (i.name.as_str(), &i.dims)).collect();
    let mut constant: BTreeSet<&str> = inits.keys().copied().collect();
    // Dims of a constant tensor, through the ops that made it (a weight's DequantizeLinear).
    let mut const_dims: BTreeMap<&str, Vec<i64>> = inits.iter().map(|(k, v)| (*k, (*v).clone())).collect();
    let mut readers: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &m.nodes {
        for i in &n.inputs {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let outputs: BTreeSet<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut c = Canonical::default();
    for i in &m.inputs {
        if !constant.contains(i.name.as_str()) {
            c.owner.insert(i.name.clone(), Src::Input(c.inputs.len()));
            c.inputs.push(i.name.clone());
        }
    }
    // The tensors at each op's tip (its folded output and what only moves it).
    let mut tips: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for n in &m.nodes {
        let all_const = n.inputs.iter().all(|i| i.is_empty() || constant.contains(i.as_str()));
        if all_const || matches!(n.op_type.as_str(), "Constant" | "Shape" | "Size" | "ConstantOfShape") {
            let dims = n.inputs.first().and_then(|i| const_dims.get(i.as_str()).cloned());
            for o in &n.outputs {
                constant.insert(o.as_str());
                if let Some(d) = &dims {
                    const_dims.insert(o.as_str(), d.clone());
                }
            }
            continue;
        }
        let data: Vec<&String> = n.inputs.iter().filter(|i| !i.is_empty() && !constant.contains(i.as_str())).collect();
        let src_of = |t: &String, c: &mut Canonical| -> Src {
            if let Some(s) = c.owner.get(t) {
                return *s;
            }
            // Read but made by no op and not declared: an input all the same.
            let s = Src::Input(c.inputs.len());
            c.inputs.push(t.clone());
            c.owner.insert(t.clone(), s);
            s
        };
        let srcs: Vec<Src> = data.iter().map(|t| src_of(t, &mut c)).collect();
        let op = n.op_type.as_str();
        if data.len() == 1 && (looked_through(op) || (foldable(op) && matches!(srcs[0], Src::Input(_)))) {
            let s = srcs[0];
            for o in &n.outputs {
                c.owner.insert(o.clone(), s);
                if let Src::Op(k) = s {
                    c.ops[k].owned.push(o.clone());
                    if tips.get(&k).is_some_and(|t| t.contains(data[0])) {
                        tips.entry(k).or_default().insert(o.clone());
                    }
                }
            }
            continue;
        }
        if data.len() == 1 && foldable(op) && canonical_kind(op) == op {
            if let Src::Op(k) = srcs[0] {
                let at_tip = tips.get(&k).is_some_and(|t| t.contains(data[0]));
                let only_reader = readers.get(data[0].as_str()) == Some(&1) && !outputs.contains(data[0].as_str());
                if at_tip && only_reader {
                    if let Some(o) = n.outputs.first() {
                        let cop = &mut c.ops[k];
                        cop.out = o.clone();
                        cop.folded.push(n.op_type.clone());
                        cop.owned.extend(n.outputs.iter().cloned());
                        c.owner.insert(o.clone(), Src::Op(k));
                        tips.insert(k, BTreeSet::from([o.clone()]));
                        continue;
                    }
                }
            }
        }
        // A compute op of its own.
        let k = c.ops.len();
        let weight = n
            .inputs
            .iter()
            .filter(|i| constant.contains(i.as_str()))
            .filter_map(|i| const_dims.get(i.as_str()))
            .filter(|d| d.len() >= 2)
            .max_by_key(|d| d.len())
            .map(|d| {
                let mut d = d.clone();
                d.sort_unstable();
                d
            });
        let Some(first) = n.outputs.first() else { continue };
        for o in &n.outputs {
            c.owner.insert(o.clone(), Src::Op(k));
        }
        tips.insert(k, BTreeSet::from([first.clone()]));
        c.ops.push(CanonOp {
            kind: canonical_kind(op).to_owned(),
            op_type: n.op_type.clone(),
            inputs: srcs,
            weight,
            base_out: first.clone(),
            out: first.clone(),
            folded: Vec::new(),
            owned: n.outputs.clone(),
        });
    }
    c
}

/// From a tensor, follow the ops that only move data (a single reader each, or the one
/// QuantizeLinear among several) through the Q/DQ pairs after it: each dequantized value
/// reached, with the tensor its QuantizeLinear read, in order.
fn walk(m: &ModelInfo, from: &str) -> Vec<(String, Option<String>)> {
    let mut t = from.to_owned();
    let mut found = Vec::new();
    let mut q_in: Option<String> = None;
    for _ in 0..64 {
        let readers: Vec<&quantgraph_nodes::value::OpInfo> =
            m.nodes.iter().filter(|n| n.inputs.first() == Some(&t)).collect();
        let next = match readers.as_slice() {
            [one] => *one,
            // Several readers: follow the QuantizeLinear (the first, when a quantizer gave each
            // reader a pair of its own: they share their scale and zero point).
            many => match many.iter().find(|n| n.op_type == "QuantizeLinear") {
                Some(q) => *q,
                None => break,
            },
        };
        let Some(out) = next.outputs.first() else { break };
        match next.op_type.as_str() {
            "QuantizeLinear" => q_in = Some(t.clone()),
            "DequantizeLinear" => found.push((out.clone(), q_in.take())),
            "Transpose" | "Reshape" | "Flatten" | "Identity" | "Squeeze" | "Unsqueeze" => {}
            _ => break,
        }
        t = out.clone();
    }
    found
}

fn qdq_of<'m>(acts: &'m Activations, tensor: &str) -> Option<&'m QdqEntry> {
    acts.tensors
        .get(tensor)
        .and_then(|t| t.qdq.as_ref())
        .or_else(|| acts.model.qdq.iter().find(|e| e.op_type == "DequantizeLinear" && e.output == tensor))
}

fn producer<'m>(m: &'m ModelInfo, tensor: &str) -> Option<&'m str> {
    m.nodes.iter().find(|n| n.outputs.iter().any(|o| o == tensor)).map(|n| n.op_type.as_str())
}

/// The captured tensor standing for a canonical op: the value after the first Q/DQ pair
/// that follows it (or, with `clipped`, the first whose range starts at 0: where a
/// quantizer that removed a Relu does its clipping), else its folded output, else its own
/// output; with the tensor that pair's QuantizeLinear read.
fn represent(acts: &Activations, from: &str, base: &str, clipped: bool) -> Option<(String, Option<String>)> {
    let captured = |t: &str| acts.tensors.contains_key(t);
    let dqs: Vec<(String, Option<String>)> = walk(&acts.model, from).into_iter().filter(|(t, _)| captured(t)).collect();
    let starts_at_zero = |t: &str| qdq_of(acts, t).and_then(|q| q.real_range()).is_some_and(|(lo, _)| lo == 0.0);
    let chosen = if clipped { dqs.iter().find(|(t, _)| starts_at_zero(t)).or(dqs.first()) } else { dqs.first() };
    if let Some((t, pre)) = chosen {
        return Some((t.clone(), pre.clone().filter(|p| captured(p))));
    }
    [from, base].into_iter().find(|t| captured(t)).map(|t| (t.to_owned(), None))
}

/// Align two canonical graphs: for each op of A, the op of B it pairs with, or why not.
pub fn align(ca: &Canonical, cb: &Canonical) -> Vec<Result<usize, String>> {
    let mut map: BTreeMap<Src, Src> = BTreeMap::new();
    for i in 0..ca.inputs.len().min(cb.inputs.len()) {
        map.insert(Src::Input(i), Src::Input(i));
    }
    let mut used_b: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::with_capacity(ca.ops.len());
    for (ka, x) in ca.ops.iter().enumerate() {
        let Some(mut want) = x.inputs.iter().map(|s| map.get(s).copied()).collect::<Option<Vec<Src>>>() else {
            out.push(Err("an input of this op is unpaired".to_owned()));
            continue;
        };
        let comm = commutative(&x.kind);
        if comm {
            want.sort();
        }
        let mut cands: Vec<usize> = cb
            .ops
            .iter()
            .enumerate()
            .filter(|(kb, y)| !used_b.contains(kb) && y.kind == x.kind)
            .filter(|(_, y)| {
                let mut got = y.inputs.clone();
                if comm {
                    got.sort();
                }
                got == want
            })
            .filter(|(_, y)| match (&x.weight, &y.weight) {
                (Some(p), Some(q)) => p == q,
                _ => true,
            })
            .map(|(kb, _)| kb)
            .collect();
        if cands.len() > 1 && x.weight.is_none() {
            cands.retain(|kb| cb.ops[*kb].weight.is_none());
        }
        match cands.as_slice() {
            [kb] => {
                map.insert(Src::Op(ka), Src::Op(*kb));
                used_b.insert(*kb);
                out.push(Ok(*kb));
            }
            [] => out.push(Err(format!("B has no {} reading the same inputs with weights of this shape", x.kind))),
            many => out.push(Err(format!("ambiguous: {} ops of B could be it", many.len()))),
        }
    }
    out
}

/// Pair A's captured tensors with B's (see the module doc). The pairs still need
/// verification on data ([`verify`]).
pub fn pair(a: &Activations, b: &Activations) -> Pairing {
    let (ca, cb) = (canonical(&a.model), canonical(&b.model));
    let aligned = align(&ca, &cb);
    let mut out = Pairing::default();
    let mut used_a: BTreeSet<String> = BTreeSet::new();
    let mut used_b: BTreeSet<String> = BTreeSet::new();
    let mut output_pairs = Vec::new();
    let is_output = |acts: &Activations, t: &str| acts.tensors.get(t).is_some_and(|x| x.role == TensorRole::Output);
    // The inputs, where both sides captured them (the input quantization error).
    for (i, name) in ca.inputs.iter().enumerate() {
        let Some(nb) = cb.inputs.get(i) else { continue };
        if let (Some((ta, _)), Some((tb, pre))) = (represent(a, name, name, false), represent(b, nb, nb, false)) {
            used_a.insert(ta.clone());
            used_b.insert(tb.clone());
            used_b.extend(pre.clone());
            out.pairs.push(Pair {
                a: ta,
                b: tb,
                b_pre: pre,
                op: "input".into(),
                how: "model input".into(),
                ort_a: None,
                relu_removed: false,
            });
        }
    }
    let mut paired_b_ops: BTreeSet<usize> = BTreeSet::new();
    for (x, r) in ca.ops.iter().zip(&aligned) {
        let Some((ta, _)) = represent(a, &x.out, &x.base_out, false) else { continue };
        let kb = match r {
            Ok(kb) => *kb,
            Err(why) => {
                out.unpaired_a.push(Unpaired { tensor: ta, reason: why.clone() });
                continue;
            }
        };
        paired_b_ops.insert(kb);
        let y = &cb.ops[kb];
        // An activation counts where the tensor compared is the one after it.
        let a_relu = ta == x.out && x.folded.iter().any(|f| f == "Relu" || f == "Clip");
        let b_relu_folded = y.folded.iter().any(|f| f == "Relu" || f == "Clip");
        let Some((tb, b_pre)) = represent(b, &y.out, &y.base_out, a_relu && !b_relu_folded) else {
            out.unpaired_a
                .push(Unpaired { tensor: ta, reason: format!("its partner in B ({}) was not captured", y.out) });
            continue;
        };
        used_a.insert(ta.clone());
        used_b.insert(tb.clone());
        used_b.extend(b_pre.clone());
        // B's compared tensor is after its folded activation unless it fell back to the op's
        // own output.
        let b_relu = b_relu_folded && tb != y.base_out;
        let clips_at_zero = qdq_of(b, &tb).and_then(|q| q.real_range()).is_some_and(|(lo, _)| lo == 0.0);
        let relu_removed = a_relu && !b_relu && b_pre.is_some() && clips_at_zero;
        // One side applies an activation the other does not: not the same quantity, unless
        // B's quantization range does the clipping (a quantizer removed the Relu, or fused it
        // into a QOperator op whose output range starts at 0).
        if a_relu != b_relu && !(a_relu && clips_at_zero) {
            out.unpaired_a.push(Unpaired {
                tensor: ta.clone(),
                reason: format!(
                    "{} applies a Relu/Clip after this op and {} does not ({} vs {}); not the same quantity",
                    if a_relu { "A" } else { "B" },
                    if a_relu { "B" } else { "A" },
                    ta,
                    tb
                ),
            });
            continue;
        }
        let ort_name = |t: &str| format!("{t}_DequantizeLinear_Output");
        let before_relu = x.owned.iter().find(|t| ort_name(t) == tb && **t != ta && a.tensors.contains_key(*t));
        let (how, ort_a) = if is_output(a, &ta) {
            ("model output".to_owned(), None)
        } else if relu_removed && tb == ort_name(&ta) {
            (RELU_REMOVED.to_owned(), None)
        } else if let (true, Some(t)) = (relu_removed, before_relu) {
            (RELU_REMOVED_BEFORE.to_owned(), Some(t.clone()))
        } else if relu_removed {
            (format!("{DATAFLOW}, Relu removed by the quantizer"), None)
        } else if tb == ort_name(&ta) {
            ("ORT QDQ naming".to_owned(), None)
        } else if tb == ta {
            ("same name".to_owned(), None)
        } else if b_pre.as_deref() == Some(ta.as_str()) {
            ("same name (B's value after its Q/DQ pair)".to_owned(), None)
        } else {
            (DATAFLOW.to_owned(), None)
        };
        let p = Pair {
            a: ta.clone(),
            b: tb,
            b_pre,
            op: producer(&a.model, &ta).unwrap_or(&x.op_type).to_owned(),
            how,
            ort_a,
            relu_removed,
        };
        if is_output(a, &ta) {
            output_pairs.push(p);
        } else {
            out.pairs.push(p);
        }
    }
    // A's captured tensors outside any paired op, by name (verified like every pair).
    let order: Vec<&String> = a.model.nodes.iter().flat_map(|n| n.outputs.iter()).collect();
    for name in order {
        if used_a.contains(name) || !a.tensors.contains_key(name) || is_output(a, name) {
            continue;
        }
        let ort = format!("{name}_DequantizeLinear_Output");
        let (tb, mut how) = if b.tensors.contains_key(&ort) && !used_b.contains(&ort) {
            (ort, "ORT QDQ naming".to_owned())
        } else if b.tensors.contains_key(name) && !used_b.contains(name) {
            (name.clone(), "same name".to_owned())
        } else {
            continue;
        };
        // Consistent with the dataflow when both tensors belong to ops paired together; never
        // against it (A's op aligned with another op of B, or B's op taken by another of A).
        let agrees = match (ca.owner.get(name), cb.owner.get(&tb)) {
            (Some(Src::Op(ka)), Some(Src::Op(kb))) => aligned.get(*ka) == Some(&Ok(*kb)),
            (Some(Src::Input(i)), Some(Src::Input(j))) => i == j,
            _ => false,
        };
        if !agrees {
            let a_aligned_elsewhere =
                matches!(ca.owner.get(name), Some(Src::Op(ka)) if aligned.get(*ka).is_some_and(|r| r.is_ok()));
            let b_taken = matches!(cb.owner.get(&tb), Some(Src::Op(kb)) if paired_b_ops.contains(kb));
            if a_aligned_elsewhere || b_taken {
                continue;
            }
            how.push_str(" (not paired by dataflow)");
        }
        let (tb, b_pre) = if tb == *name {
            // B's tensor of that name: compare its value after its Q/DQ pair, if it has one.
            represent(b, &tb, &tb, false).unwrap_or((tb, None))
        } else {
            let pre = (b.tensors.contains_key(name) && !used_b.contains(name)).then(|| name.clone());
            (tb, pre)
        };
        out.unpaired_a.retain(|u| &u.tensor != name);
        out.unpaired_b.retain(|u| u.tensor != tb);
        used_a.insert(name.clone());
        used_b.insert(tb.clone());
        used_b.extend(b_pre.clone());
        out.pairs.push(Pair {
            a: name.clone(),
            b: tb,
            b_pre,
            op: producer(&a.model, name).unwrap_or_default().to_owned(),
            how,
            ort_a: None,
            relu_removed: false,
        });
    }
    // Model outputs not paired by dataflow pair by position.
    // In the order the models declare their outputs (else by name).
    let declared = |acts: &Activations, used: &BTreeSet<String>| -> Vec<String> {
        let mut names: Vec<String> = acts
            .model
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .filter(|n| acts.tensors.get(n).is_some_and(|t| t.role == TensorRole::Output))
            .collect();
        for t in acts.tensors.values().filter(|t| t.role == TensorRole::Output) {
            if !names.contains(&t.name) {
                names.push(t.name.clone());
            }
        }
        names.retain(|n| !used.contains(n));
        names
    };
    let (outs_a, outs_b) = (declared(a, &used_a), declared(b, &used_b));
    for (ta, tb) in outs_a.iter().zip(&outs_b) {
        out.unpaired_a.retain(|u| &u.tensor != ta);
        used_a.insert((*ta).clone());
        used_b.insert((*tb).clone());
        output_pairs.push(Pair {
            a: (*ta).clone(),
            b: (*tb).clone(),
            b_pre: None,
            op: producer(&a.model, ta).unwrap_or_default().to_owned(),
            how: "model output (by position)".into(),
            ort_a: None,
            relu_removed: false,
        });
    }
    out.pairs.extend(output_pairs);
    // B's ops nobody paired with, by the tensor that stands for them.
    for (kb, y) in cb.ops.iter().enumerate() {
        if paired_b_ops.contains(&kb) {
            continue;
        }
        if let Some((tb, pre)) = represent(b, &y.out, &y.base_out, false) {
            if !used_b.contains(&tb) {
                out.unpaired_b
                    .push(Unpaired { tensor: tb.clone(), reason: format!("no op of A pairs with this {}", y.kind) });
                used_b.insert(tb);
                used_b.extend(pre);
                used_b.extend(y.owned.iter().cloned());
            }
        }
    }
    out
}

/// How B's tensor is laid out relative to A's, per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// Same element order (shapes equal up to dims of size 1).
    Same,
    /// A is `[C, H, W]`, B is `[H, W, C]`.
    BChannelsLast,
    /// A is `[H, W, C]`, B is `[C, H, W]`.
    BChannelsFirst,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Same => "same layout",
            Layout::BChannelsLast => "B is channels-last (NHWC), transposed to A's NCHW",
            Layout::BChannelsFirst => "B is channels-first (NCHW), transposed to A's NHWC",
        }
    }

    /// B's per-sample data in A's element order (`a_shape` is A's per-sample shape).
    pub fn to_a(self, a_shape: &[usize], data: &[f32]) -> Vec<f32> {
        let item: usize = a_shape.iter().product();
        let mut out = vec![0.0f32; data.len()];
        if item == 0 {
            return out;
        }
        match (self, a_shape) {
            (Layout::BChannelsLast, [c, h, w]) => {
                for (src, dst) in data.chunks_exact(item).zip(out.chunks_exact_mut(item)) {
                    for ci in 0..*c {
                        for p in 0..h * w {
                            dst[ci * h * w + p] = src[p * c + ci];
                        }
                    }
                }
            }
            (Layout::BChannelsFirst, [h, w, c]) => {
                for (src, dst) in data.chunks_exact(item).zip(out.chunks_exact_mut(item)) {
                    for p in 0..h * w {
                        for ci in 0..*c {
                            dst[p * c + ci] = src[ci * h * w + p];
                        }
                    }
                }
            }
            _ => out.copy_from_slice(data),
        }
        out
    }
}

fn squeezed(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|d| *d != 1).collect()
}

/// The layouts under which B's per-sample shape matches A's (several when dims coincide,
/// e.g. 8×8×8; the first batch's data decides).
pub fn layouts(a: &[usize], b: &[usize]) -> Vec<Layout> {
    let mut out = Vec::new();
    if a.iter().product::<usize>() != b.iter().product::<usize>() {
        return out;
    }
    if squeezed(a) == squeezed(b) {
        out.push(Layout::Same);
    }
    if let ([c, h, w], [p, q, r]) = (a, b) {
        if (p, q, r) == (h, w, c) {
            out.push(Layout::BChannelsLast);
        }
    }
    if let ([h, w, c], [p, q, r]) = (a, b) {
        if (p, q, r) == (c, h, w) {
            out.push(Layout::BChannelsFirst);
        }
    }
    out
}

/// The verdict on one pair from its first batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    Verified { layout: Layout, cosine: f64 },
    Rejected(String),
}

fn cosine(x: &[f32], y: &[f32]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (p, q) in x.iter().zip(y) {
        let (p, q) = (f64::from(*p), f64::from(*q));
        xy += p * q;
        xx += p * p;
        yy += q * q;
    }
    if xx == 0.0 && yy == 0.0 {
        1.0
    } else if xx == 0.0 || yy == 0.0 {
        0.0
    } else {
        xy / (xx.sqrt() * yy.sqrt())
    }
}

/// Verify a pair on its first batch: the shapes agree (up to NCHW↔NHWC) and the values are
/// the same quantity (cosine ≥ [`MIN_COSINE`]; `check` is B's pre-quantization tensor where
/// there is one, with the Relu applied when the quantizer removed it, else B's tensor).
pub fn verify(a_shape: &[usize], a: &[f32], b_shape: &[usize], check: &[f32]) -> Verdict {
    let options = layouts(a_shape, b_shape);
    if options.is_empty() || a.len() != check.len() {
        return Verdict::Rejected(format!("shapes differ: {a_shape:?} in A, {b_shape:?} in B (per sample)"));
    }
    let (layout, cos) = options
        .into_iter()
        .map(|l| {
            let c = if l == Layout::Same { cosine(a, check) } else { cosine(a, &l.to_a(a_shape, check)) };
            (l, c)
        })
        .max_by(|p, q| p.1.total_cmp(&q.1))
        .unwrap_or((Layout::Same, f64::NAN));
    if cos.is_finite() && cos >= MIN_COSINE {
        Verdict::Verified { layout, cosine: cos }
    } else {
        Verdict::Rejected(format!(
            "failed verification on the first batch: cosine similarity {cos:.3} < {MIN_COSINE} ({})",
            layout.describe()
        ))
    }
}
