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
//! is still the one `crate::model` documents per family; `forward.rs` follows it op for op.
//!
//! Precision: weights, GEMM inputs and the KV cache in the storage type (FP32, FP16 or BF16); GEMM
//! outputs, the residual stream, softmax and norms in f32.

pub mod device;
pub mod forward;
pub mod gemm;
pub mod graph;
pub mod kernels;
pub mod payload;
pub mod tune;
pub mod weights;

use crate::backend::{
    Backend, BackendError, BackendKind, CacheMode, LogitRows, Logits, StepInputs,
};
use crate::cache::{KvStorage, KvTensor, LayerKvMut};
use crate::engine::{BuildOptions, DeviceChoice};
use crate::progress::Progress;
use crate::sample::Sampler;
use crate::spec::{ModelSpec, Positions};
use crate::weights::WeightMap;
use crate::{Error, Result};
use cudarc::driver::CudaGraph;
use device::{DevBuf, Gpu, cuda_err};
use forward::{Call, Model, Scratch};
use gemm::{GemmChoice, GemmShape, Lt};
use graph::{GraphCache, GraphKey};
use kernels::{CompiledKernels, Kernels};
use std::collections::BTreeMap;
use weights::Layout;

pub struct CudaBackend {
    spec: ModelSpec,
    options: BuildOptions,
    gpu: Gpu,
    compiled: CompiledKernels,
    kernels: Kernels,
    lt: Lt,
    choices: BTreeMap<GemmShape, GemmChoice>,
    layout: Layout,
    mats: DevBuf,
    vecs: DevBuf,
    rope: Option<(DevBuf, DevBuf)>,
    scratch: Option<Scratch>,
    graphs: GraphCache<CudaGraph>,
}

// SAFETY: the backend is used from one thread at a time (`Backend: Send`, all calls take `&mut self`);
// the CUDA graphs and cuBLASLt handle it owns are never shared.
unsafe impl Send for CudaBackend {}

fn ordinal(options: &BuildOptions) -> Result<usize> {
    match options.device {
        DeviceChoice::Cuda { ordinal } => Ok(ordinal),
        DeviceChoice::Cpu { .. } => {
            Err(Error::invalid("cuda::build called for a CPU device choice"))
        }
    }
}

/// Shapes this backend's kernels are written for.
fn check_spec(spec: &ModelSpec) -> Result<()> {
    if spec.head_dim > 128 || spec.head_dim % 2 != 0 || spec.head_dim == 0 {
        return Err(Error::invalid(format!(
            "{}: head_dim {} is not supported by the CUDA kernels (even, at most 128)",
            spec.name, spec.head_dim
        )));
    }
    if spec.num_kv_heads == 0 || spec.num_heads % spec.num_kv_heads != 0 {
        return Err(Error::invalid(format!(
            "{}: {} heads are not a multiple of {} KV heads",
            spec.name, spec.num_heads, spec.num_kv_heads
        )));
    }
    Ok(())
}

/// The engine-build step on the GPU: pack and upload weights, compile kernels for this GPU, time GEMM
/// candidates on the model's decode and prefill shapes.
pub fn build(
    spec: &ModelSpec,
    weights: &WeightMap,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<CudaBackend> {
    check_spec(spec)?;
    let gpu = Gpu::open(ordinal(options)?)?;
    progress.stage("compile kernels (NVRTC)", 0);
    let compiled = kernels::compile(spec, options.precision, gpu.sm)?;
    progress.stage("pack weights", 0);
    let packed = weights::pack(spec, options.precision, weights)?;
    let mut backend = CudaBackend::assemble(
        spec,
        options,
        gpu,
        compiled,
        BTreeMap::new(),
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
        mats: &[u8],
        vecs: &[u8],
    ) -> Result<CudaBackend> {
        check_spec(spec)?;
        let layout = Layout::new(spec, options.precision);
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
        let mats = gpu.upload(mats, "weights")?;
        let vecs = gpu.upload(vecs, "norm and bias vectors")?;
        let rope = match crate::model::rope::inv_freq(&spec.positions, spec.head_dim) {
            Some(f) if matches!(spec.positions, Positions::Rope { .. }) => {
                let (c, s) = crate::model::rope::tables(&f, options.max_seq_len);
                Some((
                    gpu.upload(bytemuck::cast_slice(&c), "rope cos")?,
                    gpu.upload(bytemuck::cast_slice(&s), "rope sin")?,
                ))
            }
            _ => None,
        };
        let lt = Lt::new(&gpu, options.precision)?;
        Ok(CudaBackend {
            spec: spec.clone(),
            options: *options,
            gpu,
            compiled,
            kernels,
            lt,
            choices,
            layout,
            mats,
            vecs,
            rope,
            scratch: None,
            graphs: GraphCache::default(),
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

    /// The shared parts of one call, plus the mutable ones, borrowed disjointly.
    fn split(
        &mut self,
    ) -> (
        Model<'_>,
        &mut Lt,
        &mut Option<Scratch>,
        &mut GraphCache<CudaGraph>,
    ) {
        let CudaBackend {
            spec,
            options,
            gpu,
            kernels,
            lt,
            choices,
            layout,
            mats,
            vecs,
            rope,
            scratch,
            graphs,
            ..
        } = self;
        let model = Model {
            gpu,
            k: kernels,
            spec,
            precision: options.precision,
            layout,
            mats,
            vecs,
            rope: rope.as_ref().map_or((0, 0), |(c, s)| (c.ptr(), s.ptr())),
            max_seq: options.max_seq_len,
            choices,
        };
        (model, lt, scratch, graphs)
    }

    /// Make sure the scratch holds `rows` rows (a new one drops the graphs that address the old one).
    fn ensure_scratch(&mut self, rows: usize) -> Result<()> {
        if self.scratch.as_ref().is_some_and(|s| s.rows >= rows) {
            return Ok(());
        }
        self.graphs.clear();
        self.scratch = None;
        let want = rows.max(self.options.max_batch);
        self.scratch = Some(Scratch::new(
            &self.gpu,
            &self.spec,
            self.options.precision,
            want,
            self.options.max_batch,
            self.options.max_seq_len,
        )?);
        Ok(())
    }

    /// Run one call; results stay on the device (`scratch.logits`, `scratch.next_ids`).
    fn run(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        call: Call,
    ) -> Result<()> {
        self.ensure_scratch(call.rows())?;
        let mut ptrs = Vec::with_capacity(cache.len());
        if call.mode != CacheMode::None {
            for (l, layer) in cache.iter().enumerate() {
                ptrs.push((
                    device_ptr(layer.key, l, "key")?,
                    device_ptr(layer.value, l, "value")?,
                ));
            }
        }
        let (m, lt, scratch, graphs) = self.split();
        let s = scratch.as_mut().ok_or_else(missing_scratch)?;
        let bytes = s.input_bytes(
            step.input_ids,
            step.position_ids,
            step.start_idx,
            step.end_idx,
        );
        m.gpu.write(&mut s.inputs, &bytes, "step inputs")?;
        let s = &*s;
        if !call.is_decode() {
            return forward::encode(&m, lt, s, &call, &ptrs);
        }
        let key = GraphKey {
            batch: call.batch,
            mode: call.mode,
            argmax: call.argmax,
            scratch_rows: s.rows,
            cache: ptrs,
        };
        if graphs.get(&key).is_none() {
            let stream = &m.gpu.stream;
            stream
                .begin_capture(
                    cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                )
                .map_err(cuda_err("cuStreamBeginCapture"))?;
            let encoded = forward::encode(&m, lt, s, &call, &key.cache);
            let ended = stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0));
            encoded?;
            let graph = ended
                .map_err(cuda_err("cuStreamEndCapture"))?
                .ok_or_else(|| {
                    Error::Backend(BackendError::Other(
                        "CUDA graph capture produced no graph".into(),
                    ))
                })?;
            graphs.insert(key.clone(), graph);
        }
        match graphs.get(&key) {
            Some(g) => g.launch().map_err(cuda_err("cuGraphLaunch")),
            None => Err(Error::Backend(BackendError::Other(
                "decode graph missing".into(),
            ))),
        }
    }
}

fn missing_scratch() -> Error {
    Error::Backend(BackendError::Other("scratch missing".into()))
}

fn device_ptr(t: &KvTensor, layer: usize, what: &str) -> Result<u64> {
    match &t.storage {
        KvStorage::Device(b) => b.downcast_ref::<DevBuf>().map(DevBuf::ptr).ok_or_else(|| {
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

    fn new_cache_tensor(&self, shape: [usize; 4]) -> Result<KvTensor> {
        let bytes = shape
            .iter()
            .try_fold(self.options.precision.bytes_per_element(), |a, &d| {
                a.checked_mul(d)
            })
            .ok_or_else(|| Error::invalid(format!("cache shape {shape:?} overflows")))?;
        let buf = self.gpu.zeros(bytes, "KV cache")?;
        Ok(KvTensor {
            shape,
            storage: KvStorage::Device(Box::new(buf)),
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
        let mut data = vec![0f32; n];
        let s = self.scratch.as_ref().ok_or_else(missing_scratch)?;
        self.gpu
            .read(&s.logits, bytemuck::cast_slice_mut(&mut data), "logits")?;
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
        if !sampler.is_greedy() {
            let logits = self.forward(step, cache, mode, LogitRows::Last)?;
            return Ok((0..logits.batch)
                .map(|b| sampler.sample(logits.row(b, 0)))
                .collect());
        }
        let call = Call {
            batch: step.batch,
            seq_len: step.seq_len,
            mode,
            all_rows: false,
            argmax: true,
        };
        self.run(step, cache, call)?;
        let mut ids = vec![0u32; step.batch];
        let s = self.scratch.as_ref().ok_or_else(missing_scratch)?;
        self.gpu.read(
            &s.next_ids,
            bytemuck::cast_slice_mut(&mut ids),
            "next token ids",
        )?;
        Ok(ids)
    }

    fn weight_bytes(&self) -> usize {
        self.layout.streamed_bytes()
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
        self.gpu.read(&self.mats, &mut mats, "weights")?;
        self.gpu.read(&self.vecs, &mut vecs, "vectors")?;
        payload::write(out, &self.compiled, &self.choices, &mats, &vecs)
    }
}

/// Load the CUDA payload of an engine file whose header `header.check` already accepted: refuses a
/// file compiled for another GPU compute capability by name, then uploads the stored weights.
pub fn load(
    path: &std::path::Path,
    header: &crate::engine_file::EngineHeader,
    reader: &mut dyn std::io::Read,
    payload_len: u64,
    spec: &ModelSpec,
    expect: &BuildOptions,
) -> Result<CudaBackend> {
    use crate::engine_file::EngineFileError;
    let gpu = Gpu::open(ordinal(expect)?)?;
    let sm_name = |sm: Option<u32>| sm.map_or("none".to_string(), |s| format!("sm_{s}"));
    if header.target_sm != Some(gpu.sm) {
        return Err(Error::EngineFile(EngineFileError::Mismatch {
            path: path.to_path_buf(),
            what: "GPU compute capability",
            found: sm_name(header.target_sm),
            expected: format!("sm_{} ({})", gpu.sm, gpu.name),
        }));
    }
    let p = payload::read(reader, payload_len).map_err(|e| match e {
        payload::PayloadError::Truncated(what) => EngineFileError::Truncated {
            path: path.to_path_buf(),
            what,
        },
        payload::PayloadError::Corrupt(message) => EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message,
        },
    })?;
    if p.kernels.sm != gpu.sm {
        return Err(Error::EngineFile(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "kernels compiled for sm_{} under a header for sm_{}",
                p.kernels.sm, gpu.sm
            ),
        }));
    }
    let layout = Layout::new(spec, expect.precision);
    if p.mats.len() != layout.mat_bytes || p.vecs.len() != layout.vec_bytes {
        return Err(Error::EngineFile(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "packed weights hold {} + {} bytes, {} at {} needs {} + {}",
                p.mats.len(),
                p.vecs.len(),
                spec.name,
                expect.precision,
                layout.mat_bytes,
                layout.vec_bytes
            ),
        }));
    }
    CudaBackend::assemble(spec, expect, gpu, p.kernels, p.choices, &p.mats, &p.vecs)
}
