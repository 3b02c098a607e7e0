//! `onnx.scale_search`: choose each activation Q/DQ pair's clip range by sweeping it and
//! keeping the scale / zero-point with the smallest local quantization MSE.
//!
//! For every selected activation pair (per-tensor QuantizeLinear on a float tensor):
//!
//! 1. one pass over the images finds the tensor's observed range;
//! 2. a second pass fills a 4,096-bin histogram over that range and sums the exact squared
//!    error of the pair as it is;
//! 3. candidates — both ends of the range scaled from `low` to 100 % in `steps` steps each
//!    (only the upper end, with the lower kept at 0, for a pair whose range starts at 0; the
//!    absolute maximum for a symmetric pair), plus the pair as it is — are scored on the
//!    histogram (each bin's centre quantized and dequantized);
//! 4. a third pass sums the exact squared error of the best candidate; it is kept only when
//!    that is below the pair's own exact error, so no tensor's local MSE gets worse.
//!
//! The local error compares the dequantized value with the tensor the pair quantizes, or,
//! for a pair whose range starts at 0 (the quantizer folded a Relu into it, or calibration
//! saw no negative values), with `max(x, 0)`: the clipping at 0 is kept as it is and not
//! counted as error.
//!
//! With the FP32 model on the optional `fp32` input, a pair whose tensor has a float namesake
//! there is scored against that instead (what the layer should compute, so the range may also
//! absorb error from upstream): each histogram bin also sums `x − f`, which gives the cross
//! term of `Σ (q − f)² = Σ (q − x)² + 2 Σ (q − x)(x − f) + Σ (x − f)²`, and the exact passes
//! run both models. A tensor without a namesake keeps its local error (said in the notes); a
//! namesake of another size is an error on `fp32`.
//!
//! What is guaranteed is local: each pair's own error, with every other pair as it is, on the
//! search images. All changed pairs are then applied together, which also changes what
//! downstream pairs see; the comparator downstream shows what that does to the outputs.
//!
//! Output `edits` is a report whose `edits` table (tensor, scale, zero_point) a QDQ Override
//! takes on its `edits` input; its `search` table has every pair's figures before and after.

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_nodes::value::{Cell, QdqEntry, Report, Table};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};
use rayon::prelude::*;

use crate::{info, probe, proto, runtime};

/// QDQ model + dataset → per-tensor scale / zero-point edits.
#[derive(Default)]
pub struct ScaleSearch;

const BINS: usize = 4096;

/// One pair being searched.
#[derive(Debug, Clone)]
struct Target {
    tensor: String,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
    /// The range starts at 0: the lower end stays there and the reference is max(x, 0).
    one_sided: bool,
    /// Zero point 0 on a signed type: only the absolute maximum is swept.
    symmetric: bool,
    min: f32,
    max: f32,
    hist: Vec<u64>,
    /// With the FP32 model connected and this tensor paired: per histogram bin, the sum of
    /// `r(x) − r(f)` (this model's value minus FP32's, both as the reference takes them).
    drift: Option<Vec<f64>>,
    /// Exact sums of squared error, and the element count.
    sse_before: f64,
    sse_after: f64,
    count: u64,
    best: Option<(f32, i32, f32, f32)>,
}

/// Quantize and dequantize `x` as QuantizeLinear / DequantizeLinear do (round half to even).
pub fn qdq(x: f32, scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> f32 {
    let q = crate::quantize::quantize_value(x, scale, zero_point, (qmin, qmax));
    (q - zero_point) as f32 * scale
}

impl Target {
    /// A pair with scale `scale` and zero point `zero_point` on `[qmin, qmax]`, nothing
    /// observed yet.
    fn new(tensor: &str, scale: f32, zero_point: i32, (qmin, qmax): (i32, i32)) -> Self {
        Target {
            tensor: tensor.to_owned(),
            scale,
            zero_point,
            qmin,
            qmax,
            one_sided: zero_point == qmin,
            symmetric: zero_point == 0 && qmin < 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: vec![0; BINS],
            drift: None,
            sse_before: 0.0,
            sse_after: 0.0,
            count: 0,
            best: None,
        }
    }

    fn reference(&self, x: f32) -> f32 {
        if self.one_sided {
            x.max(0.0)
        } else {
            x
        }
    }
    fn lo(&self) -> f32 {
        if self.one_sided {
            0.0
        } else {
            self.min.min(0.0)
        }
    }
    fn hi(&self) -> f32 {
        self.max.max(0.0)
    }
    fn bin_of(&self, v: f32) -> usize {
        let (lo, hi) = (self.lo(), self.hi());
        if hi <= lo {
            return 0;
        }
        (((v - lo) / (hi - lo) * BINS as f32) as usize).min(BINS - 1)
    }
    /// Exact sum of squared error of the pair with these parameters: the dequantized value
    /// against the tensor it quantizes (as [`Target::reference`] takes it) or, given the FP32
    /// model's values of the same tensor (`fp32`), against those.
    fn sse(&self, data: &[f32], fp32: Option<&[f32]>, scale: f32, zero_point: i32) -> f64 {
        match fp32 {
            None => data
                .iter()
                .map(|&x| {
                    let e = f64::from(self.reference(x) - qdq(x, scale, zero_point, self.qmin, self.qmax));
                    e * e
                })
                .sum(),
            Some(f) => data
                .iter()
                .zip(f)
                .map(|(&x, &f)| {
                    let e = f64::from(self.reference(f) - qdq(x, scale, zero_point, self.qmin, self.qmax));
                    e * e
                })
                .sum(),
        }
    }
    /// Scale and zero point for the clip range `[a, b]` (a ≤ 0 ≤ b).
    fn params_for(&self, a: f32, b: f32) -> Option<(f32, i32)> {
        let span = (self.qmax - self.qmin) as f32;
        if self.symmetric {
            let m = a.abs().max(b.abs());
            let s = 2.0 * m / span;
            return (s.is_normal() && s > 0.0).then_some((s, 0));
        }
        let s = (b - a) / span;
        if !(s.is_normal() && s > 0.0) {
            return None;
        }
        let zp = (self.qmin as f32 - a / s).round_ties_even().clamp(self.qmin as f32, self.qmax as f32) as i32;
        Some((s, zp))
    }
    /// Histogram estimate of the mean squared error with these parameters.
    fn estimate(&self, scale: f32, zero_point: i32) -> f64 {
        let (lo, hi) = (self.lo(), self.hi());
        let width = (hi - lo) / BINS as f32;
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let sse: f64 = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let centre = lo + (i as f32 + 0.5) * width;
                let e = f64::from(qdq(centre, scale, zero_point, self.qmin, self.qmax) - centre);
                // Against FP32: Σ (q − f)² = Σ (q − x)² + 2 Σ (q − x)(x − f) + Σ (x − f)²; the
                // last term is the same for every candidate.
                let drift = self.drift.as_ref().map_or(0.0, |d| 2.0 * e * d[i]);
                e * e * *c as f64 + drift
            })
            .sum();
        sse / total as f64
    }
    /// The best candidate on the histogram: `(scale, zero_point, low end, high end)`.
    fn search(&self, low: f64, steps: usize) -> (f32, i32, f32, f32) {
        let (lo, hi) = (self.lo(), self.hi());
        let fractions: Vec<f32> =
            (0..steps).map(|k| (low + (1.0 - low) * k as f64 / (steps - 1).max(1) as f64) as f32).collect();
        let (orig_lo, orig_hi) =
            ((self.qmin - self.zero_point) as f32 * self.scale, (self.qmax - self.zero_point) as f32 * self.scale);
        let mut best = (self.estimate(self.scale, self.zero_point), (self.scale, self.zero_point, orig_lo, orig_hi));
        let lows: Vec<f32> = if self.one_sided || self.symmetric { vec![1.0] } else { fractions.clone() };
        for fl in &lows {
            for fh in &fractions {
                // A symmetric pair sweeps its absolute maximum, whichever side holds it.
                let (a, b) = if self.symmetric { (lo * fh, hi * fh) } else { (lo * fl, hi * fh) };
                let Some((s, zp)) = self.params_for(a, b) else { continue };
                let mse = self.estimate(s, zp);
                if mse < best.0 {
                    best = (mse, (s, zp, a, b));
                }
            }
        }
        best.1
    }
}

/// The activation pairs the search may change: per-tensor QuantizeLinear nodes on float
/// tensors, each tensor once, whose name matches `pattern`.
fn targets(qdq: &[QdqEntry], pattern: &regex::Regex) -> (Vec<Target>, Vec<String>) {
    let mut out: BTreeMap<String, Target> = BTreeMap::new();
    let mut skipped = Vec::new();
    for e in qdq.iter().filter(|e| e.op_type == "QuantizeLinear" && !e.is_weight) {
        if !pattern.is_match(&e.float_tensor) || out.contains_key(&e.float_tensor) {
            continue;
        }
        if e.scales.len() != 1 {
            skipped.push(format!("{} (per-channel activation pair: not searched)", e.float_tensor));
            continue;
        }
        let zero_point = e.zero_points.first().copied().unwrap_or(0);
        out.insert(e.float_tensor.clone(), Target::new(&e.float_tensor, e.scales[0], zero_point, e.qrange()));
    }
    (out.into_values().collect(), skipped)
}

params! {
    /// Scale Search's params.
    pub struct ScaleSearchParams {
        pub pattern: String = text("Tensor name pattern", "")
            .with_doc("A regular expression over the activation tensor names; empty: every activation pair."),
        pub low: f64 = float("Low (fraction of the observed range)", 0.3, 0.01, 1.0).with_step(0.05, false),
        pub steps: usize = int("Steps per end", 20, 2, 200),
        pub images: usize = int("Images (0: all)", 256, 0, 10_000_000)
            .with_doc("The first N images of the dataset are used for the search."),
        pub batch_size: usize = int("Batch size", 64, 1, 65_536),
    }
}

impl TypedKind for ScaleSearch {
    type Params = ScaleSearchParams;
    fn id(&self) -> &'static str {
        "onnx.scale_search"
    }
    fn display_name(&self) -> &'static str {
        "Scale Search"
    }
    fn category(&self) -> &'static str {
        "Repair"
    }
    fn doc(&self) -> &'static str {
        "For each activation Q/DQ pair of a QDQ model (or those whose tensor name matches the \
         pattern), sweeps the clip range over the dataset — both ends from Low to 100 % of the \
         observed range in Steps steps (only the upper end for a pair whose range starts at 0, \
         e.g. one that does a folded Relu's clipping) — and picks the scale and zero-point with the \
         smallest local quantization MSE (dequantized vs the tensor it quantizes; vs max(x, 0) for a \
         pair starting at 0). Scored on a 4,096-bin histogram, then checked exactly: a pair keeps its \
         parameters unless the exact MSE goes down. Three passes over the images. With the FP32 model on \
         the optional `fp32` input, each pair is scored against the FP32 model's tensor of the same name \
         instead (column error_against). Output `edits` goes to a QDQ Override's `edits` input; its \
         `search` table shows every pair before and after."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("model", PortType::Model),
            PortSpec::new("dataset", PortType::Dataset),
            PortSpec::optional("fp32", PortType::Model),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("edits", PortType::Table)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &ScaleSearchParams) -> Result<Outputs, NodeError> {
        let model = inputs.model("model")?;
        let dataset = inputs.dataset("dataset")?;
        let pattern = regex::Regex::new(&params.pattern)
            .map_err(|e| NodeError::param("pattern", format!("not a valid regular expression: {e}")))?;
        let low = params.low;
        let steps = params.steps;
        let batch = params.batch_size.max(1);
        let n = match params.images {
            0 => dataset.len(),
            k => k.min(dataset.len()),
        };
        if n == 0 {
            return Err(NodeError::input("dataset", "expected at least one image, found none"));
        }
        let (mut targets, skipped) = targets(&model.info.qdq, &pattern);
        if targets.is_empty() {
            return Err(NodeError::input(
                "model",
                format!(
                    "expected per-tensor activation Q/DQ pairs{}, found none in {}",
                    if pattern.as_str().is_empty() { String::new() } else { format!(" matching '{pattern}'") },
                    model.path
                ),
            ));
        }
        let proto_model =
            proto::decode_model(&model.bytes).map_err(|e| NodeError::input("model", format!("unreadable: {e}")))?;
        let feed = probe::feed_with(model, &proto_model, dataset, None)?;
        let names: Vec<String> = targets.iter().map(|t| t.tensor.clone()).collect();
        let bytes = proto::edit_model(
            &model.bytes,
            proto::ModelEdit {
                extra_outputs: names.iter().map(|t| info::typed_output(t, proto::FLOAT)).collect(),
                ..proto::ModelEdit::default()
            },
        )
        .map_err(|e| NodeError::failed(format!("adding the searched tensors as outputs failed: {e}")))?;
        let mut session = runtime::session_with(&bytes, model.threads, true)?;
        // With the FP32 model: each pair's error against the FP32 model's tensor of the same
        // name (what the layer should compute), where it has one.
        let mut unpaired = Vec::new();
        let mut fp32_run = match inputs.optional("fp32") {
            None => None,
            Some(Value::Model(f)) => {
                let f_proto =
                    proto::decode_model(&f.bytes).map_err(|e| NodeError::input("fp32", format!("unreadable: {e}")))?;
                let f_types = info::tensor_types(&f_proto);
                let paired: Vec<String> =
                    names.iter().filter(|t| f_types.get(*t) == Some(&proto::FLOAT)).cloned().collect();
                unpaired = names.iter().filter(|t| !paired.contains(t)).cloned().collect();
                if paired.is_empty() {
                    return Err(NodeError::input(
                        "fp32",
                        format!(
                            "expected float tensors named as the QDQ model's quantized activations (e.g. '{}'), found \
                             none in {}",
                            names.first().map(String::as_str).unwrap_or_default(),
                            f.path
                        ),
                    ));
                }
                let f_feed = probe::feed_with(f, &f_proto, dataset, None)?;
                let f_bytes = proto::edit_model(
                    &f.bytes,
                    proto::ModelEdit {
                        extra_outputs: paired.iter().map(|t| info::typed_output(t, proto::FLOAT)).collect(),
                        ..proto::ModelEdit::default()
                    },
                )
                .map_err(|e| NodeError::failed(format!("adding the FP32 model's tensors as outputs failed: {e}")))?;
                for t in targets.iter_mut().filter(|t| paired.contains(&t.tensor)) {
                    t.drift = Some(vec![0.0; BINS]);
                }
                Some((runtime::session(&f_bytes, f.threads)?, f_feed, paired))
            }
            Some(_) => return Err(NodeError::input("fp32", "expected a model")),
        };

        // pass: 0 range, 1 histogram + exact error as is, 2 exact error of the best.
        for pass in 0..3 {
            if pass == 2 {
                let pending: Vec<&mut Target> = targets.iter_mut().collect();
                pending.into_par_iter().for_each(|t| {
                    let best = t.search(low, steps);
                    t.best = ((best.0, best.1) != (t.scale, t.zero_point)).then_some(best);
                });
                if targets.iter().all(|t| t.best.is_none()) {
                    break;
                }
            }
            let mut start = 0;
            while start < n {
                ctx.check_cancelled()?;
                let end = (start + batch).min(n);
                // The FP32 model's values of the paired tensors for these images.
                let fp32: BTreeMap<String, Vec<f32>> = match fp32_run.as_mut() {
                    Some((f_session, f_feed, paired)) if pass > 0 => {
                        runtime::run_batch(ctx, f_session, f_feed, &dataset.images, start, end, paired, |outs| {
                            Ok(outs.into_iter().map(|(name, _, data)| (name.to_owned(), data.to_vec())).collect())
                        })?
                    }
                    _ => BTreeMap::new(),
                };
                runtime::run_batch(ctx, &mut session, &feed, &dataset.images, start, end, &names, |outs| {
                    // (pair, its values in this model, the FP32 model's when it is scored against them)
                    type Work<'a> = (&'a mut Target, &'a [f32], Option<&'a [f32]>);
                    let mut work: Vec<Work> = Vec::new();
                    let mut by_name: BTreeMap<&str, &[f32]> = BTreeMap::new();
                    for (name, _, data) in &outs {
                        by_name.insert(name, data);
                    }
                    for t in targets.iter_mut() {
                        if let Some(data) = by_name.get(t.tensor.as_str()) {
                            let f = fp32.get(&t.tensor).map(Vec::as_slice);
                            if let Some(f) = f.filter(|f| f.len() != data.len()) {
                                return Err(NodeError::input(
                                    "fp32",
                                    format!(
                                        "'{}' has {} values for images {start}..{end} in the FP32 model and {} in the \
                                         QDQ model: not the same tensor",
                                        t.tensor,
                                        f.len(),
                                        data.len()
                                    ),
                                ));
                            }
                            work.push((t, data, f));
                        }
                    }
                    work.into_par_iter().for_each(|(t, data, f)| match pass {
                        0 => {
                            for &x in data {
                                let x = t.reference(x);
                                if x.is_finite() {
                                    t.min = t.min.min(x);
                                    t.max = t.max.max(x);
                                }
                            }
                        }
                        1 => {
                            for (k, &x) in data.iter().enumerate() {
                                let v = t.reference(x);
                                if v.is_finite() {
                                    let b = t.bin_of(v);
                                    t.hist[b] += 1;
                                    let r = f.and_then(|f| f.get(k)).map(|f| t.reference(*f));
                                    if let (Some(drift), Some(r)) = (t.drift.as_mut(), r) {
                                        if r.is_finite() {
                                            drift[b] += f64::from(v) - f64::from(r);
                                        }
                                    }
                                }
                            }
                            t.sse_before += t.sse(data, f, t.scale, t.zero_point);
                            t.count += data.len() as u64;
                        }
                        _ => {
                            if let Some((s, zp, _, _)) = t.best {
                                t.sse_after += t.sse(data, f, s, zp);
                            }
                        }
                    });
                    Ok(())
                })?;
                start = end;
                let done = (pass as f32 + end as f32 / n as f32) / 3.0;
                ctx.progress(done, &format!("pass {} of 3: {end}/{n} images", pass + 1));
            }
        }
        let mut skipped = skipped;
        skipped.extend(
            unpaired
                .iter()
                .map(|t| format!("{t}: no float tensor of this name in the FP32 model, so its local error was used")),
        );
        Ok(report(&targets, &skipped, n, low, steps))
    }
}

fn report(targets: &[Target], skipped: &[String], n: usize, low: f64, steps: usize) -> Outputs {
    let mut edits = Table {
        name: "edits".into(),
        columns: vec!["tensor".into(), "scale".into(), "zero_point".into()],
        rows: Vec::new(),
    };
    let mut search = Table {
        name: "search".into(),
        columns: [
            "tensor",
            "observed_min",
            "observed_max",
            "scale_before",
            "zero_point_before",
            "scale_after",
            "zero_point_after",
            "clip_low",
            "clip_high",
            "mse_before",
            "mse_after",
            "gain_db",
            "result",
            "error_against",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        rows: Vec::new(),
    };
    let mut improved = 0;
    for t in targets {
        let count = t.count.max(1) as f64;
        let before = t.sse_before / count;
        let (kept, after, result) = match t.best {
            Some((s, zp, a, b)) if t.sse_after < t.sse_before => {
                improved += 1;
                edits.rows.push(vec![Cell::Text(t.tensor.clone()), Cell::Num(f64::from(s)), Cell::Num(f64::from(zp))]);
                (Some((s, zp, a, b)), t.sse_after / count, "changed".to_owned())
            }
            Some(_) => (None, before, "kept (the best candidate was not better exactly)".to_owned()),
            None => (None, before, "kept (already the best candidate)".to_owned()),
        };
        let (s, zp) = kept.map_or((t.scale, t.zero_point), |k| (k.0, k.1));
        let (a, b) = kept
            .map_or(((t.qmin - t.zero_point) as f32 * t.scale, (t.qmax - t.zero_point) as f32 * t.scale), |k| {
                (k.2, k.3)
            });
        let gain = if after > 0.0 && before > 0.0 { 10.0 * (before / after).log10() } else { 0.0 };
        search.rows.push(vec![
            Cell::Text(t.tensor.clone()),
            Cell::Num(f64::from(t.min)),
            Cell::Num(f64::from(t.max)),
            Cell::Num(f64::from(t.scale)),
            Cell::Num(f64::from(t.zero_point)),
            Cell::Num(f64::from(s)),
            Cell::Num(f64::from(zp)),
            Cell::Num(f64::from(a)),
            Cell::Num(f64::from(b)),
            Cell::Num(before),
            Cell::Num(after),
            Cell::Num(gain),
            Cell::Text(result),
            Cell::Text(if t.drift.is_some() { "FP32".to_owned() } else { "itself".to_owned() }),
        ]);
    }
    let against_fp32 = targets.iter().filter(|t| t.drift.is_some()).count();
    let mut notes = vec![format!(
        "searched {} activation pair(s) on {n} images: both ends from {:.0} % to 100 % of the observed range in {steps} \
         steps each (upper end only for pairs starting at 0); {}, histogram-scored, exactly checked",
        targets.len(),
        low * 100.0,
        if against_fp32 == 0 {
            "local MSE vs the quantized tensor (vs max(x, 0) for pairs starting at 0)".to_owned()
        } else {
            format!(
                "{against_fp32} pair(s) scored by the MSE of the dequantized tensor vs the FP32 model's tensor of the \
                 same name (vs max(f, 0) for pairs starting at 0), the others by their local MSE"
            )
        }
    )];
    notes.extend(skipped.iter().map(|s| format!("skipped {s}")));
    let report = Report {
        headline: Some(format!("{improved} of {} pairs improved", targets.len())),
        tables: vec![edits, search],
        notes,
        ..Report::default()
    };
    let mut out = Outputs::new();
    out.insert("edits".into(), Value::Table(Arc::new(report)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(values: &[f32], one_sided: bool) -> Target {
        let mut t = Target::new("t", 0.1, if one_sided { -128 } else { 0 }, (-128, 127));
        // The helper's pairs are asymmetric unless a test says otherwise.
        t.symmetric = false;
        for &x in values {
            let x = t.reference(x);
            t.min = t.min.min(x);
            t.max = t.max.max(x);
        }
        for &x in values {
            let b = t.bin_of(t.reference(x));
            t.hist[b] += 1;
        }
        t
    }

    /// The smallest `exact` error over the pair as it is and the search's candidate grid
    /// (low 0.3, 20 steps per end; the upper end only for a pair starting at 0).
    fn brute_force(t: &Target, exact: &dyn Fn(f32, i32) -> f64) -> f64 {
        let mut brute = exact(t.scale, t.zero_point);
        let lows: Vec<f32> =
            if t.one_sided { vec![1.0] } else { (0..20).map(|k| 0.3 + 0.7 * k as f32 / 19.0).collect() };
        for fl in &lows {
            for k in 0..20 {
                let fh = 0.3 + 0.7 * k as f32 / 19.0;
                if let Some((bs, bz)) = t.params_for(t.lo() * fl, t.hi() * fh) {
                    brute = brute.min(exact(bs, bz));
                }
            }
        }
        brute
    }

    /// The histogram-scored search against a brute-force search of the exact MSE on a small
    /// tensor over the same candidate grid: the chosen candidate's exact MSE is within 2 % of
    /// the brute-force optimum.
    #[test]
    fn search_finds_the_brute_force_optimum_on_a_small_tensor() {
        // A heavy-tailed tensor: most values small, a few outliers.
        let values: Vec<f32> = (0..4000)
            .map(|i| {
                let u = ((i * 7919) % 4000) as f32 / 4000.0 - 0.5;
                if i % 997 == 0 {
                    u * 40.0
                } else {
                    u * 2.0
                }
            })
            .collect();
        for one_sided in [false, true] {
            let t = target(&values, one_sided);
            let (s, zp, _, _) = t.search(0.3, 20);
            let exact = |s: f32, zp: i32| t.sse(&values, None, s, zp) / values.len() as f64;
            let brute = brute_force(&t, &exact);
            let chosen = exact(s, zp);
            assert!(chosen <= brute * 1.02, "one-sided {one_sided}: chosen {chosen} vs brute force {brute}");
            assert!(chosen < exact(t.scale, t.zero_point), "the outliers make a tighter range better");
        }
    }

    /// Against FP32: the histogram estimate with the per-bin drift (this model's value minus
    /// FP32's) finds what a brute-force search of the exact error against FP32 finds, and that
    /// differs from the local optimum when the tensor carries upstream error.
    #[test]
    fn search_against_fp32_matches_brute_force_on_the_exact_error() {
        // FP32 values, and this model's: shrunk by 8 % and shifted (upstream quantization).
        let f: Vec<f32> = (0..20_000)
            .map(|i| ((i * 7919) % 20_000) as f32 / 10_000.0 - 0.6 + if i % 500 == 0 { 3.0 } else { 0.0 })
            .collect();
        let x: Vec<f32> = f.iter().map(|v| v * 0.92 + 0.01).collect();
        for one_sided in [false, true] {
            let mut t = target(&x, one_sided);
            let mut drift = vec![0.0; BINS];
            for (xv, fv) in x.iter().zip(&f) {
                let v = t.reference(*xv);
                drift[t.bin_of(v)] += f64::from(v) - f64::from(t.reference(*fv));
            }
            t.drift = Some(drift);
            let (s, zp, _, _) = t.search(0.3, 20);
            let exact = |s: f32, zp: i32| t.sse(&x, Some(&f), s, zp) / x.len() as f64;
            let brute = brute_force(&t, &exact);
            let chosen = exact(s, zp);
            assert!(chosen <= brute * 1.02, "one-sided {one_sided}: chosen {chosen} vs brute force {brute}");
            // The local search alone is never better against FP32, and here (both ends free)
            // it picks otherwise and is worse.
            let mut local = t.clone();
            local.drift = None;
            let (ls, lzp, _, _) = local.search(0.3, 20);
            let local = exact(ls, lzp);
            assert!(local >= chosen, "one-sided {one_sided}: local {local} vs {chosen}");
            if !one_sided {
                assert!(local > chosen, "local {local} vs {chosen}");
            }
        }
    }

    /// A symmetric pair whose larger side is negative still gets its range narrowed.
    #[test]
    fn a_symmetric_pair_sweeps_the_larger_side_too() {
        // 100,000 values spread over [−1, 1] and one at −3: clipping it costs less than the
        // coarse steps a ±3 range gives everything else.
        let values: Vec<f32> =
            (0..100_000).map(|i| if i == 7 { -3.0 } else { ((i * 37) % 100_000) as f32 / 50_000.0 - 1.0 }).collect();
        let mut t = target(&values, false);
        t.symmetric = true;
        t.scale = 3.0 / 127.5;
        let (s, zp, _, _) = t.search(0.3, 20);
        assert_eq!(zp, 0);
        assert!(s < t.scale * 0.7, "the outlier at −3 no longer sets the range: {s} vs {}", t.scale);
        assert!(t.sse(&values, None, s, 0) < t.sse(&values, None, t.scale, 0));
    }

    #[test]
    fn qdq_rounds_half_to_even_and_clamps() {
        assert_eq!(qdq(0.25, 0.5, 0, -128, 127), 0.0);
        assert_eq!(qdq(0.75, 0.5, 0, -128, 127), 1.0);
        assert_eq!(qdq(100.0, 0.5, 0, -128, 127), 63.5);
        assert_eq!(qdq(-1.0, 0.5, -128, -128, 127), 0.0);
    }
}
