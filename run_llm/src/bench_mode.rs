//! `--benchmark`: `--batch_size` random prompts of `--isl` tokens (seeded by `--seed`), one untimed
//! warm-up, then `--iterations` timed generations of exactly `--num_tokens` tokens (EOS does not stop a
//! benchmark). The cache is allocated once, outside the timed region, and reused: each prefill rewrites
//! it from position 0.

use crate::args::Args;
use crate::bandwidth;
use crate::engine_setup::{self, Need};
use crate::progress::Bars;
use crate::pytorch;
use crate::report::{self, BenchReport, Roofline, Summary, median};
use crate::resolve::Model;
use anyhow::{Context, Result};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use runtime::generate::generate_with_static_cache;
use runtime::progress::Progress;
use std::time::Instant;

/// Random prompt ids are drawn from `1..min(vocab, 10000)`, as the seed does.
const MAX_RANDOM_ID: u32 = 10_000;

/// Below this many weight bytes a CPU decode step may read its weights from caches, not memory.
const CACHE_RESIDENT: usize = 64 << 20;

pub fn run(args: &Args, model: &Model, need: Need) -> Result<()> {
    let need = Need {
        seq_len: args.isl.saturating_add(args.num_tokens),
        prompt_len: args.isl,
        batch: args.batch_size,
        keep_weights: args.enable_pytorch_run,
        ..need
    };
    let bars = Bars::new(args.json);
    let got = engine_setup::obtain(model, &need, args.engine.as_deref(), &bars)?;
    // Made once the run is admitted (their size is part of the check).
    let prompts = random_prompts(args.batch_size, args.isl, model.spec.vocab_size, args.seed);
    let mut run = crate::run_info(args, model, &need, &got);
    let mut engine = got.engine;
    let device = engine.options().device;
    let mut cache = engine.new_cache(args.batch_size)?;
    let opts = args.generate_options(false);
    bars.stage("warm-up", 1);
    let warm = generate_with_static_cache(&mut engine, &mut cache, &prompts, &opts, &mut |_, _| {})
        .context("warm-up generation failed")?;
    bars.finish();
    let rss_after_warm_up_bytes = crate::limits::rss();
    let mut e2e = Vec::new();
    let mut ttft = Vec::new();
    let mut per_token = Vec::new();
    bars.stage("timed iterations", args.iterations as u64);
    for _ in 0..args.iterations {
        let t = Instant::now();
        let out =
            generate_with_static_cache(&mut engine, &mut cache, &prompts, &opts, &mut |_, _| {})?;
        e2e.push(t.elapsed().as_secs_f64() * 1e3);
        let tm = out.timings;
        crate::debug::debug!(
            "iteration: {:.3} ms end to end, TTFT {:.3} ms, {} decode steps in {:.3} ms",
            t.elapsed().as_secs_f64() * 1e3,
            tm.time_to_first_token.as_secs_f64() * 1e3,
            tm.decode_steps,
            tm.decode_time.as_secs_f64() * 1e3
        );
        ttft.push(tm.time_to_first_token.as_secs_f64() * 1e3);
        if tm.decode_steps > 0 {
            per_token.push(tm.decode_time.as_secs_f64() * 1e3 / tm.decode_steps as f64);
        }
        bars.advance(1);
    }
    bars.finish();
    let rss_after_iterations_bytes = crate::limits::rss();
    let peak_rss_bytes = crate::limits::peak_rss();
    let generated: usize = warm.tokens.iter().map(Vec::len).sum();
    let latency = Summary::of(&e2e);
    let decode_ms = median(&per_token);
    bars.stage("bandwidth probe", 0);
    let probe = bandwidth::measure(device);
    bars.finish();
    let probe = probe?;
    let weight_bytes = engine.backend().weight_bytes();
    let achieved = if decode_ms > 0.0 {
        weight_bytes as f64 / (decode_ms / 1e3) / 1e9
    } else {
        0.0
    };
    if matches!(device, runtime::engine::DeviceChoice::Cpu { .. }) && weight_bytes < CACHE_RESIDENT
    {
        run.notes.push(format!(
            "the weights ({:.1} MB) may stay in CPU caches, so the roofline fraction can exceed 100%",
            weight_bytes as f64 / 1e6
        ));
    }
    let pytorch = pytorch::compare(
        args,
        model,
        &need,
        got.weights.as_ref(),
        &prompts,
        &warm.tokens,
        pytorch::Mode::Benchmark,
    )?;
    let report = BenchReport {
        mode: "benchmark",
        run,
        isl: args.isl,
        batch_size: args.batch_size,
        num_tokens: args.num_tokens,
        iterations: args.iterations,
        latency_ms: latency,
        ttft_ms_median: median(&ttft),
        decode_ms_per_token_median: decode_ms,
        tokens_per_s: generated as f64 / (latency.median / 1e3),
        sequences_per_s: args.batch_size as f64 / (latency.median / 1e3),
        roofline: Roofline {
            weight_bytes_per_token: weight_bytes,
            achieved_gb_s: achieved,
            measured_gb_s: probe.gb_s,
            probe: probe.probe,
            fraction: achieved / probe.gb_s,
        },
        rss_after_warm_up_bytes,
        rss_after_iterations_bytes,
        peak_rss_bytes,
        pytorch,
    };
    let baseline = report.pytorch.as_ref().map(|b| pytorch::text(b, None));
    report::emit(
        args.json,
        &report,
        report::bench_text(&report),
        baseline,
        report::TextTo::Stdout,
    )
}

/// `batch` prompts of `len` ids, uniform in `1..min(vocab, 10000)`, from `seed`.
pub fn random_prompts(batch: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let hi = (vocab.min(MAX_RANDOM_ID as usize) as u32).max(2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch)
        .map(|_| (0..len).map(|_| 1 + rng.next_u32() % (hi - 1)).collect())
        .collect()
}
