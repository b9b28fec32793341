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
//! | `layers.{i}.q_norm.weight`, `k_norm.weight` | `[head_dim]` | per-head q/k norms, when `spec.qk_norm` (Qwen3) |
//! | `layers.{i}.o.weight` (`.bias`) | `[hidden, q_dim]` | bias when `spec.o_bias` |
//! | `layers.{i}.mlp_norm.weight` / `.bias` | `[hidden]` | |
//! | `layers.{i}.gate.weight`, `up.weight` (`.bias`) | `[intermediate, hidden]` | SwiGLU; biases when `spec.mlp_bias` |
//! | `layers.{i}.down.weight` (`.bias`) | `[hidden, intermediate]` | SwiGLU |
//! | `layers.{i}.fc.weight` (`.bias`) | `[intermediate, hidden]` | GELU MLP (GPT-2) |
//! | `layers.{i}.proj.weight` (`.bias`) | `[hidden, intermediate]` | GELU MLP (GPT-2) |
//! | `final_norm.weight` / `.bias` | `[hidden]` | |
//! | `lm_head.weight` | `[vocab, hidden]` | always present: a tied model gets a copy of `embed.weight` |
//!
//! GPT-2's Conv1D `[in, out]` weights are transposed and its fused `c_attn` split into q, k, v; GGUF's
//! Q/K rotary permutation is undone, so every source yields the same canonical tensors. Which of them a
//! model reads is its layer plan's list (`crate::plan::ModelPlan::tensors`).

pub mod gguf;
pub mod names;
pub mod quantize;
pub mod safetensors;
pub mod synthetic;

use crate::format::{BlockType, QuantFormat, WeightQuant};
use crate::spec::ModelSpec;
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Load the weights of `spec` from `source` into canonical names, checking that every tensor the spec
/// needs is present with the right shape (and nothing the spec does not use), and filling a tied
/// `lm_head.weight` from `embed.weight`.
pub fn load(spec: &ModelSpec, source: &WeightSource) -> Result<WeightMap, WeightsError> {
    load_as(spec, source, QuantFormat::None)
}

/// [`load`], keeping a GGUF file's block-quantized matrices as their blocks when `quant` is
/// [`QuantFormat::Gguf`] (other sources have none).
pub fn load_as(
    spec: &ModelSpec,
    source: &WeightSource,
    quant: QuantFormat,
) -> Result<WeightMap, WeightsError> {
    let map = match source {
        WeightSource::HfDir(dir) => {
            let set = safetensors::SafetensorsSet::open_dir(dir)?;
            names::hf_to_canonical(spec, set.names(), &|n| set.tensor(n))?
        }
        WeightSource::Gguf(path) => {
            let file = gguf::GgufFile::open(path)?;
            match quant {
                QuantFormat::Gguf => file.canonical_blocks(spec)?,
                // Quantized at build from the dequantised values (`model::linear`).
                QuantFormat::None | QuantFormat::Int8 | QuantFormat::Int4 | QuantFormat::Fp8 => {
                    file.canonical_weights(spec)?
                }
            }
        }
        WeightSource::Synthetic { seed } => synthetic::generate(spec, *seed)?,
    };
    finish(spec, map)
}

/// Fill a tied `lm_head`, then check names and shapes against [`expected_tensors`].
pub fn finish(spec: &ModelSpec, mut map: WeightMap) -> Result<WeightMap, WeightsError> {
    if spec.tie_word_embeddings
        && !map.tensors.contains_key("lm_head.weight")
        && let Some(e) = map.tensors.get("embed.weight")
    {
        let e = e.clone();
        map.tensors.insert("lm_head.weight".to_string(), e);
    }
    let expected = expected_tensors(spec);
    for (name, shape) in &expected {
        map.get(name, shape)?;
    }
    if let Some(extra) = map
        .tensors
        .keys()
        .find(|k| !expected.iter().any(|(n, _)| n == *k))
    {
        return Err(WeightsError::Other(format!(
            "tensor {extra} is in the weights but the model config ({}) does not use it",
            spec.name
        )));
    }
    Ok(map)
}

/// Every canonical tensor `spec` needs, with its shape, in a stable order: the layer plan's list
/// (`crate::plan::ModelPlan::tensors`).
pub fn expected_tensors(spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
    crate::plan::ModelPlan::new(spec).tensors()
}

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
    /// GGML blocks as the GGUF file holds them, each row of a 2-D tensor a whole number of blocks.
    Blocks {
        ty: BlockType,
        bytes: Vec<u8>,
    },
    /// A 2-D tensor quantized at build (`--quant_format int8|int4|fp8`): its codes, then its scales,
    /// as `crate::format` lays them out.
    Quantized {
        quant: WeightQuant,
        bytes: Vec<u8>,
    },
}

/// The elements of `bytes`, blocks of `ty`, as f32: exactly the GGUF loader's dequantisation.
pub fn dequantize_blocks(ty: BlockType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / ty.block_bytes() * ty.block_elems()];
    dequantize_blocks_into(ty, bytes, &mut out);
    out
}

/// [`dequantize_blocks`] into `dst`, allocating nothing.
pub fn dequantize_blocks_into(ty: BlockType, bytes: &[u8], dst: &mut [f32]) {
    // Every block type the format axis names is one the GGUF reader dequantises (a test in
    // `gguf_blocks.rs` multiplies each).
    if let Ok(t) = gguf::GgmlType::from_id(ty.ggml_id()) {
        gguf::dequant::dequantize_into(t, bytes, dst);
    }
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

    /// A 2-D tensor `[r, c]` transposed to `[c, r]` (GPT-2's Conv1D layout to nn.Linear's).
    pub fn transpose2d(&self) -> Result<HostTensor, WeightsError> {
        let [r, c] = self.shape[..] else {
            return Err(WeightsError::Other(format!(
                "cannot transpose a tensor of shape {:?}: not 2-D",
                self.shape
            )));
        };
        fn tr<T: Copy>(v: &[T], r: usize, c: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(v.len());
            for j in 0..c {
                out.extend((0..r).map(|i| v[i * c + j]));
            }
            out
        }
        let data = match &self.data {
            TensorData::F32(v) => TensorData::F32(tr(v, r, c)),
            TensorData::F16(v) => TensorData::F16(tr(v, r, c)),
            TensorData::BF16(v) => TensorData::BF16(tr(v, r, c)),
            TensorData::Blocks { ty, .. } => {
                return Err(WeightsError::Other(format!(
                    "cannot transpose a tensor stored as {} blocks",
                    ty.name()
                )));
            }
            TensorData::Quantized { quant, .. } => {
                return Err(WeightsError::Other(format!(
                    "cannot transpose a tensor quantized as {}",
                    quant.name()
                )));
            }
        };
        Ok(HostTensor {
            shape: vec![c, r],
            data,
        })
    }

    /// Rows `start..end` along the first dimension.
    pub fn rows(&self, start: usize, end: usize) -> Result<HostTensor, WeightsError> {
        let Some((&n0, rest)) = self.shape.split_first() else {
            return Err(WeightsError::Other("cannot take rows of a scalar".into()));
        };
        let inner: usize = rest.iter().product();
        if start > end || end > n0 {
            return Err(WeightsError::Other(format!(
                "rows {start}..{end} out of range for shape {:?}",
                self.shape
            )));
        }
        let (a, b) = (start * inner, end * inner);
        let data = match &self.data {
            TensorData::F32(v) => TensorData::F32(v[a..b].to_vec()),
            TensorData::F16(v) => TensorData::F16(v[a..b].to_vec()),
            TensorData::BF16(v) => TensorData::BF16(v[a..b].to_vec()),
            TensorData::Blocks { ty, bytes } => {
                let row = ty.row_bytes(inner).ok_or_else(|| {
                    WeightsError::Other(format!(
                        "rows of {inner} elements are not whole {} blocks",
                        ty.name()
                    ))
                })?;
                TensorData::Blocks {
                    ty: *ty,
                    bytes: bytes[start * row..end * row].to_vec(),
                }
            }
            TensorData::Quantized { quant, bytes } => {
                let m = quantize::Quantized::from_bytes(*quant, n0, inner, bytes)?;
                let (cb, sr) = (
                    quant.code_bytes(inner).unwrap_or(0),
                    quant.scales(inner).unwrap_or(0),
                );
                let part = quantize::Quantized {
                    codes: m.codes[start * cb..end * cb].to_vec(),
                    scales: m.scales[start * sr..end * sr].to_vec(),
                };
                TensorData::Quantized {
                    quant: *quant,
                    bytes: part.to_bytes(),
                }
            }
        };
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Ok(HostTensor { shape, data })
    }

    /// Concatenate tensors of one dtype and equal trailing dimensions along the first dimension.
    pub fn concat_rows(parts: &[&HostTensor]) -> Result<HostTensor, WeightsError> {
        let first = parts
            .first()
            .ok_or_else(|| WeightsError::Other("concat of no tensors".into()))?;
        if first.shape.is_empty() {
            return Err(WeightsError::Other(
                "cannot concatenate scalars along rows".into(),
            ));
        }
        let mut shape = first.shape.clone();
        shape[0] = 0;
        let mut data = match &first.data {
            TensorData::F32(_) => TensorData::F32(Vec::new()),
            TensorData::F16(_) => TensorData::F16(Vec::new()),
            TensorData::BF16(_) => TensorData::BF16(Vec::new()),
            TensorData::Blocks { ty, .. } => TensorData::Blocks {
                ty: *ty,
                bytes: Vec::new(),
            },
            TensorData::Quantized { quant, .. } => {
                return concat_quantized(*quant, parts);
            }
        };
        for p in parts {
            if p.shape.len() != shape.len() || p.shape[1..] != shape[1..] {
                return Err(WeightsError::Other(format!(
                    "cannot concatenate shapes {:?} and {:?}",
                    first.shape, p.shape
                )));
            }
            shape[0] += p.shape[0];
            match (&mut data, &p.data) {
                (TensorData::F32(d), TensorData::F32(s)) => d.extend_from_slice(s),
                (TensorData::F16(d), TensorData::F16(s)) => d.extend_from_slice(s),
                (TensorData::BF16(d), TensorData::BF16(s)) => d.extend_from_slice(s),
                (TensorData::Blocks { ty, bytes: d }, TensorData::Blocks { ty: t, bytes: s })
                    if ty == t =>
                {
                    d.extend_from_slice(s)
                }
                _ => {
                    return Err(WeightsError::Other(
                        "cannot concatenate mixed dtypes".into(),
                    ));
                }
            }
        }
        Ok(HostTensor { shape, data })
    }

    /// The elements as f32 (copying unless already f32; blocks dequantised).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::Blocks { ty, bytes } => dequantize_blocks(*ty, bytes),
            TensorData::Quantized { quant, bytes } => {
                let cols = self.shape.last().copied().unwrap_or(0);
                let rows = self.numel().checked_div(cols).unwrap_or(0);
                let mut out = vec![0.0; self.numel()];
                if let Ok(m) = quantize::Quantized::from_bytes(*quant, rows, cols, bytes) {
                    quantize::dequantize_rows(*quant, cols, &m.codes, &m.scales, &mut out);
                }
                out
            }
        }
    }

    /// The build-time quantization, when the tensor holds one.
    pub fn quantized(&self) -> Option<WeightQuant> {
        match &self.data {
            TensorData::Quantized { quant, .. } => Some(*quant),
            _ => None,
        }
    }

    /// The block type, when the tensor is stored as GGML blocks.
    pub fn blocks(&self) -> Option<BlockType> {
        match &self.data {
            TensorData::Blocks { ty, .. } => Some(*ty),
            _ => None,
        }
    }
}

/// Matrices quantized as `quant` (each `[rows_i, cols]`) concatenated along rows: codes after codes,
/// then scales after scales.
fn concat_quantized(quant: WeightQuant, parts: &[&HostTensor]) -> Result<HostTensor, WeightsError> {
    let mut all = quantize::Quantized {
        codes: Vec::new(),
        scales: Vec::new(),
    };
    let mut shape: Option<[usize; 2]> = None;
    for p in parts {
        let (TensorData::Quantized { quant: q, bytes }, [rows, cols]) = (&p.data, &p.shape[..])
        else {
            return Err(WeightsError::Other(
                "cannot concatenate mixed dtypes".into(),
            ));
        };
        if *q != quant || shape.is_some_and(|[_, c]| c != *cols) {
            return Err(WeightsError::Other(format!(
                "cannot concatenate matrices quantized as {} and {} of widths {:?} and {cols}",
                quant.name(),
                q.name(),
                shape.map(|s| s[1])
            )));
        }
        let m = quantize::Quantized::from_bytes(quant, *rows, *cols, bytes)?;
        all.codes.extend_from_slice(&m.codes);
        all.scales.extend_from_slice(&m.scales);
        shape = Some([shape.map_or(0, |s| s[0]) + rows, *cols]);
    }
    let shape = shape.ok_or_else(|| WeightsError::Other("concat of no tensors".into()))?;
    Ok(HostTensor {
        shape: shape.to_vec(),
        data: TensorData::Quantized {
            quant,
            bytes: all.to_bytes(),
        },
    })
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
        let len = match &t.data {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::Blocks { ty, bytes } => {
                let cols = shape.last().copied().unwrap_or(1);
                if ty.row_bytes(cols).is_none() || !bytes.len().is_multiple_of(ty.block_bytes()) {
                    return Err(WeightsError::Other(format!(
                        "tensor {name} of shape {shape:?} is not whole rows of {} blocks",
                        ty.name()
                    )));
                }
                bytes.len() / ty.block_bytes() * ty.block_elems()
            }
            TensorData::Quantized { quant, bytes } => {
                let [rows, cols] = shape[..] else {
                    return Err(WeightsError::Other(format!(
                        "tensor {name} of shape {shape:?} is quantized but not a matrix"
                    )));
                };
                quantize::Quantized::from_bytes(*quant, rows, cols, bytes)?;
                t.numel()
            }
        };
        if len != t.numel() {
            return Err(WeightsError::Other(format!(
                "tensor {name} holds {len} values, its shape {shape:?} needs {}",
                t.numel()
            )));
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
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file ends before the data its header promises.
    #[error("{} is truncated: {detail}", path.display())]
    Truncated { path: PathBuf, detail: String },
    /// The header (safetensors JSON header, GGUF header/metadata/tensor infos) is malformed or inconsistent.
    #[error("{} has a bad header: {detail}", path.display())]
    BadHeader { path: PathBuf, detail: String },
    #[error("{}: tensor {tensor} has unsupported dtype {dtype}", path.display())]
    UnknownDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{}: tensor {tensor} has unsupported GGUF quantisation type {kind}", path.display())]
    UnknownQuant {
        path: PathBuf,
        tensor: String,
        kind: String,
    },
    #[error("index {} names shard {shard}, which does not exist", index.display())]
    MissingShard { index: PathBuf, shard: String },
    /// A directory holds neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("{} holds no model.safetensors or model.safetensors.index.json", dir.display())]
    NoWeights { dir: PathBuf },
    /// GGUF metadata lacks a key we need, or has it with the wrong type.
    #[error("{}: GGUF metadata {key}: {detail}", path.display())]
    Metadata {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("{0}")]
    Other(String),
}

impl WeightsError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
