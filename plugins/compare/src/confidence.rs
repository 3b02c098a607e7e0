//! 95 % intervals for accuracy, agreement and the paired accuracy difference, so that
//! "B is 0.1 pt better" on 1,000 images reads as noise when it is.
//!
//! * A proportion (accuracy of one model, agreement of two): the Wilson score interval.
//! * The difference of two models' accuracies on the *same* samples is paired: only the
//!   discordant samples (one right, the other wrong) carry information. Its interval is a
//!   percentile bootstrap over samples (2,000 resamples, fixed seed, so reruns agree), and
//!   the exact McNemar test gives the p-value of "no difference" (two-sided binomial test
//!   on the discordant counts).

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided exact McNemar p-value: `b` samples only A got right, `c` only B.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X ≤ k) for X ~ Binomial(n, 1/2), in log space to stay finite for large n.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Percentile-bootstrap 95 % interval of mean(B correct) − mean(A correct) over paired
/// samples. `a_right[i]`, `b_right[i]`: whether each model got sample i right.
pub fn paired_difference_interval(a_right: &[bool], b_right: &[bool]) -> (f64, f64) {
    let n = a_right.len().min(b_right.len());
    if n == 0 {
        return (0.0, 0.0);
    }
    // Per sample: +1 only B right, −1 only A right, 0 otherwise.
    let d: Vec<i32> = (0..n).map(|i| i32::from(b_right[i]) - i32::from(a_right[i])).collect();
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const RESAMPLES: usize = 2000;
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sum: i64 = (0..n).map(|_| i64::from(d[(next() % n as u64) as usize])).sum();
            sum as f64 / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), example: 81 of 263 → 0.2553 to 0.3662.
        let (lo, hi) = wilson(81, 263);
        assert!((lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        // Newcombe's example 10 of 10 → 0.7225 to 1.
        let (lo, hi) = wilson(10, 10);
        assert!((hi - 1.0).abs() < 1e-12 && (lo - 0.7225).abs() < 5e-4, "{lo} {hi}");
    }

    #[test]
    fn mcnemar_exact_matches_the_binomial_test() {
        // b = 1, c = 9: 2 · P(X ≤ 1 | n = 10) = 2 · 11/1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite (no overflow of the binomial coefficients).
        let p = mcnemar_exact(10, 5000);
        assert!(p.is_finite() && p < 1e-100, "{p}");
        let p = mcnemar_exact(2400, 2600);
        assert!(p > 0.004 && p < 0.006, "{p}");
    }

    #[test]
    fn bootstrap_interval_covers_the_difference_and_shrinks_with_n() {
        // 1,000 samples, B right on 5 more: +0.5 pt, an interval that includes 0.
        let a: Vec<bool> = (0..1000).map(|i| i % 5 != 0).collect();
        let mut b = a.clone();
        for i in (0..50).map(|k| k * 20) {
            b[i] = true; // 50 samples only B gets right
        }
        for i in (0..45).map(|k| k * 20 + 1) {
            b[i] = false; // 45 samples only A gets right
        }
        let (lo, hi) = paired_difference_interval(&a, &b);
        let diff = (b.iter().filter(|x| **x).count() as f64 - a.iter().filter(|x| **x).count() as f64) / 1000.0;
        assert!(lo <= diff && diff <= hi, "{lo} {diff} {hi}");
        assert!(lo < 0.0 && hi > 0.0, "5 of 1,000 is noise: {lo} {hi}");
        // The same with every sample repeated 100×: the interval excludes 0.
        let a100: Vec<bool> = a.iter().flat_map(|x| std::iter::repeat_n(*x, 100)).collect();
        let b100: Vec<bool> = b.iter().flat_map(|x| std::iter::repeat_n(*x, 100)).collect();
        let (lo, hi) = paired_difference_interval(&a100, &b100);
        assert!(lo > 0.0 && hi - lo < 0.01, "{lo} {hi}");
    }
}
