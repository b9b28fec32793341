//! The vocabulary of one engine call, shared by every floor above it: which backend, which cache
//! mode, the step's inputs and which logits come back. Imports nothing of the crate.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendKind {
    Cpu,
    Cuda,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// The seed's three cache modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheMode {
    /// Write the new K/V into the cache, then attend over `cache[:end_idx]`.
    StaticV1,
    /// Attend over `concat(cache[:start_idx], new)`, then write the new K/V.
    StaticV2,
    /// No cache: every step recomputes the whole sequence (`start_idx` must be 0).
    None,
}

impl CacheMode {
    pub const ALL: [CacheMode; 3] = [CacheMode::StaticV1, CacheMode::StaticV2, CacheMode::None];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::StaticV1 => "static_v1",
            CacheMode::StaticV2 => "static_v2",
            CacheMode::None => "none",
        }
    }
}

/// One call of the fixed engine signature, for `batch` sequences of `seq_len` new tokens each.
/// All sequences of a batch share `start_idx`/`end_idx` (`end_idx - start_idx == seq_len`).
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    /// `[batch, seq_len]`, row-major.
    pub input_ids: &'a [u32],
    /// `[batch, seq_len]`, row-major.
    pub position_ids: &'a [u32],
    pub batch: usize,
    pub seq_len: usize,
    pub start_idx: usize,
    pub end_idx: usize,
}

/// Which positions' logits a forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// Only the last position of each sequence: `[batch, vocab]`.
    Last,
    /// Every position: `[batch, seq_len, vocab]`.
    All,
}

/// Logits on the host, f32, row-major `[batch, rows, vocab]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub rows: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn row(&self, b: usize, r: usize) -> &[f32] {
        let start = (b * self.rows + r) * self.vocab;
        &self.data[start..start + self.vocab]
    }
}
