//! The layer loop on the GPU: one function, [`encode`], issues every launch of one engine call on the
//! stream (embedding, per layer fused norm+residual → QKV GEMM → bias+RoPE+KV write → attention →
//! O GEMM → fused norm+residual → gate/up GEMM → activation → down GEMM, final norm, lm_head, argmax).
//! It reads token ids, positions and `start_idx`/`end_idx` from device memory only, so the same
//! launches, captured once into a CUDA graph, serve every decode step.

use super::device::{DevBuf, Gpu, cuda_err};
use super::gemm::{GemmChoice, GemmShape, Lt, default_choice};
use super::kernels::{DECODE_CHUNK, Kernels};
use super::weights::{Layout, Mat, Vf};
use crate::backend::{BackendError, CacheMode};
use crate::precision::Precision;
use crate::spec::{Mlp, ModelSpec};
use crate::{Error, Result};
use cudarc::driver::{CudaFunction, LaunchConfig, PushKernelArg};
use std::collections::BTreeMap;

/// Device activations for up to `rows` token rows (grown on demand, never shrunk).
pub struct Scratch {
    pub rows: usize,
    pub x: DevBuf,
    pub normed: DevBuf,
    pub qkv: DevBuf,
    pub q: DevBuf,
    pub new_k: DevBuf,
    pub new_v: DevBuf,
    pub attn: DevBuf,
    pub delta: DevBuf,
    pub up: DevBuf,
    pub mid: DevBuf,
    pub logits: DevBuf,
    pub part_o: DevBuf,
    pub part_ml: DevBuf,
    /// `ids [rows] u32 | positions [rows] u32 | start_idx, end_idx i32`.
    pub inputs: DevBuf,
    /// Device-side argmax result, `[max_batch] u32`.
    pub next_ids: DevBuf,
}

/// Number of decode-attention splits for a cache of `max_seq` positions.
pub fn decode_splits(max_seq: usize) -> usize {
    max_seq.div_ceil(DECODE_CHUNK)
}

/// Columns of the first MLP projection (`[gate | up]` or `fc`).
pub fn up_cols(spec: &ModelSpec) -> usize {
    match spec.mlp {
        Mlp::SwiGlu => 2 * spec.intermediate_size,
        Mlp::GeluNew => spec.intermediate_size,
    }
}

impl Scratch {
    pub fn new(
        gpu: &Gpu,
        spec: &ModelSpec,
        precision: Precision,
        rows: usize,
        max_batch: usize,
        max_seq: usize,
    ) -> Result<Scratch> {
        let e = precision.bytes_per_element();
        let (h, qd, kvd) = (spec.hidden_size, spec.q_dim(), spec.kv_dim());
        let splits = decode_splits(max_seq);
        let z = |n: usize, what: &str| gpu.zeros(n, what);
        Ok(Scratch {
            rows,
            x: z(rows * h * 4, "residual stream")?,
            normed: z(rows * h * e, "normed activations")?,
            qkv: z(rows * (qd + 2 * kvd) * 4, "qkv activations")?,
            q: z(rows * qd * 4, "rotated queries")?,
            new_k: z(rows * kvd * e, "new keys")?,
            new_v: z(rows * kvd * e, "new values")?,
            attn: z(rows * qd * e, "attention output")?,
            delta: z(rows * h * 4, "projection output")?,
            up: z(rows * up_cols(spec) * 4, "mlp activations")?,
            mid: z(rows * spec.intermediate_size * e, "mlp activations")?,
            logits: z(rows * spec.vocab_size * 4, "logits")?,
            part_o: z(
                max_batch * spec.num_heads * splits * spec.head_dim * 4,
                "attention splits",
            )?,
            part_ml: z(
                max_batch * spec.num_heads * splits * 2 * 4,
                "attention splits",
            )?,
            inputs: z(rows * 8 + 8, "step inputs")?,
            next_ids: z(max_batch * 4, "next token ids")?,
        })
    }

    pub fn pos_off(&self) -> usize {
        self.rows * 4
    }
    pub fn step_off(&self) -> usize {
        self.rows * 8
    }

    /// The bytes of `inputs` for one call.
    pub fn input_bytes(&self, ids: &[u32], pos: &[u32], start: usize, end: usize) -> Vec<u8> {
        let mut b = vec![0u8; self.rows * 8 + 8];
        b[..ids.len() * 4].copy_from_slice(bytemuck::cast_slice(ids));
        let p = self.pos_off();
        b[p..p + pos.len() * 4].copy_from_slice(bytemuck::cast_slice(pos));
        let s = self.step_off();
        b[s..s + 4].copy_from_slice(&(start as i32).to_le_bytes());
        b[s + 4..s + 8].copy_from_slice(&(end as i32).to_le_bytes());
        b
    }
}

/// Everything one engine call needs besides the scratch.
pub struct Model<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub spec: &'a ModelSpec,
    pub precision: Precision,
    pub layout: &'a Layout,
    pub mats: &'a DevBuf,
    pub vecs: &'a DevBuf,
    /// `(cos, sin)` tables, `[max_seq, head_dim / 2]` f32; zeros for learned positions.
    pub rope: (u64, u64),
    pub max_seq: usize,
    pub choices: &'a BTreeMap<GemmShape, GemmChoice>,
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

enum Arg {
    P(u64),
    I(i32),
}

fn launch(
    gpu: &Gpu,
    f: &CudaFunction,
    name: &str,
    grid: (u32, u32, u32),
    block: u32,
    args: &[Arg],
) -> Result<()> {
    let mut b = gpu.stream.launch_builder(f);
    for a in args {
        match a {
            Arg::P(v) => b.arg(v),
            Arg::I(v) => b.arg(v),
        };
    }
    let cfg = LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: every pointer argument addresses a live device buffer sized by `Scratch::new`, the weight
    // layout or the cache shape checked by `Engine`, for the grid launched here; the argument list
    // matches the kernel's parameter list in templates/kernels (same order, 8-byte pointers, i32 ints).
    unsafe { b.launch(cfg) }.map(|_| ()).map_err(cuda_err(name))
}

fn vp(m: &Model<'_>, v: &Vf) -> u64 {
    m.vecs.at(v.off)
}
fn ov(m: &Model<'_>, v: &Option<Vf>) -> u64 {
    v.as_ref().map_or(0, |v| vp(m, v))
}

/// `y[rows, w.rows] = x · wᵀ` (x rows `ldx` elements apart).
pub fn gemm(
    m: &Model<'_>,
    lt: &mut Lt,
    w: &Mat,
    x: u64,
    ldx: usize,
    rows: usize,
    y: u64,
) -> Result<()> {
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
    let vec_elems = 16 / m.precision.bytes_per_element();
    match choice {
        Some(GemmChoice::Gemv) if ldx % vec_elems == 0 => launch(
            m.gpu,
            &m.k.gemv,
            "gemv",
            (w.rows.div_ceil(8) as u32, 1, 1),
            256,
            &[
                Arg::P(m.mats.at(w.off)),
                Arg::P(x),
                Arg::P(y),
                Arg::I(w.rows as i32),
                Arg::I(w.cols as i32),
                Arg::I(rows as i32),
                Arg::I(ldx as i32),
            ],
        ),
        Some(GemmChoice::Lt { algo }) if ldx == w.cols => {
            lt.matmul(m.gpu, shape, m.mats.at(w.off), x, ldx, y, Some(algo))
        }
        _ => lt.matmul(m.gpu, shape, m.mats.at(w.off), x, ldx, y, None),
    }
}

fn norm_block(h: usize) -> u32 {
    if h > 2048 { 1024 } else { 256 }
}

/// Issue every launch of one call. `cache[l] = (key, value)` device addresses (ignored in mode none).
pub fn encode(
    m: &Model<'_>,
    lt: &mut Lt,
    s: &Scratch,
    call: &Call,
    cache: &[(u64, u64)],
) -> Result<()> {
    let spec = m.spec;
    let (rows, e) = (call.rows(), m.precision.bytes_per_element());
    if rows > s.rows || call.batch == 0 {
        return Err(Error::Backend(BackendError::Other(format!(
            "{rows} rows do not fit scratch for {}",
            s.rows
        ))));
    }
    let (h, qd) = (spec.hidden_size, spec.q_dim());
    let ids = s.inputs.ptr();
    let pos = s.inputs.at(s.pos_off());
    let step = s.inputs.at(s.step_off());
    let nb = norm_block(h);
    let l = m.layout;
    launch(
        m.gpu,
        &m.k.embed,
        "embed",
        (rows as u32, 1, 1),
        256,
        &[
            Arg::P(ids),
            Arg::P(pos),
            Arg::P(m.mats.at(l.embed.off)),
            Arg::P(l.pos_embed.as_ref().map_or(0, |p| m.mats.at(p.off))),
            Arg::P(s.x.ptr()),
        ],
    )?;
    let mode = match call.mode {
        CacheMode::StaticV1 => 0,
        CacheMode::StaticV2 => 1,
        CacheMode::None => 2,
    };
    let mut pending_bias: Option<Vf> = None;
    for (i, layer) in l.layers.iter().enumerate() {
        let delta = if i == 0 { 0 } else { s.delta.ptr() };
        let bias = if i == 0 { 0 } else { ov(m, &pending_bias) };
        let (w, b) = &layer.attn_norm;
        launch(
            m.gpu,
            &m.k.add_norm,
            "add_norm",
            (rows as u32, 1, 1),
            nb,
            &[
                Arg::P(s.x.ptr()),
                Arg::P(delta),
                Arg::P(bias),
                Arg::P(vp(m, w)),
                Arg::P(ov(m, b)),
                Arg::P(s.normed.ptr()),
            ],
        )?;
        gemm(m, lt, &layer.qkv, s.normed.ptr(), h, rows, s.qkv.ptr())?;
        let (ck, cv) = cache.get(i).copied().unwrap_or((0, 0));
        launch(
            m.gpu,
            &m.k.qkv_rope,
            "qkv_rope",
            (rows as u32, 1, 1),
            256,
            &[
                Arg::P(s.qkv.ptr()),
                Arg::P(ov(m, &layer.qkv_bias)),
                Arg::P(pos),
                Arg::P(step),
                Arg::P(m.rope.0),
                Arg::P(m.rope.1),
                Arg::P(s.q.ptr()),
                Arg::P(s.new_k.ptr()),
                Arg::P(s.new_v.ptr()),
                Arg::P(ck),
                Arg::P(cv),
                Arg::I(call.seq_len as i32),
                Arg::I(m.max_seq as i32),
                Arg::I((call.mode != CacheMode::None) as i32),
            ],
        )?;
        let kv = [
            Arg::P(ck),
            Arg::P(cv),
            Arg::P(s.new_k.ptr()),
            Arg::P(s.new_v.ptr()),
            Arg::P(step),
        ];
        if call.is_decode() {
            let splits = decode_splits(m.max_seq);
            let mut args = vec![Arg::P(s.q.ptr())];
            args.extend(kv);
            args.extend([
                Arg::P(s.part_o.ptr()),
                Arg::P(s.part_ml.ptr()),
                Arg::I(m.max_seq as i32),
                Arg::I(mode),
            ]);
            let grid = (splits as u32, spec.num_heads as u32, call.batch as u32);
            launch(m.gpu, &m.k.attn_decode, "attn_decode", grid, 128, &args)?;
            launch(
                m.gpu,
                &m.k.attn_combine,
                "attn_combine",
                (spec.num_heads as u32, call.batch as u32, 1),
                spec.head_dim.div_ceil(32) as u32 * 32,
                &[
                    Arg::P(s.part_o.ptr()),
                    Arg::P(s.part_ml.ptr()),
                    Arg::P(step),
                    Arg::P(s.attn.ptr()),
                    Arg::I(splits as i32),
                ],
            )?;
        } else {
            let mut args = vec![Arg::P(s.q.ptr())];
            args.extend(kv);
            args.extend([
                Arg::P(s.attn.ptr()),
                Arg::I(call.seq_len as i32),
                Arg::I(m.max_seq as i32),
                Arg::I(mode),
            ]);
            let grid = (
                call.seq_len.div_ceil(16) as u32,
                spec.num_heads as u32,
                call.batch as u32,
            );
            launch(m.gpu, &m.k.attn_prefill, "attn_prefill", grid, 128, &args)?;
        }
        gemm(m, lt, &layer.o, s.attn.ptr(), qd, rows, s.delta.ptr())?;
        let (w, b) = &layer.mlp_norm;
        launch(
            m.gpu,
            &m.k.add_norm,
            "add_norm",
            (rows as u32, 1, 1),
            nb,
            &[
                Arg::P(s.x.ptr()),
                Arg::P(s.delta.ptr()),
                Arg::P(ov(m, &layer.o_bias)),
                Arg::P(vp(m, w)),
                Arg::P(ov(m, b)),
                Arg::P(s.normed.ptr()),
            ],
        )?;
        gemm(m, lt, &layer.up, s.normed.ptr(), h, rows, s.up.ptr())?;
        let act = match spec.mlp {
            Mlp::SwiGlu => (&m.k.swiglu, "swiglu"),
            Mlp::GeluNew => (&m.k.gelu_bias, "gelu_bias"),
        };
        let n = rows * spec.intermediate_size;
        launch(
            m.gpu,
            act.0,
            act.1,
            (n.div_ceil(256).min(1 << 20) as u32, 1, 1),
            256,
            &[
                Arg::P(s.up.ptr()),
                Arg::P(ov(m, &layer.up_bias)),
                Arg::P(s.mid.ptr()),
                Arg::I(rows as i32),
            ],
        )?;
        gemm(
            m,
            lt,
            &layer.down,
            s.mid.ptr(),
            spec.intermediate_size,
            rows,
            s.delta.ptr(),
        )?;
        pending_bias = layer.down_bias;
    }
    let (w, b) = &l.final_norm;
    let delta = if l.layers.is_empty() {
        0
    } else {
        s.delta.ptr()
    };
    launch(
        m.gpu,
        &m.k.add_norm,
        "add_norm",
        (rows as u32, 1, 1),
        nb,
        &[
            Arg::P(s.x.ptr()),
            Arg::P(delta),
            Arg::P(ov(m, &pending_bias)),
            Arg::P(vp(m, w)),
            Arg::P(ov(m, b)),
            Arg::P(s.normed.ptr()),
        ],
    )?;
    if call.all_rows {
        gemm(m, lt, &l.lm_head, s.normed.ptr(), h, rows, s.logits.ptr())?;
    } else {
        let last = s.normed.at((call.seq_len - 1) * h * e);
        gemm(
            m,
            lt,
            &l.lm_head,
            last,
            call.seq_len * h,
            call.batch,
            s.logits.ptr(),
        )?;
    }
    if call.argmax {
        launch(
            m.gpu,
            &m.k.argmax,
            "argmax",
            (call.batch as u32, 1, 1),
            1024,
            &[Arg::P(s.logits.ptr()), Arg::P(s.next_ids.ptr())],
        )?;
    }
    Ok(())
}
