//! Model A's paired tensors over every sample, kept from an earlier pass within a memory
//! budget and keyed by their digests (see `ProbedTensor::digest`): after an edit of model B
//! (a Q/DQ scale of the INT8 model), the pairs the edit reached need A's tensors again, and
//! the ones kept here are read back instead of running A. A is the reference side (FP32) in
//! every shipped graph; an edit of A changes its digests and simply finds nothing here.
//!
//! The budget is 0 by default (a one-shot run gains nothing from it); the editor and
//! `quantgraph run --then` turn it on with the cut values' (`quantgraph_app::keep_cuts`).
//! Memoisation only: a value read back is exactly what the stream gave when it was kept.

use std::sync::Arc;

use quantgraph_nodes::memo::KeptValues;

/// One tensor's values over all samples.
pub type Values = quantgraph_nodes::memo::SampleValues;

/// Keyed by (digest, samples, batch size: ONNX Runtime may pick other kernels, and so round
/// otherwise, for another batch shape); at most 4 GiB whatever the budget.
static VALUES: KeptValues<(u64, usize, usize)> = KeptValues::new(256, 4 << 30);

/// Keep up to this many bytes of A's tensors in all (0: none kept, A runs again).
pub fn set_budget(bytes: usize) {
    VALUES.set_budget(bytes);
}

pub fn budget() -> usize {
    VALUES.budget()
}

pub fn get(digest: u64, samples: usize, batch: usize) -> Option<Arc<Values>> {
    (digest != 0).then(|| VALUES.get(&(digest, samples, batch))).flatten()
}

pub fn put(digest: u64, samples: usize, batch: usize, values: Values) {
    if digest != 0 {
        VALUES.put((digest, samples, batch), samples, values);
    }
}

/// Which of `sizes` (bytes each, in pair order) to keep within the budget: the latest first
/// (the tensors late edits reach, and the smallest in a network that narrows), skipping any
/// that do not fit.
pub fn choose(sizes: &[usize]) -> Vec<bool> {
    let mut room = budget();
    let mut keep = vec![false; sizes.len()];
    for (k, size) in sizes.iter().enumerate().rev() {
        if *size > 0 && *size <= room {
            room -= size;
            keep[k] = true;
        }
    }
    keep
}

/// Forget everything (tests that compare an incremental evaluation with a fresh one).
pub fn clear() {
    VALUES.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_without_a_budget_and_the_latest_fit_first() {
        let _guard = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set_budget(0);
        put(7, 2, 16, Values { item_shape: vec![3], data: vec![1.0; 6] });
        assert!(get(7, 2, 16).is_none());
        assert_eq!(choose(&[10, 10]), [false, false]);
        set_budget(100);
        put(7, 2, 16, Values { item_shape: vec![3], data: vec![1.0; 6] });
        assert_eq!(get(7, 2, 16).unwrap().batch(1, 2), Some((vec![1, 3], &[1.0; 3][..])));
        assert!(get(7, 3, 16).is_none(), "another sample count is another key");
        assert!(get(7, 2, 8).is_none(), "another batch size is another key");
        // Not all samples: never kept.
        put(8, 3, 16, Values { item_shape: vec![3], data: vec![1.0; 6] });
        assert!(get(8, 3, 16).is_none());
        // Latest first; one that does not fit is skipped, an earlier smaller one still fits.
        assert_eq!(choose(&[30, 20, 90, 60]), [false, true, false, true]);
        set_budget(0);
        assert!(get(7, 2, 16).is_none(), "turning the budget off forgets everything");
    }

    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
}
