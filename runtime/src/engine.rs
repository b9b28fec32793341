//! A built engine: a model spec, the options it was built with, and a backend holding packed weights.
//! `Engine::forward` is the one place the static-cache bounds are checked before any backend runs.

pub use crate::options::{BuildOptions, DeviceChoice};

use crate::backend::Backend;
use crate::cache::{KvCache, LayerKvMut};
use crate::engine_file::{self, EngineHeader};
use crate::progress::Progress;
use crate::sample::Sampler;
use crate::spec::ModelSpec;
use crate::step::{BackendKind, CacheMode, LogitRows, Logits, StepInputs};
use crate::weights::{WeightMap, WeightSource};
use crate::{Error, Result};
use std::path::Path;

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
        progress.stage("load weights", 0);
        let map = crate::weights::load_as(&spec, weights, options.quant)?;
        progress.finish();
        Engine::build_from_weights(spec, &map, options, progress)
    }

    /// The engine-build step from weights already in memory (canonical names).
    pub fn build_from_weights(
        spec: ModelSpec,
        weights: &WeightMap,
        options: BuildOptions,
        progress: &dyn Progress,
    ) -> Result<Engine> {
        check_options(&spec, &options)?;
        let backend: Box<dyn Backend> = match options.device {
            DeviceChoice::Cpu { .. } => Box::new(crate::backend::cpu::build(
                &spec, weights, &options, progress,
            )?),
            DeviceChoice::Cuda { .. } => build_cuda(&spec, weights, &options, progress)?,
        };
        Ok(Engine::from_parts(spec, options, backend))
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
        let (target_sm, gemm_algorithms) = self.backend.header_extras();
        let mut header = EngineHeader::new(&self.spec, &self.options, target_sm);
        header.gemm_algorithms = gemm_algorithms;
        let backend = self.backend.as_ref();
        engine_file::save(path, &header, &|w| backend.write_payload(w))
    }

    /// Load an engine file, refusing one built for another model (by spec), precision, format version,
    /// backend or GPU. `expect.device` picks the device it runs on (e.g. the CPU thread count). A CPU
    /// engine maps the file and computes from the packed weights in place (`backend::cpu::load`).
    pub fn load(path: &Path, spec: &ModelSpec, expect: &BuildOptions) -> Result<Engine> {
        // The CUDA payload is read through the opened file's reader; the CPU one is mapped.
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
        let mut opened = engine_file::open(path)?;
        opened.header.check(path, spec, expect)?;
        match opened.header.backend {
            BackendKind::Cpu => {
                check_options(spec, expect)?;
                let backend = crate::backend::cpu::load(path, &opened, spec, expect)?;
                Ok(Engine::from_parts(spec.clone(), *expect, Box::new(backend)))
            }
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => {
                let backend = crate::backend::cuda::payload::load(
                    path,
                    &opened.header,
                    &mut opened.reader,
                    opened.payload_len,
                    spec,
                    expect,
                )?;
                Ok(Engine::from_parts(spec.clone(), *expect, Box::new(backend)))
            }
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => Err(Error::Backend(no_cuda_backend())),
        }
    }

    /// A zeroed cache for `batch` sequences (`batch <= max_batch`).
    pub fn new_cache(&self, batch: usize) -> Result<KvCache> {
        if batch == 0 || batch > self.options.max_batch {
            return Err(Error::invalid(format!(
                "batch size {batch} is outside 1..={} that this engine was built for",
                self.options.max_batch
            )));
        }
        let (max_seq_len, elem) = (self.options.max_seq_len, self.backend.cache_element_bytes());
        let need = crate::admission::kv_cache_bytes(&self.spec, batch, max_seq_len, elem);
        let knob = if batch > 1 {
            crate::admission::Knob::Batch
        } else {
            crate::admission::Knob::MaxSeqLen
        };
        crate::admission::check(
            || format!("the KV cache for {batch} sequence(s) of {max_seq_len} positions"),
            need,
            self.backend.available_memory().as_ref(),
            knob,
        )?;
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
        crate::cache::check_step(&self.spec, &self.options, step, cache, mode)?;
        let out = self.backend.forward(step, cache, mode, rows)?;
        crate::cache::mark_written(step, cache, mode);
        Ok(out)
    }

    /// The engine signature followed by token selection (on the device where the backend can).
    /// Same checks as [`Engine::forward`].
    pub fn next_tokens(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        sampler: &mut Sampler,
    ) -> Result<Vec<u32>> {
        crate::cache::check_step(&self.spec, &self.options, step, cache, mode)?;
        let out = self.backend.next_tokens(step, cache, mode, sampler)?;
        crate::cache::mark_written(step, cache, mode);
        Ok(out)
    }
}

/// Build options that no backend can honour.
fn check_options(spec: &ModelSpec, options: &BuildOptions) -> Result<()> {
    if options.max_seq_len == 0 || options.max_batch == 0 {
        return Err(Error::invalid(format!(
            "max_seq_len ({}) and max_batch ({}) must both be at least 1",
            options.max_seq_len, options.max_batch
        )));
    }
    if spec.sliding_window == Some(0) {
        return Err(Error::invalid(format!(
            "{}: a sliding window of 0 keys (a window holds at least one)",
            spec.name
        )));
    }
    if spec.positions == crate::spec::Positions::Learned
        && options.max_seq_len > spec.max_position_embeddings
    {
        return Err(Error::invalid(format!(
            "max_seq_len {} exceeds the {} learned positions of {}",
            options.max_seq_len, spec.max_position_embeddings, spec.name
        )));
    }
    Ok(())
}

/// The CUDA build entry point (`CudaUnavailable` on a machine without the CUDA libraries).
#[cfg(feature = "cuda")]
fn build_cuda(
    spec: &ModelSpec,
    weights: &WeightMap,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Box<dyn Backend>> {
    Ok(Box::new(crate::backend::cuda::build(
        spec, weights, options, progress,
    )?))
}

/// Without the `cuda` feature there is no CUDA backend to build.
#[cfg(not(feature = "cuda"))]
fn build_cuda(
    _spec: &ModelSpec,
    _weights: &WeightMap,
    _options: &BuildOptions,
    _progress: &dyn Progress,
) -> Result<Box<dyn Backend>> {
    Err(Error::Backend(no_cuda_backend()))
}

#[cfg(not(feature = "cuda"))]
fn no_cuda_backend() -> crate::backend::BackendError {
    crate::backend::BackendError::CudaUnavailable(
        "this build of the runtime has no CUDA backend (its `cuda` feature is off)".to_string(),
    )
}
