//! The fused decode path: a step of a few rows (`batch <= GEMV_MAX_ROWS`, one token each) as five
//! launches per layer of runtime/templates/kernels/decode.cu plus the split attention:
//! `dec_qkv` (norm → QKV → bias + RoPE → q and the K/V cache rows) → `attn_decode` → `dec_o` (into
//! the residual stream) → `dec_up` (norm → gate/up → SwiGLU, or fc → gelu) → `dec_down` (into the
//! residual stream); then `dec_lm` (final norm → lm_head → logits and the fused argmax). Launched
//! with programmatic dependent launch (where the GPU has it), each GEMV streams its first weights
//! while its predecessor still runs.

use super::forward::{Arg, Call, Model, attention, embed, launch, ov, rope_cache_args, vp};
use super::kernels::{DecodeKernels, GEMV_MAX_ROWS, decode_vps, env_usize};
use super::scratch::Scratch;
use super::trace::{Kind, slot};
use super::weights::{Mat, Vf};
use crate::backend_error::BackendError;
use crate::spec::ModelSpec;
use crate::{Error, Result};
use cudarc::driver::CudaFunction;

/// Blocks per SM of a decode GEMV launch (at most; the kernel's occupancy may allow fewer): two with
/// 8 vectors per lane per step, one with 16 (measured best on an H200, bench/RESULTS.md).
/// `LLMFORGE_DECODE_BPS` overrides it (for tuning runs).
fn blocks_per_sm(spec: &ModelSpec) -> usize {
    env_usize("LLMFORGE_DECODE_BPS", |v| (1..=16).contains(&v))
        .unwrap_or(if decode_vps(spec) >= 16 { 1 } else { 2 })
}

/// The input widths of the decode GEMVs: hidden (QKV, gate/up, lm_head), q_dim (O), intermediate
/// (down).
fn input_widths(m: &Model<'_>) -> [usize; 3] {
    let s = m.spec;
    [s.hidden_size, s.q_dim(), s.intermediate_size]
}

/// Whether `call` can take the fused path: a decode step of at most `GEMV_MAX_ROWS` rows whose every
/// input width is a whole number of 16-byte vectors and whose staged inputs fit in shared memory.
pub fn fits(m: &Model<'_>, call: &Call) -> bool {
    let rows = call.rows();
    let e = m.precision.bytes_per_element();
    call.is_decode()
        && rows <= GEMV_MAX_ROWS
        && input_widths(m)
            .iter()
            .all(|&k| (k * e).is_multiple_of(16) && rows * k * e <= m.k.gemv_smem_limit)
}

/// Blocks of a decode GEMV launch of `f` with `smem` bytes of shared memory.
fn blocks(m: &Model<'_>, f: &CudaFunction, smem: usize) -> usize {
    let per_sm = f
        .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
        .map_or(1, |b| (b.max(1) as usize).min(blocks_per_sm(m.spec)));
    m.gpu.sms * per_sm
}

/// Launch one decode GEMV `f` (`k` input columns staged in shared memory) as timeline slot `slot`.
fn gemv(
    m: &Model<'_>,
    f: &CudaFunction,
    name: &str,
    k: usize,
    rows: usize,
    slot: usize,
    args: Vec<Arg>,
) -> Result<()> {
    let smem = rows * k * m.precision.bytes_per_element();
    let mut args = args;
    args.extend([Arg::P(m.trace), Arg::I(slot as i32)]);
    let grid = (blocks(m, f, smem) as u32, 1, 1);
    launch(m, f, name, grid, 256, smem, &args)
}

/// Launch `dec_o` or `dec_down`: `(weight, input, bias)` times the input rows (as wide as the weight),
/// added to the residual stream `x`.
fn residual(
    m: &Model<'_>,
    f: &CudaFunction,
    name: &str,
    rows: usize,
    slot: usize,
    (w, input, bias): (&Mat, u64, &Option<Vf>),
    x: u64,
) -> Result<()> {
    let args = vec![
        mat(m, w),
        Arg::P(input),
        Arg::P(x),
        Arg::P(ov(m, bias)),
        Arg::I(rows as i32),
    ];
    gemv(m, f, name, w.cols, rows, slot, args)
}

fn mat(m: &Model<'_>, w: &Mat) -> Arg {
    Arg::P(m.mats.at(w.off))
}

fn norm_args(m: &Model<'_>, n: &(Vf, Option<Vf>)) -> [Arg; 2] {
    [Arg::P(vp(m, &n.0)), Arg::P(ov(m, &n.1))]
}

pub fn encode_fused(m: &Model<'_>, s: &Scratch, call: &Call, cache: &[(u64, u64)]) -> Result<()> {
    let rows = call.rows();
    let spec = m.spec;
    let k: &DecodeKernels = if rows == 1 { &m.k.dec1 } else { &m.k.decn };
    let x = s.x.ptr();
    let h = spec.hidden_size;
    let l = m.layout;
    embed(m, s, call)?;
    for (i, layer) in l.layers.iter().enumerate() {
        let kv = *cache.get(i).ok_or_else(|| {
            Error::Backend(BackendError::Other(format!(
                "decode step without a KV cache for layer {i}"
            )))
        })?;
        let mut args = vec![mat(m, &layer.qkv), Arg::P(x)];
        args.extend(norm_args(m, &layer.attn_norm));
        args.push(Arg::P(ov(m, &layer.qkv_bias)));
        args.extend(rope_cache_args(m, s, kv));
        args.extend([Arg::I(m.max_seq as i32), Arg::I(rows as i32)]);
        gemv(m, &k.qkv, "dec_qkv", h, rows, slot(Kind::Qkv, i), args)?;
        attention(m, s, call, kv, slot(Kind::Attention, i))?;
        let o = (&layer.o, s.attn.ptr(), &layer.o_bias);
        residual(m, &k.o, "dec_o", rows, slot(Kind::O, i), o, x)?;
        let mut args = vec![mat(m, &layer.up), Arg::P(x)];
        args.extend(norm_args(m, &layer.mlp_norm));
        args.extend([
            Arg::P(ov(m, &layer.up_bias)),
            Arg::P(s.mid.ptr()),
            Arg::I(rows as i32),
        ]);
        gemv(m, &k.up, "dec_up", h, rows, slot(Kind::Up, i), args)?;
        let down = (&layer.down, s.mid.ptr(), &layer.down_bias);
        residual(m, &k.down, "dec_down", rows, slot(Kind::Down, i), down, x)?;
    }
    // The greedy selection rides in the lm_head epilogue (atomicMax of argmax keys into `best`).
    let best = if call.argmax { s.best.ptr() } else { 0 };
    let mut args = vec![mat(m, &l.lm_head), Arg::P(x)];
    args.extend(norm_args(m, &l.final_norm));
    args.extend([
        Arg::P(s.logits.ptr()),
        Arg::P(best),
        Arg::I(l.lm_head.rows as i32),
        Arg::I(rows as i32),
    ]);
    let slot = slot(Kind::LmHead, l.layers.len());
    gemv(m, &k.lm, "dec_lm", h, rows, slot, args)
}
