//! Shared prefixes for the Sensitivity Sweep's variants.
//!
//! Most variants of a sweep compute the first part of the network exactly as one of two
//! models does: an "all but this group" variant (and each mixed-precision step) computes
//! everything upstream of its removed groups as the full QDQ model does; an "only this
//! group" variant computes everything upstream of that group as the all-float variant does.
//! So the sweep runs those two models once more with their *cut* tensors (see [`crate::cuts`];
//! here also quantized ones, the outputs of QuantizeLinear, which fused integer kernels make
//! anyway) as extra outputs, keeps the cut values of every sample within a memory budget, and
//! runs each variant as its *suffix* from the latest cut whose computation it shares (equal
//! [`crate::info::tensor_digests`]: the same ops on the same weights from the same input).
//! Where the FP32 model computes what the all-float variant does, it runs in that variant's
//! place, and its run is the sweep's FP32 reference too: one run fewer.
//!
//! A cut is found in a variant by its digest, not its name (the FP32 model names tensors
//! otherwise than the QDQ model's variants do).
//!
//! ONNX Runtime picks kernels per graph, so a suffix model could round otherwise than the
//! whole variant. Before a suffix's results are used, its first and last batches are compared
//! bit for bit with the whole variant's; where they differ the variant runs whole.

use ort::value::DynValue;

use quantgraph_nodes::value::Dataset;
use quantgraph_nodes::{EvalContext, NodeError};

use crate::{cuts, info, proto, runtime};

/// A cut's values over all samples, in the tensor's own element type.
#[derive(Debug)]
enum CutData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
}

impl CutData {
    fn len(&self) -> usize {
        match self {
            CutData::F32(v) => v.len(),
            CutData::U8(v) => v.len(),
            CutData::I8(v) => v.len(),
        }
    }
    fn bytes_per_value(&self) -> usize {
        match self {
            CutData::F32(_) => 4,
            CutData::U8(_) | CutData::I8(_) => 1,
        }
    }
}

/// One cut tensor of a prefix model: its name, type, shape per sample, computation digest
/// and values.
#[derive(Debug)]
pub struct Cut {
    name: String,
    elem_type: i32,
    item_shape: Vec<usize>,
    digest: u64,
    data: CutData,
}

impl Cut {
    /// Samples `start..end` as an input value of a suffix model.
    fn batch(&self, start: usize, end: usize) -> Result<DynValue, NodeError> {
        let item: usize = self.item_shape.iter().product();
        let (a, b) = (start * item, end * item);
        if b > self.data.len() {
            return Err(NodeError::failed(format!(
                "the kept values of '{}' do not cover samples {start}..{end}",
                self.name
            )));
        }
        let mut shape = vec![(end - start) as i64];
        shape.extend(self.item_shape.iter().map(|d| *d as i64));
        let err = |e: ort::Error| NodeError::failed(format!("making the input tensor of '{}': {e}", self.name));
        Ok(match &self.data {
            CutData::F32(v) => ort::value::Tensor::from_array((shape, v[a..b].to_vec())).map_err(err)?.into_dyn(),
            CutData::U8(v) => ort::value::Tensor::from_array((shape, v[a..b].to_vec())).map_err(err)?.into_dyn(),
            CutData::I8(v) => ort::value::Tensor::from_array((shape, v[a..b].to_vec())).map_err(err)?.into_dyn(),
        })
    }
}

/// The cut values of one model over a dataset, earliest cut first.
#[derive(Debug, Default)]
pub struct Prefix {
    cuts: Vec<Cut>,
    /// The model's first output over every sample, flattened, and its values per sample,
    /// when [`Prefix::collect`] was asked for it and made it.
    pub output: Option<(Vec<f32>, usize)>,
}

/// Elementwise ops whose output, as a cut, is worth no memory when their input is kept: the
/// suffix recomputes them.
const CHEAP: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Relu", "Clip", "Identity", "Cast"];

/// Which cuts to keep for `n` samples within `budget` bytes (`cuts` with the shape and type
/// of their first batch). Cuts come in chains, each made from the one before by a cheap
/// elementwise node (`chained`: a QuantizeLinear, its DequantizeLinear, a Relu): every
/// variant that computes a later member as the prefix did computes its head so, and a suffix
/// from the head recomputes the rest in no time. So one member per chain, the head where it
/// fits, else the smallest that does; the latest chains first (they spare their suffixes the
/// most), until the budget is spent.
fn choose(cuts: &[Cut], chained: &[bool], n: usize, budget: usize) -> Vec<bool> {
    let need = |cut: &Cut| {
        let item: usize = cut.item_shape.iter().product();
        (item > 0).then(|| item.saturating_mul(n).saturating_mul(cut.data.bytes_per_value()))
    };
    let mut keep = vec![false; cuts.len()];
    let mut room = budget;
    let mut end = cuts.len();
    while end > 0 {
        let mut head = end - 1;
        while head > 0 && chained.get(head).copied().unwrap_or(false) {
            head -= 1;
        }
        let mut order: Vec<usize> = (head + 1..end).collect();
        order.sort_by_key(|k| need(&cuts[*k]).unwrap_or(usize::MAX));
        order.insert(0, head);
        if let Some(k) = order.into_iter().find(|k| need(&cuts[*k]).is_some_and(|b| b <= room)) {
            room -= need(&cuts[k]).unwrap_or(0);
            keep[k] = true;
        }
        end = head;
    }
    keep
}

/// A variant as the suffix from a kept cut.
pub struct Suffix<'p> {
    cut: &'p Cut,
    /// The variant's name for the cut tensor (the same computation may have another name in
    /// the variant than in the prefix model, e.g. the FP32 model's).
    input: String,
    output: String,
    /// The suffix model: the cut as its input, the variant's first output as its output.
    pub bytes: Vec<u8>,
    /// Nodes the suffix runs, and the whole variant's.
    pub nodes: usize,
    pub of: usize,
}

impl Prefix {
    /// Run `bytes` over the dataset with its cut tensors as extra outputs and keep their
    /// values, latest cuts first, within `budget` bytes; with `keep_output`, also the model's
    /// first output (float) over every sample ([`Prefix::output`], `None` where the run kept
    /// no cut or the output is not float), so that a model run for its outputs anyway can be
    /// the prefix at no extra run.
    #[allow(clippy::too_many_arguments)]
    pub fn collect(
        ctx: &EvalContext,
        bytes: &[u8],
        feed: &runtime::Feed,
        dataset: &Dataset,
        batch: usize,
        threads: usize,
        budget: usize,
        keep_output: bool,
    ) -> Result<Prefix, NodeError> {
        let model = proto::decode_model(bytes).map_err(NodeError::failed)?;
        let types = info::tensor_types(&model);
        let graph = model.graph.clone().unwrap_or_default();
        let names =
            cuts::candidates_of_type(&graph, &types, |t| matches!(t, proto::FLOAT | proto::UINT8 | proto::INT8));
        if names.is_empty() || budget == 0 || dataset.is_empty() {
            return Ok(Prefix::default());
        }
        let digests = info::tensor_digests(&model);
        let extra =
            names.iter().map(|n| info::typed_output(n, types.get(n).copied().unwrap_or(proto::FLOAT))).collect();
        let augmented =
            proto::edit_model(bytes, proto::ModelEdit { extra_outputs: extra, ..proto::ModelEdit::default() })
                .map_err(NodeError::failed)?;
        let mut session = runtime::session(&augmented, threads)?;
        let n = dataset.len();
        let output_name = keep_output.then(|| graph.output.first().map(|o| o.name.clone())).flatten();
        let mut output: Option<(Vec<f32>, usize)> = output_name.as_ref().map(|_| (Vec::new(), 0));
        let mut cuts: Vec<Cut> = names
            .iter()
            .map(|name| Cut {
                name: name.clone(),
                elem_type: types.get(name).copied().unwrap_or(proto::FLOAT),
                item_shape: Vec::new(),
                digest: digests.get(name).copied().unwrap_or(0),
                data: match types.get(name).copied() {
                    Some(proto::UINT8) => CutData::U8(Vec::new()),
                    Some(proto::INT8) => CutData::I8(Vec::new()),
                    _ => CutData::F32(Vec::new()),
                },
            })
            .collect();
        // Which cut is made from the one before it by one cheap elementwise node.
        let producer: std::collections::HashMap<&str, &proto::NodeProto> =
            graph.node.iter().flat_map(|node| node.output.iter().map(move |o| (o.as_str(), node))).collect();
        let chained: Vec<bool> = names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                k > 0
                    && producer.get(name.as_str()).is_some_and(|node| {
                        CHEAP.contains(&node.op_type.as_str()) && node.input.first() == Some(&names[k - 1])
                    })
            })
            .collect();
        let mut start = 0;
        let mut chosen = false;
        while start < n && !cuts.is_empty() {
            ctx.check_cancelled()?;
            let end = (start + batch).min(n);
            let input = runtime::input_value(ctx, feed, &dataset.images, start, end)?;
            runtime::run_cancellable(ctx, &mut session, vec![(feed.name.as_str(), input)], |outs| {
                if let (Some(name), Some((kept, item))) = (&output_name, &mut output) {
                    match outs.get(name).map(|v| v.try_extract_tensor::<f32>()) {
                        Some(Ok((shape, data))) => {
                            *item = shape.iter().skip(1).map(|d| (*d).max(0) as usize).product();
                            kept.extend_from_slice(data);
                        }
                        _ => output = None,
                    }
                }
                for cut in &mut cuts {
                    let Some(value) = outs.get(&cut.name) else {
                        return Err(NodeError::failed(format!("the prefix model gave no output '{}'", cut.name)));
                    };
                    let wrong = || NodeError::failed(format!("'{}' is not of the type its model declares", cut.name));
                    cut.item_shape = match &mut cut.data {
                        CutData::F32(v) => {
                            let (s, d) = value.try_extract_tensor::<f32>().map_err(|_| wrong())?;
                            v.extend_from_slice(d);
                            s.iter().skip(1).map(|d| (*d).max(0) as usize).collect()
                        }
                        CutData::U8(v) => {
                            let (s, d) = value.try_extract_tensor::<u8>().map_err(|_| wrong())?;
                            v.extend_from_slice(d);
                            s.iter().skip(1).map(|d| (*d).max(0) as usize).collect()
                        }
                        CutData::I8(v) => {
                            let (s, d) = value.try_extract_tensor::<i8>().map_err(|_| wrong())?;
                            v.extend_from_slice(d);
                            s.iter().skip(1).map(|d| (*d).max(0) as usize).collect()
                        }
                    };
                }
                Ok(())
            })?;
            if !chosen {
                chosen = true;
                let keep = choose(&cuts, &chained, n, budget);
                let mut k = 0;
                cuts.retain(|_| {
                    k += 1;
                    keep[k - 1]
                });
                for cut in &mut cuts {
                    let item: usize = cut.item_shape.iter().product();
                    match &mut cut.data {
                        CutData::F32(v) => v.reserve_exact(item * n - v.len()),
                        CutData::U8(v) => v.reserve_exact(item * n - v.len()),
                        CutData::I8(v) => v.reserve_exact(item * n - v.len()),
                    }
                }
                // The rest of the samples with only the kept cuts as outputs: every extra
                // output is a tensor ONNX Runtime must make and cannot fuse away.
                if !cuts.is_empty() && cuts.len() < names.len() {
                    let extra = cuts.iter().map(|c| info::typed_output(&c.name, c.elem_type)).collect();
                    let fewer = proto::edit_model(
                        bytes,
                        proto::ModelEdit { extra_outputs: extra, ..proto::ModelEdit::default() },
                    )
                    .map_err(NodeError::failed)?;
                    session = runtime::session(&fewer, threads)?;
                    // It may compute them otherwise (fused kernels round otherwise): every
                    // sample from the one session, the first batch again.
                    for cut in &mut cuts {
                        match &mut cut.data {
                            CutData::F32(v) => v.clear(),
                            CutData::U8(v) => v.clear(),
                            CutData::I8(v) => v.clear(),
                        }
                    }
                    if let Some((kept, _)) = &mut output {
                        kept.clear();
                    }
                    continue;
                }
            }
            start = end;
        }
        // Every sample's output, or none (the loop stops early when no cut is kept).
        let output = output.filter(|(kept, item)| *item > 0 && kept.len() == n * item);
        Ok(Prefix { cuts, output })
    }

    /// Whether any cut is kept.
    pub fn is_empty(&self) -> bool {
        self.cuts.is_empty()
    }

    /// The variant (`model`, its `bytes`, its tensor `digests`) as the suffix from the latest
    /// cut it computes as this prefix did, if any.
    pub fn suffix(
        &self,
        model: &proto::ModelProto,
        bytes: &[u8],
        digests: &std::collections::BTreeMap<String, u64>,
    ) -> Option<Suffix<'_>> {
        let g = model.graph.as_ref()?;
        let output = g.output.first()?.clone();
        // The variant's tensors by computation digest, its own name for a cut's first.
        let mut named: std::collections::HashMap<u64, Vec<&str>> = std::collections::HashMap::new();
        for (name, d) in digests {
            named.entry(*d).or_default().push(name.as_str());
        }
        self.cuts.iter().rev().find_map(|cut| {
            if cut.digest == 0 {
                return None;
            }
            let mut names = named.get(&cut.digest)?.clone();
            names.sort_by_key(|n| *n != cut.name);
            let (name, nodes) = names.into_iter().find_map(|name| {
                let nodes = cuts::suffix_nodes(g, name, std::slice::from_ref(&output.name))?;
                (!nodes.is_empty()).then_some((name, nodes))
            })?;
            // The cut as input, with its shape (a free batch axis): ONNX Runtime plans the
            // suffix's kernels knowing it, as in the whole model.
            let mut input = info::typed_output(name, cut.elem_type);
            if let Some(t) = input.r#type.as_mut().and_then(|t| t.tensor_type.as_mut()) {
                let mut dim = vec![proto::Dimension { dim_value: None, dim_param: Some("batch".into()) }];
                dim.extend(
                    cut.item_shape.iter().map(|d| proto::Dimension { dim_value: Some(*d as i64), dim_param: None }),
                );
                t.shape = Some(proto::TensorShapeProto { dim });
            }
            let count = nodes.len();
            let bytes = proto::rebuild_graph(
                bytes,
                proto::GraphRebuild {
                    nodes: nodes
                        .into_iter()
                        .map(|index| proto::NodeOut::Original {
                            index,
                            inputs: Default::default(),
                            outputs: Default::default(),
                        })
                        .collect(),
                    inputs: Some(vec![input]),
                    outputs: Some(vec![output.clone()]),
                    ..proto::GraphRebuild::default()
                },
            )
            .ok()?;
            Some(Suffix {
                cut,
                input: name.to_owned(),
                output: output.name.clone(),
                bytes,
                nodes: count,
                of: g.node.len(),
            })
        })
    }
}

impl Suffix<'_> {
    /// Run samples `start..end` through the suffix `session` and hand its first output to `f`
    /// as `(shape per sample, data)`.
    pub fn run_batch<R>(
        &self,
        ctx: &EvalContext,
        session: &mut ort::session::Session,
        start: usize,
        end: usize,
        f: impl FnOnce(&[usize], &[f32]) -> Result<R, NodeError>,
    ) -> Result<R, NodeError> {
        let input = self.cut.batch(start, end)?;
        runtime::run_cancellable(ctx, session, vec![(self.input.as_str(), input)], |outs| {
            let value = outs
                .get(&self.output)
                .ok_or_else(|| NodeError::failed(format!("the suffix model gave no output '{}'", self.output)))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| NodeError::failed(format!("the suffix model's output is not float: {e}")))?;
            let item: Vec<usize> = shape.iter().skip(1).map(|d| (*d).max(0) as usize).collect();
            f(&item, data)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(name: &str, item: usize, data: CutData) -> Cut {
        Cut { name: name.into(), elem_type: proto::FLOAT, item_shape: vec![item], digest: 1, data }
    }

    /// One member per chain, the head where it fits, else the smallest member that does;
    /// the latest chains first.
    #[test]
    fn chains_keep_one_member_latest_first() {
        // Two chains: a (float) → a_q (uint8) → a_dq (float), then b (float) → b_q (uint8).
        let cuts = vec![
            cut("a", 100, CutData::F32(Vec::new())),
            cut("a_q", 100, CutData::U8(Vec::new())),
            cut("a_dq", 100, CutData::F32(Vec::new())),
            cut("b", 50, CutData::F32(Vec::new())),
            cut("b_q", 50, CutData::U8(Vec::new())),
        ];
        let chained = [false, true, true, false, true];
        let n = 10;
        // Room for every head: b (2,000 bytes) and a (4,000), nothing else.
        assert_eq!(choose(&cuts, &chained, n, 6_000), [true, false, false, true, false]);
        // Room for b and then not for a: a's smallest member, a_q (1,000 bytes).
        assert_eq!(choose(&cuts, &chained, n, 3_000), [false, true, false, true, false]);
        // Not even for b: b_q (500), then a_q (1,000).
        assert_eq!(choose(&cuts, &chained, n, 1_500), [false, true, false, false, true]);
        assert_eq!(choose(&cuts, &chained, n, 0), [false; 5]);
    }
}
