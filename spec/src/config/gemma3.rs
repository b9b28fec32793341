//! `model_type: "gemma3_text"` (Gemma3ForCausalLM): a sandwich-norm decoder. Each half's output is
//! RMS-normalised again before the residual add; every norm multiplies by `1 + w`; the MLP is GeGLU
//! (`gelu_pytorch_tanh`); q and k get per-head RMSNorms before the rotary embedding; the scores are
//! scaled by `query_pre_attn_scalar^-1/2`; embeddings are multiplied by `sqrt(hidden_size)`.
//! Five of every six layers (`sliding_window_pattern`, or `layer_types`) attend over a sliding window
//! with their own unscaled rotary base (`rope_local_base_freq`); the others attend to every earlier
//! key with `rope_theta` and `rope_scaling`. Defaults are transformers' `Gemma3TextConfig`'s.

use super::fields::Fields;
use super::{ConfigError, geometry, rope, source_dtype, windows};
use crate::spec::{Arch, Mlp, ModelSpec, NormKind, Positions};
use serde_json::Value;

const DEFAULT_RMS_EPS: f64 = 1e-6;
const DEFAULT_GLOBAL_THETA: f64 = 1_000_000.0;
const DEFAULT_LOCAL_THETA: f64 = 10_000.0;
const DEFAULT_WINDOW: usize = 4096;
/// transformers' `Gemma3TextConfig.head_dim` when the config does not say (not hidden / heads).
const DEFAULT_HEAD_DIM: usize = 256;
const DEFAULT_WINDOW_PATTERN: usize = 6;
const DEFAULT_QUERY_PRE_ATTN_SCALAR: f64 = 256.0;

pub(super) fn parse(f: &Fields<'_>) -> Result<ModelSpec, ConfigError> {
    refuse_unimplemented(f)?;
    let act = f
        .opt_str("hidden_activation")?
        .unwrap_or("gelu_pytorch_tanh");
    if act != "gelu_pytorch_tanh" {
        return Err(f.unsupported(
            "hidden_activation",
            &Value::from(act),
            "only `gelu_pytorch_tanh` (GeGLU) is implemented for Gemma 3",
        ));
    }
    let (hidden_size, num_heads, num_kv_heads, head_dim) = geometry(f, Some(DEFAULT_HEAD_DIM))?;
    let bias = f.opt_bool("attention_bias")?.unwrap_or(false);
    let norm_eps = match f.opt_f64("rms_norm_eps")? {
        Some(e) => f.check_positive_f64("rms_norm_eps", e)?,
        None => DEFAULT_RMS_EPS,
    };
    let scalar = match f.opt_f64("query_pre_attn_scalar")? {
        Some(s) => f.check_positive_f64("query_pre_attn_scalar", s)?,
        None => DEFAULT_QUERY_PRE_ATTN_SCALAR,
    };
    let num_layers = f.positive("num_hidden_layers")?;
    let (sliding_window, sliding_layers) = sliding(f, num_layers)?;
    let (positions, local_theta) = rotary(f)?;
    Ok(ModelSpec {
        name: f.model.to_string(),
        arch: Arch::Gemma3,
        vocab_size: f.positive("vocab_size")?,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: f.positive("intermediate_size")?,
        max_position_embeddings: f.positive("max_position_embeddings")?,
        norm: NormKind::RmsNorm,
        norm_eps,
        mlp: Mlp::GeGlu,
        positions,
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias: false,
        qk_norm: true,
        local_rope_theta: sliding_window.map(|_| local_theta),
        sliding_window,
        sliding_layers,
        attention_scale: Some(1.0 / scalar.sqrt()),
        embed_scale: Some((hidden_size as f64).sqrt()),
        final_softcap: softcap(f, "final_logit_softcapping")?,
        sandwich_norms: true,
        norm_gain_offset: true,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(true),
        bos_token_id: f.opt_token("bos_token_id")?,
        eos_token_ids: f.token_list("eos_token_id")?,
        pad_token_id: f.opt_token("pad_token_id")?,
        source_dtype: source_dtype(f)?,
        config_hash: String::new(),
    })
}

/// A soft-capping value: absent or null for none, else a positive finite number.
fn softcap(f: &Fields<'_>, field: &str) -> Result<Option<f64>, ConfigError> {
    match f.opt_f64(field)? {
        None => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        Some(v) => Err(f.invalid(field, &v.into(), "a soft-capping value must be positive")),
    }
}

/// Bidirectional attention changes what a layer computes and is not implemented.
/// (`attn_logit_softcapping` is read by transformers' Gemma 3 but never applied: its attention
/// passes no cap to the kernel, QK-norm having replaced Gemma 2's capping. We compute what it
/// computes, so the key is accepted and has no effect; `final_logit_softcapping` is applied.)
fn refuse_unimplemented(f: &Fields<'_>) -> Result<(), ConfigError> {
    if let Some(true) = f.opt_bool("use_bidirectional_attention")? {
        return Err(f.unsupported(
            "use_bidirectional_attention",
            &Value::Bool(true),
            "only causal attention is implemented",
        ));
    }
    Ok(())
}

/// `layer_types` when written, else layer `i` slides unless `(i + 1)` is a multiple of
/// `sliding_window_pattern`.
fn sliding(f: &Fields<'_>, num_layers: usize) -> Result<windows::Sliding, ConfigError> {
    if f.get("layer_types").is_some() {
        return windows::from_layer_types_or(f, num_layers, Some(DEFAULT_WINDOW));
    }
    let pattern = match f.opt_usize("sliding_window_pattern")? {
        Some(p) => f.check_positive("sliding_window_pattern", p)?,
        None => DEFAULT_WINDOW_PATTERN,
    };
    let window = match f.has_key("sliding_window") {
        true => f.opt_usize("sliding_window")?,
        false => Some(DEFAULT_WINDOW),
    };
    let Some(window) = window else {
        return Err(f.invalid(
            "sliding_window",
            &Value::Null,
            "Gemma 3's local layers need a window",
        ));
    };
    let layers = (0..num_layers).map(|i| (i + 1) % pattern != 0).collect();
    windows::checked(f, window, layers)
}

/// The global layers' rotary embedding and the local layers' base: transformers 5 keys
/// `rope_parameters` by layer type; transformers 4 wrote `rope_theta` + `rope_scaling` (global) and
/// `rope_local_base_freq` (local, never scaled).
fn rotary(f: &Fields<'_>) -> Result<(Positions, f64), ConfigError> {
    if let Some(params) = f.object("rope_parameters")? {
        let global = match params.object("full_attention")? {
            Some(p) => rope::parse_entry(&p, f, DEFAULT_GLOBAL_THETA)?,
            None => rope::parse_entry(&params, f, DEFAULT_GLOBAL_THETA)?,
        };
        let local = match params.object("sliding_attention")? {
            Some(p) => p,
            None => {
                return Err(f.invalid(
                    "rope_parameters",
                    &Value::Null,
                    "Gemma 3 needs a `sliding_attention` entry for its local layers",
                ));
            }
        };
        let local_theta = match rope::parse_entry(&local, f, DEFAULT_LOCAL_THETA)? {
            Positions::Rope {
                theta,
                llama3: None,
                linear: None,
                yarn: None,
            } => theta,
            _ => {
                return Err(local.unsupported(
                    "rope_type",
                    local.get("rope_type").unwrap_or(&Value::Null),
                    "Gemma 3's local layers use an unscaled rotary embedding",
                ));
            }
        };
        return Ok((global, local_theta));
    }
    let theta = match f.opt_f64("rope_theta")? {
        Some(t) => f.check_positive_f64("rope_theta", t)?,
        None => DEFAULT_GLOBAL_THETA,
    };
    let scaling = match f.object("rope_scaling")? {
        Some(s) => rope::scaling(&s, f)?,
        None => rope::Scaling::default(),
    };
    let local_theta = match f.opt_f64("rope_local_base_freq")? {
        Some(t) => f.check_positive_f64("rope_local_base_freq", t)?,
        None => DEFAULT_LOCAL_THETA,
    };
    let global = Positions::Rope {
        theta,
        llama3: scaling.llama3,
        linear: scaling.linear,
        yarn: scaling.yarn,
    };
    Ok((global, local_theta))
}
