//! `src/engine.rs` of a model crate: `Engine<P>`, `runtime`'s generic typed engine for this model
//! (it only accepts this model's `KvCache<P>` of the same precision), and the build defaults.

use crate::ModelInput;
use proc_macro2::TokenStream;
use quote::quote;

pub fn engine_rs(m: &ModelInput) -> TokenStream {
    let doc = super::lit::doc_lines(&format!(
        "A built `{}` engine whose weights (and, on GPU, activations and cache) are stored in precision \
         `P` ([`Fp32`](crate::Fp32), [`Fp16`](crate::Fp16) or [`Bf16`](crate::Bf16)), its linear \
         layers in weight format `Q` ([`Dense`](crate::Dense), [`GgufBlocks`](crate::GgufBlocks), \
         [`Int8Weights`](crate::Int8Weights), [`Int4Weights`](crate::Int4Weights) or \
         [`Fp8Weights`](crate::Fp8Weights)).",
        m.entry.name
    ));
    quote! {
        //! The typed engine: `runtime`'s one generic engine for this model (build, save/load, forward
        //! and the generation loops), and this model's build defaults.

        use crate::config::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_SEQ_LEN, DefaultPrecision, DefaultQuant};
        use crate::model::Model;
        use ::runtime::codegen as rt;

        #(#[doc = #doc])*
        pub type Engine<P = DefaultPrecision, Q = DefaultQuant> = rt::TypedEngine<Model, P, Q>;

        /// The `models.toml` build defaults on the CPU: `DEFAULT_MAX_SEQ_LEN`, `DEFAULT_BATCH_SIZE`, every
        /// core.
        pub fn default_options() -> rt::EngineOptions {
            rt::EngineOptions {
                max_seq_len: DEFAULT_MAX_SEQ_LEN,
                max_batch: DEFAULT_BATCH_SIZE,
                device: rt::DeviceChoice::Cpu { threads: None },
            }
        }
    }
}
