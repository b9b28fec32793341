//! The fused kernels: CUDA C sources rendered from `runtime/templates/kernels/*.cu` (askama) with the model's
//! shapes and the storage precision as compile-time constants, compiled to PTX by NVRTC for the GPU's
//! compute capability, and loaded as modules.

use super::device::{Gpu, check_nvrtc, cuda_err};
use super::fused_layer::FusedLayer;
use super::launch::{Function, Kernel};
use super::launchers::{
    Activation, AddNorm, AddPostNorm, Argmax, AttnDecode, AttnPrefill, DecDown, DecLm, DecO,
    DecQkv, DecUp, Dequant, DequantBlocks, Embed, Gemv, GemvBlocks, HeadNorm, KvRingStore,
    LogitSoftcap, PostNorm, QkvRope, SampleTopK,
};
use crate::backend_error::BackendError;
use crate::format::{QuantFormat, WeightFormat, WeightQuant};
use crate::plan::{LayerPlan, LinearPlan, ModelPlan};
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::{Error, Result};
use askama::Template;
use cudarc::driver::CudaFunction;
use serde::{Deserialize, Serialize};

/// Keys per split of the decode attention.
pub const DECODE_CHUNK: usize = 128;
/// Largest `top_k` the device sampler takes (`runtime/templates/kernels/sample.cu`); larger values, or no
/// `top_k`, sample on the host from the copied logits.
pub const SAMPLE_MAX_K: usize = 1024;
/// Most rows the decode GEMV kernel handles in one launch.
pub const GEMV_MAX_ROWS: usize = 8;

/// The compile-time constants every kernel template sees.
pub struct KernelConsts {
    pub model: String,
    /// `f32`, `f16` or `bf16`: the storage type `T` of weights, GEMM inputs and the KV cache.
    pub dtype: &'static str,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub inter: usize,
    pub vocab: usize,
    /// Norm epsilon as a C float literal.
    pub eps: String,
    pub rms: bool,
    pub rope: bool,
    /// A gated MLP (`[gate | up]` then down) rather than GPT-2's `fc` + gelu_new.
    pub gated: bool,
    /// The gate's activation is gelu_tanh (GeGLU), else silu (SwiGLU).
    pub gelu_gate: bool,
    /// Per-head q/k norms: the fused decode QKV kernel leaves q, k and v unrotated for `head_norm`
    /// and `qkv_rope`.
    pub qk_norm: bool,
    /// The attention's factor on `q · k` as a C float literal.
    pub scale: String,
    /// The factor on token embeddings as a C float literal, or empty for none.
    pub embed_scale: String,
    /// Sandwich norms: the fused decode O and down GEMVs store their output for `add_post_norm`
    /// rather than add it to the residual stream.
    pub sandwich: bool,
    pub decode_chunk: usize,
    pub gemv_max_rows: usize,
    /// 16-byte weight vectors each lane of a decode GEMV loads per step (4, 8 or 16).
    pub decode_vps: usize,
    pub sample_max_k: usize,
    /// Tuning knobs of the decode GEMVs (see [`decode_knob`]): keep the norm's inputs in registers
    /// (on by default), and ask L2 for this many next weight steps right after the wait (off).
    pub decode_norm_regs: usize,
    pub decode_l2_after: usize,
    /// Quantized matrices of 16-bit engines decode on tensor cores ([`decode_mma`]).
    pub decode_mma: usize,
    /// Whether `attn_prefill_tc` is the real tensor-core kernel (else an empty stub): see
    /// [`tc_prefill_supported`].
    pub tc_attn: bool,
    /// The formats of the layer linears (`FMT_*` of runtime/templates/kernels/quant.cuh: 0 dense,
    /// 1 int8, 2 int4, 3 fp8): QKV, O, gate/up (or fc), down.
    pub fmt_qkv: u8,
    pub fmt_o: u8,
    pub fmt_up: u8,
    pub fmt_down: u8,
}

/// The `FMT_*` code (runtime/templates/kernels/quant.cuh) of a weight format the kernels read, or why
/// they cannot.
pub fn format_code(format: WeightFormat) -> std::result::Result<u8, String> {
    match format {
        WeightFormat::Dense(_) => Ok(0),
        WeightFormat::Quantized(WeightQuant::Int8) => Ok(1),
        WeightFormat::Quantized(WeightQuant::Int4) => Ok(2),
        WeightFormat::Quantized(WeightQuant::Fp8) => Ok(3),
        WeightFormat::Blocks(_) => Err(format!("the CUDA kernels do not read {format}")),
    }
}

/// Weights per 16-byte vector of a quantized format's codes (a row must hold whole vectors).
pub fn codes_per_vector(q: WeightQuant) -> usize {
    match q {
        WeightQuant::Int4 => 32,
        WeightQuant::Int8 | WeightQuant::Fp8 => 16,
    }
}

impl KernelConsts {
    /// The constants of `spec` at `precision` over a cache of `max_seq_len` positions, or why its
    /// layer plan cannot run on these kernels there.
    pub fn new(
        spec: &ModelSpec,
        precision: Precision,
        quant: QuantFormat,
        max_seq_len: usize,
    ) -> Result<KernelConsts> {
        let plan = ModelPlan::new(spec).within(max_seq_len);
        let layer = FusedLayer::of(&spec.name, &plan)?;
        let fmt = |pick: fn(&LayerPlan) -> &LinearPlan| -> Result<u8> {
            plan.layers.first().map_or(Ok(0), |l| {
                format_code(WeightFormat::of_linear_as(pick(l), precision, quant))
                    .map_err(|e| Error::invalid(format!("{}: {e}", spec.name)))
            })
        };
        Ok(KernelConsts {
            model: spec.name.clone(),
            dtype: match precision {
                Precision::Fp32 => "f32",
                Precision::Fp16 => "f16",
                Precision::Bf16 => "bf16",
            },
            hidden: spec.hidden_size,
            heads: spec.num_heads,
            kv_heads: spec.num_kv_heads,
            head_dim: spec.head_dim,
            inter: spec.intermediate_size,
            vocab: spec.vocab_size,
            eps: c_float(layer.eps),
            rms: layer.rms,
            rope: layer.rope,
            gated: layer.gated,
            gelu_gate: layer.gelu_gate,
            qk_norm: layer.qk_norm,
            scale: c_float(layer.scale),
            embed_scale: layer.embed_scale.map(c_float).unwrap_or_default(),
            sandwich: layer.sandwich,
            decode_chunk: DECODE_CHUNK,
            gemv_max_rows: GEMV_MAX_ROWS,
            decode_vps: decode_vps(spec),
            sample_max_k: SAMPLE_MAX_K,
            decode_norm_regs: decode_knob("LLMFORGE_DECODE_NORM_REGS", 1, 1),
            decode_l2_after: decode_knob("LLMFORGE_DECODE_L2_AFTER", 2, 0),
            decode_mma: usize::from(decode_mma()),
            tc_attn: tc_prefill_supported(spec, precision),
            fmt_qkv: fmt(|l| &l.qkv)?,
            fmt_o: fmt(|l| &l.o)?,
            fmt_up: fmt(|l| &l.up)?,
            fmt_down: fmt(|l| &l.down)?,
        })
    }
}

/// 16-byte weight vectors each lane of a decode GEMV loads per step (two steps in flight): 16 for
/// hidden sizes of 4096 and more (long rows: fewer, deeper warps), else 8 (measured on an H200,
/// bench/RESULTS.md). `LLMFORGE_DECODE_VPS` = 4, 8 or 16 overrides it (tuning runs).
pub fn decode_vps(spec: &ModelSpec) -> usize {
    env_usize("LLMFORGE_DECODE_VPS", |v| [4, 8, 16].contains(&v))
        .unwrap_or(if spec.hidden_size >= 4096 { 16 } else { 8 })
}

/// Whether kernels compiled now run the decode GEMVs over quantized matrices of 16-bit engines on
/// tensor cores (runtime/templates/kernels/decode_mma.cuh; on unless `LLMFORGE_DECODE_MMA=0`, which
/// keeps the f32 path for A/B runs; never below sm_80). Either way the results are the same sums in
/// another order. What launches them reads the compiled kernels' record, not this.
pub fn decode_mma() -> bool {
    decode_knob("LLMFORGE_DECODE_MMA", 1, 1) == 1
}

/// A decode tuning knob from the environment: `var` = 0 to `max`, else `default` (the setting
/// measured best on an H200, bench/RESULTS.md; cases in bench/tune-cases.txt). Each changes speed
/// only, never results.
pub fn decode_knob(var: &str, max: usize, default: usize) -> usize {
    env_usize(var, |v| v <= max).unwrap_or(default)
}

/// A tuning override from the environment: `var` parsed as a number that `allowed` accepts.
pub fn env_usize(var: &str, allowed: impl Fn(usize) -> bool) -> Option<usize> {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| allowed(v))
}

/// Largest head size the tensor-core prefill attention takes (its K/V tiles, of 32 keys above a head
/// size of 128, stay in 48 KB of static shared memory and its accumulators in registers).
pub const TC_MAX_HEAD_DIM: usize = 256;

/// Whether prefill attention of this model/precision runs on tensor cores (`attn_prefill_tc`, given a
/// GPU of sm_80 or newer): 16-bit storage and a head size that is a multiple of 16, at most
/// [`TC_MAX_HEAD_DIM`]. FP32 keeps the exact f32 kernel.
pub fn tc_prefill_supported(spec: &ModelSpec, precision: Precision) -> bool {
    precision != Precision::Fp32
        && spec.head_dim.is_multiple_of(16)
        && spec.head_dim <= TC_MAX_HEAD_DIM
}

/// An f32 as a C literal that parses back to the same value.
fn c_float(v: f32) -> String {
    format!("{v:e}f")
}

macro_rules! kernel_template {
    ($name:ident, $path:literal) => {
        #[derive(Template)]
        #[template(path = $path, escape = "none")]
        struct $name<'a> {
            c: &'a KernelConsts,
        }
    };
}
kernel_template!(NormCu, "kernels/norm.cu");
kernel_template!(HeadNormCu, "kernels/head_norm.cu");
kernel_template!(RopeKvCu, "kernels/rope_kv.cu");
kernel_template!(AttentionCu, "kernels/attention.cu");
kernel_template!(AttnPrefillTcCu, "kernels/attn_prefill_tc.cu");
kernel_template!(MlpCu, "kernels/mlp.cu");
kernel_template!(GemvCu, "kernels/gemv.cu");
kernel_template!(DecodeCu, "kernels/decode.cu");
kernel_template!(ArgmaxCu, "kernels/argmax.cu");
kernel_template!(QuantCu, "kernels/quant.cu");
kernel_template!(SampleCu, "kernels/sample.cu");
kernel_template!(BlocksCu, "kernels/blocks.cu");

/// The kernel modules and the functions each defines.
pub const MODULES: [(&str, &[&str]); 12] = [
    ("norm", &["embed", "add_norm", "post_norm", "add_post_norm"]),
    ("head_norm", &["head_norm"]),
    ("rope_kv", &["qkv_rope", "kv_ring_store"]),
    ("attention", &["attn_prefill", "attn_decode"]),
    ("attn_prefill_tc", &["attn_prefill_tc"]),
    ("mlp", &["glu", "gelu_bias"]),
    ("gemv", &["gemv"]),
    (
        "decode",
        &[
            "dec_qkv_1",
            "dec_o_1",
            "dec_up_1",
            "dec_down_1",
            "dec_lm_1",
            "dec_qkv_n",
            "dec_o_n",
            "dec_up_n",
            "dec_down_n",
            "dec_lm_n",
        ],
    ),
    ("argmax", &["argmax", "logit_softcap"]),
    ("sample", &["sample_top_k"]),
    ("quant", &["dequant"]),
    ("blocks", &["dequant_blocks", "gemv_blocks"]),
];

fn render_err(module: &str) -> impl Fn(askama::Error) -> Error + '_ {
    move |e| {
        Error::Backend(BackendError::KernelCompile {
            kernel: module.to_string(),
            log: format!("template: {e}"),
        })
    }
}

/// The CUDA C source of every module, specialised to `spec` and `precision` (over a cache of
/// `max_seq_len` positions).
pub fn render(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    max_seq_len: usize,
) -> Result<Vec<(String, String)>> {
    render_with(spec, precision, quant, max_seq_len, decode_mma())
}

/// [`render`] with the tensor-core decode GEMVs on or off.
fn render_with(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    max_seq_len: usize,
    mma: bool,
) -> Result<Vec<(String, String)>> {
    let c = &KernelConsts {
        decode_mma: usize::from(mma),
        ..KernelConsts::new(spec, precision, quant, max_seq_len)?
    };
    let sources = [
        ("norm", NormCu { c }.render().map_err(render_err("norm"))?),
        (
            "head_norm",
            HeadNormCu { c }.render().map_err(render_err("head_norm"))?,
        ),
        (
            "rope_kv",
            RopeKvCu { c }.render().map_err(render_err("rope_kv"))?,
        ),
        (
            "attention",
            AttentionCu { c }
                .render()
                .map_err(render_err("attention"))?,
        ),
        (
            "attn_prefill_tc",
            AttnPrefillTcCu { c }
                .render()
                .map_err(render_err("attn_prefill_tc"))?,
        ),
        ("mlp", MlpCu { c }.render().map_err(render_err("mlp"))?),
        ("gemv", GemvCu { c }.render().map_err(render_err("gemv"))?),
        (
            "decode",
            DecodeCu { c }.render().map_err(render_err("decode"))?,
        ),
        (
            "argmax",
            ArgmaxCu { c }.render().map_err(render_err("argmax"))?,
        ),
        (
            "sample",
            SampleCu { c }.render().map_err(render_err("sample"))?,
        ),
        (
            "quant",
            QuantCu { c }.render().map_err(render_err("quant"))?,
        ),
        (
            "blocks",
            BlocksCu { c }.render().map_err(render_err("blocks"))?,
        ),
    ];
    Ok(sources
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect())
}

/// Version of the contract between the kernels and the host code that launches them (kernel names,
/// parameters, launch geometry). Stored with the PTX in engine files; a file with other kernels is
/// refused by name rather than launched with the wrong arguments. Raised with every change to a
/// kernel's name, parameters or launch geometry, or to the set of modules.
pub const KERNEL_ABI: u32 = 12;

/// Compiled PTX of every module for one compute capability (stored in the engine file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledKernels {
    /// [`KERNEL_ABI`] of the build that compiled them (absent, so 1, in files from before it existed).
    #[serde(default = "first_abi")]
    pub abi: u32,
    pub sm: u32,
    /// `(module name, PTX text)`, in [`MODULES`] order (the modules the engine's formats need).
    pub ptx: Vec<(String, String)>,
    /// Whether the decode GEMVs over quantized matrices of 16-bit engines were compiled for tensor
    /// cores ([`decode_mma`] and sm_80 or newer): the launches must size their grid and shared
    /// memory for the kernels the PTX holds, whatever the environment says when it is loaded.
    #[serde(default)]
    pub decode_mma: bool,
}

impl CompiledKernels {
    /// The PTX of kernel module `name` (one of [`MODULES`]).
    pub fn module(&self, name: &str) -> Option<&str> {
        self.ptx
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ptx)| ptx.as_str())
    }
}

fn first_abi() -> u32 {
    1
}

/// The modules of the weight formats, compiled only for engines whose formats need them
/// ([`modules_for`]).
pub const OPTIONAL_MODULES: [&str; 2] = ["quant", "blocks"];

/// The modules an engine of `quant` runs: every module but the weight formats' it does not hold
/// (`quant` for weights quantized at build, `blocks` for kept GGUF blocks).
pub fn modules_for(quant: QuantFormat) -> impl Iterator<Item = &'static str> {
    MODULES
        .into_iter()
        .map(|(name, _)| name)
        .filter(move |&name| match name {
            "quant" => quant.weight_quant().is_some(),
            "blocks" => quant == QuantFormat::Gguf,
            _ => true,
        })
}

/// Render and compile the modules an engine of `quant` runs ([`modules_for`]) to PTX for
/// `compute_<sm>` with NVRTC (no GPU needed).
pub fn compile(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    max_seq_len: usize,
    sm: u32,
) -> Result<CompiledKernels> {
    let wanted: Vec<&str> = modules_for(quant).collect();
    compile_modules(spec, precision, quant, max_seq_len, sm, &wanted)
}

/// Render and compile every module ([`MODULES`]) to PTX (the op-by-op tests run them all).
pub fn compile_all(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    max_seq_len: usize,
    sm: u32,
) -> Result<CompiledKernels> {
    let all: Vec<&str> = MODULES.iter().map(|(name, _)| *name).collect();
    compile_modules(spec, precision, quant, max_seq_len, sm, &all)
}

fn compile_modules(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    max_seq_len: usize,
    sm: u32,
    wanted: &[&str],
) -> Result<CompiledKernels> {
    check_nvrtc()?;
    let mut ptx = Vec::new();
    // Tensor cores take mma.sync m16n8k16 from sm_80 on.
    let c_mma = decode_mma() && sm >= 80;
    let sources = render_with(spec, precision, quant, max_seq_len, c_mma)?;
    for (name, src) in sources
        .into_iter()
        .filter(|(n, _)| wanted.contains(&n.as_str()))
    {
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![
                format!("--gpu-architecture=compute_{sm}"),
                "--std=c++17".into(),
            ],
            name: Some(format!("{name}.cu")),
            ..Default::default()
        };
        let out = cudarc::nvrtc::compile_ptx_with_opts(&src, opts).map_err(|e| {
            Error::Backend(BackendError::KernelCompile {
                kernel: name.clone(),
                log: match &e {
                    cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                        log.to_string_lossy().into_owned()
                    }
                    other => other.to_string(),
                },
            })
        })?;
        let text = out.to_src();
        dump(
            &format!("{}-{precision}-sm{sm}", spec.name),
            &name,
            &src,
            &text,
        );
        ptx.push((name, text));
    }
    Ok(CompiledKernels {
        abi: KERNEL_ABI,
        sm,
        ptx,
        decode_mma: c_mma,
    })
}

/// With `LLMFORGE_KERNEL_DUMP=DIR`, write each module's rendered source and PTX into DIR/`build`
/// (model, precision, target; for reading the generated code or feeding `ptxas -v`); failures to
/// write are reported, never fatal.
fn dump(build: &str, name: &str, src: &str, ptx: &str) {
    let Some(dir) = std::env::var_os("LLMFORGE_KERNEL_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir).join(build);
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join(format!("{name}.cu")), src))
        .and_then(|_| std::fs::write(dir.join(format!("{name}.ptx")), ptx));
    if let Err(e) = written {
        eprintln!("LLMFORGE_KERNEL_DUMP: {}: {e}", dir.display());
    }
}

/// The loaded kernel functions, each typed by its launcher (`launchers.rs`).
pub struct Kernels {
    pub embed: Function<Embed<'static>>,
    pub add_norm: Function<AddNorm<'static>>,
    /// The sandwich norm of one half's output, in place.
    pub post_norm: Function<PostNorm<'static>>,
    /// A sandwich norm of one half's output added to the residual stream (fused decode path).
    pub add_post_norm: Function<AddPostNorm<'static>>,
    pub head_norm: Function<HeadNorm<'static>>,
    pub qkv_rope: Function<QkvRope<'static>>,
    /// A windowed layer's K/V rows into its ring after a multi-token step's attention.
    pub kv_ring_store: Function<KvRingStore<'static>>,
    pub attn_prefill: Function<AttnPrefill<'static>>,
    /// Tensor-core prefill attention (a stub unless [`tc_prefill_supported`]).
    pub attn_prefill_tc: Function<AttnPrefill<'static>>,
    pub attn_decode: Function<AttnDecode<'static>>,
    /// The gated MLP's activation (SwiGLU or GeGLU).
    pub glu: Function<Activation<'static>>,
    pub gelu_bias: Function<Activation<'static>>,
    pub gemv: Function<Gemv<'static>>,
    /// The fused decode kernels for one token row, and for up to `GEMV_MAX_ROWS` rows.
    pub dec1: DecodeKernels,
    pub decn: DecodeKernels,
    pub argmax: Function<Argmax<'static>>,
    /// The final soft cap of the logits (general path; the fused decode applies it in `dec_lm`).
    pub logit_softcap: Function<LogitSoftcap<'static>>,
    /// Top-k sampling next to the logits (`sampling.rs`).
    pub sample: Function<SampleTopK<'static>>,
    /// A matrix quantized at build into a dense staging matrix (general path).
    pub dequant: Option<Function<Dequant<'static>>>,
    /// A matrix of GGUF blocks into a dense one of the storage type (for the prefill GEMMs).
    pub dequant_blocks: Option<Function<DequantBlocks<'static>>>,
    /// The GEMV of a few rows over a matrix of GGUF blocks, dequantised in registers.
    pub gemv_blocks: Option<Function<GemvBlocks<'static>>>,
    /// Largest dynamic shared memory a gemv or gemv_blocks block may use (the device's opt-in limit).
    pub gemv_smem_limit: usize,
    /// The PTX's decode GEMVs over quantized matrices run on tensor cores
    /// ([`CompiledKernels::decode_mma`]).
    pub decode_mma: bool,
}

impl Kernels {
    pub fn load(gpu: &Gpu, compiled: &CompiledKernels) -> Result<Kernels> {
        let mut funcs = std::collections::HashMap::new();
        for (module, names) in MODULES {
            let ptx = match compiled.module(module) {
                Some(ptx) => ptx,
                // An engine compiles the weight-format modules only where its formats need them.
                None if OPTIONAL_MODULES.contains(&module) => continue,
                None => {
                    return Err(Error::Backend(BackendError::Other(format!(
                        "no PTX for kernel module {module}"
                    ))));
                }
            };
            let m = gpu
                .ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                .map_err(cuda_err("cuModuleLoadData"))?;
            for &f in names {
                funcs.insert(f, m.load_function(f).map_err(cuda_err(f))?);
            }
        }
        let mut take = |n: &'static str| {
            funcs.remove(n).ok_or_else(|| {
                Error::Backend(BackendError::Other(format!(
                    "kernel {n} missing from its module"
                )))
            })
        };
        Ok(Kernels {
            embed: typed(&mut take, "embed")?,
            add_norm: typed(&mut take, "add_norm")?,
            post_norm: typed(&mut take, "post_norm")?,
            add_post_norm: typed(&mut take, "add_post_norm")?,
            head_norm: typed(&mut take, "head_norm")?,
            qkv_rope: typed(&mut take, "qkv_rope")?,
            kv_ring_store: typed(&mut take, "kv_ring_store")?,
            attn_prefill: typed(&mut take, "attn_prefill")?,
            attn_prefill_tc: typed(&mut take, "attn_prefill_tc")?,
            attn_decode: typed(&mut take, "attn_decode")?,
            glu: typed(&mut take, "glu")?,
            gelu_bias: typed(&mut take, "gelu_bias")?,
            gemv: typed(&mut take, "gemv")?,
            dequant: optional(&mut take, "dequant")?,
            dec1: DecodeKernels::take(0, &mut take)?,
            decn: DecodeKernels::take(1, &mut take)?,
            argmax: typed(&mut take, "argmax")?,
            logit_softcap: typed(&mut take, "logit_softcap")?,
            sample: typed(&mut take, "sample_top_k")?,
            dequant_blocks: optional(&mut take, "dequant_blocks")?,
            gemv_blocks: optional(&mut take, "gemv_blocks")?,
            gemv_smem_limit: 0,
            decode_mma: compiled.decode_mma,
        })
        .and_then(|mut k| {
            use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
            let limit = gpu
                .ctx
                .attribute(
                    CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                )
                .map_err(cuda_err("shared memory limit"))?;
            // Leave room for the kernels' static shared memory.
            let dynamic = (limit - 1024).max(0);
            let dec = [&k.dec1, &k.decn].into_iter().flat_map(|d| d.all());
            let gemvs = [
                Some(k.gemv.cuda()),
                k.gemv_blocks.as_ref().map(|f| f.cuda()),
            ];
            for f in gemvs.into_iter().flatten().chain(dec) {
                f.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    dynamic,
                )
                .map_err(cuda_err("cuFuncSetAttribute"))?;
            }
            k.gemv_smem_limit = dynamic as usize;
            Ok(k)
        })
    }
}

/// Kernel `name` of an optional module, where the engine compiled it.
fn optional<K: Kernel>(
    take: &mut impl FnMut(&'static str) -> Result<CudaFunction>,
    name: &'static str,
) -> Result<Option<Function<K>>> {
    match take(name) {
        Ok(f) => Function::new(f, name).map(Some),
        Err(_) => Ok(None),
    }
}

/// Kernel `name` from the loaded functions, typed by its launcher `K`.
fn typed<K: Kernel>(
    take: &mut impl FnMut(&'static str) -> Result<CudaFunction>,
    name: &'static str,
) -> Result<Function<K>> {
    Function::new(take(name)?, name)
}

/// The five fused decode kernels of one row-count variant (runtime/templates/kernels/decode.cu).
pub struct DecodeKernels {
    pub qkv: Function<DecQkv<'static>>,
    pub o: Function<DecO<'static>>,
    pub up: Function<DecUp<'static>>,
    pub down: Function<DecDown<'static>>,
    pub lm: Function<DecLm<'static>>,
}

impl DecodeKernels {
    /// Variant `variant` of every decode kernel: its launcher's entry of that index (0: `_1`, one
    /// row; 1: `_n`, up to `GEMV_MAX_ROWS` rows).
    fn take(
        variant: usize,
        take: &mut impl FnMut(&'static str) -> Result<CudaFunction>,
    ) -> Result<Self> {
        Ok(DecodeKernels {
            qkv: typed(take, DecQkv::ENTRIES[variant])?,
            o: typed(take, DecO::ENTRIES[variant])?,
            up: typed(take, DecUp::ENTRIES[variant])?,
            down: typed(take, DecDown::ENTRIES[variant])?,
            lm: typed(take, DecLm::ENTRIES[variant])?,
        })
    }

    fn all(&self) -> [&CudaFunction; 5] {
        [
            self.qkv.cuda(),
            self.o.cuda(),
            self.up.cuda(),
            self.down.cuda(),
            self.lm.cuda(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str) -> ModelSpec {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        ModelSpec::from_dir(&dir.join(model)).expect("config parses")
    }

    #[test]
    fn decode_steps_are_deeper_for_long_rows() {
        if std::env::var_os("LLMFORGE_DECODE_VPS").is_some() {
            return; // a tuning run chose the depth
        }
        assert_eq!(decode_vps(&spec("Llama-3.2-1B-Instruct")), 8);
        assert_eq!(decode_vps(&spec("Qwen2.5-0.5B-Instruct")), 8);
        assert_eq!(decode_vps(&spec("Llama-3.1-8B-Instruct")), 16);
        let c = KernelConsts::new(
            &spec("Llama-3.1-8B-Instruct"),
            Precision::Fp16,
            QuantFormat::None,
            2048,
        )
        .unwrap();
        assert_eq!((c.decode_vps, c.gated), (16, true));
        let g = KernelConsts::new(&spec("gpt2"), Precision::Fp16, QuantFormat::None, 1024).unwrap();
        assert_eq!((g.decode_vps, g.gated, g.rope), (8, false, false));
    }

    #[test]
    fn tensor_core_prefill_for_16_bit_storage_not_fp32() {
        let llama = spec("Llama-3.2-1B-Instruct");
        assert!(tc_prefill_supported(&llama, Precision::Fp16));
        assert!(tc_prefill_supported(&llama, Precision::Bf16));
        assert!(!tc_prefill_supported(&llama, Precision::Fp32));
    }
}
