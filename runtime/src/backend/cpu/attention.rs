//! Causal GQA attention over the static cache, in the three cache modes of the seed
//! (ARCHITECTURE.md "Static cache semantics"):
//! - `static_v1`: write the new K/V at `[start, end)`, then attend over `cache[:end]`;
//! - `static_v2`: attend over `concat(cache[:start], new)`, then write the new K/V;
//! - `none`: attend over the new K/V only (`start == 0`), cache untouched.
//!
//! Query `s` of a step sits at absolute position `p = start + s` and sees keys `first..=p`, `first`
//! being 0 or, in a sliding-window layer of window `w`, `p + 1 - w` (`Window::first_key`).
//! The cache tensors are `[cache_batch, num_kv_heads, slots, head_dim]`, f32, position `p` in slot
//! `p % slots`: `slots` is the cache length, or for a sliding-window layer its window, a ring buffer
//! that only ever holds the keys a query can still see. A step whose rows would wrap that ring attends
//! first (old keys from the ring, its own from `qkv`) and writes after, whatever the mode: written
//! first, its later rows would overwrite keys its earlier rows still see.
//!
//! One new row per sequence (decode) takes the one-row path here: one parallel task per (row, query
//! head). Several rows (prefill, chunked steps) take the blocked path of `attn_prefill.rs`, which
//! gives bit-identical results per row (same operations in the same order) with each key/value load
//! shared by many queries.

use super::attn_prefill;
use super::matrix::dot;
use crate::backend::ops::AttnGeometry;
use crate::step::CacheMode;
use rayon::prelude::*;

/// One layer's cache tensors as flat host slices.
pub struct KvView<'a> {
    pub key: &'a mut [f32],
    pub value: &'a mut [f32],
    /// Positions the cache holds (slots of the ring).
    pub max_seq: usize,
}

/// Shape of one call: `batch` sequences of `seq_len` new rows starting at absolute position `start`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub batch: usize,
    pub seq_len: usize,
    pub start: usize,
}

/// Offset of position `t`'s row in a cache of `max_seq` slots (slot `t % max_seq`).
pub(super) fn cache_offset(
    g: &AttnGeometry,
    max_seq: usize,
    b: usize,
    h: usize,
    t: usize,
) -> usize {
    ((b * g.num_kv_heads + h) * max_seq + t % max_seq) * g.head_dim
}

/// Copy the new keys/values of `qkv` into the cache at `[start, start + seq_len)`.
fn write_cache(qkv: &[f32], g: &AttnGeometry, st: Step, kv: &mut KvView<'_>) {
    let cols = g.q_dim() + 2 * g.kv_dim();
    let d = g.head_dim;
    for b in 0..st.batch {
        for s in 0..st.seq_len {
            let row = &qkv[(b * st.seq_len + s) * cols..(b * st.seq_len + s + 1) * cols];
            for h in 0..g.num_kv_heads {
                let at = cache_offset(g, kv.max_seq, b, h, st.start + s);
                let k0 = g.q_dim() + h * d;
                let v0 = g.q_dim() + g.kv_dim() + h * d;
                kv.key[at..at + d].copy_from_slice(&row[k0..k0 + d]);
                kv.value[at..at + d].copy_from_slice(&row[v0..v0 + d]);
            }
        }
    }
}

/// The fast attention: keys read from the cache below `prefix` and from the new rows above it.
/// `out` is `[batch * seq_len, q_dim]`. Several rows per sequence take the blocked path
/// (`attn_prefill.rs`), one row the per-(row, head) path.
pub fn attention(
    qkv: &[f32],
    g: AttnGeometry,
    st: Step,
    kv: Option<KvView<'_>>,
    mode: CacheMode,
    out: &mut [f32],
) {
    attention_with(qkv, g, st, kv, mode, out, st.seq_len > 1);
}

/// [`attention`] with the path chosen by `blocked` (the tests run both on the same input).
pub(super) fn attention_with(
    qkv: &[f32],
    g: AttnGeometry,
    st: Step,
    mut kv: Option<KvView<'_>>,
    mode: CacheMode,
    out: &mut [f32],
    blocked: bool,
) {
    let wraps = kv
        .as_ref()
        .is_some_and(|v| v.max_seq < st.start + st.seq_len);
    let write_first = mode == CacheMode::StaticV1 && !wraps;
    let write_after = mode == CacheMode::StaticV2 || (mode == CacheMode::StaticV1 && wraps);
    if let (true, Some(kv)) = (write_first, kv.as_mut()) {
        write_cache(qkv, &g, st, kv);
    }
    let prefix = match mode {
        CacheMode::StaticV1 if write_first => st.start + st.seq_len,
        CacheMode::StaticV1 | CacheMode::StaticV2 => st.start,
        CacheMode::None => 0,
    };
    let (ck, cv, max_seq): (&[f32], &[f32], usize) = match &kv {
        Some(v) => (v.key, v.value, v.max_seq),
        None => (&[], &[], 0),
    };
    if blocked {
        let src = attn_prefill::Sources {
            qkv,
            cache_key: ck,
            cache_value: cv,
            max_seq,
            prefix,
        };
        attn_prefill::prefill(&src, g, st, out);
    } else {
        rowwise(qkv, g, st, (ck, cv, max_seq), prefix, out);
    }
    if let (true, Some(kv)) = (write_after, kv.as_mut()) {
        write_cache(qkv, &g, st, kv);
    }
}

/// One parallel task per (row, query head): a dot product per key, softmax, then P·V.
fn rowwise(
    qkv: &[f32],
    g: AttnGeometry,
    st: Step,
    (ck, cv, max_seq): (&[f32], &[f32], usize),
    prefix: usize,
    out: &mut [f32],
) {
    let cols = g.q_dim() + 2 * g.kv_dim();
    let d = g.head_dim;
    let group = g.num_heads / g.num_kv_heads;
    let scale = g.scale;
    out.par_chunks_mut(d).enumerate().for_each_init(
        || Vec::with_capacity(st.start + st.seq_len),
        |scores: &mut Vec<f32>, (t, o)| {
            let (r, h) = (t / g.num_heads, t % g.num_heads);
            let (b, s) = (r / st.seq_len, r % st.seq_len);
            let kvh = h / group;
            let q = &qkv[r * cols + h * d..r * cols + (h + 1) * d];
            let key = |j: usize| -> (&[f32], &[f32]) {
                if j < prefix {
                    let at = cache_offset(&g, max_seq, b, kvh, j);
                    (&ck[at..at + d], &cv[at..at + d])
                } else {
                    let row = (b * st.seq_len + (j - st.start)) * cols;
                    let k0 = row + g.q_dim() + kvh * d;
                    let v0 = row + g.q_dim() + g.kv_dim() + kvh * d;
                    (&qkv[k0..k0 + d], &qkv[v0..v0 + d])
                }
            };
            let visible = st.start + s + 1;
            let first = g.window.first_key(st.start + s);
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in first..visible {
                let sc = dot(q, key(j).0) * scale;
                max = max.max(sc);
                scores.push(sc);
            }
            let mut sum = 0.0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            o.fill(0.0);
            for (j, p) in (first..).zip(scores.iter()) {
                let v = key(j).1;
                let w = p / sum;
                for (ov, vv) in o.iter_mut().zip(v) {
                    *ov += w * vv;
                }
            }
        },
    );
}

/// The slow obvious reference: builds each mode's key/value sequence literally (`cache[:end]` after
/// the write for v1, `concat(cache[:start], new)` for v2, `new` for none) and attends in f64 with an
/// explicit causal (and window) mask. Returns the output; updates `cache` (key, value) as the mode prescribes.
pub fn reference(
    qkv: &[f32],
    g: AttnGeometry,
    st: Step,
    cache: Option<(&mut Vec<f32>, &mut Vec<f32>, usize)>,
    mode: CacheMode,
) -> Vec<f32> {
    let cols = g.q_dim() + 2 * g.kv_dim();
    let d = g.head_dim;
    let new_kv = |b: usize, s: usize, h: usize, value: bool| -> Vec<f32> {
        let off = (b * st.seq_len + s) * cols + g.q_dim() + if value { g.kv_dim() } else { 0 };
        qkv[off + h * d..off + (h + 1) * d].to_vec()
    };
    let mut out = vec![0.0f32; st.batch * st.seq_len * g.q_dim()];
    let mut cache = cache;
    let write = |cache: &mut Option<(&mut Vec<f32>, &mut Vec<f32>, usize)>| {
        if let Some((k, v, t)) = cache.as_mut() {
            for b in 0..st.batch {
                for h in 0..g.num_kv_heads {
                    for s in 0..st.seq_len {
                        let at = ((b * g.num_kv_heads + h) * *t + st.start + s) * d;
                        k[at..at + d].copy_from_slice(&new_kv(b, s, h, false));
                        v[at..at + d].copy_from_slice(&new_kv(b, s, h, true));
                    }
                }
            }
        }
    };
    if mode == CacheMode::StaticV1 {
        write(&mut cache);
    }
    for b in 0..st.batch {
        for kvh in 0..g.num_kv_heads {
            // The key/value sequence this mode attends over, positions 0.. in order.
            let mut keys: Vec<Vec<f32>> = Vec::new();
            let mut values: Vec<Vec<f32>> = Vec::new();
            let from_cache = match mode {
                CacheMode::StaticV1 => st.start + st.seq_len,
                CacheMode::StaticV2 => st.start,
                CacheMode::None => 0,
            };
            if let Some((k, v, t)) = cache.as_ref() {
                for j in 0..from_cache {
                    let at = ((b * g.num_kv_heads + kvh) * *t + j) * d;
                    keys.push(k[at..at + d].to_vec());
                    values.push(v[at..at + d].to_vec());
                }
            }
            if mode != CacheMode::StaticV1 {
                for s in 0..st.seq_len {
                    keys.push(new_kv(b, s, kvh, false));
                    values.push(new_kv(b, s, kvh, true));
                }
            }
            let group = g.num_heads / g.num_kv_heads;
            for h in kvh * group..(kvh + 1) * group {
                for s in 0..st.seq_len {
                    let r = b * st.seq_len + s;
                    let q = &qkv[r * cols + h * d..r * cols + (h + 1) * d];
                    let pos = st.start + s;
                    let first = g.window.first_key(pos);
                    let scores: Vec<f64> = keys
                        .iter()
                        .enumerate()
                        .map(|(j, k)| {
                            if j > pos || j < first {
                                f64::NEG_INFINITY
                            } else {
                                q.iter()
                                    .zip(k)
                                    .map(|(a, b)| *a as f64 * *b as f64)
                                    .sum::<f64>()
                                    * g.scale as f64
                            }
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for i in 0..d {
                        let acc: f64 = e.iter().zip(&values).map(|(p, v)| p * v[i] as f64).sum();
                        out[r * g.q_dim() + h * d + i] = (acc / z) as f32;
                    }
                }
            }
        }
    }
    if mode == CacheMode::StaticV2 {
        write(&mut cache);
    }
    out
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
