//! The model description every part of llmforge shares: the normalised [`ModelSpec`] (`spec`), Hugging
//! Face `config.json` parsing into it (`config`), the layer plan both backends execute (`plan`), the
//! weight formats of its linear layers (`format`, and as types `quant_marker`), the engine precisions
//! (`precision`) and
//! `models.toml` (`manifest`). It depends on nothing but serde, toml, sha2 and thiserror, so the
//! generator can read models without compiling the runtime.

pub mod config;
pub mod format;
pub mod manifest;
pub mod plan;
pub mod precision;
pub mod quant_marker;
pub mod spec;

pub use precision::Precision;
pub use spec::ModelSpec;
