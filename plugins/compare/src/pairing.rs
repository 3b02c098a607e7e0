//! Which tensor of model B corresponds to which tensor of model A.
//!
//! In order: ONNX Runtime's QDQ naming (`T` ↔ `T_DequantizeLinear_Output`, with `T` in B as
//! the pre-quantization tensor); then the same name. When the quantizer removed a Relu
//! after `T` (B's Q/DQ range starts at 0, A has a Relu reading `T`, B does not), B's
//! dequantized tensor is compared with A's Relu output, and the ONNX Runtime pairing is kept
//! alongside so the difference can be shown.

use std::collections::{BTreeMap, BTreeSet};

use quantgraph_nodes::value::{Activations, TensorRole};

/// Pairing text when the quantizer removed a Relu and renamed the op before it after the
/// Relu's output (ONNX Runtime ≥ 1.2x): B's tensor `T` is pre-Relu.
pub const RELU_REMOVED: &str = "ORT QDQ naming, Relu removed by the quantizer";
/// Pairing text when the quantizer removed a Relu and kept the op's own output name: B's
/// dequantized tensor is compared with A's Relu output.
pub const RELU_REMOVED_BEFORE: &str = "ORT QDQ naming, Relu removed by the quantizer (compared with A's Relu output)";

/// One pair of tensors.
#[derive(Debug, Clone, PartialEq)]
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

/// The pairs, in A's graph order, and what could not be paired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub unpaired_a: Vec<String>,
    pub unpaired_b: Vec<String>,
}

/// Each op output's position: `(op type, k)` for the k-th op of that type in graph order,
/// not counting Q/DQ, Transpose and Identity.
fn structural_index(model: &quantgraph_nodes::value::ModelInfo) -> BTreeMap<String, (String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for n in &model.nodes {
        if matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear" | "Transpose" | "Identity" | "Constant") {
            continue;
        }
        let k = counts.entry(n.op_type.as_str()).or_default();
        if let Some(o) = n.outputs.first() {
            out.insert(o.clone(), (n.op_type.clone(), *k));
        }
        *k += 1;
    }
    out
}

pub fn pair(a: &Activations, b: &Activations) -> Pairing {
    let producer_a: BTreeMap<&str, &str> =
        a.model.nodes.iter().flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n.op_type.as_str()))).collect();
    let relu_of_a: BTreeMap<&str, &str> = a
        .model
        .nodes
        .iter()
        .filter(|n| n.op_type == "Relu")
        .filter_map(|n| Some((n.inputs.first()?.as_str(), n.outputs.first()?.as_str())))
        .collect();
    let producer_b: BTreeMap<&str, &str> =
        b.model.nodes.iter().flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n.op_type.as_str()))).collect();
    let b_consumers: BTreeMap<&str, Vec<&str>> = {
        let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in &b.model.nodes {
            for i in &n.inputs {
                m.entry(i.as_str()).or_default().push(n.op_type.as_str());
            }
        }
        m
    };
    // A's tensors in graph order.
    let mut order: Vec<&str> = Vec::new();
    for n in &a.model.nodes {
        for o in &n.outputs {
            if a.tensors.contains_key(o) {
                order.push(o.as_str());
            }
        }
    }
    for name in a.tensors.keys() {
        if !order.contains(&name.as_str()) {
            order.push(name.as_str());
        }
    }
    let mut out = Pairing::default();
    let mut used_a: BTreeSet<String> = BTreeSet::new();
    let mut used_b: BTreeSet<String> = BTreeSet::new();
    // Model outputs pair by position.
    let outs_a: Vec<&String> = a.tensors.values().filter(|t| t.role == TensorRole::Output).map(|t| &t.name).collect();
    let outs_b: Vec<&String> = b.tensors.values().filter(|t| t.role == TensorRole::Output).map(|t| &t.name).collect();
    let mut output_pairs = Vec::new();
    for (ta, tb) in outs_a.iter().zip(&outs_b) {
        output_pairs.push(Pair {
            a: (*ta).clone(),
            b: (*tb).clone(),
            b_pre: None,
            op: producer_a.get(ta.as_str()).map(|s| (*s).to_owned()).unwrap_or_default(),
            how: "model output".into(),
            ort_a: None,
            relu_removed: false,
        });
        used_a.insert((*ta).clone());
        used_b.insert((*tb).clone());
    }
    for name in &order {
        if used_a.contains(*name) {
            continue;
        }
        let post = format!("{name}_DequantizeLinear_Output");
        let op = producer_a.get(name).map(|s| (*s).to_owned()).unwrap_or_default();
        if let Some(tb) = b.tensors.get(&post) {
            let b_pre = b.tensors.contains_key(*name).then(|| (*name).to_owned());
            // Relu removed by the quantizer?
            let clips_at_zero = tb.qdq.as_ref().and_then(|q| q.real_range()).is_some_and(|(lo, _)| lo == 0.0);
            let b_has_relu = b_consumers.get(post.as_str()).is_some_and(|ops| ops.contains(&"Relu"));
            match relu_of_a.get(name) {
                Some(relu_out) if clips_at_zero && !b_has_relu && a.tensors.contains_key(*relu_out) => {
                    out.pairs.push(Pair {
                        a: (*relu_out).to_owned(),
                        b: post.clone(),
                        b_pre,
                        op: "Relu".into(),
                        how: RELU_REMOVED_BEFORE.into(),
                        ort_a: Some((*name).to_owned()),
                        relu_removed: true,
                    });
                    used_a.insert((*relu_out).to_owned());
                }
                // The quantizer removed the Relu and gave its output name to the op before
                // it: B's `name` holds pre-Relu values, its Q/DQ pair does the Relu's clipping.
                _ if clips_at_zero
                    && producer_a.get(name) == Some(&"Relu")
                    && producer_b.get(name).is_some_and(|op| *op != "Relu") =>
                {
                    out.pairs.push(Pair {
                        a: (*name).to_owned(),
                        b: post.clone(),
                        b_pre,
                        op,
                        how: RELU_REMOVED.into(),
                        ort_a: None,
                        relu_removed: true,
                    });
                }
                _ => out.pairs.push(Pair {
                    a: (*name).to_owned(),
                    b: post.clone(),
                    b_pre,
                    op,
                    how: "ORT QDQ naming".into(),
                    ort_a: None,
                    relu_removed: false,
                }),
            }
            used_a.insert((*name).to_owned());
            used_b.insert(post);
            used_b.insert((*name).to_owned());
        } else if b.tensors.contains_key(*name) && !used_b.contains(*name) {
            out.pairs.push(Pair {
                a: (*name).to_owned(),
                b: (*name).to_owned(),
                b_pre: None,
                op,
                how: "same name".into(),
                ort_a: None,
                relu_removed: false,
            });
            used_a.insert((*name).to_owned());
            used_b.insert((*name).to_owned());
        }
    }
    // Then by graph structure: the k-th op of a type in A ↔ the k-th op of that type in B,
    // skipping Q/DQ/Transpose/Identity (other exporters name tensors in their own ways).
    let index_a = structural_index(&a.model);
    let index_b = structural_index(&b.model);
    let by_position_b: BTreeMap<(&str, usize), &str> =
        index_b.iter().map(|(t, (op, k))| ((op.as_str(), *k), t.as_str())).collect();
    let q_out: BTreeMap<&str, &str> = b
        .model
        .nodes
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .filter_map(|n| Some((n.inputs.first()?.as_str(), n.outputs.first()?.as_str())))
        .collect();
    let dq_out: BTreeMap<&str, &str> = b
        .model
        .nodes
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .filter_map(|n| Some((n.inputs.first()?.as_str(), n.outputs.first()?.as_str())))
        .collect();
    for name in &order {
        if used_a.contains(*name) || a.tensors.get(*name).is_some_and(|t| t.role == TensorRole::Output) {
            continue;
        }
        let Some((op, k)) = index_a.get(*name) else { continue };
        let Some(b_out) = by_position_b.get(&(op.as_str(), *k)) else { continue };
        let post = q_out.get(b_out).and_then(|q| dq_out.get(q)).copied();
        let (b_name, b_pre) = match post {
            Some(p) if b.tensors.contains_key(p) => (p, b.tensors.contains_key(*b_out).then(|| (*b_out).to_owned())),
            _ if b.tensors.contains_key(*b_out) => (*b_out, None),
            _ => continue,
        };
        if used_b.contains(b_name) {
            continue;
        }
        out.pairs.push(Pair {
            a: (*name).to_owned(),
            b: b_name.to_owned(),
            b_pre,
            op: op.clone(),
            how: format!("graph structure ({op} #{})", k + 1),
            ort_a: None,
            relu_removed: false,
        });
        used_a.insert((*name).to_owned());
        used_b.insert(b_name.to_owned());
        used_b.insert((*b_out).to_owned());
    }
    // Outputs last, after the layers.
    out.pairs.extend(output_pairs);
    out.unpaired_a = order.iter().filter(|n| !used_a.contains(**n)).map(|n| (*n).to_owned()).collect();
    out.unpaired_b = b.tensors.keys().filter(|n| !used_b.contains(*n)).cloned().collect();
    out
}
