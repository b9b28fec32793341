//! Resource limits at the command line: a run whose sizes cannot fit is refused before anything is
//! loaded or allocated, naming what it needs, what is available and the flags to lower; errors of
//! the same kind from the library later on get the same advice.

use crate::engine_setup::Need;
use crate::resolve::Model;
use anyhow::Result;
use runtime::admission::{self, Knob, Memory, RunShape, TooLarge};
use runtime::backend::CacheMode;
use runtime::engine::DeviceChoice;
use runtime::format::{BlockType, QuantFormat};
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use runtime::weights::names::gguf_to_canonical_parts;
use std::collections::BTreeMap;

/// Which flags size a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Generate,
    Benchmark,
    Perplexity,
}

impl Mode {
    /// The flags that set the number of positions.
    pub fn positions_flags(self) -> &'static str {
        match self {
            Mode::Generate => "the prompt + --num_tokens",
            Mode::Benchmark => "--isl + --num_tokens",
            Mode::Perplexity => "--ctx",
        }
    }

    /// The flags to lower for `knob`.
    pub fn flags(self, knob: Knob) -> &'static str {
        match (self, knob) {
            (Mode::Generate, Knob::MaxSeqLen | Knob::PromptLen) => {
                "--num_tokens (or give a shorter prompt)"
            }
            (Mode::Benchmark, Knob::MaxSeqLen) => "--num_tokens or --isl",
            (Mode::Benchmark, Knob::PromptLen) => "--isl or --batch_size",
            (Mode::Perplexity, Knob::MaxSeqLen | Knob::PromptLen) => "--ctx",
            (_, Knob::Batch) => "--batch_size",
            (_, Knob::Model) => "--precision (FP16/BF16 halve FP32's weights)",
        }
    }
}

/// Refuse a run that cannot fit, before its weights are loaded: the whole footprint (weights, cache,
/// rotary tables, activations of the prefill, the prompts) against host memory on the CPU, and
/// against the GPU's free memory (with the weights, which pass through host memory, against both)
/// on a GPU.
/// The GGML block types a `--quant_format gguf` engine keeps, by canonical tensor name, read from the
/// GGUF header (nothing for other formats and sources).
fn kept_blocks(model: &Model, need: &Need) -> BTreeMap<String, BlockType> {
    let mut kept = BTreeMap::new();
    let (QuantFormat::Gguf, WeightSource::Gguf(path)) = (need.quant, &model.source) else {
        return kept;
    };
    // A file that does not open is reported by the weight loading that follows.
    let Ok(file) = GgufFile::open(path) else {
        return kept;
    };
    for info in file.tensor_infos() {
        let Ok(ty) = &info.ty else {
            continue;
        };
        let block = BlockType::from_ggml_id(ty.id());
        if let (Some(b), 2) = (block, info.shape.len()) {
            // A fused tensor (Phi-3's `attn_qkv`, `ffn_up`) keeps its block type in every part.
            for name in gguf_to_canonical_parts(model.spec.arch, &info.name) {
                kept.insert(name, b);
            }
        }
    }
    kept
}

pub fn admit(model: &Model, need: &Need, max_seq_len: usize) -> Result<()> {
    let kept = kept_blocks(model, need);
    let stored = |name: &str| kept.get(name).copied();
    let recompute = need.cache == CacheMode::None;
    let rows_per_seq = if recompute {
        max_seq_len
    } else {
        need.prompt_len
    };
    let shape = RunShape {
        batch: need.batch,
        max_seq_len,
        rows: need.batch.saturating_mul(rows_per_seq),
    };
    let prompts = (need.batch as u64)
        .saturating_mul(need.prompt_len as u64)
        .saturating_mul(4);
    let host = admission::host_available();
    let advise = |e: TooLarge| anyhow::anyhow!("this run does not fit: {}", advice(&e, need.mode));
    let footprint = match need.device {
        DeviceChoice::Cpu { .. } => {
            let f = admission::admit_kept(
                &model.spec,
                need.precision,
                need.quant,
                &stored,
                Memory::Host,
                shape,
                host.as_ref(),
            )
            .map_err(advise)?;
            admission::check(
                || format!("{} prompt(s) of {} tokens", need.batch, need.prompt_len),
                prompts,
                host.as_ref(),
                Knob::PromptLen,
            )
            .map_err(advise)?;
            Some((Memory::Host, f))
        }
        DeviceChoice::Cuda { ordinal } => {
            let weights = admission::weight_bytes(&model.spec, need.precision);
            admission::check(
                || format!("the weights of {} in {}", model.spec.name, need.precision),
                weights.saturating_add(prompts),
                host.as_ref(),
                Knob::Model,
            )
            .map_err(advise)?;
            // Without a usable GPU the build reports it (and may fall back to the CPU).
            match gpu_free_memory(ordinal) {
                Some(free) => {
                    let gpu = admission::Available {
                        bytes: free as u64,
                        source: format!("the free memory of GPU {ordinal}"),
                    };
                    let f = admission::admit_kept(
                        &model.spec,
                        need.precision,
                        need.quant,
                        &stored,
                        Memory::Device,
                        shape,
                        Some(&gpu),
                    )
                    .map_err(advise)?;
                    // Weights quantized at build or kept as GGUF blocks are dequantised one matrix
                    // at a time for prefill.
                    let staging =
                        admission::staging_bytes(&model.spec, need.precision, need.quant, &stored);
                    admission::check(
                        || {
                            format!(
                                "{} in {} with {} weights and their dense staging matrix",
                                model.spec.name, need.precision, need.quant
                            )
                        },
                        f.total().saturating_add(staging),
                        Some(&gpu),
                        Knob::Model,
                    )
                    .map_err(advise)?;
                    Some((Memory::Device, f))
                }
                None => None,
            }
        }
    };
    if let Some((memory, f)) = footprint {
        crate::debug::debug!(
            "memory: {} needed in {memory} memory ({} weights, {} KV cache, {} activations, {} rotary); \
             host: {}",
            admission::human(f.total()),
            admission::human(f.weights),
            admission::human(f.kv_cache),
            admission::human(f.activations),
            admission::human(f.rotary),
            host.as_ref().map_or("unknown".to_string(), |a| format!(
                "{} available ({})",
                admission::human(a.bytes),
                a.source
            ))
        );
    }
    Ok(())
}

/// Free memory of GPU `ordinal`, bytes; `None` without a usable GPU or a CUDA backend.
#[cfg(feature = "cuda")]
fn gpu_free_memory(ordinal: usize) -> Option<usize> {
    runtime::backend::cuda::device::memory_info(ordinal)
        .ok()
        .map(|(free, _)| free)
}

#[cfg(not(feature = "cuda"))]
fn gpu_free_memory(_ordinal: usize) -> Option<usize> {
    None
}

/// `e` with the flags to lower in place of the library's words.
pub fn advice(e: &TooLarge, mode: Mode) -> String {
    e.describe(mode.flags(e.knob))
}

/// An error from a later stage (the library's own checks at each allocation) with the same advice:
/// its outer contexts, then the advice in place of the library's words.
pub fn explain(e: anyhow::Error, mode: Mode) -> anyhow::Error {
    let as_too_large = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<TooLarge>()
            .or_else(|| match c.downcast_ref::<runtime::Error>() {
                Some(runtime::Error::TooLarge(t)) => Some(t),
                _ => None,
            })
            .cloned()
    };
    let Some(t) = e.chain().find_map(as_too_large) else {
        let out_of_gpu_memory = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<runtime::Error>(),
                Some(runtime::Error::Backend(
                    runtime::backend::BackendError::OutOfMemory { .. }
                ))
            )
        });
        if out_of_gpu_memory {
            let flags = [Knob::MaxSeqLen, Knob::Batch].map(|k| mode.flags(k));
            return e.context(format!(
                "the GPU is out of memory: lower {} or {}",
                flags[0], flags[1]
            ));
        }
        return e;
    };
    let outer: Vec<String> = e
        .chain()
        .take_while(|c| as_too_large(*c).is_none())
        .map(|c| c.to_string())
        .collect();
    let mut text = outer.join(": ");
    if !text.is_empty() {
        text.push_str(": ");
    }
    text.push_str(&advice(&t, mode));
    anyhow::anyhow!(text)
}

/// Peak resident set of this process (`VmHWM`), in bytes; `None` where the kernel does not say.
pub fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// Resident set of this process now (`VmRSS`), in bytes; `None` where the kernel does not say.
pub fn rss() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// A size field of `/proc/self/status` (given in kB there), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}
