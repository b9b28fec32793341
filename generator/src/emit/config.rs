//! `src/config.rs` of a model crate: the model's constants (from its `ModelSpec`) and build defaults
//! (from its `models.toml` entry).

use super::lit;
use crate::{GenError, ModelInput, Problem};
use llmforge_spec::spec::{Arch, Mlp, NormKind, Positions};
use llmforge_spec::{ModelSpec, Precision};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

fn finite(m: &ModelInput, field: &str, x: f64) -> Result<proc_macro2::Literal, GenError> {
    if x.is_finite() {
        Ok(lit::f64(x))
    } else {
        Err(m.error(Problem::NotFinite {
            field: field.to_string(),
            value: x,
        }))
    }
}

pub fn arch(a: Arch) -> TokenStream {
    match a {
        Arch::Gpt2 => quote!(rt::Arch::Gpt2),
        Arch::Llama => quote!(rt::Arch::Llama),
        Arch::Mistral => quote!(rt::Arch::Mistral),
        Arch::Qwen2 => quote!(rt::Arch::Qwen2),
        Arch::Qwen3 => quote!(rt::Arch::Qwen3),
        Arch::Gemma3 => quote!(rt::Arch::Gemma3),
        Arch::Phi3 => quote!(rt::Arch::Phi3),
    }
}

pub fn precision_marker(p: Precision) -> TokenStream {
    let ident = format_ident!("{}", format!("{p:?}"));
    quote!(rt::#ident)
}

pub fn precision_value(p: Precision) -> TokenStream {
    let ident = format_ident!("{}", format!("{p:?}"));
    quote!(rt::Precision::#ident)
}

/// `rt::Positions` of the spec, and for rotary models the `ROPE_THETA` / `ROPE_SCALING` constants.
fn positions(m: &ModelInput) -> Result<(TokenStream, TokenStream), GenError> {
    match m.spec.positions {
        Positions::Learned => Ok((quote!(rt::Positions::Learned), TokenStream::new())),
        Positions::Rope {
            theta,
            llama3,
            linear,
            yarn,
        } => {
            let theta = finite(m, "rope theta", theta)?;
            let yarn = match yarn {
                None => quote!(None),
                Some(y) => {
                    let factor = finite(m, "rope_scaling.factor", y.factor)?;
                    let orig = lit::usize(y.original_max_position_embeddings);
                    let attention = finite(m, "rope_scaling.attention_factor", y.attention_factor)?;
                    let fast = finite(m, "rope_scaling.beta_fast", y.beta_fast)?;
                    let slow = finite(m, "rope_scaling.beta_slow", y.beta_slow)?;
                    let truncate = y.truncate;
                    quote!(Some(rt::YarnScaling {
                        factor: #factor,
                        original_max_position_embeddings: #orig,
                        attention_factor: #attention,
                        beta_fast: #fast,
                        beta_slow: #slow,
                        truncate: #truncate,
                    }))
                }
            };
            let linear = opt_f64(m, "rope_scaling.factor", linear)?;
            let scaling = match llama3 {
                None => quote!(None),
                Some(s) => {
                    let factor = finite(m, "rope_scaling.factor", s.factor)?;
                    let low = finite(m, "rope_scaling.low_freq_factor", s.low_freq_factor)?;
                    let high = finite(m, "rope_scaling.high_freq_factor", s.high_freq_factor)?;
                    let orig = lit::usize(s.original_max_position_embeddings);
                    quote!(Some(rt::Llama3Scaling {
                        factor: #factor,
                        low_freq_factor: #low,
                        high_freq_factor: #high,
                        original_max_position_embeddings: #orig,
                    }))
                }
            };
            let consts = quote! {
                /// Rotary embedding base frequency.
                pub const ROPE_THETA: f64 = #theta;
                /// Llama 3 frequency-dependent RoPE scaling, when the config has one.
                pub const ROPE_SCALING: Option<rt::Llama3Scaling> = #scaling;
                /// Linear RoPE interpolation (every frequency divided by it), when the config has one.
                pub const ROPE_LINEAR: Option<f64> = #linear;
                /// YaRN RoPE scaling, when the config has one.
                pub const ROPE_YARN: Option<rt::YarnScaling> = #yarn;
            };
            Ok((
                quote!(rt::Positions::Rope {
                    theta: ROPE_THETA,
                    llama3: ROPE_SCALING,
                    linear: ROPE_LINEAR,
                    yarn: ROPE_YARN,
                }),
                consts,
            ))
        }
    }
}

fn opt_f64(m: &ModelInput, field: &str, x: Option<f64>) -> Result<TokenStream, GenError> {
    Ok(match x {
        Some(x) => {
            let x = finite(m, field, x)?;
            quote!(Some(#x))
        }
        None => quote!(None),
    })
}

/// The attention window of each layer, and what differs between the layers that slide and the
/// others.
fn window_consts(m: &ModelInput) -> Result<TokenStream, GenError> {
    let s = &m.spec;
    let window = match s.sliding_window {
        Some(w) => {
            let w = lit::usize(w);
            quote!(Some(#w))
        }
        None => quote!(None),
    };
    let layers = s.sliding_layers.iter();
    let local_theta = opt_f64(m, "rope_local_base_freq", s.local_rope_theta)?;
    Ok(quote! {
        /// The window of the sliding-window layers: a query at position `p` sees keys `p - w < j <= p`.
        pub const SLIDING_WINDOW: Option<usize> = #window;
        /// Which layers attend over `SLIDING_WINDOW` (the local layers), one entry per layer; empty
        /// when every layer sees every earlier key.
        pub const SLIDING_LAYERS: &[bool] = &[#(#layers),*];
        /// The rotary base of the sliding layers, unscaled, where it differs from `ROPE_THETA`.
        pub const LOCAL_ROPE_THETA: Option<f64> = #local_theta;
    })
}

fn usize_consts(s: &ModelSpec) -> TokenStream {
    let rows: [(&str, &str, usize); 9] = [
        ("NUM_LAYERS", "Number of decoder layers.", s.num_layers),
        (
            "HIDDEN_SIZE",
            "Width of the residual stream.",
            s.hidden_size,
        ),
        ("NUM_HEADS", "Attention (query) heads.", s.num_heads),
        (
            "NUM_KV_HEADS",
            "Key/value heads (GQA when below `NUM_HEADS`).",
            s.num_kv_heads,
        ),
        ("HEAD_DIM", "Width of one attention head.", s.head_dim),
        (
            "INTERMEDIATE_SIZE",
            "Width of the MLP's hidden layer.",
            s.intermediate_size,
        ),
        (
            "VOCAB_SIZE",
            "Vocabulary size (rows of the embedding).",
            s.vocab_size,
        ),
        (
            "MAX_POSITION_EMBEDDINGS",
            "Positions the model was trained for.",
            s.max_position_embeddings,
        ),
        (
            "NUM_PARAMETERS",
            "Parameters, the tied embedding counted once.",
            s.num_parameters(),
        ),
    ];
    rows.iter()
        .map(|(name, doc, value)| {
            let name = format_ident!("{name}");
            let value = lit::usize(*value);
            let doc = format!(" {doc}");
            quote!(#[doc = #doc] pub const #name: usize = #value;)
        })
        .collect()
}

fn bool_consts(s: &ModelSpec) -> TokenStream {
    let rows = [
        (
            "QKV_BIAS",
            "Bias on the q, k and v projections.",
            s.qkv_bias,
        ),
        (
            "O_BIAS",
            "Bias on the attention output projection.",
            s.o_bias,
        ),
        ("MLP_BIAS", "Biases on the MLP projections.", s.mlp_bias),
        (
            "QK_NORM",
            "Per-head RMSNorm of q and k before the rotary embedding.",
            s.qk_norm,
        ),
        (
            "SANDWICH_NORMS",
            "Each half of a layer normalises its output again before the residual add.",
            s.sandwich_norms,
        ),
        (
            "NORM_GAIN_OFFSET",
            "The checkpoint stores norm gains minus one (`x * (1 + w)`).",
            s.norm_gain_offset,
        ),
        (
            "TIE_WORD_EMBEDDINGS",
            "`lm_head` is the token embedding.",
            s.tie_word_embeddings,
        ),
    ];
    rows.iter()
        .map(|(name, doc, value)| {
            let name = format_ident!("{name}");
            let doc = format!(" {doc}");
            quote!(#[doc = #doc] pub const #name: bool = #value;)
        })
        .collect()
}

pub fn config_rs(m: &ModelInput) -> Result<TokenStream, GenError> {
    let s = &m.spec;
    let e = &m.entry;
    let (name, hf_id, config, hash) = (
        lit::str(&e.name),
        lit::str(&e.hf_id),
        lit::str(&e.config.display().to_string()),
        lit::str(&s.config_hash),
    );
    let arch = arch(s.arch);
    let norm = match s.norm {
        NormKind::RmsNorm => quote!(rt::NormKind::RmsNorm),
        NormKind::LayerNorm => quote!(rt::NormKind::LayerNorm),
    };
    let mlp = match s.mlp {
        Mlp::SwiGlu => quote!(rt::Mlp::SwiGlu),
        Mlp::GeluNew => quote!(rt::Mlp::GeluNew),
        Mlp::GeGlu => quote!(rt::Mlp::GeGlu),
    };
    let windows = window_consts(m)?;
    let attention_scale = opt_f64(m, "query_pre_attn_scalar", s.attention_scale)?;
    let embed_scale = opt_f64(m, "embed scale", s.embed_scale)?;
    let final_softcap = opt_f64(m, "final_logit_softcapping", s.final_softcap)?;
    let eps = finite(m, "norm epsilon", s.norm_eps)?;
    let (positions, rope_consts) = positions(m)?;
    let sizes = usize_consts(s);
    let flags = bool_consts(s);
    let bos = lit::opt_u32(s.bos_token_id);
    let pad = lit::opt_u32(s.pad_token_id);
    let eos = s.eos_token_ids.iter().map(|&t| lit::u32(t));
    let dtype = lit::opt_str(s.source_dtype.as_deref());
    let precision = precision_marker(e.precision);
    let quant = format_ident!(
        "{}",
        llmforge_spec::quant_marker::marker_name(e.quant_format)
    );
    let max_seq = lit::usize(e.max_seq_len);
    let batch = lit::usize(e.batch_size);
    Ok(quote! {
        //! Constants of the model, from its `config.json`, and its build defaults, from `models.toml`.

        use ::runtime::codegen as rt;

        /// The `models.toml` name.
        pub const NAME: &str = #name;
        /// The Hugging Face repository.
        pub const HF_ID: &str = #hf_id;
        /// The vendored `config.json`, relative to the directory of `models.toml`.
        pub const CONFIG_PATH: &str = #config;
        /// Hex SHA-256 of the `config.json` bytes this crate was generated from.
        pub const CONFIG_SHA256: &str = #hash;
        /// Architecture family.
        pub const ARCH: rt::Arch = #arch;
        #sizes
        /// Normalisation layers.
        pub const NORM: rt::NormKind = #norm;
        /// Epsilon of the normalisation layers.
        pub const NORM_EPS: f64 = #eps;
        /// Feed-forward shape and activation.
        pub const MLP: rt::Mlp = #mlp;
        #rope_consts
        /// Position encoding.
        pub const POSITIONS: rt::Positions = #positions;
        #windows
        /// Softmax scale of the attention scores, where it is not `1 / sqrt(HEAD_DIM)`.
        pub const ATTENTION_SCALE: Option<f64> = #attention_scale;
        /// Factor the token embeddings are multiplied by, when the family scales them.
        pub const EMBED_SCALE: Option<f64> = #embed_scale;
        /// Soft cap of the final logits, `cap * tanh(l / cap)`, where the config sets one.
        pub const FINAL_SOFTCAP: Option<f64> = #final_softcap;
        #flags
        /// Beginning-of-sequence token, if the config names one.
        pub const BOS_TOKEN_ID: Option<u32> = #bos;
        /// Every token id that ends generation.
        pub const EOS_TOKEN_IDS: &[u32] = &[#(#eos),*];
        /// Padding token, if the config names one.
        pub const PAD_TOKEN_ID: Option<u32> = #pad;
        /// The checkpoint's own dtype.
        pub const SOURCE_DTYPE: Option<&str> = #dtype;
        /// The default precision of an engine (`models.toml`), as a type.
        pub type DefaultPrecision = #precision;
        /// The default weight format of an engine's linear layers, as a type.
        pub type DefaultQuant = rt::#quant;
        /// The default static cache length (`models.toml`).
        pub const DEFAULT_MAX_SEQ_LEN: usize = #max_seq;
        /// The default batch size (`models.toml`).
        pub const DEFAULT_BATCH_SIZE: usize = #batch;
    })
}
