//! The static KV cache: GQA-native tensors `[batch, num_kv_heads, max_seq_len, head_dim]`, allocated
//! once at `max_seq_len` and never reallocated. Bounds are checked in one place (`check_step`).

use crate::options::BuildOptions;
use crate::spec::ModelSpec;
use crate::step::{CacheMode, StepInputs};
use crate::{Error, Result};
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
    /// The end of the positions the last cache-writing step wrote (0 for a new cache). A ring (a
    /// sliding-window layer's cache shorter than `max_seq_len`) holds only the last positions
    /// written, so a step may start at 0 or where the last one ended (or one before it), not earlier.
    pub written: usize,
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

/// Every bound of one engine call, checked before any backend runs (`Engine::forward` and
/// `Engine::next_tokens` call this and nothing else does its job):
/// shapes of ids/positions, `end_idx - start_idx == seq_len`, `end_idx <= max_seq_len`,
/// `batch <= cache batch <= max_batch`, token ids `< vocab`, positions `< max_seq_len`, mode `none`
/// only from `start_idx == 0`, and every cache tensor shaped `[cache_batch, kv_heads, max_seq_len,
/// head_dim]` for its layer.
pub fn check_step(
    spec: &ModelSpec,
    options: &BuildOptions,
    step: &StepInputs<'_>,
    cache: &[LayerKvMut<'_>],
    mode: CacheMode,
) -> Result<()> {
    let bad = |msg: String| Err(Error::invalid(msg));
    let n = step.batch.checked_mul(step.seq_len);
    if step.batch == 0 || step.seq_len == 0 {
        return bad(format!(
            "empty step: batch {} x seq_len {}",
            step.batch, step.seq_len
        ));
    }
    if n != Some(step.input_ids.len()) || n != Some(step.position_ids.len()) {
        return bad(format!(
            "input_ids has {} and position_ids {} elements, batch {} x seq_len {} needs {}",
            step.input_ids.len(),
            step.position_ids.len(),
            step.batch,
            step.seq_len,
            n.map_or("an overflowing number of".to_string(), |n| n.to_string())
        ));
    }
    if step.end_idx.checked_sub(step.start_idx) != Some(step.seq_len) {
        return bad(format!(
            "end_idx {} - start_idx {} must equal seq_len {}",
            step.end_idx, step.start_idx, step.seq_len
        ));
    }
    if step.end_idx > options.max_seq_len {
        return bad(format!(
            "end_idx {} exceeds the static cache length max_seq_len = {}",
            step.end_idx, options.max_seq_len
        ));
    }
    if step.batch > options.max_batch {
        return bad(format!(
            "batch {} exceeds max_batch {} this engine was built for",
            step.batch, options.max_batch
        ));
    }
    if let Some((i, id)) = step
        .input_ids
        .iter()
        .enumerate()
        .find(|&(_, &id)| id as usize >= spec.vocab_size)
    {
        return bad(format!(
            "token id {id} at index {i} is outside the vocabulary of {}",
            spec.vocab_size
        ));
    }
    if let Some((i, p)) = step
        .position_ids
        .iter()
        .enumerate()
        .find(|&(_, &p)| p as usize >= options.max_seq_len)
    {
        return bad(format!(
            "position id {p} at index {i} is not below max_seq_len {}",
            options.max_seq_len
        ));
    }
    if mode == CacheMode::None {
        if step.start_idx != 0 {
            return bad(format!(
                "cache mode none recomputes the whole sequence: start_idx must be 0, got {}",
                step.start_idx
            ));
        }
        if cache.is_empty() {
            return Ok(());
        }
    }
    if cache.len() != spec.num_layers {
        return bad(format!(
            "cache has {} layers, the model has {}",
            cache.len(),
            spec.num_layers
        ));
    }
    let cache_batch = cache[0].key.batch();
    if cache_batch < step.batch || cache_batch > options.max_batch {
        return bad(format!(
            "cache batch {cache_batch} must be between the step batch {} and max_batch {}",
            step.batch, options.max_batch
        ));
    }
    for (l, layer) in cache.iter().enumerate() {
        let want = spec.kv_shape(l, cache_batch, options.max_seq_len);
        for (what, t) in [("key", &*layer.key), ("value", &*layer.value)] {
            if t.shape != want {
                return bad(format!(
                    "{what}_cache_{l} has shape {:?}, expected {want:?}",
                    t.shape
                ));
            }
            let ring = t.shape[2] < options.max_seq_len;
            let (start, written) = (step.start_idx, t.written);
            let follows = start == 0 || (written >= start && written <= start + 1);
            if ring && mode != CacheMode::None && !follows {
                return bad(format!(
                    "{what}_cache_{l} keeps only the last {} positions (a sliding-window layer), \
                     written up to {written}: a step must start at 0 or at {written}, not at \
                     {start}",
                    t.shape[2]
                ));
            }
        }
    }
    Ok(())
}

/// After a step that wrote the cache: every tensor's written end is the step's end.
pub fn mark_written(step: &StepInputs<'_>, cache: &mut [LayerKvMut<'_>], mode: CacheMode) {
    if mode == CacheMode::None {
        return;
    }
    for layer in cache {
        layer.key.written = step.end_idx;
        layer.value.written = step.end_idx;
    }
}
