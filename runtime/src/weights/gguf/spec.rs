//! A [`ModelSpec`] from GGUF metadata, read the way llama.cpp reads the keys its converter writes
//! (`convert_hf_to_gguf.py`) for each architecture, into the spec the Hugging Face config of the same
//! model gives (`config/{llama,gemma3,phi3}.rs`):
//! - every family: block_count → layers, embedding_length → hidden, feed_forward_length →
//!   intermediate, attention.head_count(_kv) → heads, attention.key_length → head_dim (else hidden /
//!   heads), context_length → max positions, attention.layer_norm_rms_epsilon → eps, rope.freq_base →
//!   theta, rope.scaling.type `linear` with rope.scaling.factor → linear interpolation; the embeddings
//!   are tied when the file has no `output.weight`; biases are there when their tensors are;
//! - `llama`: llama.cpp files Mistral models under `llama` and gives them no window; a file that
//!   carries `llama.attention.sliding_window` (other writers add it) is a Mistral sliding in every
//!   layer;
//! - `qwen3`: per-head q/k norms;
//! - `phi3`: attention.sliding_window applies in every layer, `0` meaning none (transformers'
//!   Phi-3 semantics; llama.cpp itself ignores Phi-3's window);
//! - `gemma3`: GeGLU, sandwich norms, q/k norms, embeddings scaled by `sqrt(hidden)`; layer `i`
//!   slides over attention.sliding_window unless `(i + 1)` is a multiple of
//!   attention.sliding_window_pattern (an integer, default 6, or one bool per layer), with the unscaled
//!   base rope.freq_base_swa (default 10000); the scores are scaled by attention.scale when present,
//!   else as llama.cpp does: `1 / sqrt(head_dim)`, but `1 / sqrt(hidden / heads)` for the 62-layer
//!   model (Gemma 3 27B, whose `query_pre_attn_scalar` is that). The file's norm gains are the gains
//!   (the converter adds Gemma's one), so `norm_gain_offset`, which only tells the Hugging Face loader
//!   and writer to add and take away that one, changes nothing on the GGUF path.
//!
//! What the runtime cannot run (other architectures, partial rotary dims, other rope scaling,
//! per-frequency rope factors, soft-capping) is refused naming the key or tensor.

use super::GgufFile;
use crate::config::sha256_hex;
use crate::spec::{Arch, Mlp, ModelSpec, NormKind, Positions};
use crate::weights::WeightsError;

/// llama.cpp's default `rope.freq_base`.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// llama.cpp's Gemma 3 defaults: the sliding-window pattern and the sliding layers' rotary base.
const GEMMA3_WINDOW_PATTERN: u64 = 6;
const GEMMA3_LOCAL_THETA: f64 = 10_000.0;

/// Gemma 3 27B's layer count, the one size llama.cpp scales the scores by `hidden / heads`.
const GEMMA3_27B_LAYERS: usize = 62;

/// The architecture named by `general.architecture` (the key prefix of the file's metadata).
pub(super) fn arch(file: &GgufFile) -> Result<Arch, WeightsError> {
    let key = "general.architecture";
    match file.required(key, file.get_str(key))? {
        "llama" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        "qwen3" => Ok(Arch::Qwen3),
        "gemma3" => Ok(Arch::Gemma3),
        "phi3" => Ok(Arch::Phi3),
        other => Err(file.meta_err(
            key,
            format!(
                "architecture {other:?} is not supported (supported: llama, qwen2, qwen3, gemma3, \
                 phi3)"
            ),
        )),
    }
}

/// A required positive size `<arch>.<suffix>`.
fn size(file: &GgufFile, arch: Arch, suffix: &str) -> Result<usize, WeightsError> {
    let key = format!("{}.{suffix}", arch.as_str());
    let v = file.required(&key, file.get_u64(&key))?;
    positive(file, &key, v)
}

fn opt_size(file: &GgufFile, arch: Arch, suffix: &str) -> Result<Option<usize>, WeightsError> {
    let key = format!("{}.{suffix}", arch.as_str());
    file.get_u64(&key)?
        .map(|v| positive(file, &key, v))
        .transpose()
}

fn positive(file: &GgufFile, key: &str, v: u64) -> Result<usize, WeightsError> {
    match usize::try_from(v) {
        Ok(n) if n > 0 && n <= u32::MAX as usize => Ok(n),
        _ => Err(file.meta_err(key, format!("{v} is not a usable size"))),
    }
}

/// An optional positive, finite float `<arch>.<suffix>`.
fn opt_positive_f64(
    file: &GgufFile,
    arch: Arch,
    suffix: &str,
) -> Result<Option<f64>, WeightsError> {
    let key = format!("{}.{suffix}", arch.as_str());
    match file.get_f64(&key)? {
        Some(x) if !(x > 0.0 && x.is_finite()) => {
            Err(file.meta_err(&key, format!("{x} is not a positive finite number")))
        }
        x => Ok(x),
    }
}

/// `(num_heads, num_kv_heads)` as the file states them (used again to undo the Q/K permutation).
pub(super) fn heads(file: &GgufFile, arch: Arch) -> Result<(usize, usize), WeightsError> {
    let heads = size(file, arch, "attention.head_count")?;
    let kv = opt_size(file, arch, "attention.head_count_kv")?.unwrap_or(heads);
    if heads % kv != 0 {
        return Err(file.meta_err(
            &format!("{}.attention.head_count_kv", arch.as_str()),
            format!("{kv} does not divide the {heads} attention heads"),
        ));
    }
    Ok((heads, kv))
}

fn token_id(file: &GgufFile, key: &str) -> Result<Option<u32>, WeightsError> {
    file.get_u64(key)?
        .map(|v| u32::try_from(v).map_err(|_| file.meta_err(key, format!("{v} is not a token id"))))
        .transpose()
}

/// The checkpoint dtype named by `general.file_type` (llama.cpp's `LLAMA_FTYPE_*`).
fn file_type(file: &GgufFile) -> Result<Option<String>, WeightsError> {
    Ok(file.get_u64("general.file_type")?.and_then(|t| {
        let name = match t {
            0 => "float32",
            1 => "float16",
            2 => "Q4_0",
            3 => "Q4_1",
            7 => "Q8_0",
            32 => "bfloat16",
            _ => return None,
        };
        Some(name.to_string())
    }))
}

/// The rotary embedding of the (global) layers: `rope.freq_base` and an optional linear scaling.
fn rotary(file: &GgufFile, arch: Arch) -> Result<Positions, WeightsError> {
    let a = arch.as_str();
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(file.meta_err(
            "rope_freqs.weight",
            "per-frequency rope factors (llama3 rope scaling) in GGUF are not supported",
        ));
    }
    if file.tensor_info("rope_factors_long.weight").is_some() {
        return Err(file.meta_err(
            "rope_factors_long.weight",
            "Phi-3's long-context rope factors (longrope) are not supported",
        ));
    }
    let theta = opt_positive_f64(file, arch, "rope.freq_base")?.unwrap_or(DEFAULT_ROPE_THETA);
    let scaling_key = format!("{a}.rope.scaling.type");
    let linear = match file.get_str(&scaling_key)? {
        None | Some("none") => None,
        Some("linear") => {
            let factor_key = format!("{a}.rope.scaling.factor");
            match opt_positive_f64(file, arch, "rope.scaling.factor")? {
                // A factor of one scales nothing (llama.cpp's default).
                Some(f) if f != 1.0 => Some(f),
                Some(_) => None,
                None => {
                    return Err(file.meta_err(&factor_key, "is missing for linear rope scaling"));
                }
            }
        }
        Some(t) => {
            return Err(file.meta_err(&scaling_key, format!("rope scaling {t:?} is not supported")));
        }
    };
    Ok(Positions::Rope {
        theta,
        llama3: None,
        linear,
        yarn: None,
    })
}

/// Soft-capping changes what a layer computes and is not implemented.
fn refuse_softcapping(file: &GgufFile, arch: Arch) -> Result<(), WeightsError> {
    for suffix in ["attn_logit_softcapping", "final_logit_softcapping"] {
        let key = format!("{}.{suffix}", arch.as_str());
        if let Some(v) = file.get_f64(&key)?
            && v != 0.0
        {
            return Err(file.meta_err(&key, format!("logit soft-capping ({v}) is not implemented")));
        }
    }
    Ok(())
}

/// The window every layer slides over, from `<arch>.attention.sliding_window` (`0` or absent: none).
fn every_layer_window(
    file: &GgufFile,
    arch: Arch,
    num_layers: usize,
) -> Result<(Option<usize>, Vec<bool>), WeightsError> {
    let key = format!("{}.attention.sliding_window", arch.as_str());
    match file.get_u64(&key)? {
        None | Some(0) => Ok((None, Vec::new())),
        Some(w) => Ok((Some(positive(file, &key, w)?), vec![true; num_layers])),
    }
}

/// Gemma 3's sliding layers: `(window, sliding layers, their rotary base)`.
fn gemma3_window(
    file: &GgufFile,
    num_layers: usize,
) -> Result<(Option<usize>, Vec<bool>, Option<f64>), WeightsError> {
    let arch = Arch::Gemma3;
    let (window, _) = every_layer_window(file, arch, num_layers)?;
    let Some(window) = window else {
        return Ok((None, Vec::new(), None));
    };
    let key = "gemma3.attention.sliding_window_pattern";
    let layers: Vec<bool> = match file.metadata(key) {
        None => (0..num_layers as u64)
            .map(|i| (i + 1) % GEMMA3_WINDOW_PATTERN != 0)
            .collect(),
        Some(super::GgufValue::Array(items)) => {
            if items.len() != num_layers {
                return Err(file.meta_err(
                    key,
                    format!("lists {} layers, the model has {num_layers}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    super::GgufValue::Bool(b) => Ok(*b),
                    other => Err(file.meta_err(
                        key,
                        format!("element {i} should be a bool, found {}", other.kind()),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            let period = file.required(key, file.get_u64(key))?;
            if period == 0 {
                return Err(file.meta_err(key, "a pattern of 0 layers"));
            }
            (0..num_layers as u64)
                .map(|i| (i + 1) % period != 0)
                .collect()
        }
    };
    if !layers.contains(&true) {
        return Ok((None, Vec::new(), None));
    }
    let local = opt_positive_f64(file, arch, "rope.freq_base_swa")?.unwrap_or(GEMMA3_LOCAL_THETA);
    Ok((Some(window), layers, Some(local)))
}

pub(super) fn spec(file: &GgufFile, name: &str) -> Result<ModelSpec, WeightsError> {
    let arch = arch(file)?;
    let a = arch.as_str();
    let hidden_size = size(file, arch, "embedding_length")?;
    let (num_heads, num_kv_heads) = heads(file, arch)?;
    let head_dim = match opt_size(file, arch, "attention.key_length")? {
        Some(d) => d,
        None if hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(file.meta_err(
                &format!("{a}.attention.head_count"),
                format!("{num_heads} heads do not divide the hidden size {hidden_size}"),
            ));
        }
    };
    let differs = |d: &usize| *d != head_dim;
    if let Some(v) = opt_size(file, arch, "attention.value_length")?.filter(differs) {
        return Err(file.meta_err(
            &format!("{a}.attention.value_length"),
            format!("{v} differs from the key length {head_dim}; not supported"),
        ));
    }
    if let Some(r) = opt_size(file, arch, "rope.dimension_count")?.filter(differs) {
        return Err(file.meta_err(
            &format!("{a}.rope.dimension_count"),
            format!("partial rotary embeddings ({r} of {head_dim} dims) are not supported"),
        ));
    }
    let positions = rotary(file, arch)?;
    let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
    let norm_eps = file.required(&eps_key, file.get_f64(&eps_key))?;
    if !(norm_eps > 0.0 && norm_eps.is_finite()) {
        return Err(file.meta_err(&eps_key, "epsilon must be positive and finite"));
    }
    let has = |n: &str| file.tensor_info(n).is_some();
    let vocab_size = match opt_size(file, arch, "vocab_size")? {
        Some(v) => v,
        None => match file.get_array("tokenizer.ggml.tokens")? {
            Some(tokens) if !tokens.is_empty() => tokens.len(),
            // llama.cpp's converter writes no vocab_size for most families: the embedding's rows.
            _ => match file.tensor_info("token_embd.weight").map(|t| &t.shape[..]) {
                Some(&[rows, _]) if rows > 0 => rows,
                _ => {
                    return Err(file.meta_err(
                        &format!("{a}.vocab_size"),
                        "is missing and there is no tokenizer.ggml.tokens or token_embd.weight \
                         to count",
                    ));
                }
            },
        },
    };
    let num_layers = size(file, arch, "block_count")?;
    refuse_softcapping(file, arch)?;
    let mut spec = ModelSpec {
        name: name.to_string(),
        arch,
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: size(file, arch, "feed_forward_length")?,
        max_position_embeddings: size(file, arch, "context_length")?,
        norm: NormKind::RmsNorm,
        norm_eps,
        mlp: Mlp::SwiGlu,
        positions,
        qkv_bias: has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias"),
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_up.bias"),
        qk_norm: arch == Arch::Qwen3,
        sliding_window: None,
        sliding_layers: Vec::new(),
        local_rope_theta: None,
        attention_scale: None,
        embed_scale: None,
        final_softcap: None,
        sandwich_norms: false,
        norm_gain_offset: false,
        tie_word_embeddings: !has("output.weight"),
        bos_token_id: token_id(file, "tokenizer.ggml.bos_token_id")?,
        eos_token_ids: token_id(file, "tokenizer.ggml.eos_token_id")?
            .into_iter()
            .collect(),
        pad_token_id: token_id(file, "tokenizer.ggml.padding_token_id")?,
        source_dtype: file_type(file)?,
        config_hash: sha256_hex(file.metadata_bytes()),
    };
    match arch {
        Arch::Llama => {
            let (window, layers) = every_layer_window(file, arch, num_layers)?;
            if window.is_some() {
                spec.arch = Arch::Mistral;
                spec.sliding_window = window;
                spec.sliding_layers = layers;
            }
        }
        Arch::Phi3 => {
            (spec.sliding_window, spec.sliding_layers) =
                every_layer_window(file, arch, num_layers)?;
        }
        Arch::Gemma3 => {
            let (window, layers, local) = gemma3_window(file, num_layers)?;
            spec.sliding_window = window;
            spec.sliding_layers = layers;
            spec.local_rope_theta = local;
            spec.mlp = Mlp::GeGlu;
            spec.qk_norm = true;
            spec.sandwich_norms = true;
            spec.norm_gain_offset = true;
            spec.embed_scale = Some((hidden_size as f64).sqrt());
            let scalar = if num_layers == GEMMA3_27B_LAYERS {
                (hidden_size / num_heads) as f64
            } else {
                head_dim as f64
            };
            spec.attention_scale = Some(
                opt_positive_f64(file, arch, "attention.scale")?.unwrap_or(1.0 / scalar.sqrt()),
            );
        }
        _ => {}
    }
    // Sizes the runtime cannot hold (absurd block counts, overflowing products) are refused here.
    match spec.size_problem() {
        Some(problem) => {
            let key = if spec.num_layers > crate::spec::MAX_LAYERS {
                "block_count"
            } else {
                "embedding_length"
            };
            Err(file.meta_err(&format!("{a}.{key}"), problem))
        }
        None => Ok(spec),
    }
}
