//! Figures computed from tensors whose values are known to be the same as in an earlier run
//! (same digest: [`crate::info::tensor_digests`] combined with the probe's input), kept in a
//! small process-wide cache so that after an edit only what the edit reached is recomputed.
//! Everything here is memoisation: a hit returns exactly what recomputation would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use quantgraph_nodes::value::TensorStats;

/// Statistics of one captured tensor over all samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedStats {
    pub item_shape: Vec<usize>,
    pub stats: TensorStats,
    pub non_finite: u64,
}

/// At most this many tensors' statistics are kept (a few KB each).
pub const MAX_STATS: usize = 8192;

type Key = (u64, usize);

#[derive(Default)]
struct Lru {
    map: BTreeMap<Key, CachedStats>,
    order: VecDeque<Key>,
}

static STATS: Mutex<Option<Lru>> = Mutex::new(None);

/// Combine a tensor's graph digest with the digest of what the model was fed.
pub fn combine(tensor: u64, input: u64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&tensor.to_le_bytes());
    h.update(&input.to_le_bytes());
    h.digest().max(1)
}

/// Statistics computed earlier for the same values with the same batch size.
pub fn get_stats(digest: u64, batch: usize) -> Option<CachedStats> {
    if digest == 0 {
        return None;
    }
    let guard = STATS.lock().ok()?;
    guard.as_ref()?.map.get(&(digest, batch)).cloned()
}

pub fn put_stats(digest: u64, batch: usize, stats: CachedStats) {
    if digest == 0 {
        return;
    }
    let Ok(mut guard) = STATS.lock() else { return };
    let lru = guard.get_or_insert_with(Lru::default);
    if lru.map.insert((digest, batch), stats).is_none() {
        lru.order.push_back((digest, batch));
    }
    while lru.order.len() > MAX_STATS {
        if let Some(old) = lru.order.pop_front() {
            lru.map.remove(&old);
        }
    }
}

/// Forget everything (tests that compare an incremental run with a fresh one).
pub fn clear() {
    if let Ok(mut guard) = STATS.lock() {
        *guard = None;
    }
}
