//! What an engine is built for and where it runs: recorded in engine files and checked on load.
//! Shared by every floor above it.

use crate::format::QuantFormat;
use crate::precision::Precision;
use crate::step::BackendKind;
use serde::{Deserialize, Serialize};

/// Where the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// The CPU backend; `threads: None` uses every core.
    Cpu { threads: Option<usize> },
    /// The CUDA backend on GPU `ordinal`.
    Cuda { ordinal: usize },
}

impl DeviceChoice {
    pub fn backend_kind(self) -> BackendKind {
        match self {
            DeviceChoice::Cpu { .. } => BackendKind::Cpu,
            DeviceChoice::Cuda { .. } => BackendKind::Cuda,
        }
    }
}

/// What an engine is built for. Recorded in the engine file and checked on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    pub precision: Precision,
    /// Length of the static cache (prompt + generated tokens).
    pub max_seq_len: usize,
    /// Largest batch the engine accepts.
    pub max_batch: usize,
    pub device: DeviceChoice,
    /// How linear layers' weights are stored (`--quant_format`); engine files from before the field
    /// read as `none`.
    #[serde(default)]
    pub quant: QuantFormat,
}
