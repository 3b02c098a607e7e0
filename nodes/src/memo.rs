//! A bounded, process-wide memo table: figures computed once for a content key (a digest)
//! and returned again while they fit. Memoisation only: a hit must give exactly what
//! computing again would, so keys must cover everything a value depends on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Entries in insertion order; the oldest go first once there are more than `max_entries`
/// or their sizes (by `size`) add up to more than `max_bytes`.
pub struct Memo<K, V> {
    inner: Mutex<Option<Table<K, V>>>,
    max_entries: usize,
    max_bytes: usize,
    size: fn(&V) -> usize,
}

struct Table<K, V> {
    map: BTreeMap<K, V>,
    order: VecDeque<K>,
    bytes: usize,
}

impl<K: Ord + Clone, V: Clone> Memo<K, V> {
    /// An empty table (usable in a `static`).
    pub const fn new(max_entries: usize, max_bytes: usize, size: fn(&V) -> usize) -> Self {
        Memo { inner: Mutex::new(None), max_entries, max_bytes, size }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.lock().ok()?.as_ref()?.map.get(key).cloned()
    }

    pub fn put(&self, key: K, value: V) {
        self.put_within(key, value, self.max_bytes);
    }

    /// `put`, holding at most `max_bytes` (or the table's own bound, if smaller): for a
    /// budget chosen at run time.
    pub fn put_within(&self, key: K, value: V, max_bytes: usize) {
        let max_bytes = max_bytes.min(self.max_bytes);
        let Ok(mut guard) = self.inner.lock() else { return };
        let t = guard.get_or_insert_with(|| Table { map: BTreeMap::new(), order: VecDeque::new(), bytes: 0 });
        t.bytes += (self.size)(&value);
        match t.map.insert(key.clone(), value) {
            Some(old) => t.bytes = t.bytes.saturating_sub((self.size)(&old)),
            None => t.order.push_back(key),
        }
        while t.order.len() > self.max_entries || t.bytes > max_bytes {
            let Some(oldest) = t.order.pop_front() else { break };
            if let Some(v) = t.map.remove(&oldest) {
                t.bytes = t.bytes.saturating_sub((self.size)(&v));
            }
        }
    }

    /// Forget everything.
    pub fn clear(&self) {
        if let Ok(mut guard) = self.inner.lock() {
            *guard = None;
        }
    }
}

/// One tensor's values over every sample of a pass, kept for a later pass.
#[derive(Debug, PartialEq)]
pub struct SampleValues {
    pub item_shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl SampleValues {
    /// Samples `start..end`, with the batch's shape.
    pub fn batch(&self, start: usize, end: usize) -> Option<(Vec<usize>, &[f32])> {
        let item: usize = self.item_shape.iter().product();
        let data = self.data.get(start * item..end * item)?;
        let mut shape = vec![end - start];
        shape.extend(&self.item_shape);
        Some((shape, data))
    }

    fn bytes(v: &Arc<SampleValues>) -> usize {
        v.data.len() * 4
    }
}

/// Values of whole passes by key, within a memory budget chosen at run time (0, the
/// default: nothing kept, every `get` misses). What the edit loop keeps between
/// evaluations (a probe's cut tensors, a comparator's model-A tensors); memoisation only,
/// as [`Memo`].
pub struct KeptValues<K> {
    budget: AtomicUsize,
    values: Memo<K, Arc<SampleValues>>,
}

impl<K: Ord + Clone> KeptValues<K> {
    /// An empty store holding at most `max_entries` and `max_bytes` whatever the budget.
    pub const fn new(max_entries: usize, max_bytes: usize) -> Self {
        KeptValues { budget: AtomicUsize::new(0), values: Memo::new(max_entries, max_bytes, SampleValues::bytes) }
    }

    /// Keep up to `bytes` in all; 0 forgets everything and keeps nothing more.
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
        if bytes == 0 {
            self.values.clear();
        }
    }

    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    pub fn get(&self, key: &K) -> Option<Arc<SampleValues>> {
        (self.budget() > 0).then(|| self.values.get(key)).flatten()
    }

    /// Keep `values` when they cover all `samples` and fit the budget (older ones go first).
    pub fn put(&self, key: K, samples: usize, values: SampleValues) {
        let budget = self.budget();
        let whole = values.data.len() == samples * values.item_shape.iter().product::<usize>();
        if budget > 0 && whole && values.data.len() * 4 <= budget {
            self.values.put_within(key, Arc::new(values), budget);
        }
    }

    /// Forget everything (the budget stays).
    pub fn clear(&self) {
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn oldest_entries_go_first_by_count_and_by_size() {
        static M: Memo<u32, Vec<u8>> = Memo::new(3, 10, |v| v.len());
        for k in 0..4 {
            M.put(k, vec![0; 2]);
        }
        assert_eq!(M.get(&0), None);
        assert_eq!(M.get(&3), Some(vec![0; 2]));
        // 6 bytes held; 8 more: the oldest go until 10 bytes or fewer remain.
        M.put(9, vec![0; 8]);
        assert_eq!(
            (M.get(&1), M.get(&2), M.get(&3).is_some(), M.get(&9).map(|v| v.len())),
            (None, None, true, Some(8))
        );
        M.clear();
        assert_eq!(M.get(&9), None);
    }
}
