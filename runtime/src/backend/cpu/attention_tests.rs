//! Tests of `attention.rs`: both paths against the f64 reference, and the blocked path against the
//! one-row path bit for bit.

use super::*;
use crate::backend::cpu::test_data::data;
use crate::plan::Window;

/// Every mode, full attention and sliding windows (of one key, of three, the softmax scale not
/// 1/sqrt(head_dim) with them), against the f64 reference.
#[test]
fn all_modes_match_reference() {
    for (window, scale) in [
        (Window::Full, 1.0 / 8f32.sqrt()),
        (Window::Sliding(1), 0.3),
        (Window::Sliding(3), 0.3),
    ] {
        let g = AttnGeometry {
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            scale,
            window,
        };
        let (cache_batch, max_seq) = (3, 20);
        let cols = g.q_dim() + 2 * g.kv_dim();
        for mode in CacheMode::ALL {
            for (batch, seq_len, start) in [(1, 6, 0), (2, 5, 0), (2, 1, 9), (1, 3, 4), (3, 1, 19)]
            {
                if mode == CacheMode::None && start != 0 {
                    continue;
                }
                let qkv = data(batch * seq_len * cols, 11 + start as u64);
                let n = cache_batch * g.num_kv_heads * max_seq * g.head_dim;
                let (k0, v0) = (data(n, 1), data(n, 2));
                let (mut k_ref, mut v_ref) = (k0.clone(), v0.clone());
                let want = reference(
                    &qkv,
                    g,
                    Step {
                        batch,
                        seq_len,
                        start,
                    },
                    Some((&mut k_ref, &mut v_ref, max_seq)),
                    mode,
                );
                let (mut k, mut v) = (k0.clone(), v0.clone());
                let mut got = vec![0.0; batch * seq_len * g.q_dim()];
                let view = KvView {
                    key: &mut k,
                    value: &mut v,
                    max_seq,
                };
                attention(
                    &qkv,
                    g,
                    Step {
                        batch,
                        seq_len,
                        start,
                    },
                    Some(view),
                    mode,
                    &mut got,
                );
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{mode:?} {window:?} {batch}x{seq_len}@{start}: {a} vs {b}"
                    );
                }
                assert_eq!(k, k_ref, "{mode:?} key cache");
                assert_eq!(v, v_ref, "{mode:?} value cache");
                if mode == CacheMode::None {
                    assert_eq!(k, k0, "mode none must not touch the cache");
                }
            }
        }
    }
}

/// Both paths on one input: (output, key cache, value cache) of each.
type Run = (Vec<f32>, Vec<f32>, Vec<f32>);

fn run_path(
    qkv: &[f32],
    g: AttnGeometry,
    st: Step,
    cache: (&[f32], &[f32], usize),
    mode: CacheMode,
    blocked: bool,
) -> Run {
    let (mut k, mut v) = (cache.0.to_vec(), cache.1.to_vec());
    let mut out = vec![f32::NAN; st.batch * st.seq_len * g.q_dim()];
    let view = KvView {
        key: &mut k,
        value: &mut v,
        max_seq: cache.2,
    };
    let view = (mode != CacheMode::None).then_some(view);
    attention_with(qkv, g, st, view, mode, &mut out, blocked);
    (out, k, v)
}

/// Long steps through the blocked path: several query blocks (`attn_prefill::BQ` rows), partial
/// blocks, chunked steps whose keys come from the cache and the new rows, batch 2, GQA groups of 1
/// and 3, head sizes with and without a tail past the 16-column SIMD width, full attention and two
/// sliding windows (one shorter than a query block, one longer). Bound: |blocked −
/// f64 reference| ≤ 1e-6 (outputs are convex combinations of values in [-1, 1]; the largest error
/// measured here is 9e-8, f32 rounding of the scores and sums), and the blocked path equals the
/// one-row (decode) path bit for bit, caches included.
#[test]
fn long_steps_blocked_match_reference_and_one_row_path() {
    let bq = super::attn_prefill::BQ;
    let shapes = [(6, 2, 64), (4, 4, 40), (3, 1, 5)];
    let windows = [Window::Full, Window::Sliding(5), Window::Sliding(bq + 1)];
    for ((heads, kv_heads, head_dim), window) in
        shapes.into_iter().flat_map(|s| windows.map(|w| (s, w)))
    {
        let g = AttnGeometry {
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            window,
        };
        let (cache_batch, max_seq) = (2, 3 * bq + 40);
        let cols = g.q_dim() + 2 * g.kv_dim();
        let n = cache_batch * g.num_kv_heads * max_seq * g.head_dim;
        let (k0, v0) = (data(n, 5), data(n, 6));
        let cases = [
            (1, 2 * bq + 5, 0),
            (2, 3 * bq, 0),
            (2, bq + 3, 17),
            (1, 2, 2 * bq + 1),
            (2, bq, 2 * bq),
            (1, 7, 3 * bq + 33),
        ];
        for mode in CacheMode::ALL {
            for (batch, seq_len, start) in cases {
                if mode == CacheMode::None && start != 0 {
                    continue;
                }
                let st = Step {
                    batch,
                    seq_len,
                    start,
                };
                let qkv = data(batch * seq_len * cols, 100 + start as u64);
                let (mut k_ref, mut v_ref) = (k0.clone(), v0.clone());
                let cache = Some((&mut k_ref, &mut v_ref, max_seq));
                let want = reference(&qkv, g, st, cache, mode);
                let c = (&k0[..], &v0[..], max_seq);
                let blocked = run_path(&qkv, g, st, c, mode, true);
                let one_row = run_path(&qkv, g, st, c, mode, false);
                let what = format!(
                    "{mode:?} {window:?} {heads}/{kv_heads}x{head_dim} {batch}x{seq_len}@{start}"
                );
                let worst = blocked
                    .0
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    blocked.0.iter().all(|x| x.is_finite()),
                    "{what}: non-finite output"
                );
                assert!(worst <= 1e-6, "{what}: |blocked - reference| = {worst}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&blocked.0) == bits(&one_row.0),
                    "{what}: blocked path differs from the one-row path"
                );
                assert_eq!(blocked.1, k_ref, "{what}: key cache");
                assert_eq!(blocked.2, v_ref, "{what}: value cache");
                assert_eq!((&blocked.1, &blocked.2), (&one_row.1, &one_row.2));
            }
        }
    }
}

/// A sliding-window layer's ring cache (window slots, position p in slot p % window) gives exactly
/// the outputs of a full-length cache, step after step: chunks that wrap the ring, that fit in it,
/// single decode rows; both cache modes, both paths, batch 2, GQA. After every step the ring holds
/// the last `window` positions' rows of the full cache.
#[test]
fn ring_cache_equals_full_cache_bit_for_bit() {
    let window = 5;
    let g = AttnGeometry {
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        scale: 0.3,
        window: Window::Sliding(window),
    };
    let (batch, full) = (2, 24);
    let cols = g.q_dim() + 2 * g.kv_dim();
    let steps = [(0, 7), (7, 1), (8, 3), (11, 1), (12, 6), (18, 1), (19, 2)];
    for mode in [CacheMode::StaticV1, CacheMode::StaticV2] {
        for blocked in [true, false] {
            let cache = |slots: usize| vec![0.0f32; batch * g.num_kv_heads * slots * g.head_dim];
            let (mut fk, mut fv) = (cache(full), cache(full));
            let (mut rk, mut rv) = (cache(window), cache(window));
            for (start, seq_len) in steps {
                let st = Step {
                    batch,
                    seq_len,
                    start,
                };
                let qkv = data(batch * seq_len * cols, 500 + start as u64);
                let run = |k: &mut Vec<f32>, v: &mut Vec<f32>, slots: usize| {
                    let mut out = vec![f32::NAN; batch * seq_len * g.q_dim()];
                    let view = KvView {
                        key: k,
                        value: v,
                        max_seq: slots,
                    };
                    attention_with(&qkv, g, st, Some(view), mode, &mut out, blocked);
                    out
                };
                let want = run(&mut fk, &mut fv, full);
                let got = run(&mut rk, &mut rv, window);
                let what = format!("{mode:?} blocked {blocked} step {start}+{seq_len}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(&got) == bits(&want), "{what}: ring output differs");
                let end = start + seq_len;
                for b in 0..batch {
                    for h in 0..g.num_kv_heads {
                        for p in end.saturating_sub(window)..end {
                            let (r, f) = (
                                cache_offset(&g, window, b, h, p),
                                cache_offset(&g, full, b, h, p),
                            );
                            let d = g.head_dim;
                            assert_eq!(rk[r..r + d], fk[f..f + d], "{what}: key of {p}");
                            assert_eq!(rv[r..r + d], fv[f..f + d], "{what}: value of {p}");
                        }
                    }
                }
            }
        }
    }
}
