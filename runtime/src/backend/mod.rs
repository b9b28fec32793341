//! The interface every backend implements, and the backends themselves.
//!
//! A backend owns the packed weights of one built engine and runs the fixed engine signature
//! `(input_ids, position_ids, key_cache_0, value_cache_0, …, start_idx, end_idx)` on them. The
//! per-architecture layer structure lives in `crate::model`; backends provide the ops.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod ops;

use crate::cache::{KvTensor, LayerKvMut};
use crate::sample::Sampler;
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

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("CUDA is not available on this machine: {0}")]
    CudaUnavailable(String),
    #[error("CUDA error in {op}: {message}")]
    Cuda { op: String, message: String },
    #[error(
        "out of GPU memory allocating {what} ({bytes} bytes, {} free on the GPU)",
        crate::admission::human(*free as u64)
    )]
    OutOfMemory {
        what: String,
        bytes: usize,
        free: usize,
    },
    #[error("kernel compilation failed for {kernel}: {log}")]
    KernelCompile { kernel: String, log: String },
    #[error("{0}")]
    Other(String),
}

/// A built engine's compute: implemented by `cpu::CpuBackend` and `cuda::CudaBackend`.
pub trait Backend: Send {
    fn kind(&self) -> BackendKind;

    /// A zeroed cache tensor of `shape = [batch, num_kv_heads, max_seq_len, head_dim]` in this backend's
    /// memory and cache precision.
    fn new_cache_tensor(&self, shape: [usize; 4]) -> crate::Result<KvTensor>;

    /// Bytes of one cache value in this backend's memory.
    fn cache_element_bytes(&self) -> usize;

    /// Memory this backend's allocations may still take (host memory for the CPU, the GPU's free
    /// memory for a GPU backend); `None` when it cannot be known.
    fn available_memory(&self) -> Option<crate::admission::Available> {
        crate::admission::host_available()
    }

    /// Run the engine signature and return logits on the host. Bounds (`end_idx <= max_seq_len`, batch,
    /// token ids) are checked by the caller (`Engine::forward`) before this is called.
    fn forward(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        rows: LogitRows,
    ) -> crate::Result<Logits>;

    /// Run the engine signature and pick the next token of each sequence. The default samples on the
    /// host from `forward`'s last-position logits; a GPU backend overrides this to sample on the device
    /// so only token ids cross to the host.
    fn next_tokens(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        sampler: &mut Sampler,
    ) -> crate::Result<Vec<u32>> {
        let logits = self.forward(step, cache, mode, LogitRows::Last)?;
        Ok((0..logits.batch)
            .map(|b| sampler.sample(logits.row(b, 0)))
            .collect())
    }

    /// Bytes of weights read per decode step (for roofline figures).
    fn weight_bytes(&self) -> usize;

    /// The device this backend runs on, in words (e.g. the GPU's name).
    fn device_name(&self) -> String {
        self.kind().as_str().to_string()
    }

    /// What the engine-file header records about this backend: the GPU compute capability (e.g. 90)
    /// and the chosen GEMM algorithms, in words. The CPU has neither.
    fn header_extras(&self) -> (Option<u32>, Vec<String>) {
        (None, Vec::new())
    }

    /// Serialise the backend's payload (packed weights, compiled kernels, chosen algorithms) for the
    /// engine file. The header is written by `engine_file`.
    fn write_payload(&self, out: &mut dyn std::io::Write) -> crate::Result<()>;
}
