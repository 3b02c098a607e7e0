//! The hot loops over activations: error sums of a pair of tensors, moments and histogram bins
//! of one. Every element of every probed tensor passes through them once per evaluation, so
//! they decide how long a per-layer comparison takes beside ONNX Runtime's own work.
//!
//! On x86-64 CPUs with AVX2 and FMA (all since about 2013) they run as explicit vector code
//! ([`pulp`]'s safe wrappers of the intrinsics, selected at run time, so one binary runs
//! everywhere): values are widened to `f64` four at a time and summed with fused multiply-adds
//! in `f64` lanes, so the sums are as precise as plain `f64` loops (no `f32` accumulation:
//! that biases large sums by ~1e-8, which shows when shards or batch sizes are compared).
//! Elsewhere the same sums run as plain `f64` loops.

use crate::stats::Moments;

/// The CPU's features, detected once: detection runs CPUID, which a virtual machine traps
/// (microseconds), and the kernels run for every sample of every tensor.
#[cfg(target_arch = "x86_64")]
fn v3() -> Option<pulp::x86::V3> {
    static V3: std::sync::OnceLock<Option<pulp::x86::V3>> = std::sync::OnceLock::new();
    *V3.get_or_init(pulp::x86::V3::try_new)
}

/// `Σx², Σy², Σ(x−y)², Σ|x−y|, Σx·y` and `max |x−y|` over two slices of equal length.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairSums {
    pub x2: f64,
    pub y2: f64,
    pub d2: f64,
    pub abs: f64,
    pub dot: f64,
    pub max_abs: f64,
}

impl PairSums {
    #[inline(always)]
    fn add_scalar<const RELU: bool>(&mut self, x: &[f32], y: &[f32]) {
        for (&a, &b) in x.iter().zip(y) {
            let a = f64::from(if RELU { a.max(0.0) } else { a });
            let b = f64::from(b);
            let d = a - b;
            self.x2 += a * a;
            self.y2 += b * b;
            self.d2 += d * d;
            self.abs += d.abs();
            self.dot += a * b;
            self.max_abs = self.max_abs.max(d.abs());
        }
    }
}

/// The error sums of `x` against `y` (the common length of both); with `relu_x`, of
/// `max(x, 0)` against `y` (a quantizer that removed a Relu).
pub fn pair_sums(x: &[f32], y: &[f32], relu_x: bool) -> PairSums {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = v3() {
        return if relu_x {
            pulp::Simd::vectorize(simd, x86::Pair::<true>(simd, x, y))
        } else {
            pulp::Simd::vectorize(simd, x86::Pair::<false>(simd, x, y))
        };
    }
    let mut s = PairSums::default();
    if relu_x {
        s.add_scalar::<true>(x, y);
    } else {
        s.add_scalar::<false>(x, y);
    }
    s
}

/// The moments (count, mean, sum of squared deviations, min, max) of `data`, or `None` when
/// some value is not finite: the caller takes its careful path that counts those apart. In
/// blocks of [`BLOCK`] values, each in two passes while it is in cache (its mean, then the
/// deviations from it, so the variance keeps its precision however far the values lie from
/// zero), the blocks merged as Chan et al. do.
pub fn moments(data: &[f32]) -> Option<Moments> {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = v3() {
        return pulp::Simd::vectorize(simd, x86::Blocks(simd, data));
    }
    let mut all = Moments::default();
    for block in data.chunks(BLOCK) {
        let sum: f64 = block.iter().map(|x| f64::from(*x)).sum();
        let (lo, hi) = block.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        if !sum.is_finite() {
            return None;
        }
        let m = sum / block.len() as f64;
        let (s1, s2) = deviations(block, m);
        all.merge(&block_moments(block.len(), m, s1, s2, lo, hi));
    }
    Some(all)
}

/// Values per block of [`moments`].
pub const BLOCK: usize = 1024;

/// `Σ(x − m)` and `Σ(x − m)²` around `m` (the block's mean, roughly), in f64.
fn deviations(block: &[f32], m: f64) -> (f64, f64) {
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in block {
        let d = f64::from(x) - m;
        s1 += d;
        s2 += d * d;
    }
    (s1, s2)
}

/// A block's moments from its deviations around `m` (the corrected two-pass formula: exact
/// whatever `m`, best when `m` is near the mean).
#[inline(always)]
fn block_moments(n: usize, m: f64, s1: f64, s2: f64, min: f32, max: f32) -> Moments {
    let nf = n as f64;
    Moments { count: n as u64, mean: m + s1 / nf, m2: (s2 - s1 * s1 / nf).max(0.0), min, max, non_finite: 0 }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use pulp::x86::V3;
    use pulp::Simd;
    use pulp::{f32x4, f64x4};

    use super::{block_moments, Moments, PairSums, BLOCK};

    #[inline(always)]
    fn widen(simd: V3, a: &[f32; 4]) -> f64x4 {
        simd.convert_f32x4_to_f64x4(pulp::cast::<[f32; 4], f32x4>(*a))
    }

    // Each kernel is a `WithSimd` whose `with_simd` is inlined into pulp's function compiled
    // for AVX2 and FMA (a closure would be called, not inlined, and run without them).
    /// Four values of each side into the sums.
    #[inline(always)]
    fn step<const RELU: bool>(simd: V3, acc: &mut [f64x4; 5], max: &mut f64x4, a4: &[f32; 4], b4: &[f32; 4]) {
        let a = widen(simd, a4);
        let a = if RELU { simd.max_f64s(a, simd.splat_f64s(0.0)) } else { a };
        let b = widen(simd, b4);
        let d = simd.sub_f64s(a, b);
        let ad = simd.abs_f64s(d);
        acc[0] = simd.mul_add_e_f64s(a, a, acc[0]);
        acc[1] = simd.mul_add_e_f64s(b, b, acc[1]);
        acc[2] = simd.mul_add_e_f64s(d, d, acc[2]);
        acc[3] = simd.add_f64s(acc[3], ad);
        acc[4] = simd.mul_add_e_f64s(a, b, acc[4]);
        *max = simd.max_f64s(*max, ad);
    }

    pub struct Pair<'a, const RELU: bool>(pub V3, pub &'a [f32], pub &'a [f32]);

    impl<const RELU: bool> pulp::WithSimd for Pair<'_, RELU> {
        type Output = PairSums;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> PairSums {
            let Pair(simd, x, y) = self;
            let zero = simd.splat_f64s(0.0);
            let ((hx, tx), (hy, ty)) = (pulp::as_arrays::<4, f32>(x), pulp::as_arrays::<4, f32>(y));
            // Two sets of sums, so that no fused multiply-add waits on the one before.
            let mut acc = [[zero; 5]; 2]; // x², y², d², |d|, x·y
            let mut max = zero;
            let (px, rx) = pulp::as_arrays::<2, [f32; 4]>(hx);
            let (py, ry) = pulp::as_arrays::<2, [f32; 4]>(hy);
            let [acc0, acc1] = &mut acc;
            for (a, b) in px.iter().zip(py) {
                step::<RELU>(simd, acc0, &mut max, &a[0], &b[0]);
                step::<RELU>(simd, acc1, &mut max, &a[1], &b[1]);
            }
            for (a, b) in rx.iter().zip(ry) {
                step::<RELU>(simd, acc0, &mut max, a, b);
            }
            let sum = |k: usize| simd.reduce_sum_f64s(simd.add_f64s(acc[0][k], acc[1][k]));
            let mut out = PairSums {
                x2: sum(0),
                y2: sum(1),
                d2: sum(2),
                abs: sum(3),
                dot: sum(4),
                max_abs: simd.reduce_max_f64s(max).max(0.0),
            };
            out.add_scalar::<RELU>(tx, ty);
            out
        }
    }

    pub struct Blocks<'a>(pub V3, pub &'a [f32]);

    impl pulp::WithSimd for Blocks<'_> {
        type Output = Option<Moments>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> Option<Moments> {
            // (S is V3: its f32s are eight lanes.)
            let Blocks(simd, data) = self;
            let (zero, sz) = (simd.splat_f64s(0.0), simd.splat_f32s(0.0));
            let mut all = Moments::default();
            for block in data.chunks(BLOCK) {
                // The block's minimum, maximum and rough sum (f32 lanes: it only centres the
                // deviations below, whose sums correct the mean).
                let (eight, rest) = V3::as_simd_f32s(block);
                let (mut s, mut mn, mut mx) = (sz, simd.splat_f32s(f32::INFINITY), simd.splat_f32s(f32::NEG_INFINITY));
                for &v in eight {
                    s = simd.add_f32s(s, v);
                    mn = simd.min_f32s(mn, v);
                    mx = simd.max_f32s(mx, v);
                }
                let (mut sum, mut lo, mut hi) =
                    (f64::from(simd.reduce_sum_f32s(s)), simd.reduce_min_f32s(mn), simd.reduce_max_f32s(mx));
                for &x in rest {
                    sum += f64::from(x);
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
                // A NaN or infinity anywhere (or a sum beyond f32) makes the sum non-finite.
                if !sum.is_finite() {
                    return None;
                }
                // The deviations from its rough mean, in f64.
                let (head, tail) = pulp::as_arrays::<4, f32>(block);
                let m = sum / block.len() as f64;
                let mv = simd.splat_f64s(m);
                let (mut d1, mut d2) = (zero, zero);
                for a in head {
                    let d = simd.sub_f64s(widen(simd, a), mv);
                    d1 = simd.add_f64s(d1, d);
                    d2 = simd.mul_add_e_f64s(d, d, d2);
                }
                let (mut s1, mut s2) = (simd.reduce_sum_f64s(d1), simd.reduce_sum_f64s(d2));
                for &x in tail {
                    let d = f64::from(x) - m;
                    s1 += d;
                    s2 += d * d;
                }
                all.merge(&block_moments(block.len(), m, s1, s2, lo, hi));
            }
            Some(all)
        }
    }
}

/// Add to `counts` (bins `first ..` of width `2^k`, `counts.len()` of them) one for each finite value of `data`, in bin `floor(x / 2^k) − first`, clamped
/// to the bins there are. `inv` is `2^-k` as `f32` (exact: a power of two within its range).
/// Bin indices must lie within ±2²¹ (the caller's grid guarantees it), so `x · 2^-k` is exact
/// and its floor is the bin; where the product underflows (tiny values, wide bins), a negative
/// value still falls in the bin below zero. (NaN converts to 0 and ±inf saturate; they are
/// not counted.)
pub fn bin_counts(data: &[f32], inv: f32, first: i64, counts: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = v3() {
        // (The compiler vectorises the bin computation with AVX2.)
        return pulp::Simd::vectorize(simd, Bins { data, inv, first, counts });
    }
    bin_counts_lanes(data, inv, first, counts);
}

struct Bins<'a> {
    data: &'a [f32],
    inv: f32,
    first: i64,
    counts: &'a mut [u64],
}

impl pulp::WithSimd for Bins<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        bin_counts_lanes(self.data, self.inv, self.first, self.counts);
    }
}

#[inline(always)]
fn bin_counts_lanes(data: &[f32], inv: f32, first: i64, counts: &mut [u64]) {
    let bins = counts.len();
    if bins == 0 {
        return;
    }
    if bins >= LANE_BINS {
        // (Never for QuantGraph's histograms: at most HISTOGRAM_MAX_BINS bins.)
        for &x in data.iter().filter(|x| x.is_finite()) {
            let q = bin_of(x, inv, first as f32, (bins - 1) as f32);
            counts[q as usize] += 1;
        }
        return;
    }
    let (first, last) = (first as f32, (bins - 1) as f32);
    // Non-finite values go to a bin past the last, which is not copied out.
    let skip = bins as u32;
    // Four sets of counters, so that runs of equal bins do not wait on each other's
    // increments (a power of two of them, so that masked indices need no bounds checks);
    // u32 is enough for the at most 2²⁸ values counted between flushes.
    let mut lanes = [[0u32; 4]; LANE_BINS];
    let mask = LANE_BINS as u32 - 1;
    let mut index = [0u32; 256];
    for part in data.chunks(1 << 28) {
        for chunk in part.chunks(index.len()) {
            for (o, &x) in index.iter_mut().zip(chunk) {
                // A whole number in [0, 255]: plus 2²³ it is that number in the low bits of
                // the mantissa (a bit cast vectorises; `as u32` saturates element by element).
                let b = (bin_of(x, inv, first, last) + 8_388_608.0).to_bits() & 0x007f_ffff;
                *o = if x.is_finite() { b } else { skip };
            }
            let (quads, rest) = index[..chunk.len()].as_chunks::<4>();
            for q in quads {
                inc(&mut lanes[(q[0] & mask) as usize][0]);
                inc(&mut lanes[(q[1] & mask) as usize][1]);
                inc(&mut lanes[(q[2] & mask) as usize][2]);
                inc(&mut lanes[(q[3] & mask) as usize][3]);
            }
            for &b in rest {
                inc(&mut lanes[(b & mask) as usize][0]);
            }
        }
        for (c, l) in counts.iter_mut().zip(&mut lanes) {
            *c += l.iter().map(|v| u64::from(*v)).sum::<u64>();
            *l = [0; 4];
        }
        lanes[bins] = [0; 4];
    }
}

/// One more (wrapping: no overflow check in the loop; counts are flushed long before).
#[inline(always)]
fn inc(c: &mut u32) {
    *c = c.wrapping_add(1);
}

/// Counters per lane in [`bin_counts`]'s fast path (bins and the one for skipped values).
const LANE_BINS: usize = 256;

/// The bin of a finite `x` as a float: `floor(x · 2^-k) − first`, clamped to `[0, last]`.
/// `x · 2^-k` is exact (a power of two; indices within ±2²¹), so is its floor and the
/// difference; any negative `x` lies in a bin below zero, also where the product underflowed
/// to -0.
#[inline(always)]
fn bin_of(x: f32, inv: f32, first: f32, last: f32) -> f32 {
    let q = (x * inv).floor();
    let q = if x < 0.0 { q.min(-1.0) } else { q };
    (q - first).max(0.0).min(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.3) * 7.0
            })
            .collect()
    }

    #[test]
    fn pair_sums_match_f64_loops() {
        // Lengths around the lane and block sizes.
        for n in [0, 1, 3, 4, 7, 8, 9, 1023, 1024, 1025, 5000] {
            let (x, y) = (data(n, 1), data(n, 2));
            for relu in [false, true] {
                let s = pair_sums(&x, &y, relu);
                let (mut e, mut max) = ([0.0f64; 5], 0.0f64);
                for (a, b) in x.iter().zip(&y) {
                    let a = if relu { f64::from(a.max(0.0)) } else { f64::from(*a) };
                    let b = f64::from(*b);
                    let d = a - b;
                    e[0] += a * a;
                    e[1] += b * b;
                    e[2] += d * d;
                    e[3] += d.abs();
                    e[4] += a * b;
                    max = max.max(d.abs());
                }
                let got = [s.x2, s.y2, s.d2, s.abs, s.dot];
                for (g, w) in got.iter().zip(e) {
                    assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "n {n} relu {relu}: {g} vs {w}");
                }
                assert_eq!(s.max_abs, max, "n {n}");
            }
        }
    }

    #[test]
    fn pair_sums_keep_precision_over_large_tensors() {
        // A Clip-like activation (a third at 0, some at 6) against its quantized copy with
        // noise, 2 M values: every sum as a plain f64 loop gives it, to its rounding.
        let n = 1 << 21;
        let raw = data(n, 3);
        let x: Vec<f32> = raw.iter().map(|v| (v * 1.3 + 1.0).clamp(0.0, 6.0)).collect();
        let y: Vec<f32> = x.iter().zip(data(n, 4)).map(|(v, e)| (v / 0.0235).round() * 0.0235 + e * 0.002).collect();
        let s = pair_sums(&x, &y, false);
        let (mut e, f) = ([0.0f64; 5], |v: &f32| f64::from(*v));
        for (a, b) in x.iter().map(f).zip(y.iter().map(f)) {
            e[0] += a * a;
            e[1] += b * b;
            e[2] += (a - b) * (a - b);
            e[3] += (a - b).abs();
            e[4] += a * b;
        }
        for (k, (g, w)) in [s.x2, s.y2, s.d2, s.abs, s.dot].iter().zip(e).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w, "sum {k}: {g} vs {w}: {:e}", (g - w) / w);
        }
    }

    #[test]
    fn block_moments_keep_precision_far_from_zero() {
        let x: Vec<f32> = (0..3000).map(|i| 1.0e4 + (i % 7) as f32 * 0.001).collect();
        let b = moments(&x).unwrap();
        assert_eq!(b.count, 3000);
        let mean = x.iter().map(|x| f64::from(*x)).sum::<f64>() / x.len() as f64;
        let m2: f64 = x.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum();
        assert!((b.mean - mean).abs() < 1e-11 * mean, "{} vs {mean}", b.mean);
        assert!((b.m2 - m2).abs() < 1e-9 * m2, "{} vs {m2}", b.m2);
        assert_eq!((b.min, b.max), (1.0e4, x.iter().copied().fold(f32::MIN, f32::max)));
        // Non-finite values (or rough sums beyond f32) send the caller to its careful path.
        assert!(moments(&[1.0, f32::NAN]).is_none());
        assert!(moments(&[1.0, f32::INFINITY]).is_none());
        assert!(moments(&[f32::MAX; 3]).is_some_and(|m| m.mean == f64::from(f32::MAX)));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(moments(&[f32::MAX; 16]).is_none());
        }
    }

    #[test]
    fn bins_are_floors_of_the_scaled_values() {
        // Width 2^-2 from bin -8 (value -2): 16 bins up to 2.
        let mut counts = vec![0u64; 16];
        let xs =
            [-2.0, -1.99, -0.25, -1e-30, -0.0, 0.0, 0.24, 0.25, 1.99, 5.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        bin_counts(&xs, 4.0, -8, &mut counts);
        let mut want = vec![0u64; 16];
        for (x, bin) in [(-2.0, 0), (-1.99, 0), (-0.25, 7), (-1e-30, 7), (-0.0, 8), (0.0, 8), (0.24, 8), (0.25, 9)] {
            assert!((x as f32).is_finite());
            want[bin] += 1;
        }
        want[15] += 2; // 1.99 and 5.0 (clamped)
        assert_eq!(counts, want);
        // A negative value whose product with 2^-k underflows is still below zero.
        let mut wide = vec![0u64; 4];
        bin_counts(&[-1e-45, 1e-45], (2.0f64).powi(-100) as f32, -2, &mut wide);
        assert_eq!(wide, [0, 1, 1, 0]);
    }
}
