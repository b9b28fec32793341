//! GGUF reader.
//!
//! CONTRACT (owned by the `text` work package; signatures are fixed, bodies are filled there).
use super::{WeightMap, WeightsError};
use crate::spec::ModelSpec;
use std::path::Path;

/// One metadata value of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<GgufValue>),
}

/// An opened (memory-mapped, header-validated) GGUF file.
pub struct GgufFile {
    _private: (),
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        Err(WeightsError::Other(format!(
            "GGUF not implemented yet: {}",
            path.display()
        )))
    }

    /// A metadata value by key (e.g. `general.architecture`, `tokenizer.ggml.tokens`).
    pub fn metadata(&self, key: &str) -> Option<&GgufValue> {
        let _ = key;
        None
    }

    /// The model described by the file's metadata (`llama.*` keys), named `name`.
    pub fn spec(&self, name: &str) -> Result<ModelSpec, WeightsError> {
        Err(WeightsError::Other(format!(
            "GGUF model specs are not implemented yet ({name})"
        )))
    }

    /// All tensors dequantised to f32 under canonical names, with llama.cpp's Q/K permutation undone.
    pub fn canonical_weights(&self, spec: &ModelSpec) -> Result<WeightMap, WeightsError> {
        let _ = spec;
        Err(WeightsError::Other("GGUF not implemented yet".into()))
    }
}
