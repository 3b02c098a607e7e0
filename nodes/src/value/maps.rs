//! Feature maps of one tensor for a few chosen samples: A, B and |A − B| per channel.

use super::*;

/// One sample's maps: A's and B's values of the tensor (channel-major, `C × H × W`, in A's
/// layout), with what the two models predicted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MapSample {
    /// Index of the sample in the dataset (as in the comparator's tables).
    pub index: usize,
    /// Why it is here: "flip", "asked".
    pub why: String,
    pub label: Option<u32>,
    pub top1_a: Option<u32>,
    pub top1_b: Option<u32>,
    /// Softmax probability of each model's own top-1.
    pub prob_a: Option<f64>,
    pub prob_b: Option<f64>,
    pub thumbnail: Option<PreviewImage>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    /// Identity of the values (tensor, sample, A and B), computed once by the node that made
    /// them: what drawings of them are cached by.
    #[serde(default)]
    pub digest: u64,
}

impl MapSample {
    /// The shared colour range of A and B (finite values only): `(lo, hi)`.
    pub fn range(&self) -> (f32, f32) {
        finite_range(self.a.iter().chain(&self.b).copied())
    }
    /// The largest |A − B|.
    pub fn max_abs_diff(&self) -> f32 {
        self.a.iter().zip(&self.b).map(|(x, y)| (x - y).abs()).filter(|d| d.is_finite()).fold(0.0, f32::max)
    }
}

/// The feature maps of one tensor (A's name and B's partner) for a few samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureMaps {
    pub tensor_a: String,
    pub tensor_b: String,
    /// Channels, height and width of one sample's maps (a tensor with no spatial axes is
    /// `C × 1 × 1`; one without channels is `1 × H × W`).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub samples: Vec<MapSample>,
}

impl FeatureMaps {
    /// Values per channel map.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }
    /// Channel `c` of a sample's values (empty when out of range).
    pub fn channel<'a>(&self, values: &'a [f32], c: usize) -> &'a [f32] {
        let n = self.plane();
        values.get(c * n..(c + 1) * n).unwrap_or(&[])
    }
    /// The name of class `k`, or its number.
    pub fn class_name(&self, k: Option<u32>) -> String {
        match k {
            Some(k) => self.class_names.get(k as usize).cloned().unwrap_or_else(|| k.to_string()),
            None => "?".into(),
        }
    }
}

/// Smallest and largest finite value (`(0, 0)` when there is none).
pub fn finite_range(values: impl Iterator<Item = f32>) -> (f32, f32) {
    let (lo, hi) =
        values.filter(|x| x.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

/// The colour of `x` on a `lo..hi` scale (viridis, by linear interpolation of 9 stops);
/// non-finite values are magenta, so they are never mistaken for a level.
pub fn heat_colour(x: f32, lo: f32, hi: f32) -> [u8; 3] {
    const STOPS: [[u8; 3]; 9] = [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ];
    if !x.is_finite() {
        return [255, 0, 255];
    }
    let t = if hi > lo { ((x - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.0 };
    let pos = t * (STOPS.len() - 1) as f32;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f32;
    let mix = |k: usize| (f32::from(STOPS[i][k]) * (1.0 - f) + f32::from(STOPS[i + 1][k]) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// Channels laid out as a grid of maps: `(columns, rows)` for `channels` maps, as square as
/// the count allows.
pub fn grid_shape(channels: usize) -> (usize, usize) {
    let cols = (channels as f64).sqrt().ceil().max(1.0) as usize;
    (cols, channels.div_ceil(cols).max(1))
}

/// One grid image (RGB, row-major) of every channel of `values`, each map `scale` pixels per
/// value with a 1-pixel gap: `(width, height, rgb)`.
pub fn grid_image(m: &FeatureMaps, values: &[f32], lo: f32, hi: f32, scale: usize) -> (usize, usize, Vec<u8>) {
    let (cols, rows) = grid_shape(m.channels);
    let (cw, ch) = (m.width * scale + 1, m.height * scale + 1);
    let (w, h) = (cols * cw + 1, rows * ch + 1);
    let mut rgb = vec![40u8; w * h * 3];
    for c in 0..m.channels {
        let plane = m.channel(values, c);
        let (ox, oy) = ((c % cols) * cw + 1, (c / cols) * ch + 1);
        for (i, v) in plane.iter().enumerate() {
            let colour = heat_colour(*v, lo, hi);
            let (x0, y0) = (ox + (i % m.width) * scale, oy + (i / m.width) * scale);
            for y in y0..y0 + scale {
                for x in x0..x0 + scale {
                    let at = (y * w + x) * 3;
                    rgb[at..at + 3].copy_from_slice(&colour);
                }
            }
        }
    }
    (w, h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_the_low_to_the_high_stop() {
        assert_eq!(heat_colour(0.0, 0.0, 1.0), [68, 1, 84]);
        assert_eq!(heat_colour(1.0, 0.0, 1.0), [253, 231, 37]);
        assert_eq!(heat_colour(5.0, 0.0, 1.0), [253, 231, 37]);
        assert_eq!(heat_colour(f32::NAN, 0.0, 1.0), [255, 0, 255]);
        // A flat map is drawn at the low end, not divided by zero.
        assert_eq!(heat_colour(3.0, 3.0, 3.0), [68, 1, 84]);
    }

    #[test]
    fn a_grid_places_each_channel_in_its_cell() {
        let m = FeatureMaps { channels: 3, height: 1, width: 2, ..FeatureMaps::default() };
        assert_eq!(grid_shape(3), (2, 2));
        // Channel 2 is the bottom-left cell; its second value is the high one.
        let values = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let (w, h, rgb) = grid_image(&m, &values, 0.0, 1.0, 1);
        assert_eq!((w, h), (2 * 3 + 1, 2 * 2 + 1));
        let px = |x: usize, y: usize| [rgb[(y * w + x) * 3], rgb[(y * w + x) * 3 + 1], rgb[(y * w + x) * 3 + 2]];
        assert_eq!(px(2, 3), [253, 231, 37]);
        assert_eq!(px(1, 3), [68, 1, 84]);
        assert_eq!(px(0, 0), [40, 40, 40]);
        assert_eq!(finite_range([1.0, f32::NAN, -2.0].into_iter()), (-2.0, 1.0));
    }
}
