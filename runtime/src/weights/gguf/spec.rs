//! A [`ModelSpec`] from GGUF metadata, read the way transformers' GGUF loader turns `llama.*` /
//! `qwen2.*` / `qwen3.*` keys into a config (llama.cpp files Mistral models under `llama`): block_count → layers, embedding_length → hidden, feed_forward_length →
//! intermediate, attention.head_count(_kv) → heads, context_length → max positions,
//! attention.layer_norm_rms_epsilon → eps, rope.freq_base → theta; the embeddings are tied when the file
//! has no `output.weight`. What the runtime cannot run (other architectures, partial rotary dims, rope
//! scaling) is refused naming the key.

use super::GgufFile;
use crate::config::sha256_hex;
use crate::spec::{Arch, Mlp, ModelSpec, NormKind, Positions};
use crate::weights::WeightsError;

/// llama.cpp's default `rope.freq_base`.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// The architecture named by `general.architecture`.
pub(super) fn arch(file: &GgufFile) -> Result<Arch, WeightsError> {
    let key = "general.architecture";
    match file.required(key, file.get_str(key))? {
        "llama" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        "qwen3" => Ok(Arch::Qwen3),
        other => Err(file.meta_err(
            key,
            format!("architecture {other:?} is not supported (supported: llama, qwen2, qwen3)"),
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
    let scaling_key = format!("{a}.rope.scaling.type");
    if let Some(t) = file.get_str(&scaling_key)?.filter(|t| *t != "none") {
        return Err(file.meta_err(&scaling_key, format!("rope scaling {t:?} is not supported")));
    }
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(file.meta_err(
            "rope_freqs.weight",
            "per-frequency rope factors (llama3 rope scaling) in GGUF are not supported",
        ));
    }
    let theta_key = format!("{a}.rope.freq_base");
    let theta = file.get_f64(&theta_key)?.unwrap_or(DEFAULT_ROPE_THETA);
    let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
    let norm_eps = file.required(&eps_key, file.get_f64(&eps_key))?;
    let usable = |x: f64| x > 0.0 && x.is_finite();
    if !usable(theta) || !usable(norm_eps) {
        return Err(file.meta_err(
            &eps_key,
            "rope base and epsilon must be positive and finite",
        ));
    }
    let vocab_size = match opt_size(file, arch, "vocab_size")? {
        Some(v) => v,
        None => match file.get_array("tokenizer.ggml.tokens")? {
            Some(tokens) if !tokens.is_empty() => tokens.len(),
            _ => {
                return Err(file.meta_err(
                    &format!("{a}.vocab_size"),
                    "is missing and there is no tokenizer.ggml.tokens to count",
                ));
            }
        },
    };
    let has = |n: &str| file.tensor_info(n).is_some();
    let spec = ModelSpec {
        name: name.to_string(),
        arch,
        vocab_size,
        hidden_size,
        num_layers: size(file, arch, "block_count")?,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: size(file, arch, "feed_forward_length")?,
        max_position_embeddings: size(file, arch, "context_length")?,
        norm: NormKind::RmsNorm,
        norm_eps,
        mlp: Mlp::SwiGlu,
        positions: Positions::Rope {
            theta,
            llama3: None,
            linear: None,
        },
        qkv_bias: has("blk.0.attn_q.bias"),
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_up.bias"),
        qk_norm: arch == Arch::Qwen3,
        sliding_window: None,
        sliding_layers: Vec::new(),
        local_rope_theta: None,
        attention_scale: None,
        embed_scale: None,
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
