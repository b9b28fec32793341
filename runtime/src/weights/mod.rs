//! Weights: loading from HF safetensors (single or sharded), GGUF, or seeded synthetic generation, into a
//! [`WeightMap`] keyed by llmforge's *canonical* tensor names (independent of the source's naming):
//!
//! | canonical name | shape | notes |
//! |---|---|---|
//! | `embed.weight` | `[vocab, hidden]` | token embedding |
//! | `pos_embed.weight` | `[max_positions, hidden]` | learned positions (GPT-2 only) |
//! | `layers.{i}.attn_norm.weight` / `.bias` | `[hidden]` | bias only for LayerNorm |
//! | `layers.{i}.q.weight` / `k` / `v` | `[out, hidden]` | nn.Linear layout `[out_features, in_features]` |
//! | `layers.{i}.q.bias` / `k` / `v` | `[out]` | when `spec.qkv_bias` |
//! | `layers.{i}.o.weight` (`.bias`) | `[hidden, q_dim]` | bias when `spec.o_bias` |
//! | `layers.{i}.mlp_norm.weight` / `.bias` | `[hidden]` | |
//! | `layers.{i}.gate.weight`, `up.weight` | `[intermediate, hidden]` | SwiGLU |
//! | `layers.{i}.down.weight` | `[hidden, intermediate]` | SwiGLU |
//! | `layers.{i}.fc.weight` (`.bias`) | `[intermediate, hidden]` | GELU MLP (GPT-2) |
//! | `layers.{i}.proj.weight` (`.bias`) | `[hidden, intermediate]` | GELU MLP (GPT-2) |
//! | `final_norm.weight` / `.bias` | `[hidden]` | |
//! | `lm_head.weight` | `[vocab, hidden]` | always present: a tied model gets a copy of `embed.weight` |
//!
//! GPT-2's Conv1D `[in, out]` weights are transposed and its fused `c_attn` split into q, k, v; GGUF's
//! Q/K rotary permutation is undone, so every source yields the same canonical tensors.

use half::{bf16, f16};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where an engine's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// A Hugging Face snapshot directory (`model.safetensors` or `model.safetensors.index.json` + shards).
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
    /// Seeded random weights, for benchmarking models whose weights we do not have.
    Synthetic { seed: u64 },
}

/// Element data of a host tensor, in the dtype it was stored or dequantised to.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl HostTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f32 (copying unless already f32).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }
}

/// Canonical name → tensor.
#[derive(Debug, Clone, Default)]
pub struct WeightMap {
    pub tensors: BTreeMap<String, HostTensor>,
}

impl WeightMap {
    /// The tensor `name` with exactly `shape`, or an error naming the tensor and both shapes.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&HostTensor, WeightsError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| WeightsError::Missing {
                name: name.to_string(),
            })?;
        if t.shape != shape {
            return Err(WeightsError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(t)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("tensor {name} is missing from the weights")]
    Missing { name: String },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{0}")]
    Other(String),
}
