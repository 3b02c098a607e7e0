//! Suffix runs: after an edit, run only the part of a model the edit reached.
//!
//! A *cut* is a tensor every path from the model's input to its outputs goes through (in
//! the file's node order, the one tensor alive after some node: a residual block's output,
//! say). A probe's full pass keeps the values of the model's cut tensors, over all its
//! samples, in a bounded process-wide cache keyed by the tensor's digest (its computation and
//! the images: [`crate::info::tensor_digests`] combined with the input). After an edit
//! downstream of a cut, the cut's digest is unchanged, so the probe and the comparator's
//! streams run a *suffix model* instead: the nodes after the cut that the wanted tensors need,
//! fed the cached values. Its results are the full model's (Q/DQ pairs are not fused in
//! probing sessions, so every op computes what it computes in the full model) up to float
//! rounding of kernels that ONNX Runtime picks per graph (tested ≤ 1e-6 relative).
//!
//! The cache is off (budget 0) unless the host turns it on ([`set_budget`]): the editor and
//! `quantgraph run --then` do; a one-shot run gains nothing from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quantgraph_nodes::memo::{KeptValues, SampleValues};

use crate::proto::{self, GraphProto};

/// A cut tensor's values over all samples of a probe's dataset.
pub type CutValues = SampleValues;

/// Keyed by (digest, samples); at most 4 GiB whatever the budget.
static VALUES: KeptValues<(u64, usize)> = KeptValues::new(64, 4 << 30);

/// Cut values are kept up to this many bytes in all (0: none kept, no suffix runs).
pub fn set_budget(bytes: usize) {
    VALUES.set_budget(bytes);
}

pub fn budget() -> usize {
    VALUES.budget()
}

pub fn get(digest: u64, samples: usize) -> Option<Arc<CutValues>> {
    (digest != 0).then(|| VALUES.get(&(digest, samples))).flatten()
}

pub fn put(digest: u64, samples: usize, values: CutValues) {
    if digest != 0 {
        VALUES.put((digest, samples), samples, values);
    }
}

/// Forget every cut (tests that compare a suffix run with a full one).
pub fn clear() {
    VALUES.clear();
}

/// The model's cut tensors, earliest first: after each node (in file order), the tensors
/// still needed later (or graph outputs) that depend on the input; where that is exactly
/// one float tensor, it is a cut. Tensors computed from initializers alone are not counted.
pub fn candidates(g: &GraphProto, types: &BTreeMap<String, i32>) -> Vec<String> {
    candidates_of_type(g, types, |t| t == proto::FLOAT)
}

/// [`candidates`] whose element type passes `accept` (the sweep also cuts at quantized
/// tensors, see [`crate::prefix`]).
pub fn candidates_of_type(g: &GraphProto, types: &BTreeMap<String, i32>, accept: impl Fn(i32) -> bool) -> Vec<String> {
    // Subgraphs (If, Loop, Scan) may read outer tensors by name: no cuts there.
    if g.node.iter().any(|n| n.attribute.iter().any(|a| a.r#type == 5 || a.r#type == 10)) {
        return Vec::new();
    }
    let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: BTreeSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    // Tensors that depend on a graph input.
    let mut dynamic: BTreeSet<&str> =
        g.input.iter().map(|i| i.name.as_str()).filter(|n| !initializers.contains(n)).collect();
    for n in &g.node {
        if n.input.iter().any(|i| dynamic.contains(i.as_str())) {
            dynamic.extend(n.output.iter().map(String::as_str));
        }
    }
    // Where each tensor is read last.
    let mut last_use: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, n) in g.node.iter().enumerate() {
        for i in &n.input {
            last_use.insert(i.as_str(), k);
        }
    }
    let mut live: BTreeSet<&str> = dynamic.iter().copied().filter(|t| g.input.iter().any(|i| i.name == *t)).collect();
    let mut out = Vec::new();
    for (k, n) in g.node.iter().enumerate() {
        live.extend(n.output.iter().map(String::as_str).filter(|o| dynamic.contains(o)));
        live.retain(|t| outputs.contains(t) || last_use.get(t).is_some_and(|u| *u > k));
        if live.len() == 1 {
            let t = *live.iter().next().unwrap_or(&"");
            let typed = types.get(t).is_some_and(|ty| accept(*ty));
            // A graph input is no cut (nothing to spare), and ONNX Runtime hands it back as an
            // output without copying it: its memory goes with the input value.
            let input = g.input.iter().any(|i| i.name == t);
            if typed && !input && !outputs.contains(t) && !out.iter().any(|c| c == t) {
                out.push(t.to_owned());
            }
        }
    }
    out
}

/// The nodes (indices, in file order) that compute `wanted` from `cut`, or `None` when some
/// wanted tensor needs the model's input by another path. The cut itself, when wanted, is
/// its kept values (see [`crate::runtime::run_cut_batch`]).
pub fn suffix_nodes(g: &GraphProto, cut: &str, wanted: &[String]) -> Option<Vec<usize>> {
    let producer: BTreeMap<&str, usize> =
        g.node.iter().enumerate().flat_map(|(k, n)| n.output.iter().map(move |o| (o.as_str(), k))).collect();
    let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut keep = BTreeSet::new();
    let mut todo: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some(t) = todo.pop() {
        if t.is_empty() || t == cut || initializers.contains(t) || !seen.insert(t) {
            continue;
        }
        let Some(&k) = producer.get(t) else {
            // A graph input other than the cut: this cut does not separate it.
            return None;
        };
        if keep.insert(k) {
            todo.extend(g.node[k].input.iter().map(String::as_str));
        }
    }
    Some(keep.into_iter().collect())
}

/// The suffix model: `nodes` of `bytes` (as [`suffix_nodes`] chose them), with the cut as its
/// only graph input and `outputs` (but the cut) as its outputs.
pub fn suffix_model(
    bytes: &[u8],
    cut: &str,
    nodes: &[usize],
    outputs: Vec<proto::ValueInfoProto>,
) -> Result<Vec<u8>, String> {
    let outputs = outputs.into_iter().filter(|o| o.name != cut).collect();
    proto::rebuild_graph(
        bytes,
        proto::GraphRebuild {
            nodes: nodes
                .iter()
                .map(|&index| proto::NodeOut::Original {
                    index,
                    inputs: Default::default(),
                    outputs: Default::default(),
                })
                .collect(),
            inputs: Some(vec![proto::float_output(cut)]),
            outputs: Some(outputs),
            ..proto::GraphRebuild::default()
        },
    )
}

/// The latest of `candidates` (cut tensors with their digests, earliest first) that is cached
/// for `samples` samples and from which every `wanted` tensor can be computed: the cut, its
/// values and the suffix's nodes.
pub fn best(
    g: &GraphProto,
    candidates: &[(String, u64)],
    wanted: &[String],
    samples: usize,
) -> Option<(String, Arc<CutValues>, Vec<usize>)> {
    if budget() == 0 {
        return None;
    }
    candidates.iter().rev().find_map(|(c, digest)| {
        let values = get(*digest, samples)?;
        let nodes = suffix_nodes(g, c, wanted)?;
        // Nothing to run (only the cut itself wanted): a full run, not a model without outputs.
        if nodes.is_empty() {
            return None;
        }
        Some((c.clone(), values, nodes))
    })
}

/// A probing session of the suffix from `cut` (its `nodes`, as [`best`] chose them) making
/// `wanted`; `None` when it cannot be built or loaded: the caller runs the whole model.
pub fn suffix_session(
    bytes: &[u8],
    cut: &str,
    nodes: &[usize],
    wanted: &[String],
    types: &BTreeMap<String, i32>,
    threads: usize,
) -> Option<ort::session::Session> {
    let outputs =
        wanted.iter().map(|t| crate::info::typed_output(t, types.get(t).copied().unwrap_or(proto::FLOAT))).collect();
    let bytes = suffix_model(bytes, cut, nodes, outputs).ok()?;
    crate::runtime::session_with(&bytes, threads, true).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::{NodeProto, ValueInfoProto};

    fn node(name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: "Relu".into(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            ..NodeProto::default()
        }
    }

    /// x → a → (b, c: a residual branch) → d = b + c → e; cuts are a, d and e's input, not
    /// b or c (two tensors alive between them).
    fn residual() -> GraphProto {
        GraphProto {
            node: vec![
                node("A", &["x"], &["a"]),
                node("B", &["a"], &["b"]),
                node("C", &["a"], &["c"]),
                node("D", &["b", "c"], &["d"]),
                node("E", &["d", "w"], &["e"]),
            ],
            input: vec![ValueInfoProto { name: "x".into(), r#type: None }],
            output: vec![ValueInfoProto { name: "e".into(), r#type: None }],
            initializer: vec![proto::TensorProto { name: "w".into(), ..Default::default() }],
            ..GraphProto::default()
        }
    }

    #[test]
    fn cuts_are_the_tensors_every_path_goes_through() {
        let g = residual();
        let types: BTreeMap<String, i32> =
            ["x", "a", "b", "c", "d", "e"].iter().map(|t| ((*t).into(), proto::FLOAT)).collect();
        assert_eq!(candidates(&g, &types), ["a", "d"]);
        // From d, e needs only E; from a, c needs C (and b stays out).
        assert_eq!(suffix_nodes(&g, "d", &["e".into()]), Some(vec![4]));
        assert_eq!(suffix_nodes(&g, "a", &["c".into(), "e".into()]), Some(vec![1, 2, 3, 4]));
        // b is upstream of d: not computable from d; d itself is its kept values.
        assert_eq!(suffix_nodes(&g, "d", &["b".into()]), None);
        assert_eq!(suffix_nodes(&g, "d", &["d".into(), "e".into()]), Some(vec![4]));
    }
}
