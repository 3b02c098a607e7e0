//! Results by key, bounded by a memory budget, evicted least-recently-used first.

use super::*;

pub(super) struct CacheEntry {
    pub(super) outputs: Arc<Outputs>,
    pub(super) size_bytes: usize,
    pub(super) last_used: u64,
}

/// Results by key, bounded by a memory budget, evicted least-recently-used first.
pub(super) struct Cache {
    pub(super) entries: HashMap<Key, CacheEntry>,
    pub(super) total_bytes: usize,
    pub(super) budget_bytes: usize,
    pub(super) tick: u64,
    pub(super) pinned: HashSet<Key>,
}

impl Cache {
    pub(super) fn get(&mut self, key: Key) -> Option<Arc<Outputs>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(&key)?;
        e.last_used = tick;
        // A value whose pending pass someone ran is kept (and counted) finished from now on.
        let settled = super::settled(&e.outputs);
        if !Arc::ptr_eq(&settled, &e.outputs) {
            let size_bytes = size_of(&settled);
            self.total_bytes = self.total_bytes - e.size_bytes + size_bytes;
            e.size_bytes = size_bytes;
            e.outputs = settled.clone();
        }
        Some(settled)
    }

    pub(super) fn insert(&mut self, key: Key, outputs: Arc<Outputs>) {
        let size_bytes = size_of(&outputs);
        self.tick += 1;
        if let Some(old) = self.entries.insert(key, CacheEntry { outputs, size_bytes, last_used: self.tick }) {
            self.total_bytes -= old.size_bytes;
        }
        self.total_bytes += size_bytes;
        while self.total_bytes > self.budget_bytes {
            let victim = self
                .entries
                .iter()
                .filter(|(k, _)| !self.pinned.contains(k))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            if let Some(e) = self.entries.remove(&victim) {
                self.total_bytes -= e.size_bytes;
            }
        }
    }
}

fn size_of(outputs: &Outputs) -> usize {
    outputs.values().map(|v| v.size_bytes()).sum::<usize>() + 64
}
