//! Property tests of the static-cache bounds (`runtime::cache::check_step`, the one place they are
//! checked): over seeded random calls of the engine signature — any batch, sequence length, start/end
//! index, token and position ids, cache and mode — the check accepts exactly the calls a plain
//! statement of the rules accepts, and an accepted forward writes the cache only at rows
//! `start_idx..end_idx` of the sequences in the batch, never past `max_seq_len`.

mod common;

use common::{MAX_SEQ, engine, spec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::cache::{KvCache, KvStorage, check_step};

const VOCAB: u32 = 256;
const MAX_BATCH: usize = 2;

/// One random call of the engine signature.
#[derive(Debug, Clone)]
struct Call {
    ids: Vec<u32>,
    pos: Vec<u32>,
    batch: usize,
    seq_len: usize,
    start: usize,
    end: usize,
    mode: CacheMode,
    /// Batch of the cache lent to the call; `None` lends no cache at all.
    cache_batch: Option<usize>,
}

/// An index that is usually near the cache's edges and sometimes absurd.
fn index(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0 => usize::MAX - rng.random_range(0..4),
        1 => MAX_SEQ + rng.random_range(0..4),
        2 => MAX_SEQ - rng.random_range(0..4),
        _ => rng.random_range(0..=MAX_SEQ),
    }
}

fn random_call(rng: &mut StdRng) -> Call {
    let batch = rng.random_range(0..=MAX_BATCH + 1);
    let start = index(rng);
    let seq_len = if rng.random_bool(0.8) {
        rng.random_range(0..=(MAX_SEQ + 2).saturating_sub(start.min(MAX_SEQ + 2)).max(1))
    } else {
        index(rng)
    };
    // Mostly consistent with start/seq_len, sometimes not.
    let end = if rng.random_bool(0.85) {
        start.wrapping_add(seq_len)
    } else {
        index(rng)
    };
    // Keep the id buffers small even when seq_len is absurd.
    let mut n = batch.saturating_mul(seq_len).min(4 * MAX_SEQ);
    if rng.random_bool(0.05) {
        n += 1;
    }
    let ids = (0..n)
        .map(|_| {
            if rng.random_bool(0.01) {
                VOCAB + rng.random_range(0..3)
            } else {
                rng.random_range(0..VOCAB)
            }
        })
        .collect();
    let mut pos: Vec<u32> = (0..n)
        .map(|i| (start.wrapping_add(i % seq_len.max(1))) as u32)
        .collect();
    if rng.random_bool(0.03) && !pos.is_empty() {
        let i = rng.random_range(0..pos.len());
        pos[i] = MAX_SEQ as u32 + rng.random_range(0..3);
    }
    if rng.random_bool(0.02) {
        pos.pop();
    }
    let mode = CacheMode::ALL[rng.random_range(0..3)];
    let cache_batch = match rng.random_range(0..8) {
        0 => None,
        1 => Some(MAX_BATCH + 1),
        _ => Some(rng.random_range(1..=MAX_BATCH)),
    };
    Call {
        ids,
        pos,
        batch,
        seq_len,
        start,
        end,
        mode,
        cache_batch,
    }
}

/// The rules, stated plainly.
fn valid(c: &Call) -> bool {
    let n = c.batch.checked_mul(c.seq_len);
    let shapes = c.batch >= 1 && c.seq_len >= 1 && n == Some(c.ids.len()) && n == Some(c.pos.len());
    let window = c.end.checked_sub(c.start) == Some(c.seq_len) && c.end <= MAX_SEQ;
    let values = c.ids.iter().all(|&t| t < VOCAB) && c.pos.iter().all(|&p| (p as usize) < MAX_SEQ);
    let cache = match (c.mode, c.cache_batch) {
        (CacheMode::None, None) => c.start == 0,
        (CacheMode::None, Some(b)) => c.start == 0 && b >= c.batch && b <= MAX_BATCH,
        (_, None) => false,
        (_, Some(b)) => b >= c.batch && b <= MAX_BATCH,
    };
    shapes && window && c.batch <= MAX_BATCH && values && cache
}

fn step(c: &Call) -> StepInputs<'_> {
    StepInputs {
        input_ids: &c.ids,
        position_ids: &c.pos,
        batch: c.batch,
        seq_len: c.seq_len,
        start_idx: c.start,
        end_idx: c.end,
    }
}

/// A cache of batch `b` whose every element holds a distinct non-zero marker.
fn marked_cache(e: &runtime::engine::Engine, b: usize) -> KvCache {
    // new_cache refuses b > max_batch; build the oversized one by hand with the same geometry.
    let s = spec("tiny-llama");
    let mut cache = match e.new_cache(b) {
        Ok(c) => c,
        Err(_) => KvCache {
            layers: (0..s.num_layers)
                .map(|l| {
                    let shape = s.kv_shape(l, b, MAX_SEQ);
                    let t = || runtime::cache::KvTensor {
                        shape,
                        storage: KvStorage::Host(vec![0.0; shape.iter().product()]),
                        written: 0,
                    };
                    (t(), t())
                })
                .collect(),
        },
    };
    let mut k = 1.0f32;
    for (key, value) in &mut cache.layers {
        for t in [key, value] {
            if let KvStorage::Host(v) = &mut t.storage {
                for x in v.iter_mut() {
                    *x = k;
                    k += 1.0;
                }
            }
        }
    }
    cache
}

fn host(t: &runtime::cache::KvTensor) -> &[f32] {
    match &t.storage {
        KvStorage::Host(v) => v,
        KvStorage::Device(_) => panic!("CPU caches live on the host"),
    }
}

/// Every element of `after` outside rows `start..end` of sequences `0..batch` equals `before`.
fn untouched_outside(
    before: &KvCache,
    after: &KvCache,
    batch: usize,
    start: usize,
    end: usize,
) -> Result<(), String> {
    for (l, ((bk, bv), (ak, av))) in before.layers.iter().zip(&after.layers).enumerate() {
        for (what, b, a) in [("key", bk, ak), ("value", bv, av)] {
            let [cb, heads, seq, dim] = a.shape;
            let (bh, ah) = (host(b), host(a));
            for s in 0..cb {
                for h in 0..heads {
                    for p in 0..seq {
                        let written = s < batch && (start..end).contains(&p);
                        let at = ((s * heads + h) * seq + p) * dim;
                        if !written && bh[at..at + dim] != ah[at..at + dim] {
                            return Err(format!(
                                "{what}_cache_{l}[{s}, {h}, {p}] changed outside {start}..{end}"
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn check_step_accepts_exactly_the_valid_calls() {
    let e = engine("tiny-llama", Precision::Fp32, MAX_BATCH);
    let s = spec("tiny-llama");
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let mut caches: Vec<KvCache> = (1..=MAX_BATCH + 1).map(|b| marked_cache(&e, b)).collect();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..20_000 {
        let c = random_call(&mut rng);
        let mut empty = Vec::new();
        let layers = match c.cache_batch {
            Some(b) => caches[b - 1].layers_mut(),
            None => std::mem::take(&mut empty),
        };
        let got = check_step(&s, e.options(), &step(&c), &layers, c.mode).is_ok();
        assert_eq!(got, valid(&c), "call {i}: {c:?}");
        if got { accepted += 1 } else { refused += 1 }
    }
    // The generator reaches both sides of the rules.
    assert!(
        accepted > 1000 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn accepted_forwards_write_only_their_window() {
    let mut e = engine("tiny-llama", Precision::Fp32, MAX_BATCH);
    let mut rng = StdRng::seed_from_u64(0xb0_u64);
    let (mut ran, mut refused) = (0, 0);
    for i in 0..2_000 {
        let c = random_call(&mut rng);
        let b = c.cache_batch.unwrap_or(1);
        let before = marked_cache(&e, b);
        let mut after = marked_cache(&e, b);
        let r = {
            let mut layers = if c.cache_batch.is_some() {
                after.layers_mut()
            } else {
                Vec::new()
            };
            e.forward(&step(&c), &mut layers, c.mode, LogitRows::Last)
        };
        assert_eq!(
            r.is_ok(),
            valid(&c),
            "call {i}: {c:?}: {:?}",
            r.as_ref().err()
        );
        match r {
            Ok(logits) => {
                ran += 1;
                assert_eq!(logits.data.len(), c.batch * VOCAB as usize);
                // Mode none leaves the cache alone; the static modes write exactly their window.
                let window = if c.mode == CacheMode::None {
                    (0, 0)
                } else {
                    (c.start, c.end)
                };
                if let Err(m) = untouched_outside(&before, &after, c.batch, window.0, window.1) {
                    panic!("call {i}: {c:?}: {m}");
                }
            }
            Err(_) => {
                refused += 1;
                // A refused call leaves the cache exactly as it was.
                if let Err(m) = untouched_outside(&before, &after, 0, 0, 0) {
                    panic!("refused call {i}: {c:?}: {m}");
                }
            }
        }
    }
    assert!(ran > 80 && refused > 80, "{ran} ran, {refused} refused");
}
