//! Seeded random weights for any ModelSpec.
//!
//! CONTRACT (owned by the `cli` work package; signatures are fixed, bodies are filled there).
use super::{WeightMap, WeightsError};
use crate::spec::ModelSpec;
use std::path::Path;

/// Deterministic weights for `spec` from `seed` (canonical names; same seed, same bytes).
pub fn generate(spec: &ModelSpec, seed: u64) -> WeightMap {
    let _ = (spec, seed);
    WeightMap::default()
}

/// Write `weights` as a HF-format directory (`config.json` + `model.safetensors` in HF names) that
/// transformers loads, so a PyPI baseline runs on exactly the same weights.
pub fn write_hf_dir(
    spec: &ModelSpec,
    config_json: &Path,
    weights: &WeightMap,
    dir: &Path,
) -> Result<(), WeightsError> {
    let _ = (spec, config_json, weights, dir);
    Err(WeightsError::Other("not implemented yet".into()))
}
