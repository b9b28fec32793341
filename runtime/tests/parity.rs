//! The CPU engine against Hugging Face transformers on the tiny random-weight fixtures.
//!
//! Tolerance: for each prompt, `max |ours - hf| <= fp32_tol(model) * max |hf|` over the whole
//! `[positions, vocab]` prefill logits tensor (each error is printed; the bounds and the figures they
//! come from are in `common/mod.rs`). Greedy tokens must be identical; where they are not,
//! `check_greedy` reports transformers' top-2 gap at the step.

mod common;

use common::greedy::{ALL_TOKENS, check_greedy};
use common::*;
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::generate::{GenerateOptions, generate, generate_with_static_cache};

#[test]
fn prefill_logits_match_hf_in_every_mode() {
    for name in MODELS {
        let r = reference(name);
        let tol = fp32_tol(name);
        let mut e = engine(name, Precision::Fp32, 2);
        for (i, p) in r.prompts.iter().enumerate() {
            let want: Vec<f32> = p.logits.concat();
            for mode in CacheMode::ALL {
                let got = prefill_logits(&mut e, &p.ids, mode);
                let err = rel_err(&got, &want);
                eprintln!("{name} prompt {i} {mode:?}: relative error {err:.2e}");
                assert!(
                    err <= tol,
                    "{name} prompt {i} {mode:?}: relative error {err:.2e} > {tol:.1e}"
                );
            }
        }
    }
}

fn greedy_opts(mode: CacheMode, n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        mode,
        ..GenerateOptions::default()
    }
}

#[test]
fn greedy_tokens_equal_hf_in_every_mode() {
    for name in MODELS {
        let r = reference(name);
        let mut e = engine(name, Precision::Fp32, 2);
        for (i, p) in r.prompts.iter().enumerate() {
            for mode in CacheMode::ALL {
                let opts = greedy_opts(mode, 24);
                let mut streamed = Vec::new();
                let out = if mode == CacheMode::None {
                    generate(&mut e, std::slice::from_ref(&p.ids), &opts, &mut |_, t| {
                        streamed.push(t)
                    })
                } else {
                    let mut cache = e.new_cache(1).expect("cache");
                    generate_with_static_cache(
                        &mut e,
                        &mut cache,
                        std::slice::from_ref(&p.ids),
                        &opts,
                        &mut |_, t| streamed.push(t),
                    )
                }
                .expect("generate");
                let label = format!("{name} prompt {i} {mode:?}");
                check_greedy(&label, &out.tokens[0], &p.greedy, &p.top2, ALL_TOKENS, 0.0);
                assert_eq!(streamed, p.greedy, "{label} streamed");
            }
        }
    }
}

#[test]
fn batch_of_two_matches_hf() {
    for name in MODELS {
        let r = reference(name);
        let mut e = engine(name, Precision::Fp32, 2);
        for mode in [CacheMode::StaticV1, CacheMode::StaticV2] {
            let mut cache = e.new_cache(2).expect("cache");
            let out = generate_with_static_cache(
                &mut e,
                &mut cache,
                &r.batch_ids,
                &greedy_opts(mode, 24),
                &mut |_, _| {},
            )
            .expect("generate");
            for (b, (got, want)) in out.tokens.iter().zip(&r.batch_greedy).enumerate() {
                let label = format!("{name} {mode:?} batch row {b}");
                check_greedy(&label, got, want, &r.batch_top2[b], ALL_TOKENS, 0.0);
            }
            assert_eq!(out.tokens.len(), r.batch_greedy.len());
            assert_eq!(out.timings.prefill_tokens, 2 * r.batch_ids[0].len());
        }
        let out = generate(
            &mut e,
            &r.batch_ids,
            &greedy_opts(CacheMode::None, 24),
            &mut |_, _| {},
        )
        .expect("generate none");
        assert_eq!(out.tokens, r.batch_greedy, "{name} none");
        // Last-position logits of the batched prefill.
        let mut cache = e.new_cache(2).expect("cache");
        let len = r.batch_ids[0].len();
        let ids = r.batch_ids.concat();
        let positions: Vec<u32> = (0..2).flat_map(|_| 0..len as u32).collect();
        let step = runtime::backend::StepInputs {
            input_ids: &ids,
            position_ids: &positions,
            batch: 2,
            seq_len: len,
            start_idx: 0,
            end_idx: len,
        };
        let logits = e
            .forward(
                &step,
                &mut cache.layers_mut(),
                CacheMode::StaticV1,
                runtime::backend::LogitRows::Last,
            )
            .expect("forward");
        for b in 0..2 {
            let err = rel_err(logits.row(b, 0), &r.batch_last_logits[b]);
            eprintln!("{name} batch row {b}: last-position relative error {err:.2e}");
            let tol = fp32_tol(name);
            assert!(err <= tol, "{name} batch row {b}: {err:.2e} > {tol:.1e}");
        }
    }
}

/// 16-bit weight storage (f32 compute) against HF running the same model with every 2-D weight rounded
/// to fp16 / bf16 (round-to-nearest-even, as torch's `.to(dtype)`), 1-D parameters kept in fp32 — what
/// the engine stores. Same tolerance as FP32 (`fp32_tol`), and the full greedy continuation must be
/// identical.
#[test]
fn half_precision_storage_matches_hf_rounded_weights() {
    for precision in [Precision::Fp16, Precision::Bf16] {
        for name in MODELS {
            let r = reference(name);
            let (want_logits, want_greedy) = r.rounded(precision);
            let mut e = engine(name, precision, 1);
            let p = &r.prompts[0];
            let got = prefill_logits(&mut e, &p.ids, CacheMode::StaticV1);
            let err = rel_err(&got, &want_logits);
            eprintln!("{name} {precision} storage: relative error {err:.2e}");
            let tol = fp32_tol(name);
            assert!(
                err <= tol,
                "{name} {precision}: relative error {err:.2e} > {tol:.1e}"
            );
            let mut cache = e.new_cache(1).expect("cache");
            let out = generate_with_static_cache(
                &mut e,
                &mut cache,
                std::slice::from_ref(&p.ids),
                &greedy_opts(CacheMode::StaticV1, 24),
                &mut |_, _| {},
            )
            .expect("generate");
            let label = format!("{name} {precision} storage");
            let top2 = r.rounded_top2(precision);
            check_greedy(&label, &out.tokens[0], &want_greedy, &top2, ALL_TOKENS, 0.0);
        }
    }
}
