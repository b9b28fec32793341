//! A built engine: a model spec, the options it was built with, and a backend holding packed weights.
//! `Engine::forward` is the one place the static-cache bounds are checked before any backend runs.

use crate::backend::{Backend, BackendKind, CacheMode, LogitRows, Logits, StepInputs};
use crate::cache::{KvCache, LayerKvMut};
use crate::precision::Precision;
use crate::progress::Progress;
use crate::spec::ModelSpec;
use crate::weights::WeightSource;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
}

pub struct Engine {
    spec: ModelSpec,
    options: BuildOptions,
    backend: Box<dyn Backend>,
}

impl Engine {
    /// The engine-build step: load weights, convert to the target precision, pack/fuse them and (on GPU)
    /// compile kernels and choose GEMM algorithms.
    pub fn build(
        spec: ModelSpec,
        weights: &WeightSource,
        options: BuildOptions,
        progress: &dyn Progress,
    ) -> Result<Engine> {
        let _ = (&spec, weights, &options, progress);
        Err(Error::invalid("engine build is not implemented yet"))
    }

    /// Wrap an already-built backend (used by the backends' builders and the engine-file loader).
    pub fn from_parts(spec: ModelSpec, options: BuildOptions, backend: Box<dyn Backend>) -> Engine {
        Engine {
            spec,
            options,
            backend,
        }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn options(&self) -> &BuildOptions {
        &self.options
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Save to `path` atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let _ = path;
        Err(Error::invalid("engine save is not implemented yet"))
    }

    /// Load an engine file, refusing one built for another model (by spec), precision, format version,
    /// backend or GPU.
    pub fn load(path: &Path, spec: &ModelSpec, expect: &BuildOptions) -> Result<Engine> {
        let _ = (path, spec, expect);
        Err(Error::invalid("engine load is not implemented yet"))
    }

    /// A zeroed cache for `batch` sequences (`batch <= max_batch`).
    pub fn new_cache(&self, batch: usize) -> Result<KvCache> {
        if batch == 0 || batch > self.options.max_batch {
            return Err(Error::invalid(format!(
                "batch size {batch} is outside 1..={} that this engine was built for",
                self.options.max_batch
            )));
        }
        let mut layers = Vec::with_capacity(self.spec.num_layers);
        for l in 0..self.spec.num_layers {
            let shape = self.spec.kv_shape(l, batch, self.options.max_seq_len);
            layers.push((
                self.backend.new_cache_tensor(shape)?,
                self.backend.new_cache_tensor(shape)?,
            ));
        }
        Ok(KvCache { layers })
    }

    /// The fixed engine signature. Checks every bound, then runs the backend.
    pub fn forward(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        rows: LogitRows,
    ) -> Result<Logits> {
        let _ = (step, cache, mode, rows);
        Err(Error::invalid("forward is not implemented yet"))
    }
}
