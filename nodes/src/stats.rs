//! Streaming statistics that merge: moments (Welford/Chan, so the variance keeps its
//! precision on large tensors, unlike `Σx²/n − mean²`) and a histogram on a power-of-two
//! grid that only the covered range decides. Both can be fed batch by batch and merged
//! across shards: the histogram exactly (integer counts in bins that nest), the moments to
//! float rounding.

use crate::kernels;
use crate::value::{BinGrid, Histogram, TensorStats};

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
    /// Add a slice: block by block in vector code ([`kernels::moments`]: each block's mean,
    /// then the squared deviations from it, in f64), the blocks merged. Non-finite values take
    /// a slower pass that leaves them out.
    pub fn add(&mut self, data: &[f32]) {
        match kernels::moments(data) {
            Some(m) => self.merge(&m),
            None => self.add_careful(data),
        }
    }

    /// [`Moments::add`] in `f64`: one pass around a shift (the first value, so the squares
    /// stay small and the variance keeps its precision); non-finite values are left out.
    fn add_careful(&mut self, data: &[f32]) {
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
            self.add_careful(&finite);
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

/// A histogram on a fixed grid of power-of-two bins, so that histograms fed in any order, in
/// any batches, or on different machines (shards) merge into exactly the one a single pass
/// gives. Bins have width `2^k` and edges at integer multiples of it; `k` is the smallest
/// (but at least [`FINEST_LOG2_WIDTH`]) at which the covered range spans at most
/// [`HISTOGRAM_MAX_BINS`] bins and its bin indices stay within ±2²¹. Both conditions only
/// get harder as the range grows, so `k` depends only on the final range, never on the
/// order the values came in; coarsening from `2^k` to `2^(k+d)` adds whole bins together.
/// Once values spread over more than a few bins, a histogram has more than half of
/// [`HISTOGRAM_MAX_BINS`] bins (fewer only at the finest width or far from zero).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamHistogram {
    log2_width: i32,
    /// Index of the first bin: it starts at `first · 2^log2_width`.
    first: i64,
    /// One count per bin from `first`; empty before any range is covered.
    counts: Vec<u64>,
}

/// Most bins of a [`StreamHistogram`].
pub const HISTOGRAM_MAX_BINS: usize = 128;
/// Finest bin width, `2^-40`: a tensor whose values all lie within ~1e-12 shows one bin.
pub const FINEST_LOG2_WIDTH: i32 = -40;
/// Bin indices stay below this in magnitude, so that `x / 2^k` and its floor are exact in f32.
const MAX_INDEX: i64 = 1 << 21;

/// `2^k` as f64 (exact over the range used here).
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + i64::from(k)) as u64) << 52)
}

/// `floor(a / 2^d)` for any `d` (a plain `>>` panics or wraps from 64 on: grids can be
/// 2^162 apart, e.g. an all-zero batch beside one holding `f32::MIN`).
fn shr(a: i64, d: u32) -> i64 {
    a >> d.min(63)
}

/// `floor(x / 2^k)` exactly, for finite `x` with the result within ±2⁶².
fn bin_index(x: f32, k: i32) -> i64 {
    (f64::from(x) / pow2(k)).floor() as i64
}

/// The grid for bins `[a, b]` at width `2^k0`: the smallest `k ≥ k0` at which they fit, and
/// their indices there.
fn fit(k0: i32, a: i64, b: i64) -> (i32, i64, i64) {
    let mut d = 0u32;
    loop {
        let (x, y) = (shr(a, d), shr(b, d));
        if (y - x) < HISTOGRAM_MAX_BINS as i64 && x >= -MAX_INDEX && y < MAX_INDEX {
            return (k0 + d as i32, x, y);
        }
        d += 1;
    }
}

impl StreamHistogram {
    /// An empty histogram whose grid covers `[lo, hi]` (finite; a Q/DQ pair's range).
    pub fn covering(lo: f32, hi: f32) -> Self {
        let mut h = Self::default();
        if lo.is_finite() && hi.is_finite() {
            h.cover(lo.min(hi), lo.max(hi));
        }
        h
    }

    /// Whether the histogram covers no range yet.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn last(&self) -> i64 {
        self.first + self.counts.len() as i64 - 1
    }

    /// The same counts on the grid `2^k ≥ 2^log2_width`, bins `[first, last]` there (which
    /// must contain this histogram's).
    fn regrid(&mut self, k: i32, first: i64, last: i64) {
        let old = std::mem::replace(self, Self { log2_width: k, first, counts: vec![0; (last - first + 1) as usize] });
        self.add_counts(&old);
    }

    /// Add `o`'s counts, whose grid is this one's or finer and whose bins lie within this
    /// histogram's: each of its bins falls whole into one of these.
    fn add_counts(&mut self, o: &StreamHistogram) {
        let d = (self.log2_width - o.log2_width) as u32;
        for (i, c) in o.counts.iter().enumerate() {
            let j = shr(o.first + i as i64, d) - self.first;
            self.counts[j as usize] += c;
        }
    }

    /// The grid for this histogram's range and bins `[a, b]` at width `2^k`.
    fn extend(&mut self, k: i32, a: i64, b: i64) {
        if self.is_empty() {
            let (k, x, y) = fit(k, a, b);
            *self = Self { log2_width: k, first: x, counts: vec![0; (y - x + 1) as usize] };
            return;
        }
        // Both on the coarser grid of the two, then the smallest that fits their union.
        let k0 = k.max(self.log2_width);
        let (da, ds) = ((k0 - k) as u32, (k0 - self.log2_width) as u32);
        let lo = shr(a, da).min(shr(self.first, ds));
        let hi = shr(b, da).max(shr(self.last(), ds));
        let (k, x, y) = fit(k0, lo, hi);
        if (k, x, y) != (self.log2_width, self.first, self.last()) {
            self.regrid(k, x, y);
        }
    }

    /// Make the grid cover `[lo, hi]` (finite, `lo ≤ hi`).
    fn cover(&mut self, lo: f32, hi: f32) {
        // Any finer width puts the larger magnitude's index beyond ±2²¹ (so the search starts
        // there, and indices stay well inside i64).
        let m = f64::from(lo.abs().max(hi.abs()));
        let e = if m > 0.0 { m.log2().floor() as i32 } else { FINEST_LOG2_WIDTH };
        let k0 = FINEST_LOG2_WIDTH.max(e - 23);
        self.extend(k0, bin_index(lo, k0), bin_index(hi, k0));
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
        if !(lo <= hi && lo.is_finite() && hi.is_finite()) {
            return;
        }
        self.cover(lo, hi);
        // The bin is `floor(x · 2^-k) − first`: exact in f32 (a power of two; indices within
        // ±2²¹), vectorised in [`kernels::bin_counts`].
        let inv = (1.0 / pow2(self.log2_width)) as f32;
        kernels::bin_counts(data, inv, self.first, &mut self.counts);
    }

    /// Add another histogram's counts (a shard's): the result is the histogram of both
    /// histograms' values.
    pub fn merge(&mut self, o: &StreamHistogram) {
        if o.is_empty() {
            return;
        }
        self.extend(o.log2_width, o.first, o.last());
        self.add_counts(o);
    }

    /// As a plain [`Histogram`] (with its grid, so that it can be merged again).
    pub fn histogram(&self) -> Histogram {
        if self.is_empty() {
            return Histogram::default();
        }
        let w = pow2(self.log2_width);
        let edge = |i: i64| (i as f64 * w).clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        Histogram {
            lo: edge(self.first),
            hi: edge(self.last() + 1),
            counts: self.counts.clone(),
            grid: Some(BinGrid { log2_width: self.log2_width, first: self.first }),
        }
    }

    /// Back from a [`Histogram`] that carries its grid.
    pub fn from_histogram(h: &Histogram) -> Result<Self, String> {
        if h.counts.is_empty() {
            return Ok(Self::default());
        }
        let Some(g) = &h.grid else {
            return Err(
                "the histogram has no bin grid (written by an older QuantGraph?), so it cannot be merged".into()
            );
        };
        // (Widths beyond 2^130 never occur: f32 values stay below 2^128.)
        let ok = (FINEST_LOG2_WIDTH..=130).contains(&g.log2_width)
            && h.counts.len() <= HISTOGRAM_MAX_BINS
            && g.first >= -MAX_INDEX
            && g.first <= MAX_INDEX - h.counts.len() as i64;
        if !ok {
            return Err(format!(
                "the histogram's grid (2^{} wide bins from index {}, {} bins) is not one QuantGraph makes",
                g.log2_width,
                g.first,
                h.counts.len()
            ));
        }
        Ok(Self { log2_width: g.log2_width, first: g.first, counts: h.counts.clone() })
    }
}

/// Moments and histogram of one tensor, fed batch by batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorAccumulator {
    pub moments: Moments,
    pub histogram: StreamHistogram,
}

impl TensorAccumulator {
    /// `cover`: a range the histogram covers from the start (a Q/DQ pair's representable
    /// range), whatever the values.
    pub fn new(cover: Option<(f32, f32)>) -> Self {
        let histogram = cover.map_or_else(StreamHistogram::default, |(lo, hi)| StreamHistogram::covering(lo, hi));
        Self { moments: Moments::default(), histogram }
    }

    /// Add values: moments and histogram together, a chunk at a time while it is in cache (the
    /// histogram's grid depends only on the range covered in the end, so covering it chunk by
    /// chunk bins every value as one pass over all of them would).
    pub fn add(&mut self, data: &[f32]) {
        for chunk in data.chunks(16 * 1024) {
            let mut part = Moments::default();
            part.add(chunk);
            self.moments.merge(&part);
            if part.count > 0 {
                self.histogram.add_in_range(chunk, part.min, part.max);
            }
        }
    }

    /// The statistics (zeros and an empty histogram when nothing finite was seen).
    pub fn stats(&self) -> TensorStats {
        let m = &self.moments;
        TensorStats {
            min: if m.count > 0 { m.min } else { 0.0 },
            max: if m.count > 0 { m.max } else { 0.0 },
            mean: m.mean,
            std: m.std(),
            count: m.count as usize,
            histogram: self.histogram.histogram(),
            non_finite: m.non_finite,
        }
    }
}

/// The statistics of the union of disjoint sets of values (shards of a dataset) from theirs:
/// count, minimum, maximum and histogram exactly as one pass over all values gives them, mean
/// and standard deviation to float rounding. Fails for a histogram without its grid.
pub fn merge_stats(parts: &[TensorStats]) -> Result<TensorStats, String> {
    let mut all = TensorAccumulator::new(None);
    let mut total = 0u64;
    for (k, p) in parts.iter().enumerate() {
        // The histogram counts every value the count does; the sums cannot overflow once
        // they are checked here.
        let binned = p.histogram.counts.iter().try_fold(0u64, |s, c| s.checked_add(*c));
        if binned != Some(p.count as u64) {
            return Err(format!(
                "part {k}: its histogram holds {} values, its count says {}",
                binned.map_or_else(|| "too many".to_owned(), |b| b.to_string()),
                p.count
            ));
        }
        total = total.checked_add(p.count as u64).ok_or_else(|| format!("part {k}: too many values in all"))?;
        all.moments.non_finite = all.moments.non_finite.saturating_add(p.non_finite);
        if p.count > 0 {
            let n = p.count as f64;
            all.moments.merge(&Moments {
                count: p.count as u64,
                mean: p.mean,
                m2: p.std * p.std * n,
                min: p.min,
                max: p.max,
                non_finite: 0,
            });
        }
        all.histogram.merge(&StreamHistogram::from_histogram(&p.histogram)?);
    }
    Ok(all.stats())
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

    /// Deterministic values spread over `[lo, hi]` (a linear congruential generator).
    fn values(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }

    /// Each value's bin, by the definition (f64, floor), on the histogram's final grid.
    fn brute_force(data: &[f32], h: &Histogram) -> Vec<u64> {
        let g = h.grid.as_ref().unwrap();
        let w = pow2(g.log2_width);
        let mut counts = vec![0u64; h.counts.len()];
        for &x in data.iter().filter(|x| x.is_finite()) {
            let i = (f64::from(x) / w).floor() as i64 - g.first;
            counts[usize::try_from(i).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn histogram_bins_are_exact_and_do_not_depend_on_batches_order_or_shards() {
        let mut data = values(20_000, -3.7, 11.3, 1);
        // Values on bin edges and around zero, where rounding would show.
        data.extend([-3.7, 11.3, 0.0, -0.0, 0.125, -0.125, 0.25, -1e-30, 1e-30, -1.0, 2.0, f32::NAN, f32::INFINITY]);
        let mut one = StreamHistogram::default();
        one.add(&data);
        let out = one.histogram();
        assert_eq!(out.counts.iter().sum::<u64>(), data.len() as u64 - 2, "every finite value once");
        assert_eq!(out.counts, brute_force(&data, &out));
        assert!(out.lo <= -3.7 && out.hi > 11.3, "{out:?}");
        assert!((HISTOGRAM_MAX_BINS / 2..=HISTOGRAM_MAX_BINS).contains(&out.counts.len()), "{}", out.counts.len());
        // Other batch sizes, the batches reversed: the same histogram.
        for size in [1, 7, 333, 4096] {
            let mut h = StreamHistogram::default();
            for c in data.chunks(size).rev() {
                h.add(c);
            }
            assert_eq!(h.histogram(), out, "batches of {size}");
        }
        // Four shards of the sorted values (each spans a part of the range, on a finer grid),
        // merged in any order through their plain form: the same histogram.
        let mut sorted = data.clone();
        sorted.sort_by(f32::total_cmp);
        let parts: Vec<Histogram> = sorted
            .chunks(sorted.len() / 4 + 1)
            .map(|c| {
                let mut h = StreamHistogram::default();
                h.add(c);
                h.histogram()
            })
            .collect();
        for order in [[0, 1, 2, 3], [3, 1, 0, 2]] {
            let mut m = StreamHistogram::default();
            for i in order {
                m.merge(&StreamHistogram::from_histogram(&parts[i]).unwrap());
            }
            assert_eq!(m.histogram(), out, "shards in order {order:?}");
        }
    }

    #[test]
    fn histogram_covers_a_given_range_and_survives_extremes() {
        let mut h = StreamHistogram::covering(-1.0, 3.0);
        h.add(&[0.5, 0.75]);
        let out = h.histogram();
        assert!(out.lo <= -1.0 && out.hi > 3.0, "{out:?}");
        assert_eq!(out.counts, brute_force(&[0.5, 0.75], &out));
        for data in [
            vec![0.0f32; 10],
            vec![f32::MAX, -f32::MAX, 0.0],
            vec![1e-40, -1e-40, 1e-45],
            vec![1e30, 1e30 + 1e24],
            vec![-7.0; 3],
        ] {
            let mut h = StreamHistogram::default();
            h.add(&data);
            let out = h.histogram();
            assert_eq!(out.counts, brute_force(&data, &out), "{data:?}");
            assert!(out.lo.is_finite() && out.hi.is_finite() && out.lo < out.hi, "{data:?}: {out:?}");
        }
        // Grids far apart (an all-zero batch, then one with f32::MIN; or as shards), both ways.
        let data = [0.0f32, 0.0, f32::MIN, 1.0];
        let mut whole = StreamHistogram::default();
        whole.add(&data);
        let (zeros, wide) = data.split_at(2);
        for (first, second) in [(zeros, wide), (wide, zeros)] {
            let mut h = StreamHistogram::default();
            h.add(first);
            h.add(second);
            assert_eq!(h.histogram(), whole.histogram());
            let (mut a, mut b) = (StreamHistogram::default(), StreamHistogram::default());
            a.add(first);
            b.add(second);
            a.merge(&b);
            assert_eq!(a.histogram(), whole.histogram());
        }
        // A histogram without its grid cannot be merged; an empty one merges as nothing.
        let plain = Histogram { lo: 0.0, hi: 1.0, counts: vec![1, 2], grid: None };
        assert!(StreamHistogram::from_histogram(&plain).unwrap_err().contains("no bin grid"));
        assert!(StreamHistogram::from_histogram(&Histogram::default()).unwrap().is_empty());
    }

    #[test]
    fn merged_stats_equal_one_pass() {
        let mut data = values(10_000, -2.0, 5.0, 7);
        data[10] = f32::NAN;
        data[9_000] = f32::INFINITY;
        let mut one = TensorAccumulator::new(Some((-4.0, 4.0)));
        one.add(&data);
        let parts: Vec<TensorStats> = data
            .chunks(2_500)
            .map(|c| {
                let mut a = TensorAccumulator::new(Some((-4.0, 4.0)));
                for b in c.chunks(64) {
                    a.add(b);
                }
                a.stats()
            })
            .collect();
        let (s, m) = (one.stats(), merge_stats(&parts).unwrap());
        assert_eq!((s.count, s.min, s.max, &s.histogram), (m.count, m.min, m.max, &m.histogram));
        assert_eq!((s.non_finite, m.non_finite), (2, 2), "NaN and inf counted apart, summed over parts");
        assert!((s.mean - m.mean).abs() <= 1e-12 && (s.std - m.std).abs() <= 1e-12, "{s:?} vs {m:?}");
        // Parts whose histogram and count disagree (a hand-edited file) are refused.
        let mut bad = parts.clone();
        bad[1].count += 1;
        assert!(merge_stats(&bad)
            .unwrap_err()
            .starts_with("part 1: its histogram holds 2500 values, its count says 2501"));
        bad[1].histogram.counts[0] = u64::MAX;
        assert!(merge_stats(&bad).unwrap_err().contains("too many"));
    }
}
