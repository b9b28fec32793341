//! The static KV cache: GQA-native tensors `[batch, num_kv_heads, max_seq_len, head_dim]`, allocated
//! once at `max_seq_len` and never reallocated. Bounds are checked in one place (`check_step`).

use std::any::Any;

/// Where a cache tensor's elements live.
pub enum KvStorage {
    /// Host memory, f32 (the CPU backend computes and stores the cache in f32).
    Host(Vec<f32>),
    /// Device memory owned by a GPU backend; it downcasts to its own buffer type.
    Device(Box<dyn Any + Send>),
}

impl std::fmt::Debug for KvStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvStorage::Host(v) => write!(f, "Host({} f32)", v.len()),
            KvStorage::Device(_) => f.write_str("Device(..)"),
        }
    }
}

/// One key or value cache tensor of one layer.
#[derive(Debug)]
pub struct KvTensor {
    pub shape: [usize; 4],
    pub storage: KvStorage,
}

impl KvTensor {
    pub fn batch(&self) -> usize {
        self.shape[0]
    }
    pub fn max_seq_len(&self) -> usize {
        self.shape[2]
    }
}

/// Mutable view of one layer's key and value cache, as the backend receives it.
pub struct LayerKvMut<'a> {
    pub key: &'a mut KvTensor,
    pub value: &'a mut KvTensor,
}

/// An untyped cache: one (key, value) pair per layer. The generated crates hold the same tensors as
/// named fields (`key_cache_0`, `value_cache_0`, …) and lend them to the engine as `LayerKvMut`s.
#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<(KvTensor, KvTensor)>,
}

impl KvCache {
    pub fn layers_mut(&mut self) -> Vec<LayerKvMut<'_>> {
        self.layers
            .iter_mut()
            .map(|(key, value)| LayerKvMut { key, value })
            .collect()
    }
}
