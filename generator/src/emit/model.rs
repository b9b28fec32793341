//! `src/lib.rs` (the crate's face) and `src/model.rs` (the `Model` marker, `spec()`, `entry()` and the
//! `DynModel` implementation the registry uses) of a model crate.

use super::lit;
use crate::ModelInput;
use llmforge_spec::manifest::WeightEntry;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

pub fn lib_rs(m: &ModelInput) -> TokenStream {
    let doc = super::lit::doc_lines(&format!(
        "Typed llmforge engine for `{}` (`{}`): its constants, a static KV cache with one named field per \
         layer tensor, the engine's inputs and the engine. Generated from `models.toml`; see README.md. \
         The modules are formatted by the generator (prettyplease), so rustfmt skips them. The crate \
         re-exports `runtime` and what an application needs besides its own types (generation options, \
         progress, weight sources, the generic engine and model traits), so it can be an application's \
         one dependency.",
        m.entry.name, m.entry.hf_id
    ));
    quote! {
        #(#![doc = #doc])*

        #[rustfmt::skip]
        mod cache;
        #[rustfmt::skip]
        pub mod config;
        #[rustfmt::skip]
        mod engine;
        #[rustfmt::skip]
        mod model;

        pub use ::runtime;
        pub use ::runtime::codegen::{Bf16, Fp16, Fp32};
        pub use ::runtime::codegen::{CacheMode, DeviceChoice, EngineOptions};
        pub use ::runtime::codegen::{Dense, Fp8Weights, GgufBlocks, Int4Weights, Int8Weights};
        pub use ::runtime::codegen::{GenerateOptions, GenerateOutput, NoProgress, Progress};
        pub use ::runtime::codegen::{RuntimeError, RuntimeResult, TypedEngine, TypedModel};
        pub use ::runtime::codegen::{Sampling, WeightSource};
        pub use cache::{Inputs, KvCache};
        pub use config::*;
        pub use engine::{Engine, default_options};
        pub use model::{MODEL, Model, entry, spec};
    }
}

fn weight_entry(w: &WeightEntry) -> TokenStream {
    let path = |p: &std::path::Path| lit::str(&p.display().to_string());
    match w {
        WeightEntry::HfDir { path: p } => {
            let p = path(p);
            quote!(rt::WeightEntry::HfDir { path: ::std::path::PathBuf::from(#p) })
        }
        WeightEntry::HfCache { id } => {
            let id = match id {
                Some(id) => {
                    let id = lit::str(id);
                    quote!(Some(String::from(#id)))
                }
                None => quote!(None),
            };
            quote!(rt::WeightEntry::HfCache { id: #id })
        }
        WeightEntry::Gguf { path: p } => {
            let p = path(p);
            quote!(rt::WeightEntry::Gguf { path: ::std::path::PathBuf::from(#p) })
        }
        WeightEntry::Pypi { package } => {
            let package = lit::str(package);
            quote!(rt::WeightEntry::Pypi { package: String::from(#package) })
        }
        WeightEntry::Synthetic { seed } => {
            let seed = lit::u64(*seed);
            quote!(rt::WeightEntry::Synthetic { seed: #seed })
        }
    }
}

pub fn model_rs(m: &ModelInput) -> TokenStream {
    let precision = super::config::precision_value(m.entry.precision);
    let random_weights = m.entry.random_weights;
    let quant = format_ident!("{}", format!("{:?}", m.entry.quant_format));
    let weights = m.entry.weights.iter().map(weight_entry);
    quote! {
        //! The model as data: its spec, its `models.toml` entry, and the registry's view of it.

        use crate::config::*;
        use ::runtime::codegen as rt;

        /// Marker of this model: types the cache tensors so that they belong to this model only.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct Model;

        /// This model, for the registry.
        pub static MODEL: Model = Model;

        /// The normalised spec, exactly as `runtime::config` parses the `config.json` this crate was
        /// generated from.
        pub fn spec() -> rt::ModelSpec {
            rt::ModelSpec {
                name: String::from(NAME),
                arch: ARCH,
                vocab_size: VOCAB_SIZE,
                hidden_size: HIDDEN_SIZE,
                num_layers: NUM_LAYERS,
                num_heads: NUM_HEADS,
                num_kv_heads: NUM_KV_HEADS,
                head_dim: HEAD_DIM,
                intermediate_size: INTERMEDIATE_SIZE,
                max_position_embeddings: MAX_POSITION_EMBEDDINGS,
                norm: NORM,
                norm_eps: NORM_EPS,
                mlp: MLP,
                positions: POSITIONS,
                qkv_bias: QKV_BIAS,
                o_bias: O_BIAS,
                mlp_bias: MLP_BIAS,
                qk_norm: QK_NORM,
                sliding_window: SLIDING_WINDOW,
                sliding_layers: SLIDING_LAYERS.to_vec(),
                local_rope_theta: LOCAL_ROPE_THETA,
                attention_scale: ATTENTION_SCALE,
                embed_scale: EMBED_SCALE,
                final_softcap: FINAL_SOFTCAP,
                sandwich_norms: SANDWICH_NORMS,
                norm_gain_offset: NORM_GAIN_OFFSET,
                tie_word_embeddings: TIE_WORD_EMBEDDINGS,
                bos_token_id: BOS_TOKEN_ID,
                eos_token_ids: EOS_TOKEN_IDS.to_vec(),
                pad_token_id: PAD_TOKEN_ID,
                source_dtype: SOURCE_DTYPE.map(String::from),
                config_hash: String::from(CONFIG_SHA256),
            }
        }

        /// The `models.toml` entry this crate was generated from.
        pub fn entry() -> rt::ModelEntry {
            rt::ModelEntry {
                name: String::from(NAME),
                hf_id: String::from(HF_ID),
                config: ::std::path::PathBuf::from(CONFIG_PATH),
                precision: #precision,
                max_seq_len: DEFAULT_MAX_SEQ_LEN,
                batch_size: DEFAULT_BATCH_SIZE,
                weights: vec![#(#weights),*],
                random_weights: #random_weights,
                quant_format: rt::QuantFormat::#quant,
            }
        }

        impl rt::TypedModel for Model {
            type Cache<P: rt::PrecisionMarker> = crate::cache::KvCache<P>;
            type DefaultPrecision = DefaultPrecision;
            type DefaultQuant = DefaultQuant;
            const NAME: &'static str = NAME;
            fn spec() -> rt::ModelSpec {
                spec()
            }
            fn dyn_model() -> &'static dyn rt::DynModel {
                &MODEL
            }
            fn default_options() -> rt::EngineOptions {
                crate::default_options()
            }
        }

        impl rt::DynModel for Model {
            fn name(&self) -> &'static str {
                NAME
            }
            fn spec(&self) -> rt::ModelSpec {
                spec()
            }
            fn entry(&self) -> rt::ModelEntry {
                entry()
            }
            fn manifest_dir(&self) -> ::std::path::PathBuf {
                rt::workspace_root(::core::env!("CARGO_MANIFEST_DIR"))
            }
        }
    }
}
