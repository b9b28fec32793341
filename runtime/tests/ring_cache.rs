//! A sliding-window layer's ring cache holds only the last `window` positions written, so a step
//! that would read older ones (a rewind of two positions or more) is refused by name; steps that
//! start at 0, continue where the last one ended, or redo its last position run. A model without
//! rings rewinds freely.

mod common;

use common::*;
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::engine::Engine;

fn step(
    e: &mut Engine,
    cache: &mut runtime::cache::KvCache,
    start: usize,
    len: usize,
) -> Result<(), String> {
    let ids: Vec<u32> = (start..start + len)
        .map(|i| (i * 31 % 200 + 3) as u32)
        .collect();
    let positions: Vec<u32> = (start as u32..(start + len) as u32).collect();
    let s = StepInputs {
        input_ids: &ids,
        position_ids: &positions,
        batch: 1,
        seq_len: len,
        start_idx: start,
        end_idx: start + len,
    };
    let mut layers = cache.layers_mut();
    e.forward(&s, &mut layers, CacheMode::StaticV1, LogitRows::Last)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn a_ring_refuses_a_step_that_reads_overwritten_positions() {
    let mut e = engine("tiny-mistral-window", Precision::Fp32, 1);
    let mut cache = e.new_cache(1).expect("cache");
    step(&mut e, &mut cache, 0, 20).expect("prefill");
    step(&mut e, &mut cache, 20, 1).expect("continues where it ended");
    step(&mut e, &mut cache, 20, 1).expect("redoes the last position");
    let err = step(&mut e, &mut cache, 15, 1).expect_err("a rewind of six");
    assert!(
        err.contains("keeps only the last 8 positions") && err.contains("not at 15"),
        "{err}"
    );
    step(&mut e, &mut cache, 0, 4).expect("starts over");
    let err = step(&mut e, &mut cache, 10, 1).expect_err("a skip past the written end");
    assert!(err.contains("at 0 or at 4"), "{err}");
}

#[test]
fn a_full_cache_rewinds() {
    let mut e = engine("tiny-llama", Precision::Fp32, 1);
    let mut cache = e.new_cache(1).expect("cache");
    step(&mut e, &mut cache, 0, 20).expect("prefill");
    step(&mut e, &mut cache, 15, 1).expect("rewinds");
}
