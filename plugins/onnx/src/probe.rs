//! `onnx.layer_probe`: run a model on a dataset and capture tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quantgraph_nodes::param::ParamReader;
use quantgraph_nodes::value::{
    Activations, Histogram, Predictions, ProbedTensor, QdqEntry, Tensor, TensorRole, TensorStats,
};
use quantgraph_nodes::{
    EvalContext, Inputs, NodeError, NodeKind, Outputs, ParamSpec, Params, PortSpec, PortType, Value,
};

use crate::{info, proto, runtime};

/// Model + Dataset → Activations.
#[derive(Default)]
pub struct LayerProbe;

pub const HISTOGRAM_BINS: usize = 64;

/// Streaming min/max/mean/std.
#[derive(Default, Clone)]
struct Moments {
    min: f32,
    max: f32,
    sum: f64,
    sum_sq: f64,
    count: usize,
}

impl Moments {
    fn add(&mut self, data: &[f32]) {
        if self.count == 0 {
            self.min = f32::INFINITY;
            self.max = f32::NEG_INFINITY;
        }
        for &x in data {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            self.sum += f64::from(x);
            self.sum_sq += f64::from(x) * f64::from(x);
        }
        self.count += data.len();
    }

    /// The statistics (without a histogram); `None` when nothing was added.
    fn stats(&self) -> Option<TensorStats> {
        if self.count == 0 {
            return None;
        }
        let mean = self.sum / self.count as f64;
        let std = (self.sum_sq / self.count as f64 - mean * mean).max(0.0).sqrt();
        Some(TensorStats {
            min: self.min,
            max: self.max,
            mean,
            std,
            count: self.count,
            histogram: Histogram::default(),
        })
    }
}

/// Statistics of a tensor, with a histogram whose range also covers `extra` (the
/// representable range of the tensor's Q/DQ pair, so the grid can be drawn on it).
pub fn stats(data: &[f32], all: Option<&TensorStats>, extra: Option<(f32, f32)>) -> TensorStats {
    let totals = all.cloned().or_else(|| {
        let mut m = Moments::default();
        m.add(data);
        m.stats()
    });
    let TensorStats { min, max, mean, std, count, .. } = totals.unwrap_or_default();
    let (mut lo, mut hi) = (min, max);
    if let Some((a, b)) = extra {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    let width = (hi - lo) / HISTOGRAM_BINS as f32;
    for &x in data {
        let bin = (((x - lo) / width) as isize).clamp(0, HISTOGRAM_BINS as isize - 1) as usize;
        if let Some(c) = counts.get_mut(bin) {
            *c += 1;
        }
    }
    TensorStats { min, max, mean, std, count, histogram: Histogram { lo, hi, counts } }
}

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
        })
        .cloned()
}

impl NodeKind for LayerProbe {
    fn id(&self) -> &'static str {
        "onnx.layer_probe"
    }
    fn display_name(&self) -> &'static str {
        "Layer Probe"
    }
    fn category(&self) -> &'static str {
        "Analysis"
    }
    fn doc(&self) -> &'static str {
        "Runs a model on a dataset in batches and captures the chosen tensors (the model outputs, \
         chosen tensors, or every float activation) with their statistics and histograms, plus \
         top-1 predictions. Predictions always come from the model as it runs unprobed; if adding \
         graph outputs changes the results (it can stop ONNX Runtime fusing Q/DQ pairs into \
         integer kernels) the probe says so and by how much. For a QDQ model, 'all' captures both \
         ONNX Runtime's pre-quantization tensors (T) and post-dequantization tensors \
         (T_DequantizeLinear_Output). Activations are kept for the first `keep` samples; \
         statistics and predictions cover every sample."
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::choice("capture", "Capture", "all", &["outputs", "selected", "all"]),
            ParamSpec::tensor_name("tensors", "Tensors (for 'selected')", "model", true),
            ParamSpec::int("batch_size", "Batch size", 250, 1, 65_536),
            ParamSpec::int("keep", "Samples kept for comparison", 256, 1, 1_000_000)
                .with_doc("Activations of this many samples (the first ones) are kept for comparators."),
        ]
    }
    fn inputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("model", PortType::Model), PortSpec::new("dataset", PortType::Dataset)]
    }
    fn outputs(&self, _: &Params) -> Vec<PortSpec> {
        vec![PortSpec::new("activations", PortType::Activations)]
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &Params) -> Result<Outputs, NodeError> {
        let r = ParamReader::new(params, self.params());
        let model = inputs.model("model")?;
        let dataset = inputs.dataset("dataset")?;
        let batch = r.usize("batch_size")?;
        let keep = r.usize("keep")?.min(dataset.len());
        let Some(input) = model.info.inputs.first() else {
            return Err(NodeError::input("model", "the model has no inputs"));
        };
        check_input_fits(input, &dataset.images.shape, &format!("{:?}", dataset.layout).to_uppercase(), &model.path)?;
        let Some(logits_name) = model.info.outputs.first().map(|o| o.name.clone()) else {
            return Err(NodeError::input("model", "the model has no outputs"));
        };
        let n = dataset.len();

        // 1. The model as it runs: predictions.
        let mut session = runtime::session(&model.bytes, model.threads)?;
        let outs = runtime::run_batches(
            &mut session,
            &input.name,
            &dataset.images,
            batch,
            std::slice::from_ref(&logits_name),
            ctx,
            "predicting",
        )?;
        drop(session);
        let Some(logits) = outs.get(&logits_name) else {
            return Err(NodeError::failed("the model gave no output"));
        };
        let top1 = argmax_rows(&logits.data, logits.item_len());
        let predictions = Predictions {
            top1: top1.clone(),
            labels: Some(dataset.labels.clone()),
            class_names: dataset.class_names.clone(),
            output_shape: logits.shape.iter().skip(1).copied().collect(),
        };

        // 2. The tensors asked for, from a probed copy of the model.
        let proto_model = proto::decode_model(&model.bytes).map_err(|e| NodeError::file(e, &model.path))?;
        let available = info::float_activations(&proto_model);
        let wanted: Vec<String> = match r.str("capture")?.as_str() {
            "outputs" => Vec::new(),
            "selected" => {
                let chosen = r.strings("tensors")?;
                for t in &chosen {
                    if !available.contains(t) && !model.info.outputs.iter().any(|o| &o.name == t) {
                        return Err(NodeError::param("tensors", format!("the model has no float tensor '{t}'")));
                    }
                }
                chosen
            }
            _ => available,
        };
        let output_names: BTreeSet<&str> = model.info.outputs.iter().map(|o| o.name.as_str()).collect();
        let extra: Vec<String> = wanted.iter().filter(|t| !output_names.contains(t.as_str())).cloned().collect();
        let mut tensors: BTreeMap<String, ProbedTensor> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut kept: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
        let mut moments: BTreeMap<String, Moments> = BTreeMap::new();
        let mut probed_logits: Vec<f32> = Vec::new();
        if !extra.is_empty() {
            let bytes = proto::edit_model(
                &model.bytes,
                proto::ModelEdit {
                    extra_outputs: extra.iter().map(|t| proto::float_output(t)).collect(),
                    ..proto::ModelEdit::default()
                },
            )
            .map_err(|e| NodeError::failed(format!("adding probe outputs failed: {e}")))?;
            let mut probed = runtime::session(&bytes, model.threads)?;
            let mut names = extra.clone();
            names.push(logits_name.clone());
            runtime::for_each_batch(
                &mut probed,
                &input.name,
                &dataset.images,
                batch,
                &names,
                ctx,
                "probing",
                |start, name, item_shape, data| {
                    if name == logits_name {
                        probed_logits.extend_from_slice(data);
                        return Ok(());
                    }
                    moments.entry(name.to_owned()).or_default().add(data);
                    let item: usize = item_shape.iter().product();
                    let entry = kept.entry(name.to_owned()).or_insert_with(|| (item_shape.to_vec(), Vec::new()));
                    if start < keep && item > 0 {
                        let rows = (keep - start).min(data.len() / item);
                        entry.1.extend_from_slice(&data[..rows * item]);
                    }
                    Ok(())
                },
            )?;
            // Did probing change what is measured?
            let probed_top1 = argmax_rows(&probed_logits, logits.item_len());
            let flips = probed_top1.iter().zip(&top1).filter(|(a, b)| a != b).count();
            let max_diff = probed_logits.iter().zip(&logits.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            if flips > 0 || max_diff > 1e-4 {
                notes.push(format!(
                    "probing changed the model's results: {flips} of {n} top-1 predictions differ, max |Δ output| = {max_diff:.4} \
                     (extra graph outputs can stop ONNX Runtime fusing Q/DQ pairs); predictions and accuracy come from the unprobed model"
                ));
            }
        }
        for (name, (item_shape, data)) in kept {
            let m = moments.get(&name).cloned().unwrap_or_default();
            let all = m.stats();
            let qdq = qdq_for(&model.info.qdq, &name);
            let st = stats(&data, all.as_ref(), qdq.as_ref().and_then(QdqEntry::real_range));
            let rows = if item_shape.iter().product::<usize>() > 0 {
                data.len() / item_shape.iter().product::<usize>()
            } else {
                0
            };
            let mut shape = vec![rows];
            shape.extend(item_shape);
            tensors.insert(
                name.clone(),
                ProbedTensor { name, role: TensorRole::Activation, tensor: Tensor { shape, data }, stats: st, qdq },
            );
        }
        // The model output (from the unprobed run), all samples.
        let st = stats(&logits.data, None, None);
        tensors.insert(
            logits_name.clone(),
            ProbedTensor { name: logits_name, role: TensorRole::Output, tensor: logits.clone(), stats: st, qdq: None },
        );
        let acts = Activations {
            model_name: model.name.clone(),
            model: model.info.clone(),
            tensors,
            predictions: Some(predictions),
            dataset: Some(dataset.clone()),
            notes,
        };
        Ok(quantgraph_nodes::kind::single("activations", Value::Activations(Arc::new(acts))))
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
