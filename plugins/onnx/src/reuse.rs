//! Figures computed from tensors whose values are known to be the same as in an earlier run
//! (same digest: [`crate::info::tensor_digests`] combined with the probe's input), kept in a
//! small process-wide memo so that after an edit only what the edit reached is recomputed.
//! Everything here is memoisation: a hit returns exactly what recomputation would.

use quantgraph_nodes::memo::Memo;
use quantgraph_nodes::value::TensorStats;

/// Statistics of one captured tensor over all samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedStats {
    pub item_shape: Vec<usize>,
    pub stats: TensorStats,
}

/// At most this many tensors' statistics are kept (a few KB each).
pub const MAX_STATS: usize = 8192;

static STATS: Memo<(u64, usize), CachedStats> = Memo::new(MAX_STATS, usize::MAX, |_| 0);

/// Combine a tensor's graph digest with the digest of what the model was fed.
pub fn combine(tensor: u64, input: u64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&tensor.to_le_bytes());
    h.update(&input.to_le_bytes());
    h.digest().max(1)
}

/// Statistics computed earlier for the same values with the same batch size.
pub fn get_stats(digest: u64, batch: usize) -> Option<CachedStats> {
    (digest != 0).then(|| STATS.get(&(digest, batch))).flatten()
}

pub fn put_stats(digest: u64, batch: usize, stats: CachedStats) {
    if digest != 0 {
        STATS.put((digest, batch), stats);
    }
}

/// Forget everything (tests that compare an incremental run with a fresh one).
pub fn clear() {
    STATS.clear();
}
