//! `Engine::forward` checks every bound in one place, and generation handles the cache's edges.

mod common;

use common::*;
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::generate::{GenerateOptions, generate, generate_with_static_cache};
use runtime::sample::Sampling;

fn step<'a>(
    ids: &'a [u32],
    pos: &'a [u32],
    batch: usize,
    start: usize,
    end: usize,
) -> StepInputs<'a> {
    StepInputs {
        input_ids: ids,
        position_ids: pos,
        batch,
        seq_len: ids.len() / batch.max(1),
        start_idx: start,
        end_idx: end,
    }
}

#[test]
fn forward_rejects_every_out_of_bounds_call() {
    let mut e = engine("tiny-llama", Precision::Fp32, 2);
    let mut cache = e.new_cache(1).expect("cache");
    let mut big = e.new_cache(2).expect("cache");
    let ids = [5u32, 6, 7];
    let pos = [0u32, 1, 2];
    let cases: Vec<(&str, StepInputs<'_>, CacheMode, bool)> = vec![
        (
            "end beyond max_seq_len",
            step(&ids, &pos, 1, MAX_SEQ - 2, MAX_SEQ + 1),
            CacheMode::StaticV1,
            false,
        ),
        (
            "end - start != seq_len",
            step(&ids, &pos, 1, 0, 4),
            CacheMode::StaticV1,
            false,
        ),
        (
            "start > end",
            step(&ids, &pos, 1, 5, 2),
            CacheMode::StaticV2,
            false,
        ),
        (
            "token id >= vocab",
            step(&[5, 256, 7], &pos, 1, 0, 3),
            CacheMode::StaticV1,
            false,
        ),
        (
            "position id >= max_seq_len",
            step(&ids, &[0, 1, 64], 1, 0, 3),
            CacheMode::StaticV1,
            false,
        ),
        (
            "ids/positions length",
            step(&ids, &[0, 1], 1, 0, 3),
            CacheMode::StaticV1,
            false,
        ),
        (
            "batch larger than cache",
            step(&[1, 2, 3, 4], &[0, 1, 0, 1], 2, 0, 2),
            CacheMode::StaticV1,
            false,
        ),
        (
            "batch larger than max_batch",
            step(&[1, 2, 3], &[0, 0, 0], 3, 0, 1),
            CacheMode::StaticV1,
            true,
        ),
        (
            "mode none from start > 0",
            step(&ids, &[3, 4, 5], 1, 3, 6),
            CacheMode::None,
            false,
        ),
    ];
    for (what, s, mode, use_big) in cases {
        let c = if use_big { &mut big } else { &mut cache };
        let r = e.forward(&s, &mut c.layers_mut(), mode, LogitRows::Last);
        assert!(r.is_err(), "{what} accepted");
    }
    // A cache of another geometry (other model) is refused.
    let other = engine("tiny-qwen2", Precision::Fp32, 1);
    let mut wrong = other.new_cache(1).expect("cache");
    let r = e.forward(
        &step(&ids, &pos, 1, 0, 3),
        &mut wrong.layers_mut(),
        CacheMode::StaticV1,
        LogitRows::Last,
    );
    assert!(r.is_err(), "foreign cache accepted");
    assert!(e.new_cache(3).is_err() && e.new_cache(0).is_err());
    // Static modes need the cache; none does not.
    assert!(
        e.forward(
            &step(&ids, &pos, 1, 0, 3),
            &mut [],
            CacheMode::StaticV1,
            LogitRows::Last
        )
        .is_err()
    );
    assert!(
        e.forward(
            &step(&ids, &pos, 1, 0, 3),
            &mut [],
            CacheMode::None,
            LogitRows::Last
        )
        .is_ok()
    );
    // The largest legal call is accepted.
    let full: Vec<u32> = (0..MAX_SEQ as u32).map(|i| i % 256).collect();
    let fpos: Vec<u32> = (0..MAX_SEQ as u32).collect();
    assert!(
        e.forward(
            &step(&full, &fpos, 1, 0, MAX_SEQ),
            &mut cache.layers_mut(),
            CacheMode::StaticV1,
            LogitRows::All
        )
        .is_ok()
    );
}

#[test]
fn generation_edges_of_the_cache() {
    let mut e = engine("tiny-qwen2", Precision::Fp32, 1);
    let mut cache = e.new_cache(1).expect("cache");
    let opts = GenerateOptions {
        max_new_tokens: 1000,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let too_long = vec![vec![7u32; MAX_SEQ + 1]];
    assert!(
        generate_with_static_cache(&mut e, &mut cache, &too_long, &opts, &mut |_, _| {}).is_err()
    );
    assert!(generate(&mut e, &too_long, &opts, &mut |_, _| {}).is_err());
    // Stops cleanly when the cache is full: a prompt of 60 leaves room for 64 - 60 + 1 tokens, and the
    // static and recompute loops agree on them.
    let prompt = vec![(0..60u32).map(|i| 3 + i).collect::<Vec<_>>()];
    let a = generate_with_static_cache(&mut e, &mut cache, &prompt, &opts, &mut |_, _| {})
        .expect("static");
    let b = generate(&mut e, &prompt, &opts, &mut |_, _| {}).expect("none");
    assert_eq!(a.tokens[0].len(), MAX_SEQ - 60 + 1);
    assert_eq!(a.tokens, b.tokens);
    // Unequal prompts, empty prompts and bad sampling values are refused.
    let mut c2 = e.new_cache(1).expect("cache");
    assert!(
        generate_with_static_cache(
            &mut e,
            &mut c2,
            &[vec![1, 2], vec![1]],
            &opts,
            &mut |_, _| {}
        )
        .is_err()
    );
    assert!(generate_with_static_cache(&mut e, &mut c2, &[vec![]], &opts, &mut |_, _| {}).is_err());
    let bad = GenerateOptions {
        sampling: Sampling {
            temperature: -0.5,
            ..Sampling::default()
        },
        ..opts
    };
    assert!(
        generate_with_static_cache(&mut e, &mut c2, &[vec![1, 2]], &bad, &mut |_, _| {}).is_err()
    );
}

#[test]
fn seeded_sampling_is_reproducible_across_cache_modes() {
    let mut e = engine("tiny-gpt2", Precision::Fp32, 1);
    let prompt = vec![reference("tiny-gpt2").prompts[1].ids.clone()];
    let run = |e: &mut runtime::engine::Engine, mode: CacheMode, seed: u64| {
        let opts = GenerateOptions {
            max_new_tokens: 16,
            mode,
            sampling: Sampling {
                temperature: 0.8,
                top_k: Some(40),
                top_p: Some(0.95),
                seed,
            },
            stop_at_eos: true,
        };
        let mut cache = e.new_cache(1).expect("cache");
        generate_with_static_cache(e, &mut cache, &prompt, &opts, &mut |_, _| {})
            .expect("generate")
            .tokens
    };
    let a = run(&mut e, CacheMode::StaticV1, 11);
    assert_eq!(a, run(&mut e, CacheMode::StaticV2, 11));
    assert_eq!(a, run(&mut e, CacheMode::None, 11));
    assert_ne!(a, run(&mut e, CacheMode::StaticV1, 12));
}
