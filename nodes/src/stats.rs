//! Streaming statistics that merge: moments (Welford/Chan, so the variance keeps its
//! precision on large tensors, unlike `Σx²/n − mean²`) and a histogram whose range grows by
//! doubling. Both can be fed batch by batch and merged across shards exactly (the
//! histogram's counts are integers; its bins line up because ranges only ever double
//! around an anchor).

use crate::value::{Histogram, TensorStats};

/// Bins of every histogram.
pub const HISTOGRAM_BINS: usize = 64;

/// Count, mean, M2 (sum of squared deviations), min and max of finite values; non-finite
/// values are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f32,
    pub max: f32,
    pub non_finite: u64,
}

impl Moments {
    /// Add a slice: one pass in f64 around a shift (the first value, so the squares stay
    /// small and the variance keeps its precision), four lanes wide so it vectorises; then
    /// one merge. Non-finite values take a slower pass that leaves them out.
    pub fn add(&mut self, data: &[f32]) {
        let Some(&first) = data.first() else { return };
        let k = f64::from(first);
        let (mut s1, mut s2) = ([0.0f64; 4], [0.0f64; 4]);
        let (mut mn, mut mx) = ([f32::INFINITY; 4], [f32::NEG_INFINITY; 4]);
        let chunks = data.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                let d = f64::from(c[j]) - k;
                s1[j] += d;
                s2[j] += d * d;
                mn[j] = mn[j].min(c[j]);
                mx[j] = mx[j].max(c[j]);
            }
        }
        for &x in rest {
            let d = f64::from(x) - k;
            s1[0] += d;
            s2[0] += d * d;
            mn[0] = mn[0].min(x);
            mx[0] = mx[0].max(x);
        }
        let (sum1, sum2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
        if !(sum1.is_finite() && sum2.is_finite() && k.is_finite()) {
            self.add_with_non_finite(data);
            return;
        }
        let n = data.len() as f64;
        let b = Moments {
            count: data.len() as u64,
            mean: k + sum1 / n,
            m2: (sum2 - sum1 * sum1 / n).max(0.0),
            min: mn.iter().copied().fold(f32::INFINITY, f32::min),
            max: mx.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            non_finite: 0,
        };
        self.merge(&b);
    }

    fn add_with_non_finite(&mut self, data: &[f32]) {
        let finite: Vec<f32> = data.iter().copied().filter(|x| x.is_finite()).collect();
        self.non_finite += (data.len() - finite.len()) as u64;
        if !finite.is_empty() {
            self.add(&finite);
        }
    }

    /// Chan et al.'s parallel combination.
    pub fn merge(&mut self, o: &Moments) {
        self.non_finite += o.non_finite;
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            let nf = self.non_finite;
            *self = *o;
            self.non_finite = nf;
            return;
        }
        let n = (self.count + o.count) as f64;
        let delta = o.mean - self.mean;
        self.m2 += o.m2 + delta * delta * self.count as f64 * o.count as f64 / n;
        self.mean += delta * o.count as f64 / n;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }
}

/// A histogram of [`HISTOGRAM_BINS`] bins over `[lo, lo + bins·width)` that doubles its
/// width (anchored at its low or high end) when a value falls outside.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHistogram {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl StreamHistogram {
    /// A histogram covering at least `[lo, hi]`.
    pub fn new(lo: f32, hi: f32) -> Self {
        let (lo, mut hi) = (f64::from(lo), f64::from(hi));
        // Also when hi is NaN.
        if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            hi = lo + 1.0;
        }
        // A little headroom so the maximum falls inside the last bin.
        let width = (hi - lo) / HISTOGRAM_BINS as f64 * (1.0 + 1e-6);
        Self { lo, width, counts: vec![0; HISTOGRAM_BINS] }
    }

    fn hi(&self) -> f64 {
        self.lo + self.width * HISTOGRAM_BINS as f64
    }

    /// Double the range, keeping the current one as its upper (`grow_down`) or lower half.
    fn double(&mut self, grow_down: bool) {
        let half = HISTOGRAM_BINS / 2;
        let mut merged = vec![0u64; HISTOGRAM_BINS];
        for (i, c) in self.counts.iter().enumerate() {
            let j = if grow_down { half + i / 2 } else { i / 2 };
            merged[j] += c;
        }
        if grow_down {
            self.lo -= self.width * HISTOGRAM_BINS as f64;
        }
        self.width *= 2.0;
        self.counts = merged;
    }

    /// Make the range cover `[lo, hi]`.
    fn cover(&mut self, lo: f64, hi: f64) {
        let mut guard = 0;
        while (lo < self.lo || hi >= self.hi()) && guard < 2048 {
            self.double(lo < self.lo);
            guard += 1;
        }
    }

    /// Add finite values (others are skipped: [`Moments`] counts them).
    pub fn add(&mut self, data: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in data {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        self.add_in_range(data, lo, hi);
    }

    /// Add values whose finite ones lie in `[lo, hi]` (known from [`Moments`] already).
    pub fn add_in_range(&mut self, data: &[f32], lo: f32, hi: f32) {
        if lo > hi {
            return;
        }
        self.cover(f64::from(lo), f64::from(hi));
        let inv = 1.0 / self.width;
        let base = self.lo;
        let last = HISTOGRAM_BINS - 1;
        // Four interleaved sets of counters, so that runs of equal bins do not wait on each
        // other's increments.
        let mut lanes = [[0u64; HISTOGRAM_BINS]; 4];
        // In f32 (the bins are far wider than f32's rounding at these magnitudes).
        let (scale, offset) = (inv as f32, (-base * inv) as f32);
        let bin_of = |x: f32| ((x * scale + offset) as i32).clamp(0, last as i32) as usize;
        let chunks = data.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for (j, lane) in lanes.iter_mut().enumerate() {
                // NaN casts to 0 and ±inf saturate; the finite check leaves them out.
                lane[bin_of(c[j])] += u64::from(c[j].is_finite());
            }
        }
        for &x in rest {
            lanes[0][bin_of(x)] += u64::from(x.is_finite());
        }
        for lane in &lanes {
            for (c, l) in self.counts.iter_mut().zip(lane) {
                *c += l;
            }
        }
    }

    /// As a plain [`Histogram`].
    pub fn histogram(&self) -> Histogram {
        Histogram { lo: self.lo as f32, hi: self.hi() as f32, counts: self.counts.clone() }
    }
}

/// Moments and histogram of one tensor, fed batch by batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorAccumulator {
    pub moments: Moments,
    pub histogram: Option<StreamHistogram>,
    /// A range the histogram must cover from the start (a Q/DQ pair's representable range).
    pub cover: Option<(f32, f32)>,
}

impl TensorAccumulator {
    pub fn new(cover: Option<(f32, f32)>) -> Self {
        Self { moments: Moments::default(), histogram: None, cover }
    }

    pub fn add(&mut self, data: &[f32]) {
        let mut batch = Moments::default();
        batch.add(data);
        self.moments.merge(&batch);
        if self.histogram.is_none() && batch.count > 0 {
            // The first batch with finite values sets the initial range (∪ the Q/DQ range).
            let (mut lo, mut hi) = (self.moments.min, self.moments.max);
            if let Some((a, b)) = self.cover {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            self.histogram = Some(StreamHistogram::new(lo, hi));
        }
        if let Some(h) = &mut self.histogram {
            h.add_in_range(data, batch.min, batch.max);
        }
    }

    /// The statistics, `None` when nothing finite was seen.
    pub fn stats(&self) -> TensorStats {
        let m = &self.moments;
        TensorStats {
            min: if m.count > 0 { m.min } else { 0.0 },
            max: if m.count > 0 { m.max } else { 0.0 },
            mean: m.mean,
            std: m.std(),
            count: m.count as usize,
            histogram: self.histogram.as_ref().map(StreamHistogram::histogram).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_like_one_pass_and_keep_precision() {
        let data: Vec<f32> = (0..10_000).map(|i| 1.0e4 + (i % 7) as f32 * 0.001).collect();
        let mut one = Moments::default();
        one.add(&data);
        let mut parts = Moments::default();
        for c in data.chunks(333) {
            parts.add(c);
        }
        let mean: f64 = data.iter().map(|x| f64::from(*x)).sum::<f64>() / data.len() as f64;
        let var: f64 = data.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / data.len() as f64;
        for m in [one, parts] {
            assert_eq!(m.count, 10_000);
            assert!((m.mean - mean).abs() < 1e-9);
            assert!((m.std() - var.sqrt()).abs() < 1e-9 * var.sqrt().max(1.0), "{} vs {}", m.std(), var.sqrt());
        }
        let mut with_nan = Moments::default();
        with_nan.add(&[1.0, f32::NAN, 3.0]);
        assert_eq!((with_nan.count, with_nan.non_finite, with_nan.mean), (2, 1, 2.0));
    }

    #[test]
    fn histogram_doubles_and_counts_every_value_once() {
        // Values away from bin edges (an edge value may fall either side after a doubling).
        let mut h = StreamHistogram::new(0.0, 1.0);
        h.add(&[0.03, 0.47, 0.91]);
        h.add(&[-2.93, 4.61]);
        let out = h.histogram();
        assert_eq!(out.counts.iter().sum::<u64>(), 5);
        assert!(out.lo <= -2.93 && out.hi > 4.61, "{out:?}");
        // Batches in any order give the same counts once the range is the same.
        let mut a = StreamHistogram::new(0.0, 1.0);
        a.add(&[-2.93, 4.61]);
        a.add(&[0.03, 0.47, 0.91]);
        assert_eq!(a.histogram(), out);
        // Each value sits in the bin that contains it.
        let width = (out.hi - out.lo) / HISTOGRAM_BINS as f32;
        for x in [0.03f32, 0.47, 0.91, -2.93, 4.61] {
            let bin = ((x - out.lo) / width) as usize;
            assert!(out.counts[bin] >= 1, "{x} not in bin {bin}: {out:?}");
        }
    }
}
