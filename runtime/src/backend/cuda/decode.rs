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
use super::kernels::{DecodeKernels, GEMV_MAX_ROWS, codes_per_vector, decode_vps, env_usize};
use super::launch::{Function, Grid, Kernel};
use super::launchers::{AddPostNorm, DecDown, DecLm, DecO, DecQkv, DecUp};
use super::scratch::Scratch;
use super::trace::{Kind, slot};
use super::weights::Mat;
use crate::Result;
use crate::format::WeightFormat;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use cudarc::driver::CudaFunction;

/// Blocks per SM of a decode GEMV launch (at most; the kernel's occupancy may allow fewer): two with
/// 8 vectors per lane per step, one with 16 (measured best on an H200, bench/RESULTS.md).
/// `LLMFORGE_DECODE_BPS` overrides it (for tuning runs).
fn blocks_per_sm(spec: &ModelSpec) -> usize {
    env_usize("LLMFORGE_DECODE_BPS", |v| (1..=16).contains(&v))
        .unwrap_or(if decode_vps(spec) >= 16 { 1 } else { 2 })
}

/// Whether the GEMV over `w` runs on tensor cores (decode_mma.cuh's `USE_MMA`): the kernels were
/// compiled for them (`Kernels::decode_mma`), quantized, a 16-bit engine, rows of whole steps of four
/// code vectors.
fn on_tensor_cores(m: &Model<'_>, w: &Mat) -> bool {
    match w.format {
        WeightFormat::Quantized(q) => {
            m.k.decode_mma
                && m.precision != Precision::Fp32
                && w.cols.is_multiple_of(4 * codes_per_vector(q))
        }
        WeightFormat::Dense(_) | WeightFormat::Blocks(_) => false,
    }
}

/// Bytes of one staged input element of a GEMV over `w`: the storage element for a dense matrix and
/// on tensor cores, f32 for the other quantized ones (decode.cu's prologues).
fn staged_bytes(m: &Model<'_>, w: &Mat) -> usize {
    match w.format {
        WeightFormat::Dense(_) => m.precision.bytes_per_element(),
        _ if on_tensor_cores(m, w) => m.precision.bytes_per_element(),
        WeightFormat::Quantized(_) | WeightFormat::Blocks(_) => 4,
    }
}

/// Shared memory of the tensor-core GEMVs' sums across warps, after the staged inputs
/// (decode_mma.cuh's `MMA_SUMS_BYTES`: 16 rows x 8 tokens of f32 for 4 warps a round).
const MMA_SUMS_BYTES: usize = 2048;

/// Rows of a tensor-core GEMV tile.
const MMA_TILE: usize = 16;

/// Dynamic shared memory of a decode GEMV over `w` with `rows` token rows: the staged inputs, and on
/// tensor cores the warps' sums after them.
fn gemv_smem(m: &Model<'_>, w: &Mat, rows: usize) -> usize {
    let staged = rows * w.cols * staged_bytes(m, w);
    if on_tensor_cores(m, w) {
        staged + MMA_SUMS_BYTES
    } else {
        staged
    }
}

/// Whether the tensor-core GEMVs take one block per tile (`LLMFORGE_DECODE_MMA_GRID=tiles`, for A/B
/// runs) rather than as many blocks as are resident at once, each walking its share of the tiles.
/// Either way every tile's sums are the same (decode_mma.cuh), so results do not change.
fn mma_block_per_tile() -> bool {
    std::env::var("LLMFORGE_DECODE_MMA_GRID").is_ok_and(|v| v == "tiles")
}

/// Whether every row of `w` is a whole number of the 16-byte vectors the decode GEMVs load.
fn whole_vectors(m: &Model<'_>, w: &Mat) -> bool {
    match w.format {
        WeightFormat::Dense(_) => (w.cols * m.precision.bytes_per_element()).is_multiple_of(16),
        WeightFormat::Quantized(q) => w.cols.is_multiple_of(codes_per_vector(q)),
        WeightFormat::Blocks(_) => false,
    }
}

/// Whether `call` can take the fused path: a decode step of at most `GEMV_MAX_ROWS` rows whose every
/// matrix (the layers' are alike; the first layer's stand for all) has rows of whole 16-byte
/// vectors in a format the kernels were compiled for, with staged inputs that fit in shared memory.
pub fn fits(m: &Model<'_>, call: &Call) -> bool {
    let rows = call.rows();
    let l = m.layout;
    let first = l.layers.first();
    let mats = first
        .into_iter()
        .flat_map(|f| [&f.qkv, &f.o, &f.up, &f.down])
        .chain([&l.lm_head]);
    call.is_decode()
        && rows <= GEMV_MAX_ROWS
        && l.layers.iter().all(|x| {
            first.is_some_and(|f| {
                [
                    (&x.qkv, &f.qkv),
                    (&x.o, &f.o),
                    (&x.up, &f.up),
                    (&x.down, &f.down),
                ]
                .iter()
                .all(|(a, b)| a.format == b.format && a.cols == b.cols)
            })
        })
        && mats
            .into_iter()
            .all(|w| whole_vectors(m, w) && gemv_smem(m, w, rows) <= m.k.gemv_smem_limit)
}

/// Blocks of a decode GEMV launch of `f` with `smem` bytes of shared memory.
fn blocks(m: &Model<'_>, f: &CudaFunction, smem: usize) -> usize {
    let per_sm = f
        .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
        .map_or(1, |b| (b.max(1) as usize).min(blocks_per_sm(m.spec)));
    m.gpu.sms * per_sm
}

/// Launch one decode GEMV `f` over `w` (its `w.cols` inputs of `rows` rows staged in shared memory).
fn gemv<K: Kernel>(m: &Model<'_>, f: &Function<K>, w: &Mat, rows: usize, kernel: &K) -> Result<()> {
    let smem = gemv_smem(m, w, rows);
    let grid = if on_tensor_cores(m, w) {
        // Tiles of 16 matrix rows, a block taking every grid-th one: as many blocks as are resident
        // at once (at most `blocks_per_sm` per SM, as the f32 path), at most one per tile.
        let tiles = w.rows.div_ceil(MMA_TILE);
        if mma_block_per_tile() {
            tiles
        } else {
            blocks(m, f.cuda(), smem).min(tiles)
        }
    } else {
        blocks(m, f.cuda(), smem)
    };
    let grid = (grid as u32, 1, 1);
    m.stream()
        .launch(f, Grid::new(grid, 256).smem(smem), kernel)
}

pub fn encode_fused(m: &Model<'_>, s: &Scratch, call: &Call, cache: &[LayerKv<'_>]) -> Result<()> {
    let rows = call.rows();
    let k: &DecodeKernels = if rows == 1 { &m.k.dec1 } else { &m.k.decn };
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
            w: m.packed(&layer.qkv),
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
        gemv(m, &k.qkv, &layer.qkv, rows, &qkv)?;
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
            w: m.packed(&layer.o),
            a: s.attn.view(),
            x: out(),
            bias: m.opt_vec(&layer.o_bias),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::O, i) as i32,
        };
        gemv(m, &k.o, &layer.o, rows, &o)?;
        if let Some((post_attn, _)) = &layer.post_norms {
            add_post_norm(m, s, rows, post_attn)?;
        }
        let up = DecUp {
            w: m.packed(&layer.up),
            x: s.x.view(),
            nw: m.vec(&layer.mlp_norm.0),
            nb: m.opt_vec(&layer.mlp_norm.1),
            bias: m.opt_vec(&layer.up_bias),
            mid: s.mid.view_mut(),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::Up, i) as i32,
        };
        gemv(m, &k.up, &layer.up, rows, &up)?;
        let down = DecDown {
            w: m.packed(&layer.down),
            mid: s.mid.view(),
            x: out(),
            bias: m.opt_vec(&layer.down_bias),
            m: m_rows,
            trace: m.trace,
            slot: slot(Kind::Down, i) as i32,
        };
        gemv(m, &k.down, &layer.down, rows, &down)?;
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
    gemv(m, &k.lm, &l.lm_head, rows, &lm)
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
