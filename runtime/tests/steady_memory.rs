//! A long-running process does not grow: 1000 generations through one engine (a fresh cache each
//! time, prompts of varying length and batch, every cache mode, sampled and greedy) keep the resident
//! set within a few percent of what it was after the first 100. One test in its own binary, so no
//! other test's allocations are counted.

mod common;

use common::{options, root, spec};
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::engine::Engine;
use runtime::generate::{GenerateOptions, generate, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::sample::Sampling;
use runtime::weights::WeightSource;

/// Resident set of this process, bytes (`/proc/self/statm`, in pages of 4 KiB).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn a_thousand_generations_keep_the_resident_set() {
    let source = WeightSource::HfDir(root().join("models/tiny-llama"));
    let mut engine = Engine::build(
        spec("tiny-llama"),
        &source,
        options(Precision::Fp32, 2),
        &NoProgress,
    )
    .expect("tiny-llama builds");
    let mut after_warm_up = 0;
    for i in 0..1000u32 {
        let batch = 1 + (i % 2) as usize;
        let len = 1 + (i % 7) as usize;
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                (0..len)
                    .map(|t| 3 + (i + 5 * b as u32 + t as u32) % 250)
                    .collect()
            })
            .collect();
        let mode = CacheMode::ALL[(i % 3) as usize];
        let opts = GenerateOptions {
            max_new_tokens: 8,
            sampling: Sampling {
                temperature: if i % 2 == 0 { 0.0 } else { 0.8 },
                top_k: Some(40),
                top_p: Some(0.9),
                seed: u64::from(i),
            },
            mode,
            stop_at_eos: i % 4 == 0,
        };
        let mut cache = engine.new_cache(batch).expect("cache");
        let out = if mode == CacheMode::None {
            generate(&mut engine, &prompts, &opts, &mut |_, _| {})
        } else {
            generate_with_static_cache(&mut engine, &mut cache, &prompts, &opts, &mut |_, _| {})
        }
        .expect("generation");
        assert_eq!(out.tokens.len(), batch);
        if i == 99 {
            after_warm_up = rss();
        }
    }
    let end = rss();
    eprintln!("resident set after 100 generations: {after_warm_up} bytes, after 1000: {end}");
    assert!(
        end as f64 <= after_warm_up as f64 * 1.03,
        "the resident set grew from {after_warm_up} bytes after 100 generations to {end} after 1000"
    );
}
