//! # quantgraph-compare
//!
//! * `compare.comparator` ([`Comparator`]) — two probes' activations (reference A, compared
//!   B): accuracy, agreement, per-class accuracy, confusion matrices, flipped samples, and a
//!   per-layer error table.
//! * `compare.activation_maps` ([`maps::ActivationMaps`]) — one tensor's feature maps, A, B
//!   and |A − B| per channel, for chosen samples (the flipped ones, say).
//! * [`metrics`] — streaming error metrics (SQNR, MSE, MAE, max-abs, cosine), defined as in
//!   `shared/QDQ.md` and ONNX Runtime's `qdq_loss_debug`.
//! * [`pairing`] — which tensor of B corresponds to which of A.

pub mod confidence;
pub mod kept;
pub mod maps;
pub mod metrics;
pub mod pairing;
pub mod reuse;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quantgraph_nodes::kind::single;
use quantgraph_nodes::value::{
    pass_failed, Activations, Batch, BatchIter, Cell, Claim, LayerTable, Report, ReportHints, SampleCurve, SampleRows,
    Table, TensorRole,
};
use quantgraph_nodes::{
    params, EvalContext, Inputs, NodeError, NodeRegistry, Outputs, PortSpec, PortType, TypedKind, Value,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use metrics::ErrorStats;

/// Register this plugin's node kinds.
pub fn register_nodes(registry: &mut NodeRegistry) -> quantgraph_nodes::Result<()> {
    registry.register::<Comparator>()?;
    registry.register::<maps::ActivationMaps>()?;
    Ok(())
}

/// Compares two sets of activations.
#[derive(Default)]
pub struct Comparator;

params! {
    /// The Comparator's params.
    pub struct CompareParams {
        pub classification: String = choice("Classification metrics", "auto", &["auto", "always", "never"])
            .with_doc(
                "auto: accuracy, agreement, confusion and flips only when the model output is [N, C] with C the \
                 dataset's number of classes; always: for any output with one score axis; never: per-layer \
                 and per-output errors only.",
            ),
        pub partials: bool = bool("Mergeable partial results", false).with_doc(
            "Add the report's raw sums and per-sample outcomes (its 'partial' field in JSON) so that runs over \
             shards of a dataset can be merged into the report of one run (quantgraph run --shard K/N, \
             quantgraph merge). Set by --shard.",
        ),
    }
}

impl TypedKind for Comparator {
    type Params = CompareParams;
    fn id(&self) -> &'static str {
        "compare.comparator"
    }
    fn display_name(&self) -> &'static str {
        "Comparator"
    }
    fn category(&self) -> &'static str {
        "Analysis"
    }
    fn doc(&self) -> &'static str {
        "Compares two probes: A (reference, e.g. FP32) and B (e.g. INT8 QDQ), with the dataset's \
         labels when connected. Gives top-1 accuracy of A and B, their agreement, per-class \
         accuracy, confusion matrices, the samples whose top-1 flips, and a per-layer table \
         pairing A's and B's tensors by dataflow (each model reduced to its float computation: Q/DQ, \
         Transpose and Reshape looked through, BatchNorm, Relu and biases folded into the op before, \
         Gemm ≡ MatMul+Add, QLinearConv ≡ Conv; then aligned from the inputs forward). Every pair \
         says how it was made and is verified on the first batch (same shape up to NCHW/NHWC, \
         cosine ≥ 0.9); what fails or cannot be paired is listed with the reason and never \
         measured. Per pair: SQNR dB, MSE, MAE, max-abs error, cosine similarity, and \
         qdq_err (SQNR of B's pre-quantization tensor against its dequantized output). Where the \
         quantizer removed a Relu, B is compared with A's Relu output and the row says how this \
         differs from ONNX Runtime's qdq_loss_debug figure. The probes' own statistics and \
         predictions are computed in the same pass: each model runs once per batch."
    }
    fn fuses_pending(&self) -> bool {
        true
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("a", PortType::Activations),
            PortSpec::new("b", PortType::Activations),
            PortSpec::optional("dataset", PortType::Dataset),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("report", PortType::Table)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &CompareParams) -> Result<Outputs, NodeError> {
        let mode = params.classification.clone();
        let (a, b) = (inputs.activations("a")?, inputs.activations("b")?);
        let labels_classes = |a: &Activations| -> Result<(Option<Vec<u32>>, usize), NodeError> {
            Ok(match inputs.optional("dataset") {
                Some(_) => {
                    let d = inputs.dataset("dataset")?;
                    (Some(d.labels.clone()), d.class_names.len())
                }
                None => (
                    a.predictions.as_ref().and_then(|p| p.labels.clone()),
                    a.predictions.as_ref().map_or(0, |p| p.class_names.len()),
                ),
            })
        };
        // A probe whose pass is pending runs it within this one: one run of each model per
        // batch gives its statistics, predictions and the per-layer sums. (Every sample's
        // figures are kept up to MAX_ALL_SAMPLES, so the flipped samples need not be known
        // first; beyond, the probes' passes run first and the drill-down samples are chosen
        // from their predictions.)
        let fuse = samples_of(a) <= MAX_ALL_SAMPLES;
        // The same probe on both ports: one claim, its value for both.
        let same = matches!((&a.pending, &b.pending), (Some(x), Some(y)) if x == y);
        let mut claims = if fuse { [a.claim()?, if same { None } else { b.claim()? }] } else { [None, None] };
        let b_claimed = claims[1].is_some() || (same && claims[0].is_some());
        if (a.is_pending() && claims[0].is_none()) || (b.is_pending() && !b_claimed) {
            // Someone else runs a pass: hold no claim while waiting for it (two comparators
            // sharing probes must not wait on each other); both finish on their own.
            claims = [None, None];
        }
        let resolve = |x: &Arc<Activations>, port: &str| x.resolve(ctx).map_err(|e| pass_failed(port, e));
        let a = if claims[0].is_some() { a.clone() } else { resolve(a, "a")? };
        let b = if claims[1].is_some() || (same && claims[0].is_some()) { b.clone() } else { resolve(b, "b")? };
        let (o, layers, ran) = if claims.iter().all(Option::is_none) {
            let (labels, classes) = labels_classes(&a)?;
            let o = outcomes(&a, &b, labels, classifier_outputs(&a, &b, classes, &mode))?;
            ctx.check_cancelled()?;
            let (layers, _, ran) = layer_pass(&a, &b, &drill_from(&o), ctx, claims)?;
            (o, layers, ran)
        } else {
            let (layers, [done_a, done_b], ran) = layer_pass(&a, &b, &BTreeMap::new(), ctx, claims)?;
            let done_b = done_b.or_else(|| done_a.clone().filter(|_| same));
            let (a, b) = (done_a.unwrap_or(a), done_b.unwrap_or(b));
            let (labels, classes) = labels_classes(&a)?;
            (outcomes(&a, &b, labels, classifier_outputs(&a, &b, classes, &mode))?, layers, ran)
        };
        let partial = Partial { version: PARTIAL_VERSION, outcomes: o, layers };
        let mut report = report_from(&partial);
        report.notes.extend(ran);
        let (reused, total) = (partial.layers.reused, partial.layers.pairs.len());
        if reused > 0 {
            report.notes.push(format!(
                "{reused} of {total} pairs reused from an earlier evaluation (their tensors do not depend on what \
                 changed); {} measured in this pass",
                total - reused
            ));
        }
        if params.partials {
            report.partial = Some(
                serde_json::to_value(&partial)
                    .map_err(|e| NodeError::failed(format!("writing the partial results failed: {e}")))?,
            );
        }
        Ok(single("report", Value::Table(Arc::new(report))))
    }
}

/// Version of [`Partial`]'s JSON form.
pub const PARTIAL_VERSION: u32 = 1;

/// A comparison's mergeable content: what one shard of a dataset gives, and what
/// [`merge`] combines into what one run over all of it would give.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub version: u32,
    pub outcomes: Outcomes,
    pub layers: Layers,
}

/// The report of a comparison (or of merged shards).
pub fn report_from(p: &Partial) -> Report {
    let mut report = Report::default();
    match (p.outcomes.classes, &p.outcomes.not_classifier) {
        (Some(classes), _) => classification_report(&p.outcomes, classes, &mut report),
        (None, why) => {
            report.notes.push(format!(
                "no accuracy or agreement: {}; the outputs are compared per layer only",
                why.clone().unwrap_or_default()
            ));
            report.headline = Some("not a classifier: per-layer errors only".into());
        }
    }
    layers_report(&p.outcomes, &p.layers, &mut report);
    report.hints = report_hints();
    report
}

/// How the editor shows a comparison: the per-layer table open and drawn on B's model
/// (rows keyed by B's tensor), flips as samples (a click shows the sample), and each
/// drill-down sample's per-layer SQNR as a curve against the dataset's.
pub fn report_hints() -> ReportHints {
    ReportHints {
        open: vec!["per_layer".into()],
        layers: Some(LayerTable { table: "per_layer".into(), tensor_column: "b_tensor".into() }),
        samples: vec![SampleRows { table: "flips".into(), column: "sample".into() }],
        sample_curve: Some(SampleCurve {
            table: "sample_layers".into(),
            sample: "sample".into(),
            layer: "tensor".into(),
            value: "sqnr_db".into(),
            reference: "dataset_sqnr_db".into(),
            label: "SQNR (dB)".into(),
        }),
    }
}

/// Combine the partial results of shards, in shard order, into those of one run over all
/// their samples: per-sample outcomes are concatenated, each pair's sums added (its
/// verification holds if it held on every shard's first batch; its check cosine is the
/// smallest). Fails when the shards did not compare the same things.
pub fn merge(parts: &[Partial]) -> Result<Partial, String> {
    let Some(first) = parts.first() else { return Err("no partial results to merge".into()) };
    let mut out = first.clone();
    for (k, p) in parts.iter().enumerate().skip(1) {
        merge_into(&mut out, p, k)?;
    }
    Ok(out)
}

/// Fold part `k` into `out`, the parts before it merged: what [`merge`] does one part at a
/// time, so that a caller need not hold every part at once.
pub fn merge_into(out: &mut Partial, p: &Partial, k: usize) -> Result<(), String> {
    {
        if p.version != out.version {
            return Err(format!("part {k} has partial format {}, part 0 has {}", p.version, out.version));
        }
        let (o, q) = (&mut out.outcomes, &p.outcomes);
        if q.class_names != o.class_names || q.classes != o.classes {
            return Err(format!("part {k} has other classes than part 0"));
        }
        if q.labels.is_some() != o.labels.is_some() {
            return Err(format!("part {k} has labels where part 0 has none, or the other way round"));
        }
        let offset = o.samples;
        o.samples += q.samples;
        o.source_indices.extend(&q.source_indices);
        if let (Some(x), Some(y)) = (&mut o.labels, &q.labels) {
            x.extend(y);
        }
        o.top1_a.extend(&q.top1_a);
        o.top1_b.extend(&q.top1_b);
        if o.p_a.len() + o.p_b.len() > 0 || q.p_a.len() + q.p_b.len() > 0 {
            o.p_a.resize(offset, None);
            o.p_b.resize(offset, None);
            o.p_a.extend(q.p_a.iter().copied().chain(std::iter::repeat(None)).take(q.samples));
            o.p_b.extend(q.p_b.iter().copied().chain(std::iter::repeat(None)).take(q.samples));
        }
        if o.out_err.len() == offset && q.out_err.len() == q.samples {
            o.out_err.extend(&q.out_err);
        } else {
            o.out_err.clear();
        }
        // Beyond MAX_ALL_SAMPLES a single run keeps per-sample figures of the drill-down
        // samples only (flips, largest output errors): so does the merge, as soon as the
        // parts so far exceed it, for the samples that can still be drilled into.
        let sparse = o.samples > MAX_ALL_SAMPLES;
        let drill = if sparse { drill_from(o) } else { BTreeMap::new() };
        let sparse_part;
        let m = if sparse {
            let mut layers = p.layers.clone();
            for x in &mut layers.pairs {
                x.sums.keep_only(drill.keys().filter_map(|i| i.checked_sub(offset)).filter(|i| *i < q.samples));
            }
            for x in &mut out.layers.pairs {
                x.sums.keep_only(drill.keys().copied().filter(|i| *i < offset));
            }
            sparse_part = layers;
            &sparse_part
        } else {
            &p.layers
        };
        let l = &mut out.layers;
        if l.pairs.len() != m.pairs.len()
            || l.pairs.iter().zip(&m.pairs).any(|(x, y)| (&x.pair.a, &x.pair.b) != (&y.pair.a, &y.pair.b))
        {
            return Err(format!("part {k} paired other tensors than part 0 (different models or graphs?)"));
        }
        for (x, y) in l.pairs.iter_mut().zip(&m.pairs) {
            x.verdict = match (x.verdict.take(), &y.verdict) {
                (Some(pairing::Verdict::Rejected(why)), _) => Some(pairing::Verdict::Rejected(why)),
                (_, Some(pairing::Verdict::Rejected(why))) => {
                    Some(pairing::Verdict::Rejected(format!("{why} (in part {k})")))
                }
                (
                    Some(pairing::Verdict::Verified { layout, cosine }),
                    Some(pairing::Verdict::Verified { layout: l2, cosine: c2 }),
                ) => {
                    if layout != *l2 {
                        Some(pairing::Verdict::Rejected(format!(
                            "the parts disagree on its layout ({} vs {})",
                            layout.describe(),
                            l2.describe()
                        )))
                    } else {
                        Some(pairing::Verdict::Verified { layout, cosine: cosine.min(*c2) })
                    }
                }
                (Some(v), None) => Some(v),
                (None, v) => v.clone(),
            };
            x.sums.merge(&y.sums, offset);
        }
    }
    Ok(())
}

fn pct(x: f64) -> Cell {
    Cell::Num((x * 10000.0).round() / 100.0)
}

/// Classes beyond which confusion matrices are not built (they grow with the square).
pub const MAX_CONFUSION_CLASSES: usize = 1_000;

/// Whether A's and B's outputs are a classifier's scores, and over how many classes; else
/// why not. `classes` is the dataset's class count (0 when unknown).
fn classifier_outputs(a: &Activations, b: &Activations, classes: usize, mode: &str) -> Result<usize, String> {
    if mode == "never" {
        return Err("classification metrics are turned off on this node".into());
    }
    let (Some(pa), Some(pb)) = (&a.predictions, &b.predictions) else {
        return Err("A or B has no predictions".into());
    };
    let mut width = None;
    for (name, p) in [("A", pa), ("B", pb)] {
        let w = match p.score_width() {
            Some(c) => c,
            None if p.output_shape.is_empty() => {
                // Older values carry no shape: trust the class count.
                return if classes > 0 { Ok(classes) } else { Err("the output shape is unknown".into()) };
            }
            None => {
                return Err(format!(
                    "{name}'s output has shape {:?} per sample, not [C] (one score per class)",
                    p.output_shape
                ))
            }
        };
        if mode == "auto" && classes > 0 && w != classes {
            return Err(format!(
                "{name}'s output has {w} values per sample but the dataset has {classes} classes \
                 (set 'Classification metrics' to 'always' if the output really is class scores)"
            ));
        }
        if width.is_some_and(|x| x != w) {
            return Err(format!("A gives {} scores per sample and B {w}", width.unwrap_or_default()));
        }
        width = Some(w);
    }
    Ok(width.unwrap_or(classes).max(classes))
}

/// Everything per sample the report needs (mergeable across shards by concatenation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    pub samples: usize,
    /// Each sample's index in its source (file record, folder order).
    pub source_indices: Vec<usize>,
    pub class_names: Vec<String>,
    /// The number of classes, when the outputs are a classifier's scores.
    pub classes: Option<usize>,
    /// Why accuracy is not computed, when it is not.
    pub not_classifier: Option<String>,
    pub labels: Option<Vec<u32>>,
    pub top1_a: Vec<u32>,
    pub top1_b: Vec<u32>,
    /// Each model's softmax probability of its own top-1 (empty when outputs are not kept).
    pub p_a: Vec<Option<f64>>,
    pub p_b: Vec<Option<f64>>,
    /// Each sample's squared output error ‖A − B‖² (empty when outputs are not kept).
    #[serde(with = "quantgraph_nodes::jsonf64::vec")]
    pub out_err: Vec<f64>,
}

/// Gather the per-sample outcomes, checking that A and B (and the labels) cover the same
/// samples.
fn outcomes(
    a: &Activations,
    b: &Activations,
    labels: Option<Vec<u32>>,
    classes: Result<usize, String>,
) -> Result<Outcomes, NodeError> {
    let n = samples_of(a);
    if samples_of(b) != n {
        return Err(NodeError::input("b", format!("expected the {n} samples of A, found {}", samples_of(b))));
    }
    let mut o = Outcomes { samples: n, ..Outcomes::default() };
    o.source_indices = a.dataset.as_ref().map(|d| d.source_indices.clone()).unwrap_or_else(|| (0..n).collect());
    let (pa, pb) = match (&a.predictions, &b.predictions) {
        (Some(pa), Some(pb)) => (pa, pb),
        _ => {
            o.not_classifier = Some(classes.err().unwrap_or_else(|| "A or B has no predictions".into()));
            return Ok(o);
        }
    };
    if pa.top1.len() != pb.top1.len() {
        return Err(NodeError::input(
            "b",
            format!("expected the same samples as A ({} predictions), found {}", pa.top1.len(), pb.top1.len()),
        ));
    }
    o.class_names = pa.class_names.clone();
    o.top1_a = pa.top1.clone();
    o.top1_b = pb.top1.clone();
    match classes {
        Ok(c) => o.classes = Some(c),
        Err(why) => o.not_classifier = Some(why),
    }
    if let Some(labels) = labels {
        if labels.len() != pa.top1.len() {
            return Err(NodeError::input(
                "dataset",
                format!("expected {} labels (one per prediction), found {}", pa.top1.len(), labels.len()),
            ));
        }
        o.labels = Some(labels);
    }
    let (out_a, out_b) = (kept_output(a), kept_output(b));
    let prob = |out: Option<&quantgraph_nodes::value::Tensor>, i: usize, k: u32| -> Option<f64> {
        let t = out?;
        let item = t.item_len();
        softmax_at(t.data.get(i * item..(i + 1) * item)?, k as usize)
    };
    if out_a.is_some() || out_b.is_some() {
        o.p_a = (0..pa.top1.len()).map(|i| prob(out_a, i, pa.top1[i])).collect();
        o.p_b = (0..pb.top1.len()).map(|i| prob(out_b, i, pb.top1[i])).collect();
    }
    if let (Some(ta), Some(tb)) = (out_a, out_b) {
        let item = ta.item_len();
        if item > 0 && item == tb.item_len() {
            o.out_err = ta
                .data
                .chunks_exact(item)
                .zip(tb.data.chunks_exact(item))
                .map(|(x, y)| x.iter().zip(y).map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2)).sum::<f64>())
                .collect();
        }
    }
    Ok(o)
}

/// Accuracy, agreement, per-class accuracy, confusion matrices and flips, over `classes`
/// classes (predicted indices are below it: it is the output's width).
fn classification_report(o: &Outcomes, classes: usize, report: &mut Report) {
    let (top1_a, top1_b) = (&o.top1_a, &o.top1_b);
    let labels = o.labels.as_deref();
    let n = top1_a.len();
    let class_name = |c: usize| o.class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let agree = top1_a.iter().zip(top1_b).filter(|(x, y)| x == y).count();
    report.summary.insert("samples".into(), n as f64);
    report.summary.insert("agreement".into(), agree as f64 / n.max(1) as f64);
    report.summary.insert("flips".into(), (n - agree) as f64);
    let mut headline = format!("agree {:.1} %", 100.0 * agree as f64 / n.max(1) as f64);
    if let Some(labels) = labels {
        let a_right: Vec<bool> = top1_a.iter().zip(labels).map(|(p, l)| p == l).collect();
        let b_right: Vec<bool> = top1_b.iter().zip(labels).map(|(p, l)| p == l).collect();
        let correct_a = a_right.iter().filter(|x| **x).count();
        let correct_b = b_right.iter().filter(|x| **x).count();
        report.summary.insert("correct_a".into(), correct_a as f64);
        report.summary.insert("correct_b".into(), correct_b as f64);
        report.summary.insert("accuracy_a".into(), correct_a as f64 / n.max(1) as f64);
        report.summary.insert("accuracy_b".into(), correct_b as f64 / n.max(1) as f64);
        // 95 % intervals (see `confidence`): Wilson per model, paired bootstrap for B − A,
        // exact McNemar for "no difference".
        for (key, k) in [("accuracy_a", correct_a), ("accuracy_b", correct_b), ("agreement", agree)] {
            let (lo, hi) = confidence::wilson(k, n);
            report.summary.insert(format!("{key}_ci95_low"), lo);
            report.summary.insert(format!("{key}_ci95_high"), hi);
        }
        let only_a = a_right.iter().zip(&b_right).filter(|(a, b)| **a && !**b).count();
        let only_b = a_right.iter().zip(&b_right).filter(|(a, b)| !**a && **b).count();
        let (lo, hi) = confidence::paired_difference_interval(&a_right, &b_right);
        let p_value = confidence::mcnemar_exact(only_a, only_b);
        let diff = (correct_b as f64 - correct_a as f64) / n.max(1) as f64;
        report.summary.insert("accuracy_diff".into(), diff);
        report.summary.insert("accuracy_diff_ci95_low".into(), lo);
        report.summary.insert("accuracy_diff_ci95_high".into(), hi);
        report.summary.insert("mcnemar_p".into(), p_value);
        let verdict = if p_value < 0.05 { "significant at 5 %" } else { "not significant: within noise" };
        report.notes.push(format!(
            "B − A = {:+.2} pt, 95 % CI [{:+.2}, {:+.2}] pt (paired bootstrap, 2,000 resamples); \
             {only_a} samples only A gets right, {only_b} only B; exact McNemar p = {p_value:.3} ({verdict})",
            100.0 * diff,
            100.0 * lo,
            100.0 * hi
        ));
        headline = format!(
            "top-1 A {:.1} % · B {:.1} % (B − A {:+.1} pt{}) · {headline}",
            100.0 * correct_a as f64 / n.max(1) as f64,
            100.0 * correct_b as f64 / n.max(1) as f64,
            100.0 * diff,
            if p_value < 0.05 { "" } else { ", noise" }
        );
        // Per class.
        let mut per_class = Table {
            name: "per_class".into(),
            columns: vec!["class".into(), "samples".into(), "accuracy_a".into(), "accuracy_b".into(), "delta".into()],
            rows: Vec::new(),
        };
        // One pass: samples and correct predictions per label (labels beyond the output's
        // width get rows too: they can never be predicted).
        let mut counts: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
        if classes <= MAX_CONFUSION_CLASSES {
            counts.extend((0..classes).map(|c| (c, (0, 0, 0))));
        }
        for ((l, a), b) in labels.iter().zip(top1_a).zip(top1_b) {
            let l = *l as usize;
            let e = counts.entry(l).or_default();
            e.0 += 1;
            e.1 += usize::from(*a as usize == l);
            e.2 += usize::from(*b as usize == l);
        }
        for (c, (samples, ca, cb)) in counts {
            let m = samples.max(1) as f64;
            per_class.rows.push(vec![
                Cell::Text(class_name(c)),
                Cell::Int(samples as i64),
                pct(ca as f64 / m),
                pct(cb as f64 / m),
                Cell::Num(((cb as f64 - ca as f64) / m * 10000.0).round() / 100.0),
            ]);
        }
        report.tables.push(per_class);
        if classes > MAX_CONFUSION_CLASSES {
            report.notes.push(format!(
                "confusion matrices skipped: {classes} classes (they are built for up to {MAX_CONFUSION_CLASSES})"
            ));
        }
        for (name, top1) in
            [("confusion_a", top1_a), ("confusion_b", top1_b)].into_iter().filter(|_| classes <= MAX_CONFUSION_CLASSES)
        {
            let mut m = vec![vec![0i64; classes]; classes];
            for (pred, l) in top1.iter().zip(labels) {
                if let Some(row) = m.get_mut(*l as usize) {
                    if let Some(cell) = row.get_mut(*pred as usize) {
                        *cell += 1;
                    }
                }
            }
            let mut columns = vec!["true \\ predicted".to_owned()];
            columns.extend((0..classes).map(class_name));
            report.tables.push(Table {
                name: name.into(),
                columns,
                rows: m
                    .into_iter()
                    .enumerate()
                    .map(|(c, row)| {
                        std::iter::once(Cell::Text(class_name(c))).chain(row.into_iter().map(Cell::Int)).collect()
                    })
                    .collect(),
            });
        }
    }
    let mut flips = Table {
        name: "flips".into(),
        columns: ["sample", "source_index", "label", "a", "b", "p_a_pct", "p_b_pct"]
            .iter()
            .map(|c| (*c).into())
            .collect(),
        rows: Vec::new(),
    };
    let prob = |p: &[Option<f64>], i: usize| -> Cell {
        p.get(i).copied().flatten().map_or(Cell::Text(String::new()), |x| Cell::Num((x * 10000.0).round() / 100.0))
    };
    for i in 0..n {
        if top1_a[i] != top1_b[i] {
            flips.rows.push(vec![
                Cell::Int(i as i64),
                Cell::Int(o.source_indices.get(i).copied().unwrap_or(i) as i64),
                Cell::Text(labels.and_then(|l| l.get(i)).map(|l| class_name(*l as usize)).unwrap_or_default()),
                Cell::Text(class_name(top1_a[i] as usize)),
                Cell::Text(class_name(top1_b[i] as usize)),
                prob(&o.p_a, i),
                prob(&o.p_b, i),
            ]);
        }
    }
    report.tables.push(flips);
    report.headline = Some(headline);
}

/// The model output kept in full by a probe (a classifier's scores), if any.
pub(crate) fn kept_output(a: &Activations) -> Option<&quantgraph_nodes::value::Tensor> {
    a.tensors.values().find(|t| t.role == TensorRole::Output && !t.tensor.data.is_empty()).map(|t| &t.tensor)
}

/// softmax(row)[k], computed stably; `None` for an empty row or a bad index.
pub fn softmax_at(row: &[f32], k: usize) -> Option<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|x| f64::from(x - max).exp()).sum();
    let x = *row.get(k)?;
    (sum > 0.0 && sum.is_finite()).then(|| f64::from(x - max).exp() / sum)
}

/// Where one side's tensor values come from, batch by batch: the probe's stream, or (for
/// hand-made values) the data in the tensors themselves.
enum Side<'a> {
    Stream(Box<dyn BatchIter>),
    Memory {
        acts: &'a Activations,
        names: Vec<String>,
        next: usize,
        batch: usize,
        samples: usize,
    },
    /// Some tensors from values an earlier pass kept ([`kept`]), the others (if any) from
    /// `rest`.
    Kept {
        rest: Option<Box<Side<'a>>>,
        kept: Vec<(String, Arc<kept::Values>)>,
        next: usize,
        batch: usize,
        samples: usize,
    },
}

impl Side<'_> {
    /// How the stream makes its batches, when a user should know.
    fn describe(&self) -> Option<String> {
        match self {
            Side::Stream(it) => it.describe(),
            Side::Memory { .. } => None,
            Side::Kept { rest, kept, .. } => {
                let from = format!("{} tensor(s) read from values kept by an earlier pass", kept.len());
                Some(match rest {
                    None => format!("{from}: the model did not run"),
                    Some(r) => match r.describe() {
                        Some(how) => format!("{from}; the others: {how}"),
                        None => format!("{from}; the others by running the model"),
                    },
                })
            }
        }
    }

    fn next(&mut self, ctx: &EvalContext) -> Result<Option<Batch>, NodeError> {
        match self {
            Side::Stream(it) => it.next_batch(ctx),
            Side::Kept { rest, kept, next, batch, samples } => {
                let mut out = match rest {
                    Some(r) => match r.next(ctx)? {
                        Some(b) => b,
                        None => return Ok(None),
                    },
                    None if *next >= *samples => return Ok(None),
                    None => {
                        let end = (*next + *batch).min(*samples);
                        Batch { start: *next, rows: end - *next, tensors: BTreeMap::new() }
                    }
                };
                for (name, values) in kept.iter() {
                    let (_, data) = values.batch(out.start, out.start + out.rows).ok_or_else(|| {
                        NodeError::failed(format!(
                            "the kept values of '{name}' do not cover samples {}..{}",
                            out.start,
                            out.start + out.rows
                        ))
                    })?;
                    out.tensors.insert(name.clone(), (values.item_shape.clone(), data.to_vec()));
                }
                *next = out.start + out.rows;
                Ok(Some(out))
            }
            Side::Memory { acts, names, next, batch, samples } => {
                if *next >= *samples {
                    return Ok(None);
                }
                let (start, end) = (*next, (*next + *batch).min(*samples));
                let mut out = Batch { start, rows: end - start, tensors: BTreeMap::new() };
                for n in names.iter() {
                    if let Some(t) = acts.tensors.get(n) {
                        let item = t.tensor.item_len();
                        if let Some(data) = t.tensor.data.get(start * item..end * item) {
                            out.tensors.insert(n.clone(), (t.tensor.shape[1..].to_vec(), data.to_vec()));
                        }
                    }
                }
                *next = end;
                Ok(Some(out))
            }
        }
    }
}

/// Samples of one side: the stream's, else the rows of its tensors.
fn samples_of(acts: &Activations) -> usize {
    match &acts.stream {
        Some(s) => s.0.samples(),
        None => acts.tensors.values().map(|t| t.tensor.shape.first().copied().unwrap_or(0)).max().unwrap_or(0),
    }
}

fn open_side<'a>(acts: &'a Activations, names: Vec<String>, batch: usize) -> Result<Side<'a>, NodeError> {
    match &acts.stream {
        Some(s) => Ok(Side::Stream(s.0.open(&names, batch)?)),
        None => Ok(Side::Memory { acts, names, next: 0, batch, samples: samples_of(acts) }),
    }
}

/// Running sums of one pair: the error, ORT's pairing where it differs, the Q/DQ pair's own
/// error, and per drill-down sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairSums {
    e: ErrorStats,
    ort: Option<ErrorStats>,
    qdq: Option<ErrorStats>,
    qdq_ort: Option<ErrorStats>,
    per_sample: BTreeMap<usize, ErrorStats>,
    /// `(‖x‖², ‖x−y‖²)` of every sample, when the dataset is small enough
    /// ([`MAX_ALL_SAMPLES`]): the drill-down of any sample, and reuse across evaluations
    /// whose flipped samples differ.
    #[serde(with = "quantgraph_nodes::jsonf64::opt_pairs")]
    samples: Option<Vec<[f64; 2]>>,
    shape_note: Option<String>,
    rows: usize,
}

fn slice<'b>(batch: &'b Batch, name: &str) -> Option<(&'b [usize], &'b [f32])> {
    batch.tensors.get(name).map(|(shape, data)| (shape.as_slice(), data.as_slice()))
}

impl PairSums {
    /// Add the sums of the next shard (whose first sample is sample `offset` here).
    /// Keep per-sample figures of `samples` only (moved from every sample's, where kept).
    fn keep_only(&mut self, samples: impl Iterator<Item = usize>) {
        if let Some(all) = self.samples.take() {
            for i in samples {
                if let Some([x2, d2]) = all.get(i) {
                    self.per_sample.entry(i).or_insert(ErrorStats {
                        sum_x2: *x2,
                        sum_d2: *d2,
                        ..ErrorStats::default()
                    });
                }
            }
        }
    }

    fn merge(&mut self, o: &PairSums, offset: usize) {
        self.e.merge(&o.e);
        for (x, y) in [(&mut self.ort, &o.ort), (&mut self.qdq, &o.qdq), (&mut self.qdq_ort, &o.qdq_ort)] {
            match (x.as_mut(), y) {
                (Some(x), Some(y)) => x.merge(y),
                (None, Some(y)) => *x = Some(y.clone()),
                _ => {}
            }
        }
        for (s, e) in &o.per_sample {
            self.per_sample.insert(s + offset, e.clone());
        }
        match (&mut self.samples, &o.samples) {
            (Some(x), Some(y)) => {
                x.resize(offset, [0.0; 2]);
                x.extend(y);
            }
            _ => self.samples = None,
        }
        if self.shape_note.is_none() {
            self.shape_note.clone_from(&o.shape_note);
        }
        self.rows += o.rows;
    }

    /// Add one batch (the same samples on both sides); B's tensors are first put in A's
    /// layout.
    fn add(&mut self, p: &pairing::Pair, layout: pairing::Layout, ba: &Batch, bb: &Batch, drill: &BTreeSet<usize>) {
        let (Some((sa, xa)), Some((sb, yb))) = (slice(ba, &p.a), slice(bb, &p.b)) else { return };
        let item: usize = sa.iter().product();
        if item != sb.iter().product::<usize>() || xa.len() != yb.len() {
            self.shape_note.get_or_insert_with(|| {
                format!("{} and {} have different shapes ({sa:?} vs {sb:?} per sample); not compared", p.a, p.b)
            });
            return;
        }
        let moved;
        let yb = if layout == pairing::Layout::Same {
            yb
        } else {
            moved = layout.to_a(sa, yb);
            moved.as_slice()
        };
        self.rows += ba.rows;
        if let Some(all) = &mut self.samples {
            // One pass per sample gives its figures and, summed, the pair's.
            for (k, (x, y)) in xa.chunks_exact(item.max(1)).zip(yb.chunks_exact(item.max(1))).enumerate() {
                let mut row = ErrorStats::default();
                row.add(x, y);
                if let Some(slot) = all.get_mut(ba.start + k) {
                    *slot = [row.sum_x2, row.sum_d2];
                }
                self.e.merge(&row);
            }
        } else {
            self.e.add(xa, yb);
            for s in drill.range(ba.start..ba.start + ba.rows) {
                let at = (s - ba.start) * item;
                if let (Some(x), Some(y)) = (xa.get(at..at + item), yb.get(at..at + item)) {
                    self.per_sample.entry(*s).or_default().add(x, y);
                }
            }
        }
        if let Some((_, o)) = p.ort_a.as_deref().and_then(|n| slice(ba, n)) {
            if o.len() == yb.len() {
                self.ort.get_or_insert_with(ErrorStats::default).add(o, yb);
            }
        }
        if let Some((_, pre)) = p.b_pre.as_deref().and_then(|n| slice(bb, n)) {
            if pre.len() == yb.len() {
                let pre_moved;
                let pre = if layout == pairing::Layout::Same {
                    pre
                } else {
                    pre_moved = layout.to_a(sa, pre);
                    pre_moved.as_slice()
                };
                if p.relu_removed {
                    self.qdq.get_or_insert_with(ErrorStats::default).add_relu_x(pre, yb);
                    self.qdq_ort.get_or_insert_with(ErrorStats::default).add(pre, yb);
                } else {
                    self.qdq.get_or_insert_with(ErrorStats::default).add(pre, yb);
                }
            }
        }
    }
}

/// Verify a pair on the first batch: B's pre-quantization tensor where it was captured (with
/// the Relu the quantizer removed), else B's tensor, against A's.
fn verify_pair(p: &pairing::Pair, ba: &Batch, bb: &Batch) -> pairing::Verdict {
    let (Some((sa, xa)), Some((sb, yb))) = (slice(ba, &p.a), slice(bb, &p.b)) else {
        return pairing::Verdict::Rejected("not delivered by the probes".into());
    };
    let check: Vec<f32> = match p.b_pre.as_deref().and_then(|n| slice(bb, n)) {
        Some((_, pre)) if pre.len() == yb.len() && p.relu_removed => pre.iter().map(|x| x.max(0.0)).collect(),
        Some((_, pre)) if pre.len() == yb.len() => pre.to_vec(),
        _ => yb.to_vec(),
    };
    pairing::verify(sa, xa, sb, &check)
}

/// Up to this many samples, every sample's per-layer error is kept (16 bytes per sample and
/// pair), so any sample can be drilled into and a pair's figures can be reused after an edit
/// that changes which samples flip.
pub const MAX_ALL_SAMPLES: usize = 100_000;

/// Samples worth a per-layer look: every flip (up to `MAX_DRILL_FLIPS`) and the 20 with the
/// largest output error, with why.
pub const MAX_DRILL_FLIPS: usize = 500;

fn drill_from(o: &Outcomes) -> BTreeMap<usize, &'static str> {
    let mut out = BTreeMap::new();
    if o.classes.is_some() {
        for (i, (x, y)) in o.top1_a.iter().zip(&o.top1_b).enumerate() {
            if x != y && out.len() < MAX_DRILL_FLIPS {
                out.insert(i, "flip");
            }
        }
    }
    let mut errs: Vec<(f64, usize)> = o.out_err.iter().copied().enumerate().map(|(i, e)| (e, i)).collect();
    errs.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
    for (_, i) in errs.into_iter().take(20) {
        out.entry(i).or_insert("top-20 output error");
    }
    out
}

/// One pair with its verdict and sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerPair {
    pub pair: pairing::Pair,
    pub verdict: Option<pairing::Verdict>,
    pub sums: PairSums,
}

/// The per-layer part of a comparison: every pair's sums (mergeable across shards).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layers {
    pub batch: usize,
    pub pairs: Vec<LayerPair>,
    pub unpaired_a: Vec<pairing::Unpaired>,
    pub unpaired_b: Vec<pairing::Unpaired>,
    /// Pairs whose figures came from an earlier evaluation (not merged: a run's own).
    #[serde(skip)]
    pub reused: usize,
}

/// Per-layer sums between paired tensors, over every sample, streamed batch by batch from
/// both probes in lockstep (each pair's sums are fed per batch, so memory stays that of one
/// batch), with every sample's figures (or the drill-down samples' on huge datasets).
/// `claims`: the pending passes of A and B run here, fed the same batches; their finished
/// values are returned.
/// Also returns notes on how each model ran for the pairs when its pass was not the one
/// claimed here (after an edit: which of A's tensors were read back from [`kept`] values).
fn layer_pass(
    a: &Activations,
    b: &Activations,
    drill: &BTreeMap<usize, &'static str>,
    ctx: &EvalContext,
    claims: [Option<Claim>; 2],
) -> Result<(Layers, Finished, Vec<String>), NodeError> {
    let [mut claim_a, mut claim_b] = claims;
    let pairs = pairing::pair(a, b);
    let n = samples_of(a);
    if samples_of(b) != n {
        return Err(NodeError::input("b", format!("expected the {n} samples of A, found {}", samples_of(b))));
    }
    let drill_set: BTreeSet<usize> = drill.keys().copied().collect();
    let batch = match (&a.stream, &b.stream) {
        (Some(x), Some(y)) => x.0.batch_size().min(y.0.batch_size()),
        (Some(x), None) | (None, Some(x)) => x.0.batch_size(),
        (None, None) => n.max(1),
    }
    .max(1);
    let all_samples = n <= MAX_ALL_SAMPLES;
    let mut sums: Vec<PairSums> = pairs
        .pairs
        .iter()
        .map(|_| PairSums { samples: all_samples.then(|| vec![[0.0; 2]; n]), ..PairSums::default() })
        .collect();
    let mut verdicts: Vec<Option<pairing::Verdict>> = vec![None; pairs.pairs.len()];
    // Pairs whose tensors have the values of an earlier evaluation (same digests) take its
    // figures: after an edit, only the pairs the edit reached are measured again.
    let keys: Vec<Option<reuse::PairKey>> =
        pairs.pairs.iter().map(|p| all_samples.then(|| reuse::key(a, b, p, batch, n)).flatten()).collect();
    let mut todo = vec![true; pairs.pairs.len()];
    for (i, k) in keys.iter().enumerate() {
        if let Some((v, s)) = k.as_ref().and_then(reuse::get) {
            verdicts[i] = Some(v);
            sums[i] = s;
            todo[i] = false;
        }
    }
    let reused = todo.iter().filter(|t| !**t).count();
    let mut names_a: BTreeSet<String> = BTreeSet::new();
    let mut names_b: BTreeSet<String> = BTreeSet::new();
    for (p, _) in pairs.pairs.iter().zip(&todo).filter(|(_, t)| **t) {
        names_a.insert(p.a.clone());
        names_a.extend(p.ort_a.clone());
        names_b.insert(p.b.clone());
        names_b.extend(p.b_pre.clone());
    }
    names_a.extend(claim_a.as_ref().map(Claim::names).unwrap_or_default());
    names_b.extend(claim_b.as_ref().map(Claim::names).unwrap_or_default());
    // A's tensors an earlier pass kept are read back, not computed (not while A's own pass
    // runs here: it needs them all anyway).
    let kept_a: Vec<(String, Arc<kept::Values>)> = if claim_a.is_none() && all_samples && a.stream.is_some() {
        names_a.iter().filter_map(|t| kept::get(a.tensors.get(t)?.digest, n, batch).map(|v| (t.clone(), v))).collect()
    } else {
        Vec::new()
    };
    for (t, _) in &kept_a {
        names_a.remove(t);
    }
    // Which of A's tensors computed in this pass to keep for later ones: the pairs', in
    // pair order (the latest are kept first); only in a pass that found none kept (A is new
    // or changed), so that the early tensors an edit of B's first layers needs do not push
    // out the later ones kept before (and memory stays within one budget).
    let record = all_samples && a.stream.is_some() && kept::budget() > 0 && kept_a.is_empty();
    let mut recorder = record.then(|| {
        let mut order: Vec<(String, u64)> = Vec::new();
        for p in &pairs.pairs {
            for t in std::iter::once(&p.a).chain(p.ort_a.as_ref()) {
                let digest = a.tensors.get(t).map_or(0, |x| x.digest);
                if digest != 0 && names_a.contains(t) && !order.iter().any(|(x, _)| x == t) {
                    order.push((t.clone(), digest));
                }
            }
        }
        Recorder { order, chosen: None, samples: n, batch }
    });
    let mut finished = [None, None];
    let mut how = [None, None];
    let mut ran = Vec::new();
    if (todo.iter().any(|t| *t) || claim_a.is_some() || claim_b.is_some()) && n > 0 {
        let measured = todo.iter().filter(|t| **t).count();
        let rest_a = if names_a.is_empty() { None } else { Some(open_side(a, names_a.into_iter().collect(), batch)?) };
        let mut side_a = if kept_a.is_empty() {
            rest_a
        } else {
            Some(Side::Kept { rest: rest_a.map(Box::new), kept: kept_a, next: 0, batch, samples: n })
        };
        let mut side_b =
            if names_b.is_empty() { None } else { Some(open_side(b, names_b.into_iter().collect(), batch)?) };
        // How a model whose pass is not run here made the tensors of the pairs measured.
        for (side, claim, model) in [(&side_a, claim_a.is_some(), "A"), (&side_b, claim_b.is_some(), "B")] {
            if let (Some(side), false) = (side, claim) {
                if !matches!(side, Side::Memory { .. }) {
                    ran.push(format!(
                        "model {model} for the {measured} pair(s) measured in this pass: {}",
                        side.describe()
                            .unwrap_or_else(|| "the model ran again (values are not kept between passes)".into())
                    ));
                }
            }
        }
        let what =
            if claim_a.is_some() || claim_b.is_some() { "probing and per-layer errors" } else { "per-layer errors" };
        loop {
            ctx.check_cancelled()?;
            // Both models run at once (each on its own thread: two cores, two sessions). (Running
            // the next batch while this one is summed gains nothing on two cores, which both
            // are busy, and holds another batch.)
            let (ra, rb) = std::thread::scope(|scope| {
                let a_next = side_a.as_mut().map(|s| scope.spawn(move || s.next(ctx)));
                let rb = match side_b.as_mut() {
                    Some(s) => s.next(ctx),
                    None => Ok(None),
                };
                (a_next.map(|h| h.join()), rb)
            });
            let ba = match ra {
                Some(r) => r.map_err(|_| NodeError::failed("running model A panicked"))??,
                None => None,
            };
            let bb = rb?;
            if let (Some(r), Some(x)) = (recorder.as_mut(), &ba) {
                r.add(x);
            }
            // The end: one side opened has no more batches.
            if (side_a.is_some() && ba.is_none()) || (side_b.is_some() && bb.is_none()) {
                break;
            }
            let Some(first) = ba.as_ref().or(bb.as_ref()) else { break };
            if let (Some(x), Some(y)) = (&ba, &bb) {
                if (x.start, x.rows) != (y.start, y.rows) {
                    return Err(NodeError::failed("A and B delivered different batches"));
                }
            }
            let done = first.start + first.rows;
            // The probes' statistics and the pairs' sums of this batch, at once.
            let pairs_work = || {
                let (Some(ba), Some(bb)) = (&ba, &bb) else { return };
                // Each pair is verified on the first batch; only verified pairs are measured.
                verdicts.par_iter_mut().zip(&pairs.pairs).zip(&todo).for_each(|((v, p), todo)| {
                    if *todo && v.is_none() {
                        *v = Some(verify_pair(p, ba, bb));
                    }
                });
                sums.par_iter_mut().zip(&pairs.pairs).zip(&verdicts).zip(&todo).for_each(|(((s, p), v), todo)| {
                    if let (true, Some(pairing::Verdict::Verified { layout, .. })) = (*todo, v) {
                        s.add(p, *layout, ba, bb, &drill_set);
                    }
                });
            };
            let feed = |claim: &mut Option<Claim>, batch: &Option<Batch>, port: &str| match (claim, batch) {
                (Some(c), Some(b)) => c.add(ctx, b).map_err(|e| pass_failed(port, e)),
                _ => Ok(()),
            };
            let (fed_a, (fed_b, ())) = rayon::join(
                || feed(&mut claim_a, &ba, "a"),
                || rayon::join(|| feed(&mut claim_b, &bb, "b"), pairs_work),
            );
            fed_a?;
            fed_b?;
            ctx.progress(done as f32 / n as f32, &format!("{what}: {done}/{n} samples"));
        }
        how = [side_a.as_ref().and_then(Side::describe), side_b.as_ref().and_then(Side::describe)];
        if let Some(r) = recorder.take() {
            r.finish();
        }
        for (i, k) in keys.iter().enumerate() {
            if let (true, Some(k), Some(v)) = (todo[i], k, &verdicts[i]) {
                reuse::put(*k, v.clone(), sums[i].clone());
            }
        }
    }
    for ((claim, how), (done, port)) in [claim_a, claim_b].into_iter().zip(how).zip(finished.iter_mut().zip(["a", "b"]))
    {
        if let Some(c) = claim {
            *done = Some(c.finish(ctx, how).map_err(|e| pass_failed(port, e))?);
        }
    }
    let layers = Layers {
        batch,
        pairs: pairs
            .pairs
            .into_iter()
            .zip(verdicts)
            .zip(sums)
            .map(|((pair, verdict), sums)| LayerPair { pair, verdict, sums })
            .collect(),
        unpaired_a: pairs.unpaired_a,
        unpaired_b: pairs.unpaired_b,
        reused,
    };
    Ok((layers, finished, ran))
}

/// The finished values of A and B whose pass a layer pass ran.
type Finished = [Option<Arc<Activations>>; 2];

/// One tensor being gathered: name, digest, shape per sample, values so far.
type Recording = (String, u64, Vec<usize>, Vec<f32>);

/// A's tensors of one pass, gathered batch by batch for [`kept`]: which ones is decided on
/// the first batch (their sizes), within the budget.
struct Recorder {
    /// Candidates in pair order, with their digests.
    order: Vec<(String, u64)>,
    chosen: Option<Vec<Recording>>,
    samples: usize,
    batch: usize,
}

impl Recorder {
    fn add(&mut self, batch: &Batch) {
        let (order, n) = (&self.order, self.samples);
        let chosen = self.chosen.get_or_insert_with(|| {
            let sizes: Vec<usize> = order
                .iter()
                .map(|(t, _)| batch.tensors.get(t).map_or(0, |(s, _)| s.iter().product::<usize>() * n * 4))
                .collect();
            kept::choose(&sizes)
                .into_iter()
                .zip(order)
                .filter(|(keep, _)| *keep)
                .filter_map(|(_, (t, d))| {
                    let shape = batch.tensors.get(t)?.0.clone();
                    let item: usize = shape.iter().product();
                    Some((t.clone(), *d, shape, Vec::with_capacity(item * n)))
                })
                .collect()
        });
        for (t, _, _, data) in chosen.iter_mut() {
            if let Some((_, d)) = batch.tensors.get(t) {
                data.extend_from_slice(d);
            }
        }
    }

    /// Keep what covers every sample.
    fn finish(self) {
        for (_, digest, item_shape, data) in self.chosen.unwrap_or_default() {
            kept::put(digest, self.samples, self.batch, kept::Values { item_shape, data });
        }
    }
}

/// The per-layer table, drill-down and unpaired tables from the pairs' sums.
fn layers_report(o: &Outcomes, l: &Layers, report: &mut Report) {
    let n = o.samples;
    let batch = l.batch;
    let drill = drill_from(o);
    let mut table = Table {
        name: "per_layer".into(),
        columns: [
            "tensor",
            "b_tensor",
            "op",
            "pairing",
            "sqnr_db",
            "mse",
            "mae",
            "max_abs",
            "cosine",
            "qdq_err_db",
            "ort_sqnr_db",
            "ort_qdq_err_db",
            "samples",
            "check_cosine",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        rows: Vec::new(),
    };
    let mut min_sqnr = f64::INFINITY;
    let mut dataset_sqnr: BTreeMap<String, f64> = BTreeMap::new();
    let mut rejected: Vec<(String, String, String)> = Vec::new();
    for LayerPair { pair: p, verdict: v, sums: s } in &l.pairs {
        let (layout, check) = match v {
            Some(pairing::Verdict::Verified { layout, cosine }) => (*layout, *cosine),
            Some(pairing::Verdict::Rejected(why)) => {
                rejected.push((p.a.clone(), p.b.clone(), format!("{} (paired by {})", why, p.how)));
                continue;
            }
            None => continue,
        };
        if let Some(note) = &s.shape_note {
            report.notes.push(note.clone());
            continue;
        }
        if s.rows == 0 {
            continue;
        }
        let sqnr = s.e.sqnr_db();
        // The headline: layers paired by dataflow (or names it agrees with), not outputs.
        if !p.how.starts_with("model output") && !p.how.contains("not paired by dataflow") {
            min_sqnr = min_sqnr.min(sqnr);
        }
        dataset_sqnr.insert(p.a.clone(), sqnr);
        let opt = |x: Option<&ErrorStats>| x.map_or(Cell::Text(String::new()), |e| Cell::Num(e.sqnr_db()));
        table.rows.push(vec![
            Cell::Text(p.a.clone()),
            Cell::Text(p.b.clone()),
            Cell::Text(p.op.clone()),
            Cell::Text(if layout == pairing::Layout::Same {
                p.how.clone()
            } else {
                format!("{}; {}", p.how, layout.describe())
            }),
            Cell::Num(sqnr),
            Cell::Num(s.e.mse()),
            Cell::Num(s.e.mae()),
            Cell::Num(s.e.max_abs),
            Cell::Num(s.e.cosine()),
            opt(s.qdq.as_ref()),
            opt(s.ort.as_ref()),
            opt(s.qdq_ort.as_ref()),
            Cell::Int(s.rows as i64),
            Cell::Num(check),
        ]);
    }
    if min_sqnr.is_finite() {
        report.summary.insert("min_sqnr_db".into(), min_sqnr);
        if let Some(h) = &mut report.headline {
            h.push_str(&format!(" · SQNR min {min_sqnr:.1} dB"));
        }
    }
    report.notes.push(format!("per-layer errors over all {n} samples, streamed in batches of {batch}"));
    // Drill-down: each chosen sample's per-layer SQNR beside the dataset-wide figure.
    let mut drill_table = Table {
        name: "sample_layers".into(),
        columns: ["sample", "source_index", "why", "tensor", "op", "sqnr_db", "dataset_sqnr_db"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        rows: Vec::new(),
    };
    for (sample, why) in &drill {
        for LayerPair { pair: p, sums: s, .. } in &l.pairs {
            let from_all = s.samples.as_ref().and_then(|v| v.get(*sample)).map(|[x2, d2]| ErrorStats {
                sum_x2: *x2,
                sum_d2: *d2,
                ..ErrorStats::default()
            });
            let Some(e) = from_all.or_else(|| s.per_sample.get(sample).cloned()) else { continue };
            if s.rows == 0 {
                continue;
            }
            drill_table.rows.push(vec![
                Cell::Int(*sample as i64),
                Cell::Int(o.source_indices.get(*sample).copied().unwrap_or(*sample) as i64),
                Cell::Text((*why).into()),
                Cell::Text(p.a.clone()),
                Cell::Text(p.op.clone()),
                Cell::Num(e.sqnr_db()),
                dataset_sqnr.get(&p.a).map_or(Cell::Text(String::new()), |x| Cell::Num(*x)),
            ]);
        }
    }
    if drill.values().filter(|w| **w == "flip").count() >= MAX_DRILL_FLIPS {
        report.notes.push(format!("sample_layers covers the first {MAX_DRILL_FLIPS} flipped samples"));
    }
    let mut unpaired = Table {
        name: "unpaired".into(),
        columns: vec!["model".into(), "tensor".into(), "reason".into()],
        rows: Vec::new(),
    };
    for (a_name, b_name, why) in &rejected {
        unpaired.rows.push(vec![Cell::Text("A".into()), Cell::Text(a_name.clone()), Cell::Text(why.clone())]);
        unpaired.rows.push(vec![Cell::Text("B".into()), Cell::Text(b_name.clone()), Cell::Text(why.clone())]);
    }
    for u in &l.unpaired_a {
        unpaired.rows.push(vec![Cell::Text("A".into()), Cell::Text(u.tensor.clone()), Cell::Text(u.reason.clone())]);
    }
    for u in &l.unpaired_b {
        unpaired.rows.push(vec![Cell::Text("B".into()), Cell::Text(u.tensor.clone()), Cell::Text(u.reason.clone())]);
    }
    if !rejected.is_empty() {
        report.notes.push(format!(
            "{} pair(s) failed verification on the first batch and are not used (see the unpaired table): \
             a pair must have the same shape (up to NCHW/NHWC) and a cosine similarity of at least {} between A's \
             tensor and B's pre-quantization value; the headline figures use verified pairs only",
            rejected.len(),
            pairing::MIN_COSINE
        ));
    }
    let mut by_how: BTreeMap<String, usize> = BTreeMap::new();
    for LayerPair { pair: p, verdict: v, .. } in &l.pairs {
        if matches!(v, Some(pairing::Verdict::Verified { .. })) {
            *by_how.entry(p.how.clone()).or_default() += 1;
        }
    }
    for (how, count) in by_how {
        report.notes.push(format!("{count} pair(s) by {how}"));
    }
    if l.pairs.iter().any(|p| p.pair.relu_removed) {
        report.notes.push(
            "Where the quantizer removed a Relu, B's Q/DQ pair does the Relu's clipping and B's pre-quantization tensor holds \
             pre-Relu values: qdq_err_db compares Relu(pre) with the dequantized tensor, so it measures rounding only. \
             ort_qdq_err_db is what onnxruntime's qdq_loss_debug reports there (pre-Relu vs dequantized: mostly the Relu's \
             clipping), and ort_sqnr_db its xmodel_err where its pairing differs from QuantGraph's."
                .into(),
        );
    }
    report.tables.insert(0, table);
    report.tables.push(unpaired);
    report.tables.push(drill_table);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part of `n` samples with one pair: sample i has ‖x‖² = i + 1 and ‖x − y‖² = 1, a
    /// flip at `flip` (global index `offset + flip`) and its largest output error there too.
    fn part(n: usize, offset: usize, flip: usize) -> Partial {
        let mut top1_b = vec![0u32; n];
        top1_b[flip] = 1;
        let mut out_err = vec![0.0; n];
        out_err[flip] = 9.0;
        let sums = PairSums {
            e: ErrorStats { sum_x2: 1.0, sum_d2: 1.0, ..ErrorStats::default() },
            samples: Some((0..n).map(|i| [(offset + i + 1) as f64, 1.0]).collect()),
            rows: n,
            ..PairSums::default()
        };
        let pair = pairing::Pair {
            a: "t".into(),
            b: "t_dq".into(),
            b_pre: None,
            op: "Conv".into(),
            how: "by name".into(),
            ort_a: None,
            relu_removed: false,
        };
        Partial {
            version: PARTIAL_VERSION,
            outcomes: Outcomes {
                samples: n,
                source_indices: (offset..offset + n).collect(),
                class_names: vec!["a".into(), "b".into()],
                classes: Some(2),
                top1_a: vec![0; n],
                top1_b,
                out_err,
                ..Outcomes::default()
            },
            layers: Layers { batch: 16, pairs: vec![LayerPair { pair, verdict: None, sums }], ..Layers::default() },
        }
    }

    /// Past MAX_ALL_SAMPLES the merge keeps, as a single run does, per-sample figures of the
    /// drill-down samples only (here each part's flip), with their values.
    #[test]
    fn a_merge_past_the_all_samples_limit_keeps_the_drill_down_samples_only() {
        let n = MAX_ALL_SAMPLES / 2 + 10;
        let parts = [part(n, 0, 5), part(n, n, 7), part(n, 2 * n, 3)];
        let merged = merge(&parts).unwrap();
        assert_eq!(merged.outcomes.samples, 3 * n);
        let s = &merged.layers.pairs[0].sums;
        assert!(s.samples.is_none(), "every sample's figures are dropped past the limit");
        for i in [5, n + 7, 2 * n + 3] {
            let e = &s.per_sample[&i];
            assert_eq!((e.sum_x2, e.sum_d2), ((i + 1) as f64, 1.0), "sample {i}");
        }
        assert!(s.per_sample.len() <= 3 + 20, "{}", s.per_sample.len());
        assert_eq!(s.rows, 3 * n);
        // Below the limit every sample's figures are kept.
        let small = merge(&[part(10, 0, 1), part(10, 10, 2)]).unwrap();
        assert_eq!(small.layers.pairs[0].sums.samples.as_ref().map(Vec::len), Some(20));
    }
}
