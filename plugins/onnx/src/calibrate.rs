//! `onnx.calibrate`: FP32 model + calibration images → QDQ model, natively (no Python).
//!
//! The activations to quantize are chosen as ONNX Runtime's QDQ quantizer chooses them
//! ([`crate::quantize::plan`]); their ranges are collected with ONNX Runtime over the images
//! and chosen by one of four methods:
//!
//! * **MinMax** — the observed minimum and maximum (ORT's `MinMaxCalibrater`).
//! * **Percentile** — ORT's `PercentileCalibrater`: a histogram of |x| (2,048 bins over
//!   the observed |x| range) and the bin edge where the cumulative share reaches the
//!   percentile, as ±edge clipped to the observed range (symmetric, ORT's default).
//! * **Entropy** — ORT's `EntropyCalibrater` (TensorRT's KL method): a histogram over
//!   ±max|x|; for every candidate width around zero, the KL divergence between the clipped
//!   distribution and its quantized version; the smallest wins. ORT's defaults (128 bins, 128
//!   quantized bins) leave a single candidate, the whole range, which makes it MinMax; the
//!   node's default is 2,048 bins, as TensorRT uses.
//! * **MSE** — the clip range whose quantization error (of the activation's own quantizer,
//!   scored on a 2,048-bin histogram) is smallest, over both ends from 1 % to 100 % of the
//!   observed range (only the upper end when the range starts at 0).
//!
//! Histograms are built exactly as NumPy's `np.histogram` builds ORT's (float32 bin edges and
//! index arithmetic), in a second pass over the images once the first has found each range;
//! ORT's collectors histogram all images at once, so the result does not depend on batches.
//! Graph optimization is off while collecting, as in ORT's calibrators.

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_nodes::value::{Cell, Report, Table};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};
use rayon::prelude::*;

use crate::quantize::{self, Options};
use crate::{info, model, probe, proto, runtime};

/// FP32 model + calibration dataset → QDQ model.
#[derive(Default)]
pub struct Calibrate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    MinMax,
    Percentile,
    Entropy,
    Mse,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "minmax" => Method::MinMax,
            "percentile" => Method::Percentile,
            "entropy" => Method::Entropy,
            "mse" => Method::Mse,
            _ => return None,
        })
    }
}

/// NumPy's `np.histogram(data, bins, range=(lo, hi))` for float32 data: the same float32 bin
/// edges (`np.linspace`) and the same index computation, corrected against the edges.
#[derive(Debug, Clone)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub edges: Vec<f32>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(lo: f32, hi: f32, bins: usize) -> Histogram {
        let bins = bins.max(1);
        let (lo, hi) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
        let step = (hi - lo) / bins as f32;
        let mut edges: Vec<f32> = (0..=bins).map(|i| i as f32 * step + lo).collect();
        edges[bins] = hi;
        Histogram { lo, hi, edges, counts: vec![0; bins] }
    }
    pub fn add(&mut self, x: f32) {
        if x.is_nan() || x < self.lo || x > self.hi {
            return;
        }
        let n = self.counts.len();
        let f = (x - self.lo) / (self.hi - self.lo) * n as f32;
        let mut i = (f as usize).min(n);
        if i == n {
            i -= 1;
        }
        if x < self.edges[i] && i > 0 {
            i -= 1;
        }
        if x >= self.edges[i + 1] && i != n - 1 {
            i += 1;
        }
        self.counts[i] += 1;
    }
}

/// One calibrated tensor.
#[derive(Debug, Clone)]
struct Collector {
    name: String,
    min: f32,
    max: f32,
    abs_min: f32,
    abs_max: f32,
    hist: Option<Histogram>,
}

impl Collector {
    fn new(name: &str) -> Self {
        Collector {
            name: name.to_owned(),
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            abs_min: f32::INFINITY,
            abs_max: f32::NEG_INFINITY,
            hist: None,
        }
    }
    fn observe(&mut self, data: &[f32]) {
        let (mut lo, mut hi, mut alo, mut ahi) = (self.min, self.max, self.abs_min, self.abs_max);
        for &x in data {
            if x.is_nan() {
                continue;
            }
            lo = lo.min(x);
            hi = hi.max(x);
            let a = x.abs();
            alo = alo.min(a);
            ahi = ahi.max(a);
        }
        (self.min, self.max, self.abs_min, self.abs_max) = (lo, hi, alo, ahi);
    }
    fn seen(&self) -> bool {
        self.min <= self.max
    }
    /// The histogram the method needs, over the range the first pass found.
    fn start_histogram(&mut self, method: Method, bins: usize) {
        if !self.seen() {
            return;
        }
        self.hist = Some(match method {
            Method::Percentile => Histogram::new(self.abs_min, self.abs_max, bins),
            Method::Entropy => {
                let t = self.min.abs().max(self.max.abs());
                Histogram::new(-t, t, bins)
            }
            // MSE scores 100 × 100 candidates on every bin: 8,192 bins are plenty.
            _ => Histogram::new(self.min, self.max, bins.min(8192)),
        });
    }
    fn fill(&mut self, method: Method, data: &[f32]) {
        let Some(h) = self.hist.as_mut() else { return };
        if method == Method::Percentile {
            for &x in data {
                h.add(x.abs());
            }
        } else {
            for &x in data {
                h.add(x);
            }
        }
    }
}

/// ORT's `compute_percentile` (symmetric): ±the edge where the cumulative share of |x|
/// reaches `percentile`, clipped to the observed range.
pub fn percentile_range(h: &Histogram, percentile: f64, min: f32, max: f32) -> (f32, f32) {
    let total: u64 = h.counts.iter().sum();
    let target = percentile / 100.0;
    let mut cdf = 0.0f64;
    let mut idx = h.counts.len();
    for (i, c) in h.counts.iter().enumerate() {
        cdf += *c as f64 / total.max(1) as f64;
        if cdf >= target {
            idx = i;
            break;
        }
    }
    let e = h.edges[idx];
    (if -e < min { min } else { -e }, if e > max { max } else { e })
}

fn smooth(p: &[i64]) -> Option<Vec<f32>> {
    const EPS: f64 = 0.0001;
    let zeros = p.iter().filter(|v| **v == 0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return None;
    }
    let eps1 = EPS * zeros as f64 / nonzeros as f64;
    Some(p.iter().map(|&v| if v == 0 { EPS as f32 } else { v as f32 + (-eps1) as f32 }).collect())
}

fn kl(p: &[f32], q: &[f32]) -> f64 {
    let sp: f64 = p.iter().map(|v| f64::from(*v)).sum();
    let sq: f64 = q.iter().map(|v| f64::from(*v)).sum();
    p.iter()
        .zip(q)
        .map(|(a, b)| {
            let (a, b) = (f64::from(*a) / sp, f64::from(*b) / sq);
            if a > 0.0 && b > 0.0 {
                a * (a / b).ln()
            } else if a == 0.0 && b >= 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .sum()
}

/// ORT's `get_entropy_threshold`: the clip range around zero whose clipped-and-quantized
/// distribution is closest (KL) to the clipped one, clipped to the observed range.
pub fn entropy_range(h: &Histogram, quantized_bins: usize, min: f32, max: f32) -> (f32, f32) {
    let hist: Vec<i64> = h.counts.iter().map(|c| *c as i64).collect();
    let n = hist.len();
    let zero = n / 2;
    let half = quantized_bins / 2;
    let nq = quantized_bins.max(1);
    let mut best = (f64::INFINITY, (h.edges[0], h.edges[n]));
    let mut first = true;
    for i in half..=zero {
        let start = zero - i;
        let end = (zero + i + 1).min(n);
        let thresholds = (h.edges[start], h.edges[end]);
        let sliced = &hist[start..end];
        let mut p = sliced.to_vec();
        let last = p.len() - 1;
        p[0] += hist[..start].iter().sum::<i64>();
        p[last] += hist[end..].iter().sum::<i64>();
        let nonzero: Vec<i64> = p.iter().map(|v| i64::from(*v != 0)).collect();
        let merged = sliced.len() / nq;
        let mut quantized = vec![0i64; nq];
        for (k, qb) in quantized.iter_mut().enumerate() {
            *qb = sliced[k * merged..k * merged + merged].iter().sum();
        }
        quantized[nq - 1] += sliced[nq * merged..].iter().sum::<i64>();
        let mut q = vec![0i64; p.len()];
        for (k, qb) in quantized.iter().enumerate() {
            let (s, e) = (k * merged, k * merged + merged);
            let norm: i64 = nonzero[s..e].iter().sum();
            if norm != 0 {
                let v = (*qb as f64 / norm as f64) as i64;
                q[s..e].iter_mut().for_each(|x| *x = v);
            }
        }
        let div = match (smooth(&p), smooth(&q)) {
            (Some(p), Some(q)) => kl(&p, &q),
            _ => f64::INFINITY,
        };
        if first || div < best.0 {
            best = (div, thresholds);
            first = false;
        }
    }
    let (lo, hi) = best.1;
    (if lo < min { min } else { lo }, if hi > max { max } else { hi })
}

/// The clip range with the smallest quantization MSE for a quantizer on `[qmin, qmax]`,
/// scored on the histogram (each bin's centre quantized and dequantized, weighted by its
/// count), over both ends from 1 % to 100 % of the observed range in 100 steps (the upper
/// end only when the range starts at 0; the absolute maximum when symmetric).
pub fn mse_range(h: &Histogram, min: f32, max: f32, qmin: i32, qmax: i32, symmetric: bool) -> (f32, f32) {
    const STEPS: usize = 100;
    let width = (h.hi - h.lo) / h.counts.len() as f32;
    let bins: Vec<(f32, f64)> = h
        .counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| (h.lo + (i as f32 + 0.5) * width, *c as f64))
        .collect();
    let score = |a: f32, b: f32| -> f64 {
        let (s, z) = quantize::scale_zero_point(a, b, qmin, qmax, symmetric);
        bins.iter()
            .map(|(x, c)| {
                let d = f64::from(*x - crate::scale_search::qdq(*x, s, z, qmin, qmax));
                d * d * c
            })
            .sum()
    };
    let fractions: Vec<f32> = (1..=STEPS).map(|k| k as f32 / STEPS as f32).collect();
    let (lo, hi) = if symmetric {
        let m = min.abs().max(max.abs());
        (-m, m)
    } else {
        (min.min(0.0), max.max(0.0))
    };
    let lows: Vec<f32> = if lo < 0.0 && !symmetric { fractions.clone() } else { vec![1.0] };
    let mut best = (score(lo, hi), (lo, hi));
    for fl in &lows {
        for fh in &fractions {
            let (a, b) = if symmetric { (lo * fh, hi * fh) } else { (lo * fl, hi * fh) };
            let e = score(a, b);
            if e < best.0 {
                best = (e, (a, b));
            }
        }
    }
    best.1
}

params! {
    /// Calibrate's params.
    pub struct CalibrateParams {
        pub method: String = choice("Method", "minmax", &["minmax", "percentile", "entropy", "mse"]),
        pub percentile: f64 = float("Percentile", 99.999, 50.0, 100.0)
            .with_doc("Percentile method: the share of |x| kept inside the range."),
        pub bins: usize = int("Histogram bins", 2048, 128, 1 << 20)
            .with_doc("Percentile, Entropy and MSE. ORT uses 2,048 for Percentile and 128 for Entropy."),
        pub quantized_bins: usize = int("Quantized bins (Entropy)", 128, 2, 65_536),
        pub activations: String = choice("Activations", "int8", &["int8", "uint8"])
            .with_doc("int8 activations with int8 weights is ORT's s8s8; uint8 is u8s8."),
        pub symmetric_activations: bool = bool("Symmetric activations", false),
        pub per_channel: bool = bool("Per-channel weights", false),
        pub images: usize = int("Images (0: all)", 0, 0, 10_000_000)
            .with_doc("The first N images of the dataset are used."),
        pub batch_size: usize = int("Batch size", 50, 1, 65_536),
    }
}

impl TypedKind for Calibrate {
    type Params = CalibrateParams;
    fn id(&self) -> &'static str {
        "onnx.calibrate"
    }
    fn display_name(&self) -> &'static str {
        "Calibrate"
    }
    fn category(&self) -> &'static str {
        "Repair"
    }
    fn doc(&self) -> &'static str {
        "Quantizes a float model to QDQ, natively: the tensors ONNX Runtime's quantize_static would \
         quantize (Conv, Gemm/MatMul, Add, pooling, Concat, normalization…, Relu/Clip folded into the \
         pair before them) get QuantizeLinear/DequantizeLinear pairs whose ranges come from running \
         the model on the calibration images: MinMax (ORT's, exactly), Percentile and Entropy (ORT's \
         calibrators of the same name) or MSE (the clip range with the smallest quantization error). \
         Weights are int8, symmetric, per-tensor or per-channel; biases int32. The `quantization` table \
         lists every tensor's range, scale and zero-point."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::new("dataset", PortType::Dataset)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::new("quantization", PortType::Table)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &CalibrateParams) -> Result<Outputs, NodeError> {
        let fp32 = inputs.model("model")?;
        let dataset = inputs.dataset("dataset")?;
        let method_name = params.method.clone();
        let method = Method::parse(&method_name).ok_or_else(|| {
            NodeError::param("method", format!("expected minmax, percentile, entropy or mse, found '{method_name}'"))
        })?;
        let bins = params.bins;
        let quantized_bins = params.quantized_bins;
        if method == Method::Entropy && bins < quantized_bins {
            return Err(NodeError::param(
                "bins",
                format!(
                    "Entropy needs at least as many histogram bins as quantized bins ({quantized_bins}), found {bins}"
                ),
            ));
        }
        let percentile = params.percentile;
        let opts = Options {
            activations_int8: params.activations.clone() == "int8",
            activations_symmetric: params.symmetric_activations,
            per_channel: params.per_channel,
        };
        let batch = params.batch_size.max(1);
        let n = match params.images {
            0 => dataset.len(),
            k => k.min(dataset.len()),
        };
        if n == 0 {
            return Err(NodeError::input("dataset", "expected at least one calibration image, found none"));
        }
        let proto_model =
            proto::decode_model(&fp32.bytes).map_err(|e| NodeError::input("model", format!("unreadable: {e}")))?;
        if let Some(input) = fp32.info.inputs.first().filter(|i| i.dtype != "float32" && i.dtype != "unknown") {
            return Err(NodeError::input(
                "model",
                format!(
                    "expected a float model (float32 input), found input '{}' of type {} in {}",
                    input.name, input.dtype, fp32.path
                ),
            ));
        }
        let plan = quantize::plan(&proto_model, &opts)
            .map_err(|e| NodeError::input("model", format!("{e}: {}", fp32.path)))?;
        let wanted = plan.calibrated();
        if wanted.is_empty() {
            return Err(NodeError::input(
                "model",
                format!("found nothing to quantize in {} (no Conv, Gemm, MatMul, Add, … on float tensors)", fp32.path),
            ));
        }
        let graph_inputs: Vec<String> =
            proto_model.graph.as_ref().map(|g| g.input.iter().map(|i| i.name.clone()).collect()).unwrap_or_default();
        let feed_name = fp32.info.inputs.first().map(|i| i.name.clone()).unwrap_or_default();
        // Graph inputs are observed from the fed images; everything else is captured.
        let captured: Vec<String> = wanted.iter().filter(|t| !graph_inputs.contains(t)).cloned().collect();
        if let Some(other) = wanted.iter().find(|t| graph_inputs.contains(t) && **t != feed_name) {
            return Err(NodeError::input(
                "model",
                format!("the model has a second input '{other}' to calibrate; QuantGraph feeds only the first ('{feed_name}')"),
            ));
        }
        let declared: Vec<String> =
            proto_model.graph.as_ref().map(|g| g.output.iter().map(|o| o.name.clone()).collect()).unwrap_or_default();
        let bytes = proto::edit_model(
            &fp32.bytes,
            proto::ModelEdit {
                extra_outputs: captured
                    .iter()
                    .filter(|t| !declared.contains(t))
                    .map(|t| info::typed_output(t, proto::FLOAT))
                    .collect(),
                ..proto::ModelEdit::default()
            },
        )
        .map_err(|e| NodeError::failed(format!("adding the calibrated tensors as outputs failed: {e}")))?;
        let mut session = runtime::session_unoptimized(&bytes, fp32.threads)?;
        let feed = probe::feed_with(fp32, &proto_model, dataset, None)?;
        let mut collectors: Vec<Collector> = wanted.iter().map(|t| Collector::new(t)).collect();
        let passes = if method == Method::MinMax { 1 } else { 2 };
        let began = std::time::Instant::now();
        for pass in 0..passes {
            if pass == 1 {
                collectors.par_iter_mut().for_each(|c| c.start_histogram(method, bins));
            }
            let mut start = 0;
            while start < n {
                ctx.check_cancelled()?;
                let end = (start + batch).min(n);
                let fed = if wanted.contains(&feed_name) {
                    Some(dataset.images.batch(start, end, &|| ctx.is_cancelled())?)
                } else {
                    None
                };
                runtime::run_batch(ctx, &mut session, &feed, &dataset.images, start, end, &captured, |outs| {
                    let mut by_name: BTreeMap<&str, &[f32]> = outs.iter().map(|(n, _, d)| (*n, *d)).collect();
                    if let Some(f) = fed.as_deref() {
                        by_name.insert(feed_name.as_str(), f);
                    }
                    collectors.par_iter_mut().for_each(|c| {
                        if let Some(data) = by_name.get(c.name.as_str()) {
                            if pass == 0 {
                                c.observe(data);
                            } else {
                                c.fill(method, data);
                            }
                        }
                    });
                    Ok(())
                })?;
                start = end;
                let rate = (pass * n + end) as f64 / began.elapsed().as_secs_f64().max(1e-9);
                ctx.progress(
                    (pass * n + end) as f32 / (passes * n) as f32,
                    &format!("pass {} of {passes}: {end}/{n} images, {rate:.0} images/s", pass + 1),
                );
            }
        }
        let (qmin, qmax) = quantize::qrange(
            if opts.activations_int8 { proto::INT8 } else { proto::UINT8 },
            opts.activations_symmetric,
        );
        let mut ranges: BTreeMap<String, (f32, f32)> = BTreeMap::new();
        let mut observed: BTreeMap<String, (f32, f32)> = BTreeMap::new();
        for c in &collectors {
            if !c.seen() {
                return Err(NodeError::input(
                    "dataset",
                    format!("tensor '{}' had no finite value on the calibration images: its range is unknown", c.name),
                ));
            }
            observed.insert(c.name.clone(), (c.min, c.max));
            let range = match (method, &c.hist) {
                (Method::Percentile, Some(h)) => percentile_range(h, percentile, c.min, c.max),
                (Method::Entropy, Some(h)) => entropy_range(h, quantized_bins, c.min, c.max),
                (Method::Mse, Some(h)) => mse_range(h, c.min, c.max, qmin, qmax, opts.activations_symmetric),
                _ => (c.min, c.max),
            };
            ranges.insert(c.name.clone(), range);
        }
        // ORT adjusts ranges before computing parameters (kept Relu/Clip inputs, Softmax).
        quantize::adjust_ranges(&proto_model, &mut ranges);
        ctx.progress(1.0, "writing the QDQ model");
        let (qdq_bytes, rows) = quantize::build(&fp32.bytes, &proto_model, &plan, &ranges, &opts)
            .map_err(|e| NodeError::failed(format!("writing the QDQ model failed: {e}")))?;
        let name = format!("{}_qdq_{method_name}", fp32.name);
        let origin = format!("{} (calibrated: {method_name}, {n} images)", fp32.path);
        let value = model::model_value(&name, &origin, qdq_bytes, fp32.threads)?;
        let mut out = Outputs::new();
        out.insert("model".into(), Value::Model(Arc::new(value)));
        out.insert(
            "quantization".into(),
            Value::Table(Arc::new(report(&rows, &observed, &ranges, &plan, &method_name, n, &opts))),
        );
        Ok(out)
    }
}

fn report(
    rows: &[quantize::Row],
    observed: &BTreeMap<String, (f32, f32)>,
    ranges: &BTreeMap<String, (f32, f32)>,
    plan: &quantize::Plan,
    method: &str,
    n: usize,
    opts: &Options,
) -> Report {
    let columns = [
        "tensor",
        "role",
        "type",
        "observed_min",
        "observed_max",
        "range_min",
        "range_max",
        "scale",
        "zero_point",
        "channels",
        "shares",
    ];
    let mut table = Table {
        name: "quantization".into(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: Vec::new(),
    };
    let num_or_blank = |v: Option<f32>| v.map_or(Cell::Text(String::new()), |v| Cell::Num(f64::from(v)));
    for r in rows {
        let obs = observed.get(&r.tensor);
        let range = ranges.get(&r.tensor);
        table.rows.push(vec![
            Cell::Text(r.tensor.clone()),
            Cell::Text(r.role.to_owned()),
            Cell::Text(r.dtype.to_owned()),
            num_or_blank(obs.map(|o| o.0)),
            num_or_blank(obs.map(|o| o.1)),
            num_or_blank(range.map(|o| o.0)),
            num_or_blank(range.map(|o| o.1)),
            Cell::Num(f64::from(r.scale)),
            Cell::Num(f64::from(r.zero_point)),
            Cell::Num(r.channels as f64),
            Cell::Text(r.shares.clone().unwrap_or_default()),
        ]);
    }
    let count = |role: &str| rows.iter().filter(|r| r.role == role).count();
    let mut notes = vec![format!(
        "{} activation(s) calibrated with {method} on {n} image(s); {} activation(s) share an input's parameters; \
         {} weight(s) int8 symmetric {}; {} bias(es) int32; activations {}{}",
        ranges.len(),
        rows.iter().filter(|r| r.shares.is_some()).count(),
        count("weight"),
        if opts.per_channel { "per-channel" } else { "per-tensor" },
        count("bias"),
        if opts.activations_int8 { "int8" } else { "uint8" },
        if opts.activations_symmetric { " symmetric" } else { "" },
    )];
    notes.extend(plan.notes.iter().cloned());
    Report {
        headline: Some(format!("{} tensors quantized ({method}, {n} images)", rows.len())),
        tables: vec![table],
        notes,
        ..Report::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_like_numpy() {
        // np.histogram([0, 0.1, 0.5, 0.9999, 1.0], bins=4, range=(0, 1)) → [2, 0, 1, 2]
        let mut h = Histogram::new(0.0, 1.0, 4);
        for x in [0.0, 0.1, 0.5, 0.9999, 1.0, 1.5, -0.1] {
            h.add(x);
        }
        assert_eq!(h.counts, vec![2, 0, 1, 2]);
        assert_eq!(h.edges, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        // A constant tensor gets the ±0.5 range NumPy gives it.
        let h = Histogram::new(2.0, 2.0, 2);
        assert_eq!((h.lo, h.hi), (1.5, 2.5));
    }

    #[test]
    fn percentile_cuts_the_tail() {
        // 999 values in [0, 1) and one outlier at 100: the 99.9th percentile of |x| stays
        // near 1, not 100.
        let data: Vec<f32> = (0..999).map(|i| i as f32 / 999.0).chain([100.0]).collect();
        let mut c = Collector::new("t");
        c.observe(&data);
        c.start_histogram(Method::Percentile, 2048);
        c.fill(Method::Percentile, &data);
        let (lo, hi) = percentile_range(c.hist.as_ref().unwrap(), 99.9, c.min, c.max);
        assert_eq!(lo, 0.0, "clipped to the observed minimum");
        assert!(hi > 0.95 && hi < 1.1, "{hi}");
    }

    #[test]
    fn entropy_with_orts_defaults_is_the_whole_range() {
        let data: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32 / 2500.0 - 1.0).chain([-4.0]).collect();
        let mut c = Collector::new("t");
        c.observe(&data);
        c.start_histogram(Method::Entropy, 128);
        c.fill(Method::Entropy, &data);
        assert_eq!(entropy_range(c.hist.as_ref().unwrap(), 128, c.min, c.max), (c.min, c.max));
        // With more bins, the outlier is clipped.
        c.start_histogram(Method::Entropy, 2048);
        c.fill(Method::Entropy, &data);
        let (lo, hi) = entropy_range(c.hist.as_ref().unwrap(), 128, c.min, c.max);
        assert!(lo > -4.0 && hi <= c.max, "({lo}, {hi})");
    }

    /// MSE against a brute-force search of the exact error on a small tensor over the same
    /// candidate grid: the chosen range's exact MSE is within 2 % of the brute-force optimum,
    /// and better than MinMax on a tensor with outliers.
    #[test]
    fn mse_finds_the_brute_force_optimum_on_a_small_tensor() {
        let data: Vec<f32> = (0..4000)
            .map(|i| {
                let u = ((i * 7919) % 4000) as f32 / 4000.0 - 0.3;
                if i % 997 == 0 {
                    u * 40.0
                } else {
                    u * 2.0
                }
            })
            .collect();
        for (qmin, qmax, symmetric) in [(-128, 127, false), (0, 255, false), (-127, 127, true)] {
            let mut c = Collector::new("t");
            c.observe(&data);
            c.start_histogram(Method::Mse, 2048);
            c.fill(Method::Mse, &data);
            let exact = |a: f32, b: f32| -> f64 {
                let (s, z) = quantize::scale_zero_point(a, b, qmin, qmax, symmetric);
                data.iter()
                    .map(|&x| {
                        let d = f64::from(x - crate::scale_search::qdq(x, s, z, qmin, qmax));
                        d * d
                    })
                    .sum::<f64>()
                    / data.len() as f64
            };
            let (lo, hi) = (c.min.min(0.0), c.max.max(0.0));
            let mut brute = exact(lo, hi);
            let m = lo.abs().max(hi);
            for fl in (1..=100).map(|k| k as f32 / 100.0) {
                for fh in (1..=100).map(|k| k as f32 / 100.0) {
                    brute = brute.min(if symmetric { exact(-m * fh, m * fh) } else { exact(lo * fl, hi * fh) });
                }
            }
            let (a, b) = mse_range(c.hist.as_ref().unwrap(), c.min, c.max, qmin, qmax, symmetric);
            let chosen = exact(a, b);
            assert!(chosen <= brute * 1.02, "[{qmin}, {qmax}] sym {symmetric}: chosen {chosen} vs brute force {brute}");
            assert!(chosen < exact(lo, hi), "the outliers make a tighter range better than MinMax");
        }
    }
}
