//! The several-rows (prefill / chunked) path of [`super::attention::attention`], blocked so that each
//! key and value row loaded serves many queries.
//!
//! Work layout: the keys and values of each (batch, KV head), positions `0..start + seq_len`, are
//! first packed contiguously (cache rows below `prefix`, new rows of `qkv` above it). Then one rayon
//! task per (batch, block of [`BQ`] query rows) handles every KV head in turn: the queries of all
//! query heads of that KV head (GQA group × block rows) are packed, their scores against all keys the
//! block can see come from the prefill GEMM's micro-kernel (`gemm::gemm_rows_exact`), each row gets an
//! exact two-pass softmax over its visible keys, and P·V is accumulated for [`PR`] rows of one head at
//! a time, so one load of a value vector serves `PR` rows (SIMD across `head_dim`: 64 columns at once
//! with AVX-512 when `head_dim` is a multiple of 64, else 16).
//!
//! Numerics: every output element is formed with exactly the operations, in exactly the order, of the
//! one-row path (score = `simd::dot(q, k) · scale` summed as the decode dot product, max, `exp(s −
//! max)` summed in key order, weights `p / sum`, outputs `0 + w₀v₀ + w₁v₁ + …` in key order, every
//! product rounded before the add). So a row's result is bit-identical to the decode path's, whatever
//! the block it lands in (tested in `attention_tests.rs`).

use super::attention::{Step, cache_offset};
use super::gemm::gemm_rows_exact;
use crate::backend::ops::AttnGeometry;
use rayon::prelude::*;
use std::borrow::Cow;

/// Query rows per task.
pub const BQ: usize = 16;
/// Query rows sharing each value load in P·V.
const PR: usize = 4;
/// Columns of `head_dim` accumulated together in P·V (one 512-bit register); the softmax max lanes.
const W: usize = 16;

/// Where keys and values come from: the new rows of `qkv` and the cache tensors
/// `[cache_batch, num_kv_heads, max_seq, head_dim]` (empty when there is no cache); positions below
/// `prefix` are read from the cache.
pub struct Sources<'a> {
    pub qkv: &'a [f32],
    pub cache_key: &'a [f32],
    pub cache_value: &'a [f32],
    pub max_seq: usize,
    pub prefix: usize,
}

/// Keys and values of one (batch, KV head), positions in order, `[n, head_dim]` each: the cache's own
/// rows when they are all there (`static_v1`, where the step's rows were just written to it), else a
/// packed copy of the cached rows followed by the step's.
struct Packed<'a> {
    key: Cow<'a, [f32]>,
    value: Cow<'a, [f32]>,
}

fn pack<'a>(src: &Sources<'a>, g: &AttnGeometry, st: Step, b: usize, kvh: usize) -> Packed<'a> {
    let (d, cols) = (g.head_dim, g.q_dim() + 2 * g.kv_dim());
    let n = st.start + st.seq_len;
    let cached = src.prefix.min(n);
    if cached == n {
        let at = cache_offset(g, src.max_seq, b, kvh, 0);
        return Packed {
            key: Cow::Borrowed(&src.cache_key[at..at + n * d]),
            value: Cow::Borrowed(&src.cache_value[at..at + n * d]),
        };
    }
    let (mut key, mut value) = (Vec::with_capacity(n * d), Vec::with_capacity(n * d));
    if cached > src.max_seq {
        // A ring: position j in slot j % max_seq. The rows before the last `max_seq` hold newer
        // positions; no query's window reaches them, so their weights are exactly zero.
        for j in 0..cached {
            let at = cache_offset(g, src.max_seq, b, kvh, j);
            key.extend_from_slice(&src.cache_key[at..at + d]);
            value.extend_from_slice(&src.cache_value[at..at + d]);
        }
    } else if cached > 0 {
        let at = cache_offset(g, src.max_seq, b, kvh, 0);
        key.extend_from_slice(&src.cache_key[at..at + cached * d]);
        value.extend_from_slice(&src.cache_value[at..at + cached * d]);
    }
    for j in cached..n {
        let row = (b * st.seq_len + (j - st.start)) * cols;
        let k0 = row + g.q_dim() + kvh * d;
        let v0 = row + g.q_dim() + g.kv_dim() + kvh * d;
        key.extend_from_slice(&src.qkv[k0..k0 + d]);
        value.extend_from_slice(&src.qkv[v0..v0 + d]);
    }
    Packed {
        key: Cow::Owned(key),
        value: Cow::Owned(value),
    }
}

/// Per-thread buffers: packed queries, the score block, P·V accumulators.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    t: Vec<f32>,
    acc: Vec<f32>,
}

/// Attention of all `batch × seq_len` rows into `out` (`[batch * seq_len, q_dim]`).
pub fn prefill(src: &Sources<'_>, g: AttnGeometry, st: Step, out: &mut [f32]) {
    let (q_dim, nkv) = (g.q_dim(), g.num_kv_heads);
    if st.batch == 0 || st.seq_len == 0 {
        return;
    }
    let packed: Vec<Packed> = (0..st.batch * nkv)
        .into_par_iter()
        .map(|i| pack(src, &g, st, i / nkv, i % nkv))
        .collect();
    out[..st.batch * st.seq_len * q_dim]
        .par_chunks_mut(st.seq_len * q_dim)
        .enumerate()
        .for_each(|(b, ob)| {
            ob.par_chunks_mut(BQ * q_dim).enumerate().for_each_init(
                Scratch::default,
                |sc, (blk, o)| {
                    for kvh in 0..nkv {
                        let rows = o.len() / q_dim;
                        let at = (b, kvh, blk * BQ, rows);
                        block(src, &g, st, &packed[b * nkv + kvh], at, sc, o);
                    }
                },
            );
        });
}

/// One KV head's query heads for rows `s0..s0 + rows` of batch `b`; `o` holds those rows of `out`.
fn block(
    src: &Sources<'_>,
    g: &AttnGeometry,
    st: Step,
    p: &Packed,
    (b, kvh, s0, rows): (usize, usize, usize, usize),
    sc: &mut Scratch,
    o: &mut [f32],
) {
    let (d, q_dim) = (g.head_dim, g.q_dim());
    let cols = q_dim + 2 * g.kv_dim();
    let group = g.num_heads / g.num_kv_heads;
    let (nq, nk) = (group * rows, st.start + s0 + rows);
    sc.q.clear();
    for h in kvh * group..(kvh + 1) * group {
        for s in s0..s0 + rows {
            let at = (b * st.seq_len + s) * cols + h * d;
            sc.q.extend_from_slice(&src.qkv[at..at + d]);
        }
    }
    sc.t.clear();
    sc.t.resize(nq * nk, 0.0);
    gemm_rows_exact(&p.key[..nk * d], nk, &sc.q, nq, d, &mut sc.t);
    for (qi, row) in sc.t.chunks_mut(nk).enumerate() {
        let pos = st.start + s0 + qi % rows;
        let first = g.window.first_key(pos);
        // Keys before the window weigh exactly zero: P·V below adds `0 · v`, leaving its sums
        // as the one-row path's, which starts at the window.
        row[..first].fill(0.0);
        softmax(&mut row[first..pos + 1], g.scale);
    }
    sc.acc.resize(PR * d, 0.0);
    for hi in 0..group {
        let h = kvh * group + hi;
        let mut i = 0;
        while i < rows {
            let r = if rows - i >= PR { PR } else { 1 };
            let w = |k: usize| &sc.t[(hi * rows + i + k) * nk..][..st.start + s0 + i + k + 1];
            if r == PR {
                pv::<PR>(std::array::from_fn(w), &p.value, d, &mut sc.acc);
            } else {
                pv::<1>([w(0)], &p.value, d, &mut sc.acc);
            }
            for k in 0..r {
                let at = (i + k) * q_dim + h * d;
                o[at..at + d].copy_from_slice(&sc.acc[k * d..(k + 1) * d]);
            }
            i += r;
        }
    }
}

/// Scores to softmax weights in place, with the one-row path's operations: scale, max, `exp(s −
/// max)` summed in order, then `p / sum`. The max is taken over 16 lanes first (the maximum of a
/// set does not depend on the order; `f32::max` skips NaN either way, and whichever zero wins,
/// `s − max` is the same for every nonzero `s` and `exp(±0) = 1`).
fn softmax(row: &mut [f32], scale: f32) {
    let mut lanes = [f32::NEG_INFINITY; W];
    let mut chunks = row.chunks_exact_mut(W);
    for c in &mut chunks {
        for (m, x) in lanes.iter_mut().zip(c) {
            *x *= scale;
            *m = m.max(*x);
        }
    }
    let mut max = f32::NEG_INFINITY;
    for x in chunks.into_remainder() {
        *x *= scale;
        max = max.max(*x);
    }
    max = lanes.iter().fold(max, |a, &b| a.max(b));
    let mut sum = 0.0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}

/// `acc[r * d + i] = Σ_j w[r][j] · v[j * d + i]`, `j` in order from `0 + …`, products rounded before
/// each add (the one-row path's order); `v` holds at least `max len of w[r]` rows of `d`.
#[inline(always)]
fn pv_body<const R: usize, const W: usize>(w: [&[f32]; R], v: &[f32], d: usize, acc: &mut [f32]) {
    let common = w.iter().map(|r| r.len()).min().unwrap_or(0);
    let full = d - d % W;
    for c in (0..full).step_by(W) {
        let mut a = [[0.0f32; W]; R];
        for j in 0..common {
            let vj: &[f32; W] = v[j * d + c..j * d + c + W].try_into().expect("W columns");
            for r in 0..R {
                let wr = w[r][j];
                for l in 0..W {
                    a[r][l] += wr * vj[l];
                }
            }
        }
        for r in 0..R {
            for j in common..w[r].len() {
                let vj = &v[j * d + c..j * d + c + W];
                for l in 0..W {
                    a[r][l] += w[r][j] * vj[l];
                }
            }
            acc[r * d + c..r * d + c + W].copy_from_slice(&a[r]);
        }
    }
    for r in 0..R {
        for i in full..d {
            let mut s = 0.0f32;
            for (j, wj) in w[r].iter().enumerate() {
                s += wj * v[j * d + i];
            }
            acc[r * d + i] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU must support AVX-512F (checked by the caller).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pv_avx512<const R: usize>(w: [&[f32]; R], v: &[f32], d: usize, acc: &mut [f32]) {
        if d.is_multiple_of(64) {
            super::pv_body::<R, 64>(w, v, d, acc)
        } else {
            super::pv_body::<R, 16>(w, v, d, acc)
        }
    }

    /// # Safety
    /// The CPU must support AVX2 (checked by the caller).
    #[target_feature(enable = "avx2")]
    pub unsafe fn pv_avx2<const R: usize>(w: [&[f32]; R], v: &[f32], d: usize, acc: &mut [f32]) {
        super::pv_body::<R, 16>(w, v, d, acc)
    }
}

/// [`pv_body`] compiled for the widest vector unit this CPU has (same results on every path: each
/// output element's operations do not depend on the vector width).
fn pv<const R: usize>(w: [&[f32]; R], v: &[f32], d: usize, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F support was just detected.
            return unsafe { x86::pv_avx512::<R>(w, v, d, acc) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was just detected.
            return unsafe { x86::pv_avx2::<R>(w, v, d, acc) };
        }
    }
    pv_body::<R, W>(w, v, d, acc)
}
