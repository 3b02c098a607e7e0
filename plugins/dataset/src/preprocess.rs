//! Turning raw 8-bit RGB images into the float tensor a model takes.

use quantgraph_nodes::value::Tensor;
use quantgraph_nodes::NodeError;

use crate::formats::RawImages;

/// Pixel preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Divide by 255.
    pub unit_scale: bool,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub layout_nhwc: bool,
}

fn triple(param: &str, text: &str) -> Result<Option<[f32; 3]>, NodeError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let values: Result<Vec<f32>, _> = parts.iter().map(|p| p.parse::<f32>()).collect();
    if let Ok(v) = &values {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(NodeError::param(param, format!("expected finite numbers, found '{text}'")));
        }
    }
    match values {
        Ok(v) if v.len() == 3 => Ok(Some([v[0], v[1], v[2]])),
        Ok(v) if v.len() == 1 => Ok(Some([v[0]; 3])),
        _ => Err(NodeError::param(
            param,
            format!("expected three numbers separated by commas (one per channel), found '{text}'"),
        )),
    }
}

impl Preprocess {
    pub fn from_params(scale: &str, mean: &str, std: &str, layout: &str) -> Result<Self, NodeError> {
        let std = triple("std", std)?;
        if let Some(s) = std {
            if s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(NodeError::param("std", "every channel's std must be positive"));
            }
        }
        Ok(Self { unit_scale: scale == "unit", mean: triple("mean", mean)?, std, layout_nhwc: layout == "NHWC" })
    }

    pub fn describe(&self) -> String {
        let mut s = String::from(if self.unit_scale { "pixels / 255" } else { "raw pixels 0–255" });
        if let Some(m) = self.mean {
            s.push_str(&format!(", − mean {m:?}"));
        }
        if let Some(d) = self.std {
            s.push_str(&format!(", / std {d:?}"));
        }
        s.push_str(if self.layout_nhwc { ", NHWC" } else { ", NCHW" });
        s
    }

    /// Apply to planar (CHW) 8-bit images.
    pub fn apply(&self, raw: &RawImages) -> Tensor {
        let (h, w) = (raw.height, raw.width);
        let plane = h * w;
        let n = raw.len();
        let mut data = vec![0f32; n * 3 * plane];
        let scale = if self.unit_scale { 1.0 / 255.0 } else { 1.0 };
        for i in 0..n {
            let src = &raw.pixels[i * 3 * plane..(i + 1) * 3 * plane];
            for c in 0..3 {
                let m = self.mean.map_or(0.0, |m| m[c]);
                let s = self.std.map_or(1.0, |s| s[c]);
                for p in 0..plane {
                    let v = (f32::from(src[c * plane + p]) * scale - m) / s;
                    let at = if self.layout_nhwc { i * 3 * plane + p * 3 + c } else { i * 3 * plane + c * plane + p };
                    data[at] = v;
                }
            }
        }
        let shape = if self.layout_nhwc { vec![n, h, w, 3] } else { vec![n, 3, h, w] };
        Tensor { shape, data }
    }
}
