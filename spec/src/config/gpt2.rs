//! `model_type: "gpt2"`: pre-norm LayerNorm decoder with learned positions, fused Conv1D attention and a
//! `gelu_new` MLP, biases everywhere, `lm_head` tied to the token embedding unless the config says not.

use super::fields::Fields;
use super::{ConfigError, divide, source_dtype};
use crate::spec::{Arch, Mlp, ModelSpec, NormKind, Positions};
use serde_json::Value;

const DEFAULT_LN_EPS: f64 = 1e-5;

pub(super) fn parse(f: &Fields<'_>) -> Result<ModelSpec, ConfigError> {
    let act = f.opt_str("activation_function")?.unwrap_or("gelu_new");
    if act != "gelu_new" {
        return Err(f.unsupported(
            "activation_function",
            &Value::from(act),
            "only `gelu_new` (the tanh approximation) is implemented for gpt2",
        ));
    }
    // Variants of GPT-2 attention that change its numerics.
    for (field, refused, reason) in [
        (
            "scale_attn_by_inverse_layer_idx",
            true,
            "per-layer attention scaling is not implemented",
        ),
        (
            "scale_attn_weights",
            false,
            "attention without 1/sqrt(head_dim) scaling is not implemented",
        ),
        (
            "add_cross_attention",
            true,
            "cross-attention is not implemented",
        ),
    ] {
        if f.opt_bool(field)? == Some(refused) {
            return Err(f.unsupported(field, &Value::Bool(refused), reason));
        }
    }

    let hidden_size = f.positive("n_embd")?;
    let num_heads = f.positive("n_head")?;
    let head_dim = divide(f, ("n_embd", hidden_size), ("n_head", num_heads))?;
    let intermediate_size = match f.opt_usize("n_inner")? {
        Some(n) => f.check_positive("n_inner", n)?,
        None => 4 * hidden_size,
    };
    let norm_eps = match f.opt_f64("layer_norm_epsilon")? {
        Some(e) => f.check_positive_f64("layer_norm_epsilon", e)?,
        None => DEFAULT_LN_EPS,
    };

    Ok(ModelSpec {
        name: f.model.to_string(),
        arch: Arch::Gpt2,
        vocab_size: f.positive("vocab_size")?,
        hidden_size,
        num_layers: f.positive("n_layer")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim,
        intermediate_size,
        max_position_embeddings: f.positive("n_positions")?,
        norm: NormKind::LayerNorm,
        norm_eps,
        mlp: Mlp::GeluNew,
        positions: Positions::Learned,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        qk_norm: false,
        sliding_window: None,
        sliding_layers: Vec::new(),
        local_rope_theta: None,
        attention_scale: None,
        embed_scale: None,
        final_softcap: None,
        sandwich_norms: false,
        norm_gain_offset: false,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(true),
        bos_token_id: f.opt_token("bos_token_id")?,
        eos_token_ids: f.token_list("eos_token_id")?,
        pad_token_id: f.opt_token("pad_token_id")?,
        source_dtype: source_dtype(f)?,
        config_hash: String::new(),
    })
}
