//! Bookkeeping of the decode CUDA graphs: one graph per batch size (and cache mode, and whether it
//! ends in the device argmax), valid only for the device addresses it was captured with: the scratch
//! (its capacity identifies it) and the KV cache tensors. A graph whose addresses changed is replaced.

use super::memory::Addr;
use crate::step::CacheMode;

/// Everything a captured decode graph depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphKey {
    pub batch: usize,
    pub mode: CacheMode,
    pub argmax: bool,
    /// Capacity (rows) of the scratch the graph's launches address.
    pub scratch_rows: usize,
    /// `(key, value)` device addresses of every layer's cache.
    pub cache: Vec<(Addr, Addr)>,
}

impl GraphKey {
    /// Graphs that answer the same kind of step (replaced rather than accumulated).
    fn slot(&self) -> (usize, CacheMode, bool) {
        (self.batch, self.mode, self.argmax)
    }
}

/// Captured graphs `G` by key; generic so the bookkeeping is tested without a GPU.
pub struct GraphCache<G> {
    entries: Vec<(GraphKey, G)>,
}

impl<G> Default for GraphCache<G> {
    fn default() -> Self {
        GraphCache {
            entries: Vec::new(),
        }
    }
}

impl<G> GraphCache<G> {
    /// The graph captured for exactly `key`.
    pub fn get(&self, key: &GraphKey) -> Option<&G> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, g)| g)
    }

    /// Store `graph` for `key`, dropping a stale graph of the same slot.
    pub fn insert(&mut self, key: GraphKey, graph: G) {
        self.entries.retain(|(k, _)| k.slot() != key.slot());
        self.entries.push((key, graph));
    }

    /// Drop every graph (the scratch they address is being replaced).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(batch: usize, cache: usize) -> GraphKey {
        GraphKey {
            batch,
            mode: CacheMode::StaticV1,
            argmax: true,
            scratch_rows: 16,
            cache: vec![(Addr::fake(cache), Addr::fake(cache + 8))],
        }
    }

    #[test]
    fn one_graph_per_batch_size_replaced_when_addresses_change() {
        let mut c = GraphCache::default();
        c.insert(key(1, 100), "b1");
        c.insert(key(2, 100), "b2");
        assert_eq!(c.get(&key(1, 100)), Some(&"b1"));
        assert_eq!(c.get(&key(2, 100)), Some(&"b2"));
        // Another cache object for batch 1: the old graph must not be replayed.
        assert_eq!(c.get(&key(1, 200)), None);
        c.insert(key(1, 200), "b1'");
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(1, 100)), None);
        assert_eq!(c.get(&key(1, 200)), Some(&"b1'"));
        let mut other_mode = key(1, 200);
        other_mode.mode = CacheMode::StaticV2;
        assert_eq!(c.get(&other_mode), None);
        c.clear();
        assert!(c.is_empty());
    }
}
