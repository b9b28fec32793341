//! `model_type: "llama"`, `"mistral"`, `"qwen2"` and `"qwen3"`: pre-norm RMSNorm decoder, SwiGLU MLP,
//! rotary positions, GQA. Qwen2 differs in always having q/k/v biases; Qwen3 in its per-head RMSNorm
//! of q and k before the rotary embedding (`q_norm`, `k_norm`) and its explicit `head_dim`; Mistral
//! in its `sliding_window`, applied in every layer unless it is `null`. Qwen2 and Qwen3 carry
//! sliding-window fields even when no layer uses them (`use_sliding_window: false`).

use super::fields::Fields;
use super::{ConfigError, geometry, rope, source_dtype, windows};
use crate::spec::{Arch, Mlp, ModelSpec, NormKind};
use serde_json::Value;

/// `rms_norm_eps` when the config does not say (the transformers default of these families).
const DEFAULT_RMS_EPS: f64 = 1e-6;

/// transformers' `Qwen3Config` head size when the config does not say (not hidden / heads).
const QWEN3_DEFAULT_HEAD_DIM: usize = 128;

/// transformers' `MistralConfig` window when the config has no `sliding_window` key (only an explicit
/// `null` means full attention).
const MISTRAL_DEFAULT_WINDOW: usize = 4096;

/// transformers' `Qwen2Config.max_window_layers` when the config does not say.
const QWEN_DEFAULT_MAX_WINDOW_LAYERS: usize = 28;

pub(super) fn parse(f: &Fields<'_>, arch: Arch) -> Result<ModelSpec, ConfigError> {
    let act = f.opt_str("hidden_act")?.unwrap_or("silu");
    if act != "silu" {
        return Err(f.unsupported(
            "hidden_act",
            &Value::from(act),
            "only `silu` (SwiGLU) is implemented for this family",
        ));
    }

    let default_head_dim = (arch == Arch::Qwen3).then_some(QWEN3_DEFAULT_HEAD_DIM);
    let (hidden_size, num_heads, num_kv_heads, head_dim) = geometry(f, default_head_dim)?;

    let attention_bias = f.opt_bool("attention_bias")?.unwrap_or(false);
    // What each family's transformers code builds: Qwen2's q/k/v projections always carry a bias,
    // its o_proj and MLP never do; Mistral has no bias anywhere; Qwen3's attention follows
    // `attention_bias`, its MLP has none; Llama reads both switches.
    let (qkv_bias, o_bias, mlp_bias) = match arch {
        Arch::Qwen2 => (true, false, false),
        Arch::Mistral => (false, false, false),
        Arch::Qwen3 => (attention_bias, attention_bias, false),
        _ => (
            attention_bias,
            attention_bias,
            f.opt_bool("mlp_bias")?.unwrap_or(false),
        ),
    };

    let norm_eps = match f.opt_f64("rms_norm_eps")? {
        Some(e) => f.check_positive_f64("rms_norm_eps", e)?,
        None => DEFAULT_RMS_EPS,
    };

    let num_layers = f.positive("num_hidden_layers")?;
    let (sliding_window, sliding_layers) = sliding(f, arch, num_layers)?;
    Ok(ModelSpec {
        name: f.model.to_string(),
        arch,
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
        positions: rope::parse(f)?,
        qkv_bias,
        o_bias,
        mlp_bias,
        qk_norm: arch == Arch::Qwen3,
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

/// The window and the layers that use it, as each family's transformers code decides:
/// - Mistral slides in every layer unless `sliding_window` is `null` (a config without the key gets
///   transformers' default window) and ignores `layer_types`;
/// - Qwen2 and Qwen3 take `layer_types` when written, else slide in layers `max_window_layers..`
///   when `use_sliding_window` is true;
/// - Llama has no sliding window: a `layer_types` entry other than `full_attention` is refused.
fn sliding(
    f: &Fields<'_>,
    arch: Arch,
    num_layers: usize,
) -> Result<(Option<usize>, Vec<bool>), ConfigError> {
    match arch {
        Arch::Mistral => {
            let window = match f.has_key("sliding_window") {
                true => f.opt_usize("sliding_window")?,
                false => Some(MISTRAL_DEFAULT_WINDOW),
            };
            match window {
                Some(w) => windows::every_layer(f, w, num_layers),
                None => Ok((None, Vec::new())),
            }
        }
        Arch::Qwen2 | Arch::Qwen3 => {
            // transformers drops the window unless `use_sliding_window` is true, and then refuses a
            // `layer_types` with sliding layers.
            let used = f.opt_bool("use_sliding_window")?.unwrap_or(false);
            if f.has_key("layer_types") {
                let (window, layers) = windows::from_layer_types(f, num_layers)?;
                if window.is_some() && !used {
                    let t = f.get("layer_types").cloned().unwrap_or_default();
                    return Err(f.invalid(
                        "layer_types",
                        &t,
                        "has sliding layers but `use_sliding_window` is not true, so there is no \
                         window for them",
                    ));
                }
                return Ok((window, layers));
            }
            match (used, f.opt_usize("sliding_window")?) {
                (true, Some(w)) => {
                    let first = f
                        .opt_usize("max_window_layers")?
                        .unwrap_or(QWEN_DEFAULT_MAX_WINDOW_LAYERS);
                    let layers = (0..num_layers).map(|i| i >= first).collect();
                    windows::checked(f, w, layers)
                }
                _ => Ok((None, Vec::new())),
            }
        }
        _ => {
            let (window, layers) = windows::from_layer_types(f, num_layers)?;
            if window.is_some() {
                let t = f.get("layer_types").cloned().unwrap_or_default();
                return Err(f.unsupported(
                    "layer_types",
                    &t,
                    "this family has no sliding-window layers",
                ));
            }
            Ok((window, layers))
        }
    }
}
