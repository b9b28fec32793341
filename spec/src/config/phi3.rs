//! `model_type: "phi3"` (Phi3ForCausalLM, e.g. Phi-3-mini-4k-instruct): a pre-norm RMSNorm decoder
//! with a SwiGLU MLP, rotary positions and GQA, computing what a Llama layer computes on weights stored
//! fused (`qkv_proj` = `[q | k | v]`, `gate_up_proj` = `[gate | up]`; `weights/names.rs` splits them).
//! What transformers' `Phi3Config` and `Phi3Model` make of a config, and so what is read here:
//! - no biases anywhere, whatever `attention_bias` says (the layers are built without them);
//! - `sliding_window` applies in every layer (`create_sliding_window_causal_mask`: a query at `p` sees
//!   the keys `j` with `p - w < j <= p`) unless it is `null` or absent, the default; `layer_types` does
//!   not change the mask and is not read;
//! - the rotary embedding is `default` or `longrope` (written `su` or `yarn` by older configs), the
//!   latter not implemented here and refused by name; `partial_rotary_factor` (top level, or inside
//!   `rope_parameters`) rotates only part of each head and is refused unless 1;
//! - `original_max_position_embeddings` only matters to `longrope`; `resid_pdrop`, `embd_pdrop` and
//!   `attention_dropout` are training-time dropout; `pad_token_id` only zeroes an embedding row at
//!   initialisation.
//!
//! Defaults are transformers' `Phi3Config`'s.

use super::fields::Fields;
use super::{ConfigError, geometry, rope, source_dtype, windows};
use crate::spec::{Arch, Mlp, ModelSpec, NormKind, Positions};
use serde_json::Value;

const DEFAULT_RMS_EPS: f64 = 1e-5;

pub(super) fn parse(f: &Fields<'_>) -> Result<ModelSpec, ConfigError> {
    let act = f.opt_str("hidden_act")?.unwrap_or("silu");
    if act != "silu" {
        return Err(f.unsupported(
            "hidden_act",
            &Value::from(act),
            "only `silu` (SwiGLU) is implemented for Phi-3",
        ));
    }
    // `Phi3Attention` takes `head_dim` when the config has one, else hidden / heads.
    let (hidden_size, num_heads, num_kv_heads, head_dim) = geometry(f, None)?;
    let norm_eps = match f.opt_f64("rms_norm_eps")? {
        Some(e) => f.check_positive_f64("rms_norm_eps", e)?,
        None => DEFAULT_RMS_EPS,
    };
    let num_layers = f.positive("num_hidden_layers")?;
    let (sliding_window, sliding_layers) = match f.opt_usize("sliding_window")? {
        Some(w) => windows::every_layer(f, w, num_layers)?,
        None => (None, Vec::new()),
    };
    Ok(ModelSpec {
        name: f.model.to_string(),
        arch: Arch::Phi3,
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
        mlp: Mlp::SwiGlu,
        positions: rotary(f)?,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        sliding_window,
        sliding_layers,
        local_rope_theta: None,
        attention_scale: None,
        embed_scale: None,
        final_softcap: None,
        sandwich_norms: false,
        norm_gain_offset: false,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        bos_token_id: f.opt_token("bos_token_id")?,
        eos_token_ids: f.token_list("eos_token_id")?,
        pad_token_id: f.opt_token("pad_token_id")?,
        source_dtype: source_dtype(f)?,
        config_hash: String::new(),
    })
}

/// The unscaled rotary embedding over the whole head: `Phi3Config` accepts only `default` and
/// `longrope` scaling, in `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
fn rotary(f: &Fields<'_>) -> Result<Positions, ConfigError> {
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(s) = f.object(key)? else {
            continue;
        };
        let (field, kind) = match s.opt_str("rope_type")? {
            Some(k) => ("rope_type", k),
            None => match s.opt_str("type")? {
                Some(k) => ("type", k),
                None => ("rope_type", "default"),
            },
        };
        match kind {
            "default" => {}
            "longrope" | "su" | "yarn" => {
                return Err(s.unsupported(
                    field,
                    &Value::from(kind),
                    "Phi-3's long-context rotary scaling (`longrope`, which transformers also reads \
                     from `su` and `yarn`) is not implemented; the 4k-context Phi-3 models have none",
                ));
            }
            other => {
                return Err(s.unsupported(
                    field,
                    &Value::from(other),
                    "Phi-3's rotary embedding is `default` or `longrope` (transformers' Phi3Config \
                     refuses the others)",
                ));
            }
        }
        if let Some(p) = s.opt_f64("partial_rotary_factor")?
            && p != 1.0
        {
            return Err(s.unsupported(
                "partial_rotary_factor",
                &Value::from(p),
                "rotary embeddings must cover the whole head",
            ));
        }
    }
    // What is left is `default`: its base, and the top-level `partial_rotary_factor`, checked there.
    rope::parse(f)
}
