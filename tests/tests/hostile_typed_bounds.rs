//! Property test of the static-cache bounds through a generated crate's typed API
//! (`tiny_llama::Engine::forward_with(Inputs { .. })`): seeded random sequences of calls on one cache,
//! with any `start_idx`/`end_idx`, id and position lengths and values. A call is accepted exactly when
//! it is valid, and after every call the cache holds zeros everywhere but the rows `start_idx..end_idx`
//! of the sequences some accepted call wrote — nothing is ever written past `max_seq_len` or outside a
//! call's window.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtime::backend::{CacheMode, LogitRows};
use runtime::cache::{KvStorage, KvTensor};
use runtime::codegen::{DeviceChoice, EngineOptions, NoProgress, WeightSource};
use tiny_llama::{Engine, Fp32, Inputs, KvCache};

const MAX_SEQ: usize = 32;
const MAX_BATCH: usize = 2;
const VOCAB: u32 = 256;

fn index(rng: &mut StdRng) -> usize {
    match rng.random_range(0..8) {
        0 => usize::MAX - rng.random_range(0..3),
        1 => MAX_SEQ + rng.random_range(0..3),
        _ => rng.random_range(0..=MAX_SEQ),
    }
}

/// The four cache tensors of the typed cache, in layer order (key, value).
fn tensors(c: &KvCache<Fp32>) -> [&KvTensor; 4] {
    [
        c.key_cache_0.tensor(),
        c.value_cache_0.tensor(),
        c.key_cache_1.tensor(),
        c.value_cache_1.tensor(),
    ]
}

/// Every row `[s, h, p, :]` not marked in `written[s][p]` is all zeros.
fn only_written_rows_changed(c: &KvCache<Fp32>, written: &[[bool; MAX_SEQ]]) -> Result<(), String> {
    for (i, t) in tensors(c).into_iter().enumerate() {
        let KvStorage::Host(v) = &t.storage else {
            return Err("CPU cache not on the host".into());
        };
        let [batch, heads, seq, dim] = t.shape;
        if batch != written.len() || seq != MAX_SEQ {
            return Err(format!("tensor {i} has shape {:?}", t.shape));
        }
        for (s, rows) in written.iter().enumerate() {
            for h in 0..heads {
                for (p, &w) in rows.iter().enumerate() {
                    let at = ((s * heads + h) * seq + p) * dim;
                    if !w && v[at..at + dim].iter().any(|&x| x != 0.0) {
                        return Err(format!(
                            "tensor {i} row [{s}, {h}, {p}] written outside every window"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn typed_forward_never_writes_outside_its_window() {
    let options = EngineOptions {
        max_seq_len: MAX_SEQ,
        max_batch: MAX_BATCH,
        device: DeviceChoice::Cpu { threads: Some(2) },
    };
    let weights = WeightSource::HfDir(common::root().join("models/tiny-llama"));
    let mut engine = Engine::<Fp32>::build(&weights, options, &NoProgress).expect("build");
    let mut rng = StdRng::seed_from_u64(0x007e_57ed);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..80 {
        let cache_batch = rng.random_range(1..=MAX_BATCH);
        let mut cache = engine.new_cache(cache_batch).expect("cache");
        let mut written = vec![[false; MAX_SEQ]; cache_batch];
        for call in 0..25 {
            let start = index(&mut rng);
            let end = if rng.random_bool(0.8) {
                start.saturating_add(rng.random_range(0..4))
            } else {
                index(&mut rng)
            };
            let batch = rng.random_range(1..=MAX_BATCH + 1);
            let seq_len = end.saturating_sub(start).min(2 * MAX_SEQ);
            let mut n = batch * seq_len;
            if rng.random_bool(0.05) {
                n += 1;
            }
            let ids: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.02) {
                        VOCAB
                    } else {
                        rng.random_range(0..VOCAB)
                    }
                })
                .collect();
            let pos: Vec<u32> = (0..n)
                .map(|i| (start + i % seq_len.max(1)) as u32)
                .collect();
            let mode = if rng.random_bool(0.5) {
                CacheMode::StaticV1
            } else {
                CacheMode::StaticV2
            };
            // The typed API derives the batch from the ids: `n / (end_idx - start_idx)`.
            let window = end.checked_sub(start).filter(|&w| w > 0);
            let derived = window.filter(|&w| n > 0 && n % w == 0).map(|w| n / w);
            let valid = derived.is_some_and(|b| b <= cache_batch)
                && end <= MAX_SEQ
                && ids.iter().all(|&t| t < VOCAB)
                && pos.iter().all(|&p| (p as usize) < MAX_SEQ);
            let inputs = Inputs {
                input_ids: &ids,
                position_ids: &pos,
                cache: &mut cache,
                start_idx: start,
                end_idx: end,
            };
            let r = engine.forward_with(inputs, mode, LogitRows::Last);
            assert_eq!(
                r.is_ok(),
                valid,
                "round {round} call {call}: start {start} end {end} batch {batch} n {n}: {:?}",
                r.err()
            );
            if valid {
                accepted += 1;
                for row in written.iter_mut().take(derived.unwrap_or(0)) {
                    row[start..end].iter_mut().for_each(|w| *w = true);
                }
            } else {
                refused += 1;
            }
            if let Err(m) = only_written_rows_changed(&cache, &written) {
                panic!("round {round} call {call}: {m}");
            }
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}
