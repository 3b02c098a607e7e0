//! `compare.activation_maps` ([`ActivationMaps`]): one tensor's feature maps for a few chosen
//! samples (the flipped ones, or any asked for), A against B, per channel.
//!
//! Only the asked samples are computed: each probe's stream runs those samples alone
//! ([`quantgraph_nodes::value::ActivationStream::gather`]), so nothing of the other samples'
//! activations is held.

use std::sync::Arc;

use quantgraph_nodes::kind::{single, SampleMaps};
use quantgraph_nodes::value::{Activations, Batch, FeatureMaps, MapSample, PlotKind, PlotSpec};
use quantgraph_nodes::{params, EvalContext, Inputs, NodeError, Outputs, PortSpec, PortType, TypedKind, Value};

use crate::pairing::{self, Layout, Verdict};

/// Most samples one evaluation draws.
pub const MAX_SAMPLES: usize = 256;
/// Most values kept (A and B of every sample together): 64 M floats, 256 MB.
pub const MAX_VALUES: usize = 64 << 20;

/// Two probes' activations → the feature maps of one tensor for chosen samples.
#[derive(Default)]
pub struct ActivationMaps;

/// Which samples `spec` asks for: "flips" (the first `max` samples whose top-1 differs
/// between A and B) and explicit indices, comma- or space-separated, in that order, each once.
pub fn parse_samples(spec: &str, flips: &[usize], max: usize) -> Result<Vec<(usize, &'static str)>, String> {
    let mut out: Vec<(usize, &'static str)> = Vec::new();
    for word in spec.split([',', ' ', ';']).map(str::trim).filter(|w| !w.is_empty()) {
        if word.eq_ignore_ascii_case("flips") {
            for f in flips {
                if !out.iter().any(|(s, _)| s == f) {
                    out.push((*f, "flip"));
                }
            }
        } else {
            let s: usize = word
                .parse()
                .map_err(|_| format!("expected sample indices or 'flips', separated by commas; found '{word}'"))?;
            if !out.iter().any(|(x, _)| *x == s) {
                out.push((s, "asked"));
            }
        }
    }
    out.truncate(max);
    Ok(out)
}

/// `(C, H, W)` of a per-sample shape, and whether its values must be moved from H×W×C;
/// `None` for more than three axes that are not 1.
fn chw(shape: &[usize], channels_last: bool) -> Option<(usize, usize, usize, bool)> {
    let mut axes: Vec<usize> = shape.to_vec();
    while axes.len() > 3 && axes.first() == Some(&1) {
        axes.remove(0);
    }
    match axes.as_slice() {
        [] => Some((1, 1, 1, false)),
        [c] => Some((*c, 1, 1, false)),
        [h, w] => Some((1, *h, *w, false)),
        [h, w, c] if channels_last => Some((*c, *h, *w, true)),
        [c, h, w] => Some((*c, *h, *w, false)),
        _ => None,
    }
}

/// H×W×C values to C×H×W.
fn to_channel_major(data: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for p in 0..h * w {
        for ci in 0..c {
            if let (Some(x), Some(slot)) = (data.get(p * c + ci), out.get_mut(ci * h * w + p)) {
                *slot = *x;
            }
        }
    }
    out
}

fn values<'b>(batch: &'b Batch, name: &str) -> Result<(&'b [usize], &'b [f32]), NodeError> {
    batch
        .tensors
        .get(name)
        .map(|(s, d)| (s.as_slice(), d.as_slice()))
        .ok_or_else(|| NodeError::failed(format!("the probe did not deliver '{name}'")))
}

fn stream_of<'a>(
    acts: &'a Activations,
    port: &str,
) -> Result<&'a dyn quantgraph_nodes::value::ActivationStream, NodeError> {
    acts.stream.as_ref().map(|s| s.0.as_ref()).ok_or_else(|| {
        NodeError::input(
            port,
            "expected a probe's activations (with a stream to run samples again), found values without one",
        )
    })
}

params! {
    /// The Activation Maps' params.
    pub struct MapsParams {
        pub tensor: String = tensor_name("Tensor", "a", false)
            .with_doc("A's tensor (or B's: its partner in A is found by the pairing)."),
        pub samples: String = text("Samples", "flips")
            .with_doc("Sample indices (as in the comparator's tables) and/or 'flips', separated by commas."),
        pub max_samples: usize = int("Most samples", 16, 1, MAX_SAMPLES as i64),
        pub layout: String = choice("A's layout", "auto", &["auto", "channels-first", "channels-last"]).with_doc(
            "How A's tensor is laid out per sample. auto: channels-last where the pairing shows it (B is \
             NCHW and A transposed), else channels-first (C × H × W); the plot says which it used.",
        ),
    }
}

impl TypedKind for ActivationMaps {
    type Params = MapsParams;
    fn id(&self) -> &'static str {
        "compare.activation_maps"
    }
    fn display_name(&self) -> &'static str {
        "Activation Maps"
    }
    fn category(&self) -> &'static str {
        "Analysis"
    }
    fn doc(&self) -> &'static str {
        "The feature maps of one tensor for a few samples: A's, B's (its paired tensor, found as the \
         comparator finds it) and |A − B|, one heatmap per channel, A and B on one colour scale. \
         Samples: 'flips' (those whose top-1 differs between A and B) and/or sample indices. Only \
         those samples are run again through each probe's model; no other activations are kept. \
         In the editor, a comparator's flip drill-down opens it for the selected tensor and sample."
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("a", PortType::Activations), PortSpec::new("b", PortType::Activations)]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("maps", PortType::Plot)]
    }
    fn sample_maps(&self) -> Option<SampleMaps> {
        Some(SampleMaps { a_input: "a", b_input: "b", tensor_param: "tensor", samples_param: "samples" })
    }
    fn evaluate(&self, ctx: &EvalContext, inputs: &Inputs, params: &MapsParams) -> Result<Outputs, NodeError> {
        let (a, b) = (inputs.activations("a")?, inputs.activations("b")?);
        let tensor = params.tensor.clone();
        if tensor.trim().is_empty() {
            return Err(NodeError::param(
                "tensor",
                "choose a tensor (click a row of the comparator's per-layer table)",
            ));
        }
        // The pair, as the comparator makes it.
        let pairs = pairing::pair(a, b);
        let pair = pairs
            .pairs
            .iter()
            .find(|p| p.a == tensor || p.b == tensor || p.b_pre.as_deref() == Some(tensor.as_str()))
            .cloned()
            .ok_or_else(|| {
                let why =
                    pairs.unpaired_a.iter().chain(&pairs.unpaired_b).find(|u| u.tensor == tensor).map_or_else(
                        || "neither probe captured it as a paired tensor".to_owned(),
                        |u| u.reason.clone(),
                    );
                NodeError::param("tensor", format!("'{tensor}' has no partner in the other model: {why}"))
            })?;
        // The samples.
        let (pa, pb) = (a.predictions.as_ref(), b.predictions.as_ref());
        let flips: Vec<usize> = match (pa, pb) {
            (Some(pa), Some(pb)) => {
                pa.top1.iter().zip(&pb.top1).enumerate().filter(|(_, (x, y))| x != y).map(|(i, _)| i).collect()
            }
            _ => Vec::new(),
        };
        let max = params.max_samples;
        let chosen = parse_samples(&params.samples, &flips, max).map_err(|e| NodeError::param("samples", e))?;
        let n = stream_of(a, "a")?.samples();
        if let Some((s, _)) = chosen.iter().find(|(s, _)| *s >= n) {
            return Err(NodeError::param(
                "samples",
                format!("expected indices below {n} (the probes' samples), found {s}"),
            ));
        }
        if chosen.is_empty() {
            return Err(NodeError::param(
                "samples",
                if params.samples.contains("flips") {
                    "no sample flips between A and B; name samples by index (e.g. 0, 17)".to_owned()
                } else {
                    "expected at least one sample index or 'flips'".to_owned()
                },
            ));
        }
        // The memory bound, before anything is run (A's per-sample size from its shape).
        let per_sample: usize = a.tensors.get(&pair.a).map_or(0, |t| t.tensor.shape.iter().skip(1).product());
        if per_sample.saturating_mul(2).saturating_mul(chosen.len()) > MAX_VALUES {
            return Err(NodeError::param(
                "max_samples",
                format!(
                    "{} samples of '{}' ({per_sample} values each, A and B) exceed {MAX_VALUES} values; ask for fewer \
                     samples",
                    chosen.len(),
                    pair.a
                ),
            ));
        }
        let indices: Vec<usize> = chosen.iter().map(|(s, _)| *s).collect();
        // Only these samples run, A and B at once.
        let mut names_b = vec![pair.b.clone()];
        names_b.extend(pair.b_pre.clone());
        let (ga, gb) = std::thread::scope(|scope| {
            let ga = scope.spawn(|| stream_of(a, "a")?.gather(std::slice::from_ref(&pair.a), &indices, ctx));
            let gb = stream_of(b, "b").and_then(|s| s.gather(&names_b, &indices, ctx));
            (ga.join(), gb)
        });
        let ga = ga.map_err(|_| NodeError::failed("running model A panicked"))??;
        let gb = gb?;
        // B in A's element order, verified as the comparator verifies a pair (on these samples).
        let mut xa_all = Vec::new();
        let mut check_all = Vec::new();
        let mut sa = Vec::new();
        let mut sb = Vec::new();
        for (ba, bb) in ga.iter().zip(&gb) {
            let (shape_a, xa) = values(ba, &pair.a)?;
            let (shape_b, yb) = values(bb, &pair.b)?;
            sa = shape_a.to_vec();
            sb = shape_b.to_vec();
            xa_all.extend_from_slice(xa);
            match pair.b_pre.as_deref().map(|p| values(bb, p)) {
                Some(Ok((_, pre))) if pre.len() == yb.len() && pair.relu_removed => {
                    check_all.extend(pre.iter().map(|x| x.max(0.0)));
                }
                Some(Ok((_, pre))) if pre.len() == yb.len() => check_all.extend_from_slice(pre),
                _ => check_all.extend_from_slice(yb),
            }
        }
        let layout = match pairing::verify(&sa, &xa_all, &sb, &check_all) {
            Verdict::Verified { layout, .. } => layout,
            Verdict::Rejected(why) => {
                return Err(NodeError::param(
                    "tensor",
                    format!("'{}' and '{}' are not a verified pair: {why}", pair.a, pair.b),
                ))
            }
        };
        let layout_param = params.layout.clone();
        let channels_last = match layout_param.as_str() {
            "channels-last" => true,
            "channels-first" => false,
            _ => layout == Layout::BChannelsFirst,
        };
        let (c, h, w, moved) = chw(&sa, channels_last).ok_or_else(|| {
            NodeError::param("tensor", format!("maps are drawn for up to 3 axes per sample; '{}' has {sa:?}", pair.a))
        })?;
        let class_names = pa.map(|p| p.class_names.clone()).unwrap_or_default();
        let prob = |acts: &Activations, i: usize, k: Option<u32>| -> Option<f64> {
            let t = crate::kept_output(acts)?;
            let item = t.item_len();
            crate::softmax_at(t.data.get(i * item..(i + 1) * item)?, k? as usize)
        };
        let mut samples = Vec::with_capacity(chosen.len());
        for ((index, why), (ba, bb)) in chosen.iter().zip(ga.iter().zip(&gb)) {
            let (shape_a, xa) = values(ba, &pair.a)?;
            let (_, yb) = values(bb, &pair.b)?;
            let yb = if layout == Layout::Same { yb.to_vec() } else { layout.to_a(shape_a, yb) };
            let (xa, yb) =
                if moved { (to_channel_major(xa, c, h, w), to_channel_major(&yb, c, h, w)) } else { (xa.to_vec(), yb) };
            let top1_a = pa.and_then(|p| p.top1.get(*index).copied());
            let top1_b = pb.and_then(|p| p.top1.get(*index).copied());
            let digest = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (&pair.a, *index, c, h, w).hash(&mut hasher);
                xa.iter().chain(&yb).for_each(|v| v.to_bits().hash(&mut hasher));
                hasher.finish()
            };
            samples.push(MapSample {
                digest,
                index: *index,
                why: (*why).into(),
                label: pa.and_then(|p| p.labels.as_ref()).and_then(|l| l.get(*index).copied()),
                top1_a,
                top1_b,
                prob_a: prob(a, *index, top1_a),
                prob_b: prob(b, *index, top1_b),
                thumbnail: a.dataset.as_ref().and_then(|d| d.thumbnail(*index)),
                a: xa,
                b: yb,
            });
        }
        let mut plot =
            PlotSpec::new(PlotKind::FeatureMaps, format!("Feature maps of {} (A) and {} (B)", pair.a, pair.b));
        plot.x_label = format!(
            "{c} channels of {h}×{w}; A read as {}{}",
            if channels_last { "H×W×C" } else { "C×H×W" },
            if layout_param == "auto" { " (auto)" } else { "" }
        );
        plot.maps = Some(FeatureMaps {
            tensor_a: pair.a.clone(),
            tensor_b: pair.b.clone(),
            channels: c,
            height: h,
            width: w,
            class_names,
            samples,
        });
        Ok(single("maps", Value::Plot(Arc::new(plot))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_flips_and_indices_each_once_up_to_the_limit() {
        let flips = [3, 9, 12];
        assert_eq!(parse_samples("flips", &flips, 16).unwrap(), vec![(3, "flip"), (9, "flip"), (12, "flip")]);
        assert_eq!(parse_samples("7, flips", &flips, 3).unwrap(), vec![(7, "asked"), (3, "flip"), (9, "flip")]);
        assert_eq!(parse_samples("9 9,9", &flips, 16).unwrap(), vec![(9, "asked")]);
        assert!(parse_samples("x", &flips, 16).unwrap_err().contains("found 'x'"));
    }

    #[test]
    fn shapes_become_channels_height_width() {
        assert_eq!(chw(&[16, 8, 4], false), Some((16, 8, 4, false)));
        assert_eq!(chw(&[8, 4, 16], true), Some((16, 8, 4, true)));
        assert_eq!(chw(&[10], false), Some((10, 1, 1, false)));
        assert_eq!(chw(&[1, 1, 16, 8, 4], false), Some((16, 8, 4, false)));
        assert_eq!(chw(&[2, 16, 8, 4], false), None);
        // H×W×C [[[0, 1], [2, 3]]] (1×2×2): channel 0 is [0, 2], channel 1 is [1, 3].
        assert_eq!(to_channel_major(&[0.0, 1.0, 2.0, 3.0], 2, 1, 2), vec![0.0, 2.0, 1.0, 3.0]);
    }
}
