//! llmforge runtime: everything that runs a model.
//!
//! `spec` (the normalised model) ← `config` (HF `config.json`) and `manifest` (`models.toml`);
//! `weights` (safetensors, GGUF, synthetic) → `engine` (build, save/load via `engine_file`) over a
//! `backend` (CPU reference, CUDA) → `generate` (static-cache generation loop, `sample`) and `perplexity`
//! (a text scored in windows), with `tokenize`
//! and `chat` at the text edge. Generated per-model crates reach all of this through `codegen` only.

pub mod admission;
pub mod backend;
pub mod backend_error;
pub mod cache;
pub mod chat;
pub mod codegen;
pub mod engine;
pub mod engine_file;
pub mod error;
pub mod generate;
pub mod manifest;
pub mod model;
pub mod options;
pub mod perplexity;
pub mod progress;
pub mod rope;
pub mod sample;
pub mod step;
pub mod tokenize;
pub mod typed_engine;
pub mod weights;

pub use error::{Error, Result};
/// The model description (its own crate, `llmforge-spec`), under the paths the runtime always had.
pub use llmforge_spec::{config, format, plan, precision, spec};
pub use precision::Precision;
pub use spec::ModelSpec;
