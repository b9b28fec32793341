//! Seeded random weights for any ModelSpec, and a writer that turns any canonical weights into a Hugging
//! Face model directory (so transformers can run exactly the weights an engine was built from).
//!
//! Initialisation follows transformers' `_init_weights` in spirit: every matrix (embeddings, projections,
//! `lm_head`) is drawn from an approximately normal distribution of mean 0 and standard deviation 0.02
//! (`initializer_range`), norm gains are 1, norm and linear biases 0. Each normal draw is the sum of four
//! 16-bit uniforms (Irwin–Hall of order 4, rescaled to unit variance): one 64-bit draw of a ChaCha8
//! stream per element. Matrices are stored as bf16: the drawn value *is* the bf16 value, so every engine
//! precision (FP32, FP16, BF16) and transformers see identical weights, and an 8B model needs 16 GB
//! rather than 32. Tensors are split into fixed chunks, each with its own ChaCha stream, and filled in
//! parallel — the bytes depend on the seed, the tensor name and the chunk index only, never on threads.

use super::{HostTensor, TensorData, WeightMap, WeightsError, expected_tensors};
use crate::spec::ModelSpec;
use half::bf16;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// Standard deviation of every matrix (transformers' default `initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// Elements per independently seeded chunk.
const CHUNK: usize = 1 << 16;

/// Deterministic weights for `spec` from `seed` (canonical names; same seed, same bytes).
/// A model too large for this machine's memory is an error naming the tensor, not an allocation abort.
pub fn generate(spec: &ModelSpec, seed: u64) -> Result<WeightMap, WeightsError> {
    let mut map = WeightMap::default();
    for (name, shape) in expected_tensors(spec) {
        if name == "lm_head.weight" && spec.tie_word_embeddings {
            // `weights::finish` fills a tied head from the embedding.
            continue;
        }
        let n: usize = shape.iter().product();
        let data = if shape.len() == 2 {
            let mut v = filled(&name, n, bf16::ZERO)?;
            fill_normal_bf16(&mut v, stream_key(seed, &name));
            TensorData::BF16(v)
        } else if is_norm_gain(&name) {
            TensorData::F32(filled(&name, n, 1.0)?)
        } else {
            TensorData::F32(filled(&name, n, 0.0)?)
        };
        map.tensors.insert(name, HostTensor { shape, data });
    }
    Ok(map)
}

/// `n` copies of `value`, or an error when the memory cannot be had.
fn filled<T: Copy>(name: &str, n: usize, value: T) -> Result<Vec<T>, WeightsError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        WeightsError::Other(format!(
            "synthetic weights: cannot allocate {n} elements of {} bytes for tensor {name} \
             (the model is too large for this machine's memory)",
            std::mem::size_of::<T>()
        ))
    })?;
    v.resize(n, value);
    Ok(v)
}

/// `…norm.weight`: a LayerNorm / RMSNorm gain (every other 1-D tensor is a bias).
fn is_norm_gain(name: &str) -> bool {
    name.ends_with("norm.weight")
}

/// A 64-bit key for one tensor's streams: splitmix64 over the seed and an FNV-1a hash of the name.
fn stream_key(seed: u64, name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h.rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `out` with draws of ~N(0, INIT_STD²), rounded to bf16.
fn fill_normal_bf16(out: &mut [bf16], key: u64) {
    // Sum of four U[0,1) has mean 2 and variance 4/12; rescale to the target deviation.
    let scale = INIT_STD * 3f32.sqrt() / 65536.0;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut rng = ChaCha8Rng::seed_from_u64(key);
            rng.set_stream(i as u64);
            for x in chunk.iter_mut() {
                let r = rng.next_u64();
                let sum = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
                *x = bf16::from_f32((sum as f32 - 2.0 * 65536.0) * scale);
            }
        });
}

/// Write `weights` as a HF-format directory (`config.json` + `model.safetensors` in HF names) that
/// transformers loads, so a PyPI baseline runs on exactly the same weights.
///
/// `config_json` is copied as is (it must describe `spec`); tensors are written in their stored dtype
/// under transformers' names (GPT-2 in its Conv1D `[in, out]` layout with `c_attn` fused; a tied
/// `lm_head` left out, as `save_pretrained` does).
pub fn write_hf_dir(
    spec: &ModelSpec,
    config_json: &Path,
    weights: &WeightMap,
    dir: &Path,
) -> Result<(), WeightsError> {
    let parsed = crate::config::load_config_file(&spec.name, config_json)
        .map_err(|e| WeightsError::Other(format!("{}: {e}", config_json.display())))?;
    if parsed.config_hash != spec.config_hash {
        return Err(WeightsError::Other(format!(
            "{} is not the config.json model {} was built from (config hash differs)",
            config_json.display(),
            spec.name
        )));
    }
    let tensors = super::names::canonical_to_hf(spec, weights)?;
    std::fs::create_dir_all(dir).map_err(|e| WeightsError::io(dir, e))?;
    let config_out = dir.join("config.json");
    std::fs::copy(config_json, &config_out).map_err(|e| WeightsError::io(&config_out, e))?;
    super::safetensors::write_file(&dir.join("model.safetensors"), &tensors)
}

#[cfg(test)]
mod tests;
