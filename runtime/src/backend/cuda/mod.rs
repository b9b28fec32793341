//! The CUDA backend: cudarc with dynamic loading (a machine without CUDA gets
//! `BackendError::CudaUnavailable`, never a panic), cuBLASLt GEMMs, NVRTC kernels specialised per
//! model, one CUDA graph per batch size for the decode step.
//!
//! Why a backend-specific layer loop ([`forward::encode`]) instead of the shared `Ops` trait: `Ops`
//! passes token ids and positions as host slices and issues one op per call, which rules out the two
//! things this backend exists for: a decode step captured once as a CUDA graph and replayed (every
//! input, including `start_idx`/`end_idx`, must then live in device memory at fixed addresses), and
//! fusions across op boundaries (residual add + bias + norm, qkv bias + RoPE + KV-cache write, bias +
//! activation, last-row gather folded into the lm_head GEMM's leading dimension). The layer structure
//! is still the one `crate::model` documents per family; `layers.rs` follows it op for op.
//!
//! Precision: weights, GEMM inputs and the KV cache in the storage type (FP32, FP16 or BF16); GEMM
//! outputs, the residual stream, softmax and norms in f32.
//!
//! Map of the modules:
//! - `memory`: device memory typed by element (`DevBuf<E>`; `DevSlice` / `DevSliceMut` views borrowed
//!   from it, which kernels read or write), the one module that holds raw device addresses.
//! - `device`: library probes, context + one stream, allocation and host copies of typed buffers.
//! - `launch` + `launchers`: one launcher per kernel, its fields the kernel's parameters in order
//!   (the PTX compile test checks them against each `.entry`), each kernel function typed by its
//!   launcher; plain and programmatic dependent launches.
//! - `weights`: conversion and QKV / gate-up fusion into one matrix buffer (host side, pure).
//! - `kernels`: askama templates `runtime/templates/kernels/*.cu` rendered with the model's constants,
//!   compiled by NVRTC for the GPU's compute capability, loaded.
//! - `gemm` + `cublaslt` + `tune`: cuBLASLt plans (handle and descriptors owned by RAII types) and the
//!   build-time timing of cuBLASLt candidates against the `gemv` kernel per weight shape (decode and
//!   prefill row counts).
//! - `forward` (shared launches), `layers` (general path: prefill, multi-token, large batches) and
//!   `decode` (fused one-token path: norms, activations, residual adds and argmax ride inside the
//!   GEMV kernels; split attention over the valid prefix with the combine folded into its last block).
//! - `step` + `graph`: one call (inputs uploaded in one copy; a decode step captured once per batch
//!   size, cache mode and cache addresses, then replayed; programmatic dependent launch on sm_90).
//! - `payload`: the engine-file payload (PTX, GEMM choices, packed weights) and its checks.
//! - `op_check`: kernels of a spec loaded on their own, storage buffers from and to f32, for the
//!   op-by-op tests against the CPU reference (`runtime/tests/cuda_ops.rs`).
//!
//! Limits: head_dim a multiple of 8, at most 128; max_seq_len at most 2^30 (`MAX_POSITIONS`:
//! positions and cache indices are 32-bit on the device); the fused decode path takes at most
//! `GEMV_MAX_ROWS` sequences (larger batches use the general path). Prefill attention: on tensor cores
//! (`attn_prefill_tc`, mma.sync with f32 accumulation) for FP16/BF16 with a head size that is a multiple
//! of 16 on sm_80+; on CUDA cores in f32 (`attn_prefill`) for FP32 and every other case.

pub mod cublaslt;
pub mod decode;
pub mod device;
pub mod forward;
pub mod fused_layer;
pub mod gemm;
pub mod graph;
pub mod kernels;
pub mod launch;
pub mod launchers;
pub mod layers;
pub mod memory;
pub mod op_check;
pub mod payload;
pub mod sampling;
pub mod scratch;
mod step;
pub mod trace;
pub mod tune;
pub mod weights;

use crate::backend::{Backend, BackendError};
use crate::cache::{KvStorage, KvTensor, LayerKvMut};
use crate::options::{BuildOptions, DeviceChoice};
use crate::plan::ModelPlan;
use crate::progress::Progress;
use crate::sample::Sampler;
use crate::spec::ModelSpec;
use crate::step::{BackendKind, CacheMode, LogitRows, Logits, StepInputs};
use crate::weights::WeightMap;
use crate::{Error, Result};
use cudarc::driver::CudaGraph;
use device::Gpu;
use forward::Call;
use fused_layer::{FusedLayer, LayerPositions};
use gemm::{GemmChoice, GemmShape, Lt};
use graph::GraphCache;
use kernels::{CompiledKernels, Kernels};
use memory::{DevBuf, Stored};
use scratch::Scratch;
use std::collections::BTreeMap;
use weights::{KeptBlocks, Layout};

pub struct CudaBackend {
    spec: ModelSpec,
    options: BuildOptions,
    gpu: Gpu,
    compiled: CompiledKernels,
    kernels: Kernels,
    lt: Lt,
    choices: BTreeMap<GemmShape, GemmChoice>,
    /// The layer plan's switches the kernels were compiled with.
    layer: FusedLayer,
    layout: Layout,
    /// The tensors kept as GGUF blocks (recorded in engine files: the layout depends on them).
    kept: KeptBlocks,
    mats: DevBuf<Stored>,
    /// The general path's dense staging matrix for quantized matrices (`forward::Model::unpacked`).
    unpacked: Option<DevBuf<Stored>>,
    vecs: DevBuf<f32>,
    /// Each layer's window and rotary embedding (`fused_layer::layer_positions`).
    positions: Vec<LayerPositions>,
    rope: Vec<(DevBuf<f32>, DevBuf<f32>)>,
    scratch: Option<Scratch>,
    graphs: GraphCache<CudaGraph>,
    /// Programmatic dependent launch in the fused decode path (sm_90+, unless `LLMFORGE_CUDA_PDL=0`).
    pdl: bool,
    /// The decode timeline (`LLMFORGE_DECODE_TRACE=1`, tuning runs only).
    trace: Option<trace::Trace>,
    /// The largest host logits copy `forward` has been admitted for, in bytes: a larger one is
    /// checked against host memory first, one of a size already admitted is not checked again.
    host_logits_admitted: u64,
}

// SAFETY: the backend is used from one thread at a time (`Backend: Send`, all calls take `&mut self`);
// the CUDA graphs and cuBLASLt handle it owns are never shared.
unsafe impl Send for CudaBackend {}

pub(crate) fn ordinal(options: &BuildOptions) -> Result<usize> {
    match options.device {
        DeviceChoice::Cuda { ordinal } => Ok(ordinal),
        DeviceChoice::Cpu { .. } => {
            Err(Error::invalid("cuda::build called for a CPU device choice"))
        }
    }
}

/// Most positions a CUDA engine takes (`max_seq_len`).
pub const MAX_POSITIONS: usize = 1 << 30;

/// Shapes and sizes this backend's kernels are written for; the layer plan's switches when its
/// kernels can run it.
fn check_spec(spec: &ModelSpec, options: &BuildOptions) -> Result<FusedLayer> {
    // Positions, `start_idx` and `end_idx` reach the kernels as 32-bit integers, and the kernels add
    // up to a chunk of keys to them: 2^30 leaves that headroom.
    if options.max_seq_len > MAX_POSITIONS {
        return Err(Error::invalid(format!(
            "max_seq_len {} is more than the CUDA backend's {MAX_POSITIONS} positions (32-bit \
             indices on the device)",
            options.max_seq_len
        )));
    }
    // Key and value rows are read as whole 16-byte vectors (8 halves, 4 floats).
    if spec.head_dim > 256 || !spec.head_dim.is_multiple_of(8) || spec.head_dim == 0 {
        return Err(Error::Backend(BackendError::Unsupported(format!(
            "{}: head_dim {} is not supported by the CUDA kernels (a multiple of 8, at most 256)",
            spec.name, spec.head_dim
        ))));
    }
    if spec.num_kv_heads == 0 || !spec.num_heads.is_multiple_of(spec.num_kv_heads) {
        return Err(Error::invalid(format!(
            "{}: {} heads are not a multiple of {} KV heads",
            spec.name, spec.num_heads, spec.num_kv_heads
        )));
    }
    FusedLayer::of(
        &spec.name,
        &ModelPlan::new(spec).within(options.max_seq_len),
    )
}

/// The engine-build step on the GPU: pack and upload weights, compile kernels for this GPU, time GEMM
/// candidates on the model's decode and prefill shapes.
pub fn build(
    spec: &ModelSpec,
    weights: &WeightMap,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<CudaBackend> {
    check_spec(spec, options)?;
    let gpu = Gpu::open(ordinal(options)?)?;
    progress.stage("compile kernels (NVRTC)", 0);
    let compiled = kernels::compile(
        spec,
        options.precision,
        options.quant,
        options.max_seq_len,
        gpu.sm,
    )?;
    progress.stage("pack weights", 0);
    let mut packed = weights::pack(spec, options.precision, options.quant, weights)?;
    let mut backend = CudaBackend::assemble(
        spec,
        options,
        gpu,
        compiled,
        BTreeMap::new(),
        std::mem::take(&mut packed.kept),
        &packed.mats,
        &packed.vecs,
    )?;
    drop(packed);
    progress.stage("time GEMM algorithms (cuBLASLt)", 0);
    let (m, lt, _, _) = backend.split();
    let choices = tune::choose(&m, lt, options)?;
    backend.choices = choices;
    progress.finish();
    Ok(backend)
}

impl CudaBackend {
    /// Upload packed weights and load compiled kernels (shared by build and engine-file load).
    pub fn assemble(
        spec: &ModelSpec,
        options: &BuildOptions,
        gpu: Gpu,
        compiled: CompiledKernels,
        choices: BTreeMap<GemmShape, GemmChoice>,
        kept: KeptBlocks,
        mats: &[u8],
        vecs: &[u8],
    ) -> Result<CudaBackend> {
        let layer = check_spec(spec, options)?;
        let layout = Layout::kept(spec, options.precision, options.quant, &kept);
        if let Some(problem) = layout.format_problem(options.precision) {
            return Err(Error::invalid(format!("{}: {problem}", spec.name)));
        }
        if mats.len() != layout.mat_bytes || vecs.len() != layout.vec_bytes {
            return Err(Error::invalid(format!(
                "packed weights of {} bytes + {} bytes, {} at {} needs {} + {}",
                mats.len(),
                vecs.len(),
                spec.name,
                options.precision,
                layout.mat_bytes,
                layout.vec_bytes
            )));
        }
        let kernels = Kernels::load(&gpu, &compiled)?;
        let mats = gpu.upload_stored(options.precision, mats, "weights")?;
        let unpacked = match layout.largest_packed() {
            0 => None,
            n => Some(gpu.zeros_stored(
                options.precision,
                &[n],
                "dense staging matrix of the quantized weights",
            )?),
        };
        let vecs = gpu.upload_bytes(vecs, "norm and bias vectors")?;
        let plan = ModelPlan::new(spec).within(options.max_seq_len);
        let positions = fused_layer::layer_positions(&plan);
        let mut rope = Vec::new();
        for r in plan.rotaries() {
            // Fallible: the table length comes from the user's max_seq_len.
            let (c, s) = crate::rope::rotary_tables(&r, spec.head_dim, options.max_seq_len)
                .map_err(Error::invalid)?;
            rope.push((
                gpu.upload::<f32>(&c, "rope cos")?,
                gpu.upload::<f32>(&s, "rope sin")?,
            ));
        }
        let lt = Lt::new(&gpu, options.precision)?;
        let gpu_sm = gpu.sm;
        let trace = if trace::enabled() {
            Some(trace::Trace::new(&gpu, spec.num_layers)?)
        } else {
            None
        };
        Ok(CudaBackend {
            spec: spec.clone(),
            options: *options,
            gpu,
            compiled,
            kernels,
            lt,
            choices,
            layer,
            layout,
            kept,
            mats,
            unpacked,
            vecs,
            positions,
            rope,
            scratch: None,
            graphs: GraphCache::default(),
            pdl: gpu_sm >= 90 && std::env::var("LLMFORGE_CUDA_PDL").map_or(true, |v| v != "0"),
            trace,
            host_logits_admitted: 0,
        })
    }

    pub fn gpu_name(&self) -> &str {
        &self.gpu.name
    }

    pub fn compute_capability(&self) -> u32 {
        self.gpu.sm
    }

    pub fn gemm_choices(&self) -> &BTreeMap<GemmShape, GemmChoice> {
        &self.choices
    }
}

pub(crate) fn missing_scratch() -> Error {
    Error::Backend(BackendError::Other("scratch missing".into()))
}

/// The device buffer of cache tensor `what` of `layer`, allocated by this backend.
pub(crate) fn device_cache<'a>(
    t: &'a KvTensor,
    layer: usize,
    what: &str,
) -> Result<&'a DevBuf<Stored>> {
    match &t.storage {
        KvStorage::Device(b) => b.downcast_ref::<DevBuf<Stored>>().ok_or_else(|| {
            Error::invalid(format!(
                "{what}_cache_{layer} belongs to another GPU backend"
            ))
        }),
        KvStorage::Host(_) => Err(Error::invalid(format!(
            "{what}_cache_{layer} lives in host memory; the CUDA engine needs its own cache (Engine::new_cache)"
        ))),
    }
}

impl Backend for CudaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn cache_element_bytes(&self) -> usize {
        self.options.precision.bytes_per_element()
    }

    fn available_memory(&self) -> Option<crate::admission::Available> {
        let (free, _) = self.gpu.mem_info().ok()?;
        Some(crate::admission::Available {
            bytes: free as u64,
            source: format!("the free memory of {}", self.gpu.name),
        })
    }

    fn new_cache_tensor(&self, shape: [usize; 4]) -> Result<KvTensor> {
        // Elements of the precision's size, `cache_element_bytes`, as the admission check counts them.
        let buf = self
            .gpu
            .zeros_stored(self.options.precision, &shape, "KV cache")?;
        Ok(KvTensor {
            shape,
            storage: KvStorage::Device(Box::new(buf)),
            written: 0,
        })
    }

    fn forward(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        rows: LogitRows,
    ) -> Result<Logits> {
        let call = Call {
            batch: step.batch,
            seq_len: step.seq_len,
            mode,
            all_rows: rows == LogitRows::All,
            argmax: false,
        };
        self.run(step, cache, call)?;
        let n = call.logit_rows() * self.spec.vocab_size;
        let bytes = (n as u64).saturating_mul(4);
        if bytes > self.host_logits_admitted {
            crate::admission::check(
                || format!("the host copy of {} rows of logits", call.logit_rows()),
                bytes,
                crate::admission::host_available().as_ref(),
                crate::admission::Knob::PromptLen,
            )?;
            self.host_logits_admitted = bytes;
        }
        let mut data = vec![0f32; n];
        let s = self.scratch.as_ref().ok_or_else(missing_scratch)?;
        self.gpu.read(&s.logits, &mut data, "logits")?;
        Ok(Logits {
            batch: step.batch,
            rows: call.logit_rows() / step.batch,
            vocab: self.spec.vocab_size,
            data,
        })
    }

    fn next_tokens(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        mode: CacheMode,
        sampler: &mut Sampler,
    ) -> Result<Vec<u32>> {
        if !sampler.is_greedy() && !sampling::on_device(&sampler.params) {
            let logits = self.forward(step, cache, mode, LogitRows::Last)?;
            return Ok((0..logits.batch)
                .map(|b| sampler.sample(logits.row(b, 0)))
                .collect());
        }
        // Greedy: the argmax rides in the lm_head epilogue; sampling: its kernel follows the logits.
        let greedy = sampler.is_greedy();
        let call = Call {
            batch: step.batch,
            seq_len: step.seq_len,
            mode,
            all_rows: false,
            argmax: greedy,
        };
        self.run(step, cache, call)?;
        if greedy {
            return self.read_ids(step.batch);
        }
        let draws: Vec<f64> = (0..step.batch).map(|_| sampler.draw()).collect();
        self.sample_logits(&sampler.params, &draws)
    }

    fn weight_bytes(&self) -> usize {
        self.layout.streamed_bytes()
    }

    fn device_name(&self) -> String {
        format!("{} (sm_{})", self.gpu.name, self.gpu.sm)
    }

    fn header_extras(&self) -> (Option<u32>, Vec<String>) {
        (
            Some(self.gpu.sm),
            self.choices.iter().map(|(s, c)| c.describe(s)).collect(),
        )
    }

    fn write_payload(&self, out: &mut dyn std::io::Write) -> Result<()> {
        let mut mats = vec![0u8; self.layout.mat_bytes];
        let mut vecs = vec![0u8; self.layout.vec_bytes];
        self.gpu.read_bytes(&self.mats, &mut mats, "weights")?;
        self.gpu.read_bytes(&self.vecs, &mut vecs, "vectors")?;
        payload::write(out, &self.compiled, &self.choices, &self.kept, &mats, &vecs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::Precision;

    fn tiny() -> ModelSpec {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama");
        ModelSpec::from_dir(&dir).expect("tiny-llama config")
    }

    fn options(max_seq_len: usize) -> BuildOptions {
        BuildOptions {
            precision: Precision::Fp16,
            max_seq_len,
            max_batch: 1,
            device: DeviceChoice::Cuda { ordinal: 0 },
            quant: crate::format::QuantFormat::None,
        }
    }

    #[test]
    fn positions_beyond_32_bit_indices_are_refused_by_name() {
        let spec = tiny();
        assert!(check_spec(&spec, &options(MAX_POSITIONS)).is_ok());
        let err = check_spec(&spec, &options(MAX_POSITIONS + 1)).expect_err("2^30 + 1 positions");
        assert!(err.to_string().contains("max_seq_len 1073741825"), "{err}");
    }

    #[test]
    fn head_sizes_the_kernels_cannot_take_are_refused_by_name() {
        for head_dim in [0, 12, 264] {
            let mut spec = tiny();
            spec.head_dim = head_dim;
            let err = check_spec(&spec, &options(64)).expect_err("unsupported head_dim");
            assert!(
                err.to_string().contains(&format!("head_dim {head_dim}")),
                "{err}"
            );
        }
        let mut spec = tiny();
        spec.num_kv_heads = 3;
        let err = check_spec(&spec, &options(64)).expect_err("heads not a multiple");
        assert!(err.to_string().contains("3 KV heads"), "{err}");
    }
}
