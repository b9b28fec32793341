//! GGUF tensors → canonical tensors: llama.cpp names mapped by
//! `weights::names::gguf_to_canonical_parts` (Phi-3's fused `attn_qkv` and `ffn_up` split into their
//! parts by rows), every tensor dequantised to f32 (or kept as blocks), and — for
//! `general.architecture = "llama"` only, as in llama.cpp's converter and transformers' loader — the
//! rotary permutation of Q and K undone. The converter permutes nothing for the NEOX-rope families
//! (`qwen2`, `qwen3`, `phi3`, `gemma3`), whose rows stay in Hugging Face's order. Gemma 3's norm gains
//! are taken as stored: the converter has already added the one that the Hugging Face loader adds.
//!
//! llama.cpp's converter reorders the rows of each head of `q_proj` (with `num_heads`) and `k_proj`
//! (with `num_kv_heads`) from HF's "rotate half" layout to interleaved pairs: within a head of `2·d`
//! rows, row `2j + i` of the file is row `i·d + j` of the HF weight (`i ∈ {0, 1}`, `j < d`).
//! transformers' `reverse_permute_weights` (a reshape to `[heads, d, 2, …]` and a swap of the middle
//! axes) maps it back; [`reverse_permute`] does the same row move.

use super::{GgufFile, spec};
use crate::spec::{Arch, ModelSpec};
use crate::weights::names::{gguf_to_canonical_parts, phi3_parts_rows};
use crate::weights::{HostTensor, TensorData, WeightMap, WeightsError};

pub(super) fn canonical_weights(
    file: &GgufFile,
    spec: &ModelSpec,
    keep_blocks: bool,
) -> Result<WeightMap, WeightsError> {
    let arch = spec::arch(file)?;
    // llama.cpp converts Mistral checkpoints as `llama`.
    let same = arch == spec.arch || (arch == Arch::Llama && spec.arch == Arch::Mistral);
    if !same {
        return Err(file.meta_err(
            "general.architecture",
            format!(
                "the file holds a {} model but the model config ({}) is {}",
                arch.as_str(),
                spec.name,
                spec.arch.as_str()
            ),
        ));
    }
    let permuted = arch == Arch::Llama;
    let heads = if permuted {
        let (h, kv) = spec::heads(file, arch)?;
        if (h, kv) != (spec.num_heads, spec.num_kv_heads) {
            return Err(file.meta_err(
                "llama.attention.head_count",
                format!(
                    "the file has {h} heads / {kv} KV heads, the model config ({}) {} / {}",
                    spec.name, spec.num_heads, spec.num_kv_heads
                ),
            ));
        }
        (h, kv)
    } else {
        (0, 0)
    };
    let mut out = WeightMap::default();
    for info in file.tensor_infos() {
        let parts = gguf_to_canonical_parts(arch, &info.name);
        if parts.len() > 1 {
            let t = file.tensor_as(&info.name, keep_blocks)?;
            let rows = phi3_parts_rows(spec, &parts);
            let want = [rows.iter().sum(), spec.hidden_size];
            if t.shape != want {
                return Err(WeightsError::Shape {
                    name: info.name.clone(),
                    expected: want.to_vec(),
                    found: t.shape.clone(),
                });
            }
            let mut start = 0;
            for (part, n) in parts.into_iter().zip(rows) {
                out.tensors.insert(part, t.rows(start, start + n)?);
                start += n;
            }
            continue;
        }
        let Some(canonical) = parts.into_iter().next() else {
            continue;
        };
        let mut t = file.tensor_as(&info.name, keep_blocks)?;
        if permuted {
            let n_head = if info.name.contains(".attn_q.") {
                Some(heads.0)
            } else if info.name.contains(".attn_k.") {
                Some(heads.1)
            } else {
                None
            };
            if let Some(n_head) = n_head {
                t = reverse_permute(&info.name, &t, n_head)?;
            }
        }
        out.tensors.insert(canonical, t);
    }
    // llama.cpp uses the token embedding as the output projection when `output.weight` is absent.
    let tied = match out.tensors.get("embed.weight") {
        Some(e) if !out.tensors.contains_key("lm_head.weight") => Some(e.clone()),
        _ => None,
    };
    if let Some(e) = tied {
        out.tensors.insert("lm_head.weight".into(), e);
    }
    Ok(out)
}

/// Undo llama.cpp's Q/K row permutation over `n_head` heads (rows = first dimension; works for a
/// weight `[rows, cols]` and a bias `[rows]`).
pub fn reverse_permute(
    name: &str,
    t: &HostTensor,
    n_head: usize,
) -> Result<HostTensor, WeightsError> {
    let rows = t.shape.first().copied().unwrap_or(0);
    if n_head == 0 || rows == 0 || rows % (2 * n_head) != 0 {
        return Err(WeightsError::Other(format!(
            "tensor {name}: {rows} rows cannot be split into {n_head} rotary heads of pairs"
        )));
    }
    let d = rows / n_head / 2;
    // Whole rows move: `width` elements (f32) or bytes (blocks) each.
    fn moved<T: Copy + Default>(src: &[T], width: usize, n_head: usize, d: usize) -> Vec<T> {
        let mut dst = vec![T::default(); src.len()];
        for h in 0..n_head {
            for i in 0..2 {
                for j in 0..d {
                    let to = (h * 2 * d + i * d + j) * width;
                    let from = (h * 2 * d + j * 2 + i) * width;
                    dst[to..to + width].copy_from_slice(&src[from..from + width]);
                }
            }
        }
        dst
    }
    let data = match &t.data {
        TensorData::F32(src) => TensorData::F32(moved(src, t.numel() / rows, n_head, d)),
        TensorData::Blocks { ty, bytes } => TensorData::Blocks {
            ty: *ty,
            bytes: moved(bytes, bytes.len() / rows, n_head, d),
        },
        _ => {
            return Err(WeightsError::Other(format!(
                "tensor {name}: expected f32 data or blocks after reading"
            )));
        }
    };
    Ok(HostTensor {
        shape: t.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward permutation as llama.cpp's converter writes it: HF row `i·d + j` of a head goes to
    /// file row `2j + i`.
    fn permute(rows: &[f32], n_head: usize) -> Vec<f32> {
        let d = rows.len() / n_head / 2;
        let mut out = vec![0.0; rows.len()];
        for h in 0..n_head {
            for i in 0..2 {
                for j in 0..d {
                    out[h * 2 * d + 2 * j + i] = rows[h * 2 * d + i * d + j];
                }
            }
        }
        out
    }

    #[test]
    fn reverse_permute_inverts_the_converter() {
        let hf: Vec<f32> = (0..24).map(|x| x as f32).collect();
        let file = HostTensor {
            shape: vec![24],
            data: TensorData::F32(permute(&hf, 3)),
        };
        let back = reverse_permute("q", &file, 3).unwrap();
        assert_eq!(back.data, TensorData::F32(hf));
    }

    #[test]
    fn reverse_permute_refuses_odd_heads() {
        let t = HostTensor {
            shape: vec![6, 2],
            data: TensorData::F32(vec![0.0; 12]),
        };
        assert!(reverse_permute("blk.0.attn_q.weight", &t, 2).is_err());
    }
}
