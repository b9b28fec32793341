//! A transformers `config.json` for a model known only by its [`ModelSpec`] (a GGUF file), so the
//! PyTorch baseline can load its weights. The written config is parsed back and must give the same spec.

use anyhow::{Result, bail};
use runtime::ModelSpec;
use runtime::spec::{Arch, Mlp, NormKind, Positions};
use serde_json::{Value, json};

/// The config text for `spec`, checked to round-trip through `runtime::config`.
pub fn config_json(spec: &ModelSpec) -> Result<Vec<u8>> {
    let value = match spec.arch {
        Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 => llama_like(spec)?,
        Arch::Gpt2 => gpt2(spec),
        Arch::Gemma3 => gemma3(spec)?,
        Arch::Phi3 => phi3(spec)?,
    };
    let bytes = serde_json::to_vec_pretty(&value)?;
    let mut back = runtime::config::parse_config(&spec.name, &bytes)?;
    back.config_hash.clone_from(&spec.config_hash);
    back.source_dtype.clone_from(&spec.source_dtype);
    if &back != spec {
        bail!(
            "the model {} cannot be described as a transformers config.json",
            spec.name
        );
    }
    Ok(bytes)
}

fn llama_like(spec: &ModelSpec) -> Result<Value> {
    let Positions::Rope {
        theta,
        llama3,
        linear,
        yarn,
    } = spec.positions
    else {
        bail!(
            "{}: a {} model without rotary positions",
            spec.name,
            spec.arch.as_str()
        );
    };
    let mlp_bias_fits = !spec.mlp_bias || spec.arch == Arch::Llama;
    if spec.norm != NormKind::RmsNorm || spec.mlp != Mlp::SwiGlu || !mlp_bias_fits {
        bail!(
            "{}: norm or MLP kind not expressible in a {} config",
            spec.name,
            spec.arch.as_str()
        );
    }
    let (model_type, class) = match spec.arch {
        Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        Arch::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
        Arch::Mistral => ("mistral", "MistralForCausalLM"),
        _ => ("llama", "LlamaForCausalLM"),
    };
    let mut v = json!({
        "architectures": [class],
        "model_type": model_type,
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": spec.norm_eps,
        "hidden_act": "silu",
        "rope_theta": theta,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": "float32",
    });
    if matches!(spec.arch, Arch::Llama | Arch::Qwen3) {
        // transformers' Llama and Qwen3 have one switch for the q, k, v and o biases.
        if spec.qkv_bias != spec.o_bias {
            bail!(
                "{}: q/k/v biases without an o bias do not fit a Llama config",
                spec.name
            );
        }
        v["attention_bias"] = json!(spec.qkv_bias);
    }
    if spec.arch == Arch::Llama {
        v["mlp_bias"] = json!(spec.mlp_bias);
    }
    match spec.arch {
        // Without the key transformers applies its default window; `null` is none.
        Arch::Mistral => v["sliding_window"] = json!(spec.sliding_window),
        Arch::Qwen2 | Arch::Qwen3 if spec.sliding_window.is_some() => {
            v["use_sliding_window"] = json!(true);
            v["sliding_window"] = json!(spec.sliding_window);
            v["layer_types"] = layer_types(spec);
        }
        _ => {}
    }
    if let Some(factor) = linear {
        v["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
    }
    if let Some(s) = llama3 {
        v["rope_scaling"] = json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    }
    if let Some(y) = yarn {
        // Every field written out, so that transformers derives nothing of its own.
        v["rope_scaling"] = json!({
            "rope_type": "yarn",
            "factor": y.factor,
            "original_max_position_embeddings": y.original_max_position_embeddings,
            "attention_factor": y.attention_factor,
            "beta_fast": y.beta_fast,
            "beta_slow": y.beta_slow,
            "truncate": y.truncate,
        });
    }
    ids(&mut v, spec);
    Ok(v)
}

/// HF's `layer_types`: each layer `sliding_attention` or `full_attention`.
fn layer_types(spec: &ModelSpec) -> Value {
    let types: Vec<&str> = (0..spec.num_layers)
        .map(|i| match spec.layer_window(i) {
            Some(_) => "sliding_attention",
            None => "full_attention",
        })
        .collect();
    json!(types)
}

fn gemma3(spec: &ModelSpec) -> Result<Value> {
    let Positions::Rope {
        theta,
        llama3: None,
        linear,
        yarn: None,
    } = spec.positions
    else {
        bail!(
            "{}: a Gemma 3 model without its rotary embedding",
            spec.name
        );
    };
    // `query_pre_attn_scalar` is an integer in transformers' config.
    let scalar = spec.attention_scale.map(|s| (1.0 / (s * s)).round());
    let mut v = json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": spec.norm_eps,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": scalar,
        "rope_theta": theta,
        "rope_local_base_freq": spec.local_rope_theta,
        "sliding_window": spec.sliding_window,
        "layer_types": layer_types(spec),
        "attention_bias": spec.qkv_bias,
        "final_logit_softcapping": spec.final_softcap,
        "attn_logit_softcapping": null,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": "float32",
    });
    if let Some(factor) = linear {
        v["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
    }
    ids(&mut v, spec);
    Ok(v)
}

/// A Phi-3 config in the published key style (transformers-4 layout). transformers builds Phi-3
/// without biases or q/k norms and with every layer sliding when `sliding_window` is not `null`.
fn phi3(spec: &ModelSpec) -> Result<Value> {
    let Positions::Rope {
        theta,
        llama3: None,
        linear: None,
        yarn: None,
    } = spec.positions
    else {
        bail!(
            "{}: a Phi-3 model without its unscaled rotary embedding",
            spec.name
        );
    };
    let extras = spec.qkv_bias || spec.o_bias || spec.mlp_bias || spec.qk_norm;
    if spec.norm != NormKind::RmsNorm || spec.mlp != Mlp::SwiGlu || extras {
        bail!(
            "{}: norms, biases or MLP kind not expressible in a Phi-3 config",
            spec.name
        );
    }
    let mut v = json!({
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "original_max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": spec.norm_eps,
        "hidden_act": "silu",
        "rope_theta": theta,
        "rope_scaling": null,
        // `null` (transformers' default) is full attention in every layer.
        "sliding_window": spec.sliding_window,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": "float32",
    });
    // transformers takes `head_dim` where the config has one, else hidden / heads.
    if spec.num_heads * spec.head_dim != spec.hidden_size {
        v["head_dim"] = json!(spec.head_dim);
    }
    ids(&mut v, spec);
    Ok(v)
}

fn gpt2(spec: &ModelSpec) -> Value {
    let mut v = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": spec.vocab_size,
        "n_embd": spec.hidden_size,
        "n_layer": spec.num_layers,
        "n_head": spec.num_heads,
        "n_inner": spec.intermediate_size,
        "n_positions": spec.max_position_embeddings,
        "layer_norm_epsilon": spec.norm_eps,
        "activation_function": "gelu_new",
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": "float32",
    });
    ids(&mut v, spec);
    v
}

fn ids(v: &mut Value, spec: &ModelSpec) {
    if let Some(b) = spec.bos_token_id {
        v["bos_token_id"] = json!(b);
    }
    match spec.eos_token_ids.as_slice() {
        [] => {}
        [one] => v["eos_token_id"] = json!(one),
        many => v["eos_token_id"] = json!(many),
    }
    if let Some(p) = spec.pad_token_id {
        v["pad_token_id"] = json!(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every vendored config, turned into a spec and back, gives the same spec.
    #[test]
    fn every_vendored_model_round_trips() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let mut n = 0;
        for entry in std::fs::read_dir(&models).unwrap() {
            let dir = entry.unwrap().path();
            let spec = ModelSpec::from_dir(&dir).unwrap();
            config_json(&spec).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
            n += 1;
        }
        assert!(n >= 13, "only {n} model directories");
    }

    /// A Phi-3 without a window and with a head size other than hidden / heads round-trips too.
    #[test]
    fn a_phi3_without_a_window_round_trips() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/Phi-3-mini-4k-instruct");
        let mut spec = ModelSpec::from_dir(&dir).unwrap();
        (spec.sliding_window, spec.sliding_layers) = (None, Vec::new());
        spec.head_dim = 64;
        let text = config_json(&spec).unwrap();
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            (&v["sliding_window"], &v["head_dim"]),
            (&Value::Null, &json!(64))
        );
    }
}
