//! Per-pair figures of tensors whose values are the same as in an earlier evaluation (their
//! digests, set by the probe, are equal), kept in a small process-wide cache: after an edit
//! of one Q/DQ pair, the pairs upstream of it are not measured again. Memoisation only: a
//! hit gives exactly what measuring again would.

use quantgraph_nodes::memo::Memo;
use quantgraph_nodes::value::Activations;

use crate::pairing::{Pair, Verdict};
use crate::PairSums;

/// What a pair's figures depend on: the digests of A's tensor, B's tensor, B's
/// pre-quantization tensor and A's ONNX Runtime counterpart, how the Q/DQ error is
/// corrected, the batch size and the sample count.
pub type PairKey = (u64, u64, u64, u64, bool, usize, usize);

/// The key of a pair, or `None` when a digest is unknown (never reused).
pub(crate) fn key(a: &Activations, b: &Activations, p: &Pair, batch: usize, n: usize) -> Option<PairKey> {
    let digest = |acts: &Activations, t: &str| acts.tensors.get(t).map(|x| x.digest).filter(|d| *d != 0);
    let optional = |acts: &Activations, t: &Option<String>| match t {
        None => Some(0),
        Some(t) => digest(acts, t),
    };
    Some((digest(a, &p.a)?, digest(b, &p.b)?, optional(b, &p.b_pre)?, optional(a, &p.ort_a)?, p.relu_removed, batch, n))
}

/// The cache holds at most this many bytes of per-sample figures.
const MAX_BYTES: usize = 256 << 20;

fn size(v: &(Verdict, PairSums)) -> usize {
    let s = &v.1;
    256 + s.samples.as_ref().map_or(0, |v| v.len() * 16) + s.per_sample.len() * 80
}

static CACHE: Memo<PairKey, (Verdict, PairSums)> = Memo::new(usize::MAX, MAX_BYTES, size);

pub(crate) fn get(k: &PairKey) -> Option<(Verdict, PairSums)> {
    CACHE.get(k)
}

pub(crate) fn put(k: PairKey, v: Verdict, s: PairSums) {
    CACHE.put(k, (v, s));
}

/// Forget everything (tests that compare an incremental evaluation with a fresh one).
pub fn clear() {
    CACHE.clear();
}
