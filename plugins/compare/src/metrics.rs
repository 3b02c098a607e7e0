//! Streaming error metrics between a reference `x` and a compared `y`.
//!
//! Definitions (shared/QDQ.md): `SQNR_dB = 20·log10(‖x‖₂ / ‖x − y‖₂)` with both norms
//! clamped to float64 epsilon as ONNX Runtime's `qdq_loss_debug` does (so an exact match
//! gives a large finite number), `MSE = mean((x − y)²)`, `MAE = mean(|x − y|)`,
//! `max_abs = max |x − y|`, `cosine = x·y / (‖x‖‖y‖)`. Sums are kept in f64 (blocks of f32
//! lanes summed into them, see [`quantgraph_nodes::kernels`]) and can be fed
//! batch by batch, so memory does not grow with the number of samples.

use quantgraph_nodes::kernels;

/// Running sums for the metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorStats {
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub sum_x2: f64,
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub sum_y2: f64,
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub sum_d2: f64,
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub sum_abs: f64,
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub dot: f64,
    #[serde(with = "quantgraph_nodes::jsonf64")]
    pub max_abs: f64,
    pub count: usize,
}

impl ErrorStats {
    /// Add a batch (same length slices; the longer one's tail is left out), in vectorised
    /// `f32` lanes summed into `f64` block by block ([`kernels::pair_sums`]).
    pub fn add(&mut self, x: &[f32], y: &[f32]) {
        self.add_sums(kernels::pair_sums(x, y, false), x.len().min(y.len()));
    }

    /// [`ErrorStats::add`] with `max(x, 0)` for `x`: a quantizer's input against its output
    /// where the quantizer took over a Relu.
    pub fn add_relu_x(&mut self, x: &[f32], y: &[f32]) {
        self.add_sums(kernels::pair_sums(x, y, true), x.len().min(y.len()));
    }

    fn add_sums(&mut self, s: kernels::PairSums, n: usize) {
        self.sum_x2 += s.x2;
        self.sum_y2 += s.y2;
        self.sum_d2 += s.d2;
        self.sum_abs += s.abs;
        self.dot += s.dot;
        self.max_abs = self.max_abs.max(s.max_abs);
        self.count += n;
    }

    /// Add another part's sums (the same pair over other samples).
    pub fn merge(&mut self, o: &ErrorStats) {
        self.sum_x2 += o.sum_x2;
        self.sum_y2 += o.sum_y2;
        self.sum_d2 += o.sum_d2;
        self.sum_abs += o.sum_abs;
        self.dot += o.dot;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.count += o.count;
    }

    pub fn sqnr_db(&self) -> f64 {
        let eps = f64::EPSILON;
        20.0 * (self.sum_x2.sqrt().max(eps) / self.sum_d2.sqrt().max(eps)).log10()
    }

    pub fn mse(&self) -> f64 {
        self.sum_d2 / self.count.max(1) as f64
    }

    pub fn mae(&self) -> f64 {
        self.sum_abs / self.count.max(1) as f64
    }

    pub fn cosine(&self) -> f64 {
        let denom = self.sum_x2.sqrt() * self.sum_y2.sqrt();
        if denom == 0.0 {
            if self.sum_x2 == self.sum_y2 {
                1.0
            } else {
                0.0
            }
        } else {
            self.dot / denom
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    /// Sums that overflowed (a model whose activations blow up) survive the JSON a shard
    /// writes, so `quantgraph merge` can read them back.
    #[test]
    fn non_finite_sums_survive_json() {
        let mut e = ErrorStats::default();
        e.add(&[f32::MAX, 1.0], &[-f32::MAX, f32::NAN]);
        assert!(e.sum_d2.is_infinite() || e.sum_d2.is_nan());
        let back: ErrorStats = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        // Finite values to serde_json's parsing precision (it may be an ulp off), the others exactly.
        for (a, b) in [(e.sum_x2, back.sum_x2), (e.sum_d2, back.sum_d2), (e.max_abs, back.max_abs), (e.dot, back.dot)] {
            let same =
                if a.is_finite() { (a - b).abs() <= 1e-15 * a.abs() } else { a == b || (a.is_nan() && b.is_nan()) };
            assert!(same, "{a} vs {b}");
        }
        assert_eq!(back.count, e.count);
    }
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        let x = [1.0f32, -2.0, 3.0, 0.5];
        let y = [1.5f32, -2.0, 2.0, 0.0];
        let mut e = ErrorStats::default();
        e.add(&x[..2], &y[..2]);
        e.add(&x[2..], &y[2..]);
        // ‖x‖² = 1 + 4 + 9 + .25 = 14.25; ‖x−y‖² = .25 + 0 + 1 + .25 = 1.5
        assert!((e.sqnr_db() - 10.0 * (14.25f64 / 1.5).log10()).abs() < 1e-12);
        assert!((e.mse() - 1.5 / 4.0).abs() < 1e-12);
        assert!((e.mae() - 2.0 / 4.0).abs() < 1e-12);
        assert_eq!(e.max_abs, 1.0);
        let dot = 1.5 + 4.0 + 6.0;
        let ny = (2.25f64 + 4.0 + 4.0).sqrt();
        assert!((e.cosine() - dot / (14.25f64.sqrt() * ny)).abs() < 1e-12);
    }

    #[test]
    fn identical_tensors_give_a_large_finite_sqnr() {
        let mut e = ErrorStats::default();
        e.add(&[1.0, 2.0], &[1.0, 2.0]);
        assert!(e.sqnr_db().is_finite() && e.sqnr_db() > 300.0);
        assert!((e.cosine() - 1.0).abs() < 1e-12);
    }
}
