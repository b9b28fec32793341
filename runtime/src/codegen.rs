//! The one curated surface that generated crates use (`::runtime::codegen::…`), so the runtime can change
//! inside without breaking emitted code.
//!
//! CONTRACT for the generated registry (owned by the `gen` work package, used by `run_llm`):
//! `registry::get(name) -> Option<&'static dyn DynModel>`, `registry::all() -> &'static [&'static dyn
//! DynModel]`, `registry::DEFAULT_MODEL: &str`.

use crate::manifest::ModelEntry;
use crate::spec::ModelSpec;
use std::path::PathBuf;

/// A generated model crate seen through a trait object (what the CLI needs to pick and build a model).
pub trait DynModel: Send + Sync {
    /// The `models.toml` name.
    fn name(&self) -> &'static str;
    /// The normalised spec the crate was generated from.
    fn spec(&self) -> ModelSpec;
    /// The `models.toml` entry (weight sources, build defaults).
    fn entry(&self) -> ModelEntry;
    /// The directory that the entry's relative paths resolve against (where `models.toml` is).
    fn manifest_dir(&self) -> PathBuf;
}
