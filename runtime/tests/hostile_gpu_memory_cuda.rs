//! GPU memory as hostile input, on the GPU: options whose buffers cannot fit are refused by name —
//! out of memory at engine build or when a cache is asked for, or a size that overflows — and an
//! engine that refused a cache still generates transformers' tokens. `#[ignore]`d (they need a CUDA
//! GPU): run them with `--include-ignored` on a GPU machine, where a missing CUDA is a failure.
#![cfg(feature = "cuda")]

mod common;
mod hostile_common;

use common::{reference, root, spec};
use hostile_common::{assert_names, err_msg};
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::backend::cuda::device;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;

fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("this test needs a CUDA GPU: {e}");
    }
}

fn build(max_seq_len: usize, max_batch: usize) -> runtime::Result<Engine> {
    let source = WeightSource::HfDir(root().join("models/tiny-llama"));
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len,
        max_batch,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant: runtime::format::QuantFormat::None,
    };
    Engine::build(spec("tiny-llama"), &source, options, &NoProgress)
}

#[test]
#[ignore = "needs a CUDA GPU; run with --include-ignored on a GPU machine"]
fn a_cache_larger_than_the_gpu_is_refused_and_the_engine_still_generates() {
    require_cuda();
    // 2^16 positions x 2^15 sequences: one layer's key tensor alone is 2^31 rows of tiny-llama's
    // 2 x 16 f32 = 256 GiB, more than any GPU holds. Everything the build itself allocates fits.
    let mut e = build(1 << 16, 1 << 15).expect("an engine whose full cache would not fit builds");
    let msg = err_msg("cache", e.new_cache(1 << 15));
    assert_names(
        "cache",
        &msg,
        &[
            "KV cache for 32768 sequence(s) of 65536 positions",
            "free memory of",
            "lower the batch size",
        ],
    );
    // Nothing was left half-made: a cache that fits, then transformers' greedy tokens.
    let r = reference("tiny-llama");
    let opts = GenerateOptions {
        max_new_tokens: 24,
        mode: CacheMode::StaticV1,
        ..GenerateOptions::default()
    };
    let mut cache = e.new_cache(r.batch_ids.len()).expect("a cache that fits");
    let got = generate_with_static_cache(&mut e, &mut cache, &r.batch_ids, &opts, &mut |_, _| {})
        .expect("generate after a refused cache");
    assert_eq!(got.tokens, r.batch_greedy);
}

#[test]
#[ignore = "needs a CUDA GPU; run with --include-ignored on a GPU machine"]
fn a_batch_whose_build_buffers_cannot_fit_is_refused_by_name() {
    require_cuda();
    // The build times GEMMs on max_batch rows: 2^40 rows of activations do not fit ...
    let msg = err_msg("2^40 rows", build(64, 1 << 40));
    assert_names("2^40 rows", &msg, &["out of GPU memory", "GEMM timing"]);
    // ... and at 2^62 rows their size does not even fit in 64 bits.
    let msg = err_msg("2^62 rows", build(64, 1 << 62));
    assert_names(
        "2^62 rows",
        &msg,
        &["GEMM timing", "overflows a 64-bit size"],
    );
    // More positions than the device's 32-bit indices can address.
    let msg = err_msg("2^31 positions", build(1 << 31, 1));
    assert_names(
        "2^31 positions",
        &msg,
        &["max_seq_len 2147483648", "32-bit"],
    );
}
