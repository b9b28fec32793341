//! The interface every backend implements, and the backends themselves.
//!
//! A backend owns the packed weights of one built engine and runs the fixed engine signature
//! `(input_ids, position_ids, key_cache_0, value_cache_0, …, start_idx, end_idx)` on them. The
//! per-architecture layer structure lives in `crate::model`; backends provide the ops.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod ops;

pub use crate::backend_error::BackendError;
pub use crate::step::{BackendKind, CacheMode, LogitRows, Logits, StepInputs};

use crate::cache::{KvTensor, LayerKvMut};
use crate::sample::Sampler;

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
