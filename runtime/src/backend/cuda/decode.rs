//! The fused decode path: a step of a few rows (`batch <= GEMV_MAX_ROWS`, one token each) as five
//! launches per layer of runtime/templates/kernels/decode.cu plus the split attention:
//! `dec_qkv` (norm → QKV → bias + RoPE → q and the K/V cache rows; with per-head q/k norms, the
//! unrotated row, then `head_norm` and `qkv_rope`) → `attn_decode` → `dec_o` (into the residual
//! stream) → `dec_up` (norm → gate/up → SwiGLU or GeGLU, or fc → gelu) → `dec_down` (into the
//! residual stream); with sandwich norms `dec_o` and `dec_down` store their output and
//! `add_post_norm` adds its norm to the residual stream; then `dec_lm` (final norm → lm_head →
//! logits and the fused argmax). Launched
//! with programmatic dependent launch (where the GPU has it), each GEMV streams its first weights
//! while its predecessor still runs.

use super::forward::{Call, LayerKv, Model, attention, embed, head_norm, no_cache, qkv_rope};
use super::kernels::{DecodeKernels, GEMV_MAX_ROWS, decode_vps, env_usize};
use super::launch::{Function, Grid, Kernel};
use super::launchers::{AddPostNorm, DecDown, DecLm, DecO, DecQkv, DecUp};
use super::scratch::Scratch;
use super::trace::{Kind, slot};
use crate::Result;
use crate::spec::ModelSpec;
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

/// Launch one decode GEMV `f` (`k` input columns of `rows` rows staged in shared memory).
fn gemv<K: Kernel>(
    m: &Model<'_>,
    f: &Function<K>,
    k: usize,
    rows: usize,
    kernel: &K,
) -> Result<()> {
    let smem = rows * k * m.precision.bytes_per_element();
    let grid = (blocks(m, f.cuda(), smem) as u32, 1, 1);
    m.stream()
        .launch(f, Grid::new(grid, 256).smem(smem), kernel)
}

pub fn encode_fused(m: &Model<'_>, s: &Scratch, call: &Call, cache: &[LayerKv<'_>]) -> Result<()> {
    let rows = call.rows();
    let spec = m.spec;
    let k: &DecodeKernels = if rows == 1 { &m.k.dec1 } else { &m.k.decn };
    let h = spec.hidden_size;
    let l = m.layout;
    let (m_rows, max_seq) = (rows as i32, m.max_seq as i32);
    embed(m, s, call)?;
    for (i, layer) in l.layers.iter().enumerate() {
        let kv = *cache
            .get(i)
            .ok_or_else(|| no_cache(&format!("decode step of layer {i}")))?;
        let (cos_t, sin_t) = m.rope_of(i);
        let qk_norm = layer.qk_norm.as_ref();
        let qkv = DecQkv {
            w: m.mat(&layer.qkv),
            x: s.x.view(),
            nw: m.vec(&layer.attn_norm.0),
            nb: m.opt_vec(&layer.attn_norm.1),
            bias: m.opt_vec(&layer.qkv_bias),
            pos: s.positions(),
            step: s.step(),
            cos_t,
            sin_t,
            // With q/k norms the unrotated QKV row, for head_norm and qkv_rope.
            q: match qk_norm {
                Some(_) => s.qkv.view_mut(),
                None => s.q.view_mut(),
            },
            new_k: s.new_k.view_mut(),
            new_v: s.new_v.view_mut(),
            cache_k: kv.k,
            cache_v: kv.v,
            max_seq,
            window: m.window_of(i) as i32,
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::Qkv, i) as i32,
        };
        gemv(m, &k.qkv, h, rows, &qkv)?;
        if let Some(w) = qk_norm {
            head_norm(m, s, rows, w)?;
            qkv_rope(m, s, call, None, Some(kv), i)?;
        }
        attention(m, s, call, Some(kv), i, slot(Kind::Attention, i))?;
        // With sandwich norms the O and down outputs go to `delta`, normed into x by add_post_norm.
        let out = || match layer.post_norms {
            Some(_) => s.delta.view_mut(),
            None => s.x.view_mut(),
        };
        let o = DecO {
            w: m.mat(&layer.o),
            a: s.attn.view(),
            x: out(),
            bias: m.opt_vec(&layer.o_bias),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::O, i) as i32,
        };
        gemv(m, &k.o, layer.o.cols, rows, &o)?;
        if let Some((post_attn, _)) = &layer.post_norms {
            add_post_norm(m, s, rows, post_attn)?;
        }
        let up = DecUp {
            w: m.mat(&layer.up),
            x: s.x.view(),
            nw: m.vec(&layer.mlp_norm.0),
            nb: m.opt_vec(&layer.mlp_norm.1),
            bias: m.opt_vec(&layer.up_bias),
            mid: s.mid.view_mut(),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::Up, i) as i32,
        };
        gemv(m, &k.up, h, rows, &up)?;
        let down = DecDown {
            w: m.mat(&layer.down),
            mid: s.mid.view(),
            x: out(),
            bias: m.opt_vec(&layer.down_bias),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::Down, i) as i32,
        };
        gemv(m, &k.down, layer.down.cols, rows, &down)?;
        if let Some((_, post_mlp)) = &layer.post_norms {
            add_post_norm(m, s, rows, post_mlp)?;
        }
    }
    // The greedy selection rides in the lm_head epilogue (atomicMax of argmax keys into `best`).
    let lm = DecLm {
        w: m.mat(&l.lm_head),
        x: s.x.view(),
        nw: m.vec(&l.final_norm.0),
        nb: m.opt_vec(&l.final_norm.1),
        logits: s.logits.view_mut(),
        best: call.argmax.then(|| s.best.view_mut()),
        n: l.lm_head.rows as i32,
        cap: m.layer.final_softcap.unwrap_or(0.0),
        m: m_rows,
        trace: m.trace,
        slot: slot(Kind::LmHead, l.layers.len()) as i32,
    };
    gemv(m, &k.lm, h, rows, &lm)
}

/// `x += rmsnorm(delta) * w` for every row: a sandwich norm of the O or down GEMV's output.
fn add_post_norm(m: &Model<'_>, s: &Scratch, rows: usize, w: &super::weights::Vf) -> Result<()> {
    AddPostNorm {
        x: s.x.view_mut(),
        delta: s.delta.view(),
        w: m.vec(w),
    }
    .launch(
        &m.stream(),
        &m.k.add_post_norm,
        Grid::new(
            (rows as u32, 1, 1),
            super::forward::norm_block(m.spec.hidden_size),
        ),
    )
}
