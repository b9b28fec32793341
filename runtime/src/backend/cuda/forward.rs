//! One engine call on the GPU: [`encode`] issues every launch on the stream, through the fused decode
//! path (`decode.rs`) when a step has few rows and the GEMV kernels can take every matrix, else the
//! general path (`layers.rs`). Token ids, positions and `start_idx`/`end_idx` are read from device
//! memory only, so the same launches, captured once into a CUDA graph, serve every decode step.

use super::device::{DevBuf, Gpu, cuda_err};
use super::fused_layer::FusedLayer;
use super::gemm::{GemmChoice, GemmShape, Lt, default_choice};
use super::kernels::{DECODE_CHUNK, Kernels, tc_prefill_supported};
use super::scratch::{Scratch, decode_splits};
use super::weights::{Layout, Mat, Vf};
use crate::Result;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::step::CacheMode;
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use std::collections::BTreeMap;

/// Everything one engine call needs besides the scratch.
pub struct Model<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub spec: &'a ModelSpec,
    /// The layer plan's switches (the same the kernels were compiled with).
    pub layer: FusedLayer,
    pub precision: Precision,
    pub layout: &'a Layout,
    pub mats: &'a DevBuf,
    pub vecs: &'a DevBuf,
    /// `(cos, sin)` tables, `[max_seq, head_dim / 2]` f32; zeros for learned positions.
    pub rope: (u64, u64),
    pub max_seq: usize,
    pub choices: &'a BTreeMap<GemmShape, GemmChoice>,
    /// Launch with programmatic dependent launch (sm_90+, fused decode path only).
    pub pdl: bool,
    /// Decode timeline buffer (`trace.rs`; 0 when not tracing, and on the general path).
    pub trace: u64,
}

/// What one call computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub batch: usize,
    pub seq_len: usize,
    pub mode: CacheMode,
    /// Logits of every row (`true`) or of each sequence's last row.
    pub all_rows: bool,
    /// Also pick `argmax` of each sequence into `next_ids`.
    pub argmax: bool,
}

impl Call {
    pub fn rows(&self) -> usize {
        self.batch * self.seq_len
    }
    /// One new token per sequence against the cache: the split decode attention (and a CUDA graph).
    pub fn is_decode(&self) -> bool {
        self.seq_len == 1 && self.mode != CacheMode::None
    }
    pub fn logit_rows(&self) -> usize {
        if self.all_rows {
            self.rows()
        } else {
            self.batch
        }
    }
}

pub enum Arg {
    P(u64),
    I(i32),
    F(f32),
}

/// Launch `f` on the stream with `block` threads and `smem` bytes of dynamic shared memory; with
/// `m.pdl` as a programmatic dependent launch (it may start while its predecessor drains; the kernels
/// wait for it with `griddepcontrol.wait` before touching its results).
pub fn launch(
    m: &Model<'_>,
    f: &CudaFunction,
    name: &str,
    grid: (u32, u32, u32),
    block: u32,
    smem: usize,
    args: &[Arg],
) -> Result<()> {
    if m.pdl {
        return launch_pdl(m.gpu, f, name, grid, block, smem, args);
    }
    let mut b = m.gpu.stream.launch_builder(f);
    for a in args {
        match a {
            Arg::P(v) => b.arg(v),
            Arg::I(v) => b.arg(v),
            Arg::F(v) => b.arg(v),
        };
    }
    let cfg = LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    // SAFETY: every pointer argument addresses a live device buffer sized by `Scratch::new`, the weight
    // layout or the cache shape checked by `Engine`, for the grid launched here; the argument list
    // matches the kernel's parameter list in runtime/templates/kernels (same order, 8-byte pointers, i32 ints,
    // f32 floats);
    // `smem` is within the limit set on the gemv kernels at load time (callers check).
    unsafe { b.launch(cfg) }.map(|_| ()).map_err(cuda_err(name))
}

fn launch_pdl(
    gpu: &Gpu,
    f: &CudaFunction,
    name: &str,
    grid: (u32, u32, u32),
    block: u32,
    smem: usize,
    args: &[Arg],
) -> Result<()> {
    use cudarc::driver::sys;
    use std::ffi::c_void;
    let mut params: Vec<*mut c_void> = args
        .iter()
        .map(|a| match a {
            Arg::P(v) => v as *const u64 as *mut c_void,
            Arg::I(v) => v as *const i32 as *mut c_void,
            Arg::F(v) => v as *const f32 as *mut c_void,
        })
        .collect();
    // SAFETY: all-zero bytes are a valid value of this plain C union.
    let mut value: sys::CUlaunchAttributeValue = unsafe { std::mem::zeroed() };
    value.programmaticStreamSerializationAllowed = 1;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value,
    };
    let cfg = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: block,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: smem as u32,
        hStream: gpu.stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: as in `launch` for the arguments (`params` points at `args`, alive for the call, in the
    // kernel's parameter order); `cfg` and `attr` outlive the call; the function belongs to this
    // context, which is current (cudarc binds it when the stream is created and on every launch).
    unsafe {
        sys::cuLaunchKernelEx(
            &cfg,
            f.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(cuda_err(name))
}

pub fn vp(m: &Model<'_>, v: &Vf) -> u64 {
    m.vecs.at(v.off)
}

pub fn ov(m: &Model<'_>, v: &Option<Vf>) -> u64 {
    v.as_ref().map_or(0, |v| vp(m, v))
}

/// Grid of a gemv launch of `f` over `n` outputs (8 per block): one resident wave at most, so each
/// block stages its input rows once and then streams several weight rows (grid-stride).
pub fn gemv_grid(m: &Model<'_>, f: &CudaFunction, n: usize, smem: usize) -> (u32, u32, u32) {
    let per_sm = f
        .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
        .map_or(4, |b| b.max(1) as usize);
    (n.div_ceil(8).min(m.gpu.sms * per_sm).max(1) as u32, 1, 1)
}

/// The shape of `y[rows, w.rows] = x · wᵀ` and how to run it: the choice recorded at build time, else
/// the default for the shape.
pub fn choice(m: &Model<'_>, w: &Mat, rows: usize) -> (GemmShape, Option<GemmChoice>) {
    let shape = GemmShape {
        m: rows,
        n: w.rows,
        k: w.cols,
    };
    let choice = m
        .choices
        .get(&shape)
        .copied()
        .or_else(|| default_choice(&shape, m.precision));
    (shape, choice)
}

/// `y[rows, w.rows] = x · wᵀ` (x rows `ldx` elements apart), by the recorded or default choice.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: &Model<'_>,
    lt: &mut Lt,
    w: &Mat,
    x: u64,
    ldx: usize,
    rows: usize,
    y: u64,
) -> Result<()> {
    let (shape, choice) = choice(m, w, rows);
    let e = m.precision.bytes_per_element();
    let smem = rows * w.cols * e;
    match choice {
        Some(GemmChoice::Gemv) if ldx.is_multiple_of(16 / e) && smem <= m.k.gemv_smem_limit => {
            launch(
                m,
                &m.k.gemv,
                "gemv",
                gemv_grid(m, &m.k.gemv, w.rows, smem),
                256,
                smem,
                &[
                    Arg::P(m.mats.at(w.off)),
                    Arg::P(x),
                    Arg::P(y),
                    Arg::P(0),
                    Arg::I(0),
                    Arg::I(w.rows as i32),
                    Arg::I(w.cols as i32),
                    Arg::I(rows as i32),
                    Arg::I(ldx as i32),
                ],
            )
        }
        Some(GemmChoice::Lt { algo }) if ldx == w.cols => {
            lt.matmul(m.gpu, shape, m.mats.at(w.off), x, ldx, y, Some(algo))
        }
        _ => lt.matmul(m.gpu, shape, m.mats.at(w.off), x, ldx, y, None),
    }
}

pub fn norm_block(h: usize) -> u32 {
    if h > 2048 { 1024 } else { 256 }
}

/// Attention of one layer: the split decode kernels for one-token steps against the cache, else the
/// tiled causal kernel (on tensor cores for 16-bit storage where `tc_prefill_supported`, sm_80+). `kv` = `(cache key, cache value)` addresses.
pub fn attention(
    m: &Model<'_>,
    s: &Scratch,
    call: &Call,
    kv: (u64, u64),
    slot: usize,
) -> Result<()> {
    let spec = m.spec;
    let step = s.inputs.at(s.step_off());
    let mode = match call.mode {
        CacheMode::StaticV1 => 0,
        CacheMode::StaticV2 => 1,
        CacheMode::None => 2,
    };
    let mut args = vec![
        Arg::P(s.q.ptr()),
        Arg::P(kv.0),
        Arg::P(kv.1),
        Arg::P(s.new_k.ptr()),
        Arg::P(s.new_v.ptr()),
        Arg::P(step),
    ];
    if call.is_decode() {
        let splits = decode_splits(m.max_seq);
        args.extend([
            Arg::P(s.part_o.ptr()),
            Arg::P(s.part_ml.ptr()),
            Arg::P(s.counters.ptr()),
            Arg::P(s.attn.ptr()),
            Arg::I(m.max_seq as i32),
            Arg::I(mode),
            Arg::P(m.trace),
            Arg::I(slot as i32),
        ]);
        let grid = (splits as u32, spec.num_heads as u32, call.batch as u32);
        launch(
            m,
            &m.k.attn_decode,
            "attn_decode",
            grid,
            DECODE_CHUNK as u32,
            0,
            &args,
        )
    } else {
        args.extend([
            Arg::P(s.attn.ptr()),
            Arg::I(call.seq_len as i32),
            Arg::I(m.max_seq as i32),
            Arg::I(mode),
        ]);
        let heads = spec.num_heads as u32;
        if tc_prefill_supported(spec, m.precision) && m.gpu.sm >= 80 {
            // Tensor cores: 64 queries per block.
            let grid = (call.seq_len.div_ceil(64) as u32, heads, call.batch as u32);
            launch(
                m,
                &m.k.attn_prefill_tc,
                "attn_prefill_tc",
                grid,
                128,
                0,
                &args,
            )
        } else {
            let grid = (call.seq_len.div_ceil(16) as u32, heads, call.batch as u32);
            launch(m, &m.k.attn_prefill, "attn_prefill", grid, 128, 0, &args)
        }
    }
}

/// Work items of one row of the RoPE kernel: rotated pairs of q and k heads, then v elements.
fn rope_items(spec: &ModelSpec) -> usize {
    (spec.num_heads + spec.num_kv_heads) * spec.head_dim / 2 + spec.kv_dim()
}

/// The arguments every RoPE + KV-write kernel takes after its input and bias: positions, step,
/// RoPE tables, the rotated-q and new-K/V outputs and the layer's cache (`qkv_rope`, `dec_qkv`).
pub fn rope_cache_args(m: &Model<'_>, s: &Scratch, kv: (u64, u64)) -> [Arg; 9] {
    [
        Arg::P(s.inputs.at(s.pos_off())),
        Arg::P(s.inputs.at(s.step_off())),
        Arg::P(m.rope.0),
        Arg::P(m.rope.1),
        Arg::P(s.q.ptr()),
        Arg::P(s.new_k.ptr()),
        Arg::P(s.new_v.ptr()),
        Arg::P(kv.0),
        Arg::P(kv.1),
    ]
}

/// Fused RoPE + bias + KV write of one layer.
pub fn qkv_rope(m: &Model<'_>, s: &Scratch, call: &Call, bias: u64, kv: (u64, u64)) -> Result<()> {
    let mut args = vec![Arg::P(s.qkv.ptr()), Arg::P(bias)];
    args.extend(rope_cache_args(m, s, kv));
    args.extend([
        Arg::I(call.seq_len as i32),
        Arg::I(m.max_seq as i32),
        Arg::I((call.mode != CacheMode::None) as i32),
    ]);
    let grid = (
        call.rows() as u32,
        rope_items(m.spec).div_ceil(256) as u32,
        1,
    );
    launch(m, &m.k.qkv_rope, "qkv_rope", grid, 256, 0, &args)
}

/// Token (and learned position) embedding into the residual stream.
pub fn embed(m: &Model<'_>, s: &Scratch, call: &Call) -> Result<()> {
    let l = m.layout;
    launch(
        m,
        &m.k.embed,
        "embed",
        (call.rows() as u32, 1, 1),
        256,
        0,
        &[
            Arg::P(s.inputs.ptr()),
            Arg::P(s.inputs.at(s.pos_off())),
            Arg::P(m.mats.at(l.embed.off)),
            Arg::P(l.pos_embed.as_ref().map_or(0, |p| m.mats.at(p.off))),
            Arg::P(s.x.ptr()),
            Arg::P(s.best.ptr()),
            Arg::I(call.batch as i32),
            Arg::P(m.trace),
            Arg::I(0),
        ],
    )
}

/// Device argmax of each sequence's logits row into `best`.
pub fn argmax(m: &Model<'_>, s: &Scratch, call: &Call) -> Result<()> {
    launch(
        m,
        &m.k.argmax,
        "argmax",
        (call.batch as u32, 1, 1),
        1024,
        0,
        &[Arg::P(s.logits.ptr()), Arg::P(s.best.ptr())],
    )
}

/// Issue every launch of one call. `cache[l] = (key, value)` device addresses (ignored in mode none).
pub fn encode(
    m: &Model<'_>,
    lt: &mut Lt,
    s: &Scratch,
    call: &Call,
    cache: &[(u64, u64)],
) -> Result<()> {
    if call.rows() > s.rows || call.batch == 0 {
        return Err(crate::Error::Backend(crate::backend::BackendError::Other(
            format!("{} rows do not fit scratch for {}", call.rows(), s.rows),
        )));
    }
    if super::decode::fits(m, call) {
        super::decode::encode_fused(m, s, call, cache)
    } else {
        let m = Model {
            pdl: false,
            trace: 0,
            ..*m
        };
        super::layers::encode_unfused(&m, lt, s, call, cache)
    }
}
