//! The CPU backend: f32 compute, f32/f16/bf16 weight storage, multithreaded; the numerical reference.
//!
//! The forward pass itself is `crate::model::forward` over [`CpuOps`]; this module owns the thread
//! pool, the packed weights and the reused scratch activations.

pub mod attention;
mod attn_prefill;
pub mod block_dot;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_x86;
pub mod kernels;
pub mod mapped;
pub mod matrix;
pub mod ops;
pub mod payload;
pub mod quant_dot;
pub mod simd;
#[cfg(test)]
mod test_data;

use crate::admission;
use crate::backend::{Backend, BackendError};
use crate::cache::{KvStorage, KvTensor, LayerKvMut};
use crate::engine_file::{EngineFileError, OpenedEngine};
use crate::model::{self, ModelWeights, Scratch, Tensors};
use crate::options::BuildOptions;
use crate::progress::Progress;
use crate::spec::ModelSpec;
use crate::step::{BackendKind, CacheMode, LogitRows, Logits, StepInputs};
use crate::weights::WeightMap;
use crate::{Error, Result};
pub use ops::{CpuAct, CpuOps};
use payload::PayloadError;
use std::path::Path;

pub struct CpuBackend {
    spec: ModelSpec,
    ops: CpuOps,
    weights: ModelWeights<CpuOps>,
    scratch: Option<Scratch<CpuOps>>,
    pool: rayon::ThreadPool,
}

/// The engine-build step on the CPU: convert to the storage precision and pack (QKV and gate/up fused).
pub fn build(
    spec: &ModelSpec,
    weights: &WeightMap,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<CpuBackend> {
    let stored = |name: &str| Tensors::<CpuOps>::stored_block(weights, name);
    backend(spec, options, &stored, |ops| {
        progress.stage("pack weights", spec.num_layers as u64);
        let packed = model::load(spec, weights, ops)?;
        progress.advance(spec.num_layers as u64);
        progress.finish();
        Ok(packed)
    })
}

/// Load a CPU engine file (`opened`, its header checked against `spec` and `options`): map it and use
/// its packed matrices in place, after checking every record of the payload and that each is stored
/// in the header's precision.
pub fn load(
    path: &Path,
    opened: &OpenedEngine,
    spec: &ModelSpec,
    options: &BuildOptions,
) -> Result<CpuBackend> {
    let map =
        mapped::EngineMap::new(opened.reader.get_ref()).map_err(|source| EngineFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let start = usize::try_from(opened.payload_offset)
        .map_err(|_| PayloadError::Truncated("payload".into()).at(path))?;
    let payload = payload::MappedPayload::new(map, start).map_err(|e| e.at(path))?;
    let stored = |name: &str| Tensors::<CpuOps>::stored_block(&payload, name);
    backend(spec, options, &stored, |ops| {
        if let Some(name) = payload.precision_mismatch(options.precision) {
            return Err(Error::EngineFile(EngineFileError::Corrupt {
                path: path.to_path_buf(),
                message: format!(
                    "tensor {name} is stored in another precision than the header's {}",
                    options.precision
                ),
            }));
        }
        model::load(spec, &payload, ops).map_err(|e| match e {
            Error::Weights(w) => Error::EngineFile(EngineFileError::Corrupt {
                path: path.to_path_buf(),
                message: w.to_string(),
            }),
            other => other,
        })
    })
}

/// A CPU backend for `spec` and `options` (thread pool, memory admission, rotary tables) whose
/// weights `pack` makes.
fn backend(
    spec: &ModelSpec,
    options: &BuildOptions,
    stored: admission::StoredBlocks<'_>,
    pack: impl FnOnce(&mut CpuOps) -> Result<ModelWeights<CpuOps>> + Send,
) -> Result<CpuBackend> {
    let threads = match options.device {
        crate::options::DeviceChoice::Cpu { threads } => threads,
        crate::options::DeviceChoice::Cuda { .. } => {
            return Err(Error::invalid(
                "a CPU engine asked for a CUDA device choice",
            ));
        }
    };
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::invalid("CPU thread count must be at least 1"));
        }
        pool = pool.num_threads(n.min(max_threads()));
    }
    let pool = pool
        .build()
        .map_err(|e| Error::Backend(BackendError::Other(format!("thread pool: {e}"))))?;
    let host = admission::host_available();
    admission::check(
        || format!("rotary tables for {} positions", options.max_seq_len),
        admission::rotary_bytes(spec, options.max_seq_len),
        host.as_ref(),
        admission::Knob::MaxSeqLen,
    )?;
    admission::check(
        || format!("the weights of {} in {}", spec.name, options.precision),
        admission::weight_bytes_kept(spec, options.precision, options.quant, stored),
        host.as_ref(),
        admission::Knob::Model,
    )?;
    let rotaries = crate::plan::ModelPlan::new(spec).rotaries();
    let mut ops = CpuOps::new(
        options.precision,
        &rotaries,
        spec.head_dim,
        options.max_seq_len,
    )?;
    ops.quant = options.quant;
    let packed = pool.install(|| pack(&mut ops))?;
    Ok(CpuBackend {
        spec: spec.clone(),
        ops,
        weights: packed,
        scratch: None,
        pool,
    })
}

/// The most threads a CPU engine runs: the machine's parallelism (more only adds switching).
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl CpuBackend {
    /// Number of threads in this engine's pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn cache_element_bytes(&self) -> usize {
        std::mem::size_of::<f32>()
    }

    fn new_cache_tensor(&self, shape: [usize; 4]) -> Result<KvTensor> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(format!("cache shape {shape:?} overflows")))?;
        // A cache length or batch from the user may not fit in memory: an error, not an abort.
        let mut data = Vec::new();
        data.try_reserve_exact(n).map_err(|_| {
            Error::invalid(format!(
                "a KV cache tensor of shape {shape:?} ({n} f32 values) does not fit in memory"
            ))
        })?;
        data.resize(n, 0.0);
        Ok(KvTensor {
            shape,
            storage: KvStorage::Host(data),
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
        let token_rows = step.batch * step.seq_len;
        let logit_rows = match rows {
            LogitRows::All => token_rows,
            LogitRows::Last => step.batch,
        };
        let CpuBackend {
            spec,
            ops,
            weights,
            scratch,
            pool,
        } = self;
        let reuse =
            matches!(scratch, Some(s) if s.rows == token_rows && s.logit_rows == logit_rows);
        if !reuse {
            *scratch = None;
            let need = admission::activation_bytes(spec, token_rows, logit_rows, 4)
                .saturating_add(admission::attention_bytes(spec, step.batch, step.end_idx));
            admission::check(
                || {
                    format!(
                        "the activations of a forward over {} sequence(s) of {} new tokens",
                        step.batch, step.seq_len
                    )
                },
                need,
                admission::host_available().as_ref(),
                admission::Knob::PromptLen,
            )?;
            *scratch = Some(Scratch::new(ops, &weights.plan, token_rows, logit_rows)?);
        }
        let Some(s) = scratch.as_mut() else {
            return Err(Error::Backend(BackendError::Other(
                "scratch missing".into(),
            )));
        };
        pool.install(|| model::forward(ops, weights, s, step, cache, mode, rows))
    }

    fn weight_bytes(&self) -> usize {
        let w = &self.weights;
        let lin = |l: &crate::backend::ops::Linear<matrix::Matrix, Vec<f32>>| {
            l.weight.bytes() + 4 * l.bias.as_ref().map_or(0, |b| b.len())
        };
        let mut total = lin(&w.lm_head);
        for l in &w.layers {
            total += l.linears().into_iter().map(lin).sum::<usize>();
        }
        total
    }

    fn write_payload(&self, out: &mut dyn std::io::Write) -> Result<()> {
        payload::write(&self.spec, &self.ops, &self.weights, out)
    }
}

#[cfg(test)]
mod block_tests {
    use super::*;
    use crate::format::{BlockType, QuantFormat, WeightFormat};
    use crate::precision::Precision;
    use crate::weights::{WeightSource, gguf::GgufFile, load_as};

    /// tiny-llama's GGUF (Q8_0 embedding, Q4_0/Q4_1/Q8_0 projections, some f16/bf16/f32) packed for
    /// `--quant_format gguf`: the linears whose fused parts share a block type are kept as those
    /// blocks, at the blocks' size; those whose parts differ are stacks keeping each block part; no
    /// block tensor of the file is widened.
    #[test]
    fn fused_linears_of_one_block_type_stay_blocks() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/gguf/tiny-llama.gguf");
        let spec = GgufFile::open(&path).unwrap().spec("tiny-llama").unwrap();
        let map = load_as(&spec, &WeightSource::Gguf(path), QuantFormat::Gguf).unwrap();
        let rotaries = crate::plan::ModelPlan::new(&spec).rotaries();
        let mut ops = CpuOps::new(Precision::Fp32, &rotaries, spec.head_dim, 16).unwrap();
        let w = crate::model::load(&spec, &map, &mut ops).unwrap();
        let mut kept = Vec::new();
        let mut stacks = 0;
        for l in &w.layers {
            for lin in l.linears() {
                let m = &lin.weight;
                // How each canonical part is stored in the engine.
                let formats: Vec<WeightFormat> = match &m.store {
                    matrix::Store::Stack(parts) => {
                        stacks += 1;
                        parts.iter().map(|p| p.format()).collect()
                    }
                    _ => vec![m.format(); lin.parts.len()],
                };
                for (format, part) in formats.iter().zip(&lin.parts) {
                    let stored = map.tensors[&format!("{}.weight", part.name)].blocks();
                    match stored {
                        Some(t) => {
                            assert_eq!(*format, WeightFormat::Blocks(t), "{}", part.name);
                            kept.push(t);
                        }
                        None => assert!(format.dense().is_some(), "{}", part.name),
                    }
                }
                let want: usize = formats
                    .iter()
                    .zip(&lin.parts)
                    .map(|(f, p)| f.matrix_bytes(p.rows, m.cols))
                    .sum();
                assert_eq!(m.bytes(), want);
            }
        }
        assert!(
            kept.contains(&BlockType::Q4_0) && kept.contains(&BlockType::Q4_1),
            "{kept:?}"
        );
        assert!(stacks > 0, "no fused linear mixes types in this file");
    }
}
