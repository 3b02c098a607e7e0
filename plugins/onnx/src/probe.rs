//! `onnx.layer_probe`: run a model on a dataset and capture tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quantgraph_nodes::kind::Migration;
use quantgraph_nodes::stats::TensorAccumulator;
use quantgraph_nodes::value::{
    ActivationStream, Activations, Batch, BatchIter, Dataset, ModelValue, PassSink, PassWork, PendingHandle,
    PendingPass, Predictions, ProbedTensor, QdqEntry, StreamHandle, Tensor, TensorRole,
};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};
use rayon::prelude::*;

use crate::{cuts, info, proto, reuse, runtime};

/// Model + Dataset → Activations.
#[derive(Default)]
pub struct LayerProbe;

/// Model outputs with more values than this (all samples together) are not kept in memory;
/// they are streamed like activations.
pub const MAX_KEPT_OUTPUT_VALUES: usize = 64 << 20;

/// Index of the largest value of each row.
pub fn argmax_rows(data: &[f32], row_len: usize) -> Vec<u32> {
    if row_len == 0 {
        return Vec::new();
    }
    data.chunks_exact(row_len)
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

/// The Q/DQ pair a tensor passes through: the Q that reads it, or the DQ that makes it.
pub fn qdq_for(qdq: &[QdqEntry], tensor: &str) -> Option<QdqEntry> {
    qdq.iter()
        .find(|e| {
            (e.op_type == "QuantizeLinear" && e.input == tensor)
                || (e.op_type == "DequantizeLinear" && !e.is_weight && e.output == tensor)
                || (e.op_type.ends_with(" output") && e.output == tensor)
        })
        .cloned()
}

/// Re-runs a probed model over the probe's samples for whoever needs activation values.
pub struct ProbeStream {
    /// The model as loaded (no probe outputs) and its own outputs.
    bytes: Arc<Vec<u8>>,
    model_outputs: Vec<String>,
    threads: usize,
    feed: runtime::Feed,
    /// Element type of each capturable tensor (int8/uint8 ones are dequantized).
    types: BTreeMap<String, i32>,
    images: Arc<Dataset>,
    names: Vec<String>,
    batch_size: usize,
    cuts: StreamCuts,
}

/// What a stream needs to run a suffix (see [`crate::cuts`]): the model's graph (initializer
/// data left out) and its cut tensors with their digests, earliest first.
#[derive(Default)]
struct StreamCuts {
    graph: Arc<proto::GraphProto>,
    candidates: Vec<(String, u64)>,
}

/// The graph without initializer data (names only): what suffix planning reads.
fn light_graph(m: &proto::ModelProto) -> proto::GraphProto {
    let mut g = m.graph.clone().unwrap_or_default();
    for t in &mut g.initializer {
        *t = proto::TensorProto { name: std::mem::take(&mut t.name), ..proto::TensorProto::default() };
    }
    g
}

struct ProbeIter {
    session: ort::session::Session,
    feed: runtime::Feed,
    images: Arc<Dataset>,
    names: Vec<String>,
    batch_size: usize,
    next: usize,
    /// Run from this cut's cached values through a suffix model.
    cut: Option<(String, Arc<cuts::CutValues>)>,
    /// What a suffix run runs: ops run and ops in the model.
    ops: (usize, usize),
}

impl BatchIter for ProbeIter {
    fn next_batch(&mut self, ctx: &EvalContext) -> Result<Option<Batch>, NodeError> {
        let n = self.images.len();
        if self.next >= n {
            return Ok(None);
        }
        ctx.check_cancelled()?;
        let (start, end) = (self.next, (self.next + self.batch_size).min(n));
        let mut batch = Batch { start, rows: end - start, tensors: BTreeMap::new() };
        let keep = |outs: Vec<(&str, Vec<usize>, &[f32])>| {
            for (name, item_shape, data) in outs {
                batch.tensors.insert(name.to_owned(), (item_shape, data.to_vec()));
            }
            Ok(())
        };
        match &self.cut {
            Some((cut, values)) => {
                runtime::run_cut_batch(ctx, &mut self.session, &self.feed, cut, values, start, end, &self.names, keep)?
            }
            None => runtime::run_batch(
                ctx,
                &mut self.session,
                &self.feed,
                &self.images.images,
                start,
                end,
                &self.names,
                keep,
            )?,
        }
        self.next = end;
        Ok(Some(batch))
    }

    fn describe(&self) -> Option<String> {
        let (ran, of) = self.ops;
        self.cut.as_ref().map(|(cut, _)| {
            format!("ran {ran} of {of} ops, from '{cut}' (its values kept from an earlier run: the edit is downstream of it)")
        })
    }
}

impl ActivationStream for ProbeStream {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn samples(&self) -> usize {
        self.images.len()
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn open(&self, names: &[String], batch_size: usize) -> Result<Box<dyn BatchIter>, NodeError> {
        Ok(Box::new(self.iter(names, batch_size)?))
    }
    fn gather(&self, names: &[String], samples: &[usize], ctx: &EvalContext) -> Result<Vec<Batch>, NodeError> {
        // One session, one run per asked sample: nothing else is computed.
        let mut it = self.iter(names, 1)?;
        samples
            .iter()
            .map(|s| {
                if *s >= self.images.len() {
                    return Err(NodeError::failed(format!(
                        "sample {s} is out of range: the probe ran {} samples",
                        self.images.len()
                    )));
                }
                it.next = *s;
                it.next_batch(ctx)?.ok_or_else(|| NodeError::failed(format!("sample {s} gave no batch")))
            })
            .collect()
    }
}

impl ProbeStream {
    fn iter(&self, names: &[String], batch_size: usize) -> Result<ProbeIter, NodeError> {
        for n in names {
            if !self.names.contains(n) {
                return Err(NodeError::failed(format!("the probe did not capture '{n}'")));
            }
        }
        // Only the requested tensors become outputs: ONNX Runtime fuses everything else.
        let extra: Vec<&String> = names.iter().filter(|n| !self.model_outputs.contains(n)).collect();
        // From a cached cut when there is one upstream of everything asked for, and only when
        // activations are asked for: the model's outputs alone run unprobed (Q/DQ fused),
        // which a suffix (always probing) would not reproduce.
        let suffix = cuts::best(&self.cuts.graph, &self.cuts.candidates, names, self.images.len())
            .filter(|_| !extra.is_empty())
            .and_then(|(cut, values, nodes)| {
                let session = cuts::suffix_session(&self.bytes, &cut, &nodes, names, &self.types, self.threads)?;
                Some((session, (cut, values), nodes.len()))
            });
        let (session, cut, ran) = match suffix {
            Some((session, cut, ran)) => (session, Some(cut), ran),
            None => (self.full_session(&extra)?, None, 0),
        };
        Ok(ProbeIter {
            session,
            feed: self.feed.clone(),
            images: self.images.clone(),
            names: names.to_vec(),
            batch_size: batch_size.max(1),
            next: 0,
            cut,
            ops: (ran, self.cuts.graph.node.len()),
        })
    }

    /// A session of the whole model with `extra` as additional outputs; without any, the
    /// model as it runs unprobed (Q/DQ pairs fused where ONNX Runtime fuses them), so that
    /// its outputs are what its predictions are.
    fn full_session(&self, extra: &[&String]) -> Result<ort::session::Session, NodeError> {
        let session = if extra.is_empty() {
            runtime::session(&self.bytes, self.threads)?
        } else {
            let bytes = proto::edit_model(
                &self.bytes,
                proto::ModelEdit {
                    extra_outputs: extra
                        .iter()
                        .map(|t| info::typed_output(t, self.types.get(*t).copied().unwrap_or(proto::FLOAT)))
                        .collect(),
                    ..proto::ModelEdit::default()
                },
            )
            .map_err(|e| NodeError::failed(format!("adding probe outputs failed: {e}")))?;
            runtime::session_with(&bytes, self.threads, true)?
        };
        Ok(session)
    }
}

params! {
    /// The Layer Probe's params.
    pub struct ProbeParams {
        pub capture: String = choice("Capture", "all", &["outputs", "selected", "all"]),
        pub tensors: Vec<String> = tensor_name("Tensors (for 'selected')", "model", true),
        pub input_scale: f64 = float("Input scale", 0.0, 0.0, 1e9).with_step(1e-5, true).with_doc(
            "For a model whose input is int8/uint8: the scale that quantizes the images (q = round(x / scale) + \
             zero point). 0 reads it from the model (the DequantizeLinear that reads the input, or input_scale \
             metadata).",
        ),
        pub input_zero_point: i64 = int("Input zero point", 0, -128, 255)
            .with_doc("The zero point that goes with 'Input scale' (used only when that is set)."),
        pub batch_size: usize = int("Batch size", 16, 1, 65_536).with_doc(
            "Samples per ONNX Runtime run. Memory holds one batch of every captured tensor (about \
             0.8 MB per sample for ResNet8), so larger batches cost memory, not accuracy (nor speed, for \
             small models: ResNet8 on CIFAR-10 runs as fast at 16 as at 64, in less than half the memory).",
        ),
    }
}

impl TypedKind for LayerProbe {
    type Params = ProbeParams;
    fn id(&self) -> &'static str {
        "onnx.layer_probe"
    }
    fn version(&self) -> u32 {
        2
    }
    fn display_name(&self) -> &'static str {
        "Layer Probe"
    }
    fn category(&self) -> &'static str {
        "Analysis"
    }
    fn doc(&self) -> &'static str {
        "Runs a model on a dataset in batches and captures the chosen tensors (the model outputs, \
         chosen tensors, or every float activation): statistics and histograms over every sample \
         (in one streaming pass; memory does not grow with the number of samples), the model \
         outputs and top-1 predictions. Activations themselves are not kept: a comparator streams \
         them again, batch by batch. Whether adding graph outputs changes the model's results (it \
         can stop ONNX Runtime fusing Q/DQ pairs into integer kernels) is checked on the first \
         batch; only then do predictions come from a separate unprobed run, and the probe says \
         so. For a QDQ model, 'all' captures both ONNX Runtime's pre-quantization tensors (T) and \
         post-dequantization tensors (T_DequantizeLinear_Output)."
    }
    fn migrations(&self) -> Vec<Migration> {
        // Version 1 kept the first `keep` samples' activations; figures now cover every sample.
        vec![Migration {
            from_version: 1,
            apply: |p| {
                p.remove("keep");
                Ok(())
            },
        }]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::new("dataset", PortType::Dataset)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("activations", PortType::Activations)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &ProbeParams) -> Result<Outputs, NodeError> {
        let model = inputs.model("model")?;
        let dataset = inputs.dataset("dataset")?;
        let batch = params.batch_size.max(1);
        let proto_model = proto::decode_model(&model.bytes).map_err(|e| NodeError::file(e, &model.path))?;
        let mut feed = feed_for(model, &proto_model, dataset, params)?;
        let Some(logits_name) = model.info.outputs.first().map(|o| o.name.clone()) else {
            return Err(NodeError::input("model", "the model has no outputs"));
        };
        let n = dataset.len();

        // The tensors asked for.
        let (available, untyped) = info::capturable(&proto_model);
        let types = info::tensor_types(&proto_model);
        for (t, (scale, zero_point, dtype)) in info::quantized_tensors(&proto_model) {
            feed.dequantize.insert(
                t.clone(),
                runtime::InputQuant { dtype, scale, zero_point, source: format!("the op that makes '{t}'") },
            );
        }
        let wanted: Vec<String> = match params.capture.as_str() {
            "outputs" => Vec::new(),
            "selected" => {
                let chosen = params.tensors.clone();
                for t in &chosen {
                    if !available.contains(t) && !model.info.outputs.iter().any(|o| &o.name == t) {
                        return Err(NodeError::param(
                            "tensors",
                            format!("the model has no float or dequantizable tensor '{t}'"),
                        ));
                    }
                }
                chosen
            }
            _ => available,
        };
        let output_names: BTreeSet<&str> = model.info.outputs.iter().map(|o| o.name.as_str()).collect();
        let extra: Vec<String> = wanted.iter().filter(|t| !output_names.contains(t.as_str())).cloned().collect();
        // Statistics of tensors whose values an earlier run computed (same digest: the same
        // computation of the same images) are reused; only the others are captured.
        let digests = info::tensor_digests(&proto_model);
        let input = input_digest(dataset, &feed);
        let digest_of = |t: &str| digests.get(t).map_or(0, |d| reuse::combine(*d, input));
        // A tensor's histogram range depends on the Q/DQ pair that reads it (downstream of the
        // tensor, so not in its digest): that range is part of the statistics' key.
        let stats_key = |t: &str| {
            let d = digest_of(t);
            match qdq_for(&model.info.qdq, t).and_then(|q| q.real_range()) {
                Some((lo, hi)) if d != 0 => {
                    reuse::combine(d, (u64::from(lo.to_bits()) << 32) | u64::from(hi.to_bits()))
                }
                _ => d,
            }
        };
        let reused: BTreeMap<String, reuse::CachedStats> =
            extra.iter().filter_map(|t| Some((t.clone(), reuse::get_stats(stats_key(t), batch)?))).collect();
        let pass_extra: Vec<String> = extra.iter().filter(|t| !reused.contains_key(*t)).cloned().collect();
        let stats_keys: BTreeMap<String, u64> = pass_extra.iter().map(|t| (t.clone(), stats_key(t))).collect();

        // After an edit downstream of a cached cut, only the model's suffix runs (the stream
        // chooses the cut).
        let graph = light_graph(&proto_model);
        let candidates: Vec<(String, u64)> = if cuts::budget() > 0 {
            cuts::candidates(&graph, &types)
                .into_iter()
                .map(|c| {
                    let d = digest_of(&c);
                    (c, d)
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut notes = Vec::new();
        if untyped > 0 {
            notes.push(format!(
                "{untyped} tensor(s) of the model have no declared type and none could be worked out from the ops; \
                 they are not captured"
            ));
        }
        notes.extend(feed_notes(&feed));
        let digest_map: BTreeMap<String, u64> =
            extra.iter().chain(std::iter::once(&logits_name)).map(|t| (t.clone(), digest_of(t))).collect();
        let mut stream_names = extra.clone();
        stream_names.push(logits_name.clone());
        let stream = Arc::new(ProbeStream {
            bytes: model.bytes.clone(),
            model_outputs: model.info.outputs.iter().map(|o| o.name.clone()).collect(),
            threads: model.threads,
            feed,
            types,
            images: dataset.clone(),
            names: stream_names,
            batch_size: batch,
            cuts: StreamCuts { graph: Arc::new(graph), candidates },
        });
        let work = ProbeWork(Arc::new(ProbeCore {
            model: model.clone(),
            dataset: dataset.clone(),
            stream: stream.clone(),
            logits_name: logits_name.clone(),
            extra: extra.clone(),
            pass_extra,
            reused,
            stats_keys,
            digests: digest_map.clone(),
            notes,
            batch,
        }));
        let pending = Arc::new(PendingPass::new(Box::new(work), StreamHandle(stream.clone())));
        if !ctx.may_defer() {
            // No reader runs the pass within its own: run it now.
            let acts = pending.resolve(ctx)?;
            return Ok(quantgraph_nodes::kind::single("activations", Value::Activations(acts)));
        }
        // The reader (a comparator) runs the pass with its own: what needs no pass now.
        let mut tensors = BTreeMap::new();
        for name in extra.iter().chain(std::iter::once(&logits_name)) {
            let role = if *name == logits_name { TensorRole::Output } else { TensorRole::Activation };
            tensors.insert(
                name.clone(),
                ProbedTensor {
                    name: name.clone(),
                    role,
                    tensor: Tensor { shape: vec![n], data: Vec::new() },
                    stats: Default::default(),
                    qdq: if role == TensorRole::Output { None } else { qdq_for(&model.info.qdq, name) },
                    digest: digest_map.get(name).copied().unwrap_or(0),
                },
            );
        }
        let acts = Activations {
            model_name: model.name.clone(),
            model: model.info.clone(),
            tensors,
            predictions: None,
            dataset: Some(dataset.clone()),
            notes: vec!["statistics and predictions are computed in the pass of the node that reads this probe".into()],
            stream: Some(StreamHandle(stream)),
            pending: Some(PendingHandle(pending)),
        };
        Ok(quantgraph_nodes::kind::single("activations", Value::Activations(Arc::new(acts))))
    }
}

/// A probe's pass, set up: what its sinks need (see [`PendingPass`]).
struct ProbeWork(Arc<ProbeCore>);

struct ProbeCore {
    model: Arc<ModelValue>,
    dataset: Arc<Dataset>,
    stream: Arc<ProbeStream>,
    logits_name: String,
    /// Every captured tensor other than the model output.
    extra: Vec<String>,
    /// Those whose statistics this pass computes; the others' are `reused`.
    pass_extra: Vec<String>,
    reused: BTreeMap<String, reuse::CachedStats>,
    /// Where the statistics of each of `pass_extra` are kept for reuse.
    stats_keys: BTreeMap<String, u64>,
    digests: BTreeMap<String, u64>,
    notes: Vec<String>,
    batch: usize,
}

impl PassWork for ProbeWork {
    fn names(&self) -> Vec<String> {
        let mut names = self.0.pass_extra.clone();
        names.push(self.0.logits_name.clone());
        names
    }

    fn sink(&self) -> Result<Box<dyn PassSink>, NodeError> {
        let w = &self.0;
        let n = w.dataset.len();
        // Cut tensors this pass computes anyway and no cache holds: kept for suffix runs
        // after a later edit.
        let keep_cuts = w
            .stream
            .cuts
            .candidates
            .iter()
            .filter(|(c, d)| w.pass_extra.contains(c) && cuts::get(*d, n).is_none())
            .map(|(c, _)| (c.clone(), (Vec::new(), Vec::new())))
            .collect();
        Ok(Box::new(ProbeSink {
            work: w.clone(),
            acc: BTreeMap::new(),
            logits: Vec::new(),
            logits_shape: Vec::new(),
            logits_acc: TensorAccumulator::new(None),
            keep_cuts,
            notes: Vec::new(),
            first_rows: None,
        }))
    }
}

/// One run of a probe's pass: statistics, histograms and outputs so far.
struct ProbeSink {
    work: Arc<ProbeCore>,
    acc: BTreeMap<String, (Vec<usize>, TensorAccumulator)>,
    /// All samples' outputs (empty when too large to keep).
    logits: Vec<f32>,
    logits_shape: Vec<usize>,
    logits_acc: TensorAccumulator,
    keep_cuts: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    notes: Vec<String>,
    /// Rows of the first batch, once seen.
    first_rows: Option<usize>,
}

impl PassSink for ProbeSink {
    fn add(&mut self, ctx: &EvalContext, batch: &Batch) -> Result<(), NodeError> {
        let w = self.work.clone();
        let n = w.dataset.len();
        let Some((item_shape, data)) = batch.tensors.get(&w.logits_name) else {
            return Err(NodeError::failed(format!("the probe's pass got no '{}'", w.logits_name)));
        };
        self.logits_shape.clone_from(item_shape);
        if n.saturating_mul(item_shape.iter().product()) <= MAX_KEPT_OUTPUT_VALUES {
            self.logits.extend_from_slice(data);
        }
        self.logits_acc.add(data);
        for (name, (shape, values)) in self.keep_cuts.iter_mut() {
            if let Some((s, d)) = batch.tensors.get(name) {
                shape.clone_from(s);
                values.extend_from_slice(d);
            }
        }
        for name in &w.pass_extra {
            if let (false, Some((shape, _))) = (self.acc.contains_key(name), batch.tensors.get(name)) {
                let cover = qdq_for(&w.model.info.qdq, name).and_then(|q| q.real_range());
                self.acc.insert(name.clone(), (shape.clone(), TensorAccumulator::new(cover)));
            }
        }
        // Statistics of the batch's tensors in parallel.
        let work: Vec<(&mut TensorAccumulator, &[f32])> = self
            .acc
            .iter_mut()
            .filter_map(|(name, (_, a))| batch.tensors.get(name).map(|(_, d)| (a, d.as_slice())))
            .collect();
        work.into_par_iter().for_each(|(a, data)| a.add(data));

        if self.first_rows.is_none() {
            self.first_rows = Some(batch.rows);
            // Did probing change what is measured? Only a probing run (one with tensors
            // besides the model's outputs) can have.
            let probing = batch.tensors.keys().any(|k| !w.stream.model_outputs.contains(k));
            // Now that their sizes are known: the latest cuts that fit in half the budget
            // (the other half is for the model this one is compared with).
            let mut room = cuts::budget() / 2;
            for (c, _) in w.stream.cuts.candidates.iter().rev() {
                let Some((shape, _)) = self.keep_cuts.get(c) else { continue };
                let bytes = shape.iter().product::<usize>() * n * 4;
                if bytes <= room {
                    room -= bytes;
                } else {
                    self.keep_cuts.remove(c);
                }
            }
            // Once, on the first batch, against the model as it runs unprobed.
            let (mut same, mut max_diff) = (true, 0.0f32);
            if probing {
                let mut plain = runtime::session(&w.model.bytes, w.model.threads)?;
                runtime::run_batch(
                    ctx,
                    &mut plain,
                    &w.stream.feed,
                    &w.dataset.images,
                    batch.start,
                    batch.start + batch.rows,
                    std::slice::from_ref(&w.logits_name),
                    |outs| {
                        if let Some((_, _, plain)) = outs.first() {
                            max_diff = plain.iter().zip(data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                            same = plain.len() == data.len() && max_diff <= 1e-5;
                        }
                        Ok(())
                    },
                )?;
            }
            if !same {
                self.notes.push(format!(
                    "probing changed the model's outputs on the first batch (max |Δ output| = {max_diff:.4}; extra \
                     graph outputs can stop ONNX Runtime fusing Q/DQ pairs); predictions and accuracy come from a \
                     separate run of the unprobed model"
                ));
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &EvalContext, how: Option<String>) -> Result<Activations, NodeError> {
        let ProbeSink { work: w, acc, mut logits, logits_shape, logits_acc, mut keep_cuts, mut notes, first_rows } =
            *self;
        let n = w.dataset.len();
        // Predictions from the model as it runs unprobed (a second pass only when needed).
        let item: usize = logits_shape.iter().product();
        let kept = logits.len() == n * item;
        let mut top1 = None;
        if !notes.is_empty() || !kept {
            let mut plain = runtime::session(&w.model.bytes, w.model.threads)?;
            let mut unprobed = Vec::with_capacity(n);
            let mut kept_logits = Vec::new();
            runtime::for_each_batch(
                &mut plain,
                &w.stream.feed,
                &w.dataset.images,
                w.batch,
                std::slice::from_ref(&w.logits_name),
                ctx,
                "predicting (unprobed model)",
                |_, _, item_shape, data| {
                    unprobed.extend(argmax_rows(data, item_shape.iter().product()));
                    if kept {
                        kept_logits.extend_from_slice(data);
                    }
                    Ok(())
                },
            )?;
            if kept {
                logits = kept_logits;
            }
            top1 = Some(unprobed);
        }
        // Earliest first: when the budget is short, the cache keeps the latest cuts.
        let mut kept_cuts = (0usize, 0usize);
        for (c, digest) in &w.stream.cuts.candidates {
            if let Some((item_shape, data)) = keep_cuts.remove(c) {
                if data.len() == n * item_shape.iter().product::<usize>() && !data.is_empty() {
                    kept_cuts = (kept_cuts.0 + 1, kept_cuts.1 + data.len() * 4);
                    cuts::put(*digest, n, cuts::CutValues { item_shape, data });
                }
            }
        }
        if kept_cuts.0 > 0 {
            notes.push(format!(
                "kept the values of {} of the model's {} cut tensors ({:.1} MB) so that an edit downstream of one \
                 re-runs only the ops after it",
                kept_cuts.0,
                w.stream.cuts.candidates.len(),
                kept_cuts.1 as f64 / 1e6
            ));
        }
        notes.extend(how);
        notes.extend(w.notes.iter().cloned());
        let mut computed: BTreeMap<String, reuse::CachedStats> = acc
            .into_iter()
            .map(|(name, (item_shape, a))| (name, reuse::CachedStats { item_shape, stats: a.stats() }))
            .collect();
        // Kept for reuse only when made in the probe's own batch size (sums depend on it).
        if first_rows == Some(w.batch.min(n)) {
            for (name, c) in &computed {
                if let Some(k) = w.stats_keys.get(name) {
                    reuse::put_stats(*k, w.batch, c.clone());
                }
            }
        }
        if !w.reused.is_empty() {
            notes.push(format!(
                "statistics of {} of {} tensors reused from an earlier run (their values do not depend on what \
                 changed); {} captured in this pass",
                w.reused.len(),
                w.extra.len(),
                w.pass_extra.len()
            ));
        }
        computed.extend(w.reused.iter().map(|(k, v)| (k.clone(), v.clone())));
        let outputs = ProbeOutputs { logits, logits_shape, logits_acc, top1 };
        Ok(finish(&w, computed, outputs, notes))
    }
}

/// What the probe's pass gave for the model output.
struct ProbeOutputs {
    /// All samples' outputs (empty when too large to keep).
    logits: Vec<f32>,
    logits_shape: Vec<usize>,
    logits_acc: TensorAccumulator,
    /// Top-1 from a separate unprobed run, when probing changed the outputs.
    top1: Option<Vec<u32>>,
}

/// The probe's finished value.
fn finish(
    w: &ProbeCore,
    stats: BTreeMap<String, reuse::CachedStats>,
    outputs: ProbeOutputs,
    mut notes: Vec<String>,
) -> Activations {
    let (model, dataset, logits_name) = (&w.model, &w.dataset, w.logits_name.as_str());
    let n = dataset.len();
    let ProbeOutputs { logits, logits_shape, logits_acc, top1 } = outputs;
    let item: usize = logits_shape.iter().product();
    let top1 = top1.unwrap_or_else(|| argmax_rows(&logits, item));
    let predictions = Predictions {
        top1,
        labels: Some(dataset.labels.clone()),
        class_names: dataset.class_names.clone(),
        output_shape: logits_shape.clone(),
    };
    let mut tensors: BTreeMap<String, ProbedTensor> = BTreeMap::new();
    for (name, c) in stats {
        let qdq = qdq_for(&model.info.qdq, &name);
        let mut shape = vec![n];
        shape.extend(c.item_shape);
        if c.stats.non_finite > 0 {
            notes.push(format!(
                "'{name}' holds {} NaN or infinite values (left out of its statistics)",
                c.stats.non_finite
            ));
        }
        tensors.insert(
            name.clone(),
            ProbedTensor {
                digest: w.digests.get(&name).copied().unwrap_or(0),
                name,
                role: TensorRole::Activation,
                tensor: Tensor { shape, data: Vec::new() },
                stats: c.stats,
                qdq,
            },
        );
    }
    let mut out_shape = vec![n];
    out_shape.extend(logits_shape);
    if logits.len() != n * item {
        notes.push(format!(
            "the output '{logits_name}' is too large to keep ({} values per sample); it is streamed",
            item
        ));
    }
    tensors.insert(
        logits_name.to_owned(),
        ProbedTensor {
            name: logits_name.to_owned(),
            role: TensorRole::Output,
            tensor: Tensor { shape: out_shape, data: logits },
            stats: logits_acc.stats(),
            qdq: None,
            digest: w.digests.get(logits_name).copied().unwrap_or(0),
        },
    );
    Activations {
        model_name: model.name.clone(),
        model: model.info.clone(),
        tensors,
        predictions: Some(predictions),
        dataset: Some(dataset.clone()),
        notes,
        stream: Some(StreamHandle(w.stream.clone())),
        pending: None,
    }
}

/// Check that the dataset's images fit the model's input, with a message that says how.
pub fn check_input_fits(
    input: &quantgraph_nodes::value::TensorInfo,
    images: &[usize],
    layout: &str,
    path: &str,
) -> Result<(), NodeError> {
    let want: Vec<Option<usize>> = input.dims.iter().map(|d| d.parse::<usize>().ok()).collect();
    let fits = want.len() == images.len() && want.iter().zip(images).skip(1).all(|(w, g)| w.is_none_or(|w| w == *g));
    if fits {
        return Ok(());
    }
    let want_text: Vec<String> =
        input.dims.iter().map(|d| d.parse::<usize>().map(|v| v.to_string()).unwrap_or_else(|_| "N".into())).collect();
    Err(NodeError::input(
        "dataset",
        format!(
            "model input '{}' expects [{}], the dataset gives {:?} ({layout}); change the dataset loader's layout or size to match ({path})",
            input.name,
            want_text.join(", "),
            images
        ),
    ))
}

/// How the dataset's images become the model's input: transposed when the model wants the
/// other layout (NCHW ↔ NHWC), quantized when it takes int8/uint8 (scale and zero point
/// from the probe's params if set, else the DequantizeLinear that reads the input, else the
/// model's `input_scale`/`input_zero_point` metadata).
pub fn feed_for(
    model: &ModelValue,
    proto_model: &proto::ModelProto,
    dataset: &Dataset,
    params: &ProbeParams,
) -> Result<runtime::Feed, NodeError> {
    let scale = params.input_scale;
    let explicit = (scale > 0.0).then_some((scale, params.input_zero_point));
    feed_with(model, proto_model, dataset, explicit)
}

/// [`feed_for`] with the user's input scale and zero point, if any, given directly.
pub fn feed_with(
    model: &ModelValue,
    proto_model: &proto::ModelProto,
    dataset: &Dataset,
    explicit: Option<(f64, i64)>,
) -> Result<runtime::Feed, NodeError> {
    let Some(input) = model.info.inputs.first() else {
        return Err(NodeError::input("model", "the model has no inputs"));
    };
    let images = &dataset.images.shape();
    let layout = format!("{:?}", dataset.layout).to_uppercase();
    let transpose = match check_input_fits(input, images, &layout, &model.path) {
        Ok(()) => None,
        Err(e) => {
            let fits = |shape: Vec<usize>| check_input_fits(input, &shape, &layout, &model.path).is_ok();
            match images[..] {
                [n, a, b, c] if fits(vec![n, b, c, a]) => Some(runtime::Transpose::ToNhwc),
                [n, a, b, c] if fits(vec![n, c, a, b]) => Some(runtime::Transpose::ToNchw),
                _ => return Err(e),
            }
        }
    };
    let quant = match input.dtype.as_str() {
        "float32" | "unknown" => None,
        dtype @ ("int8" | "uint8") => {
            let from_dq = model.info.qdq.iter().find(|e| e.op_type == "DequantizeLinear" && e.input == input.name);
            let meta = |key: &str| {
                proto_model
                    .metadata_props
                    .iter()
                    .find(|p| p.key == key)
                    .and_then(|p| p.value.trim().parse::<f64>().ok())
            };
            if let Some((scale, zero_point)) = explicit {
                Some(runtime::InputQuant {
                    dtype: dtype.to_owned(),
                    scale: scale as f32,
                    zero_point: zero_point as i32,
                    source: "the probe's Input scale and Input zero point".into(),
                })
            } else if let Some(e) = from_dq.filter(|e| e.scales.len() == 1) {
                Some(runtime::InputQuant {
                    dtype: dtype.to_owned(),
                    scale: e.scales[0],
                    zero_point: e.zero_points.first().copied().unwrap_or(0),
                    source: format!("the DequantizeLinear '{}' that reads it", e.node),
                })
            } else if let (Some(s), Some(z)) = (meta("input_scale"), meta("input_zero_point")) {
                Some(runtime::InputQuant {
                    dtype: dtype.to_owned(),
                    scale: s as f32,
                    zero_point: z as i32,
                    source: "the model's input_scale/input_zero_point metadata".into(),
                })
            } else {
                return Err(NodeError::input(
                    "model",
                    format!(
                        "model input '{}' is {dtype}: to quantize the images QuantGraph needs its scale and zero point, \
                         and the model has no single-scale DequantizeLinear reading it and no input_scale/input_zero_point \
                         metadata; set the probe's 'Input scale' and 'Input zero point' ({})",
                        input.name, model.path
                    ),
                ));
            }
        }
        other => {
            return Err(NodeError::input(
                "model",
                format!(
                    "model input '{}' is {other}; QuantGraph feeds float32, int8 or uint8 inputs ({})",
                    input.name, model.path
                ),
            ))
        }
    };
    if let Some(q) = &quant {
        if !(q.scale.is_finite() && q.scale > 0.0) {
            return Err(NodeError::input(
                "model",
                format!("the scale of model input '{}' is {} ({}); it must be positive", input.name, q.scale, q.source),
            ));
        }
    }
    Ok(runtime::Feed { name: input.name.clone(), transpose, quant, dequantize: BTreeMap::new() })
}

/// What the feed does to the images, in words, for the probe's notes.
fn feed_notes(feed: &runtime::Feed) -> Vec<String> {
    let mut out = Vec::new();
    match feed.transpose {
        Some(runtime::Transpose::ToNhwc) => out.push(format!(
            "the model's input '{}' is channels-last: images are transposed NCHW → NHWC per batch",
            feed.name
        )),
        Some(runtime::Transpose::ToNchw) => out.push(format!(
            "the model's input '{}' is channels-first: images are transposed NHWC → NCHW per batch",
            feed.name
        )),
        None => {}
    }
    if let Some(q) = &feed.quant {
        out.push(format!(
            "the model's input '{}' is {}: images are quantized with scale {} and zero point {} (from {})",
            feed.name, q.dtype, q.scale, q.zero_point, q.source
        ));
    }
    let captured_quantized = feed.dequantize.len();
    if captured_quantized > 0 {
        out.push(format!(
            "int8/uint8 activations are dequantized with the scale and zero point of the op that makes them \
             ({captured_quantized} such tensors in the model)"
        ));
    }
    out
}

/// Identity of what the model is fed: the images (data, shape, layout) and how they become
/// the model's input.
pub fn input_digest(dataset: &Dataset, feed: &runtime::Feed) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    dataset.images.digest_into(|bytes| h.update(bytes));
    h.update(
        format!("{:?} {:?} {:?} {:?}", dataset.images.shape(), dataset.layout, feed.transpose, feed.quant).as_bytes(),
    );
    h.digest()
}
