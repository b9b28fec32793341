//! Sampling on the device (`runtime/templates/kernels/sample.cu`, top-k up to `SAMPLE_MAX_K`) against the
//! host sampler (`runtime/src/sample.rs`) on the same numbers: the same seed must give the same tokens.
//! 1. Crafted logits (ties, negative values, -inf, -0.0, rows of equal values, rows with a NaN, a +inf
//!    or all -inf, a 50 021-token vocabulary so the selection passes loop) through
//!    `CudaBackend::sample_rows`, with the host sampler's own draws.
//! 2. Sampled generation of the tiny fixtures on the CUDA engine against the CPU engine, FP32, same
//!    seed (their logits agree to ~2e-6, far from moving a draw across a token boundary).
//! 3. The greedy `argmax` kernel (its keys decoded by the host as a step decodes them) against the
//!    first index of the largest value, on crafted rows: ties, signed zeros, infinities, NaNs,
//!    subnormals, the winner at either end.
//!
//! Needs a CUDA GPU, so `#[ignore]`d like `cuda_parity.rs`; `bench/gpu_verify.sh` runs it.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use runtime::Precision;
use runtime::backend::cuda::{self, kernels::SAMPLE_MAX_K};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::sample::{Sampler, Sampling};
use runtime::weights::{HostTensor, TensorData, WeightMap, WeightSource, expected_tensors};

const ROWS: usize = 3;

fn settings() -> Vec<Sampling> {
    let s = |temperature, top_k, top_p| Sampling {
        temperature,
        top_k: Some(top_k),
        top_p,
        seed: 0x5eed,
    };
    vec![
        s(1.0, 1, None),
        s(0.7, 50, None),
        s(1.3, SAMPLE_MAX_K, None),
        s(1.0, 40, Some(0.9)),
        s(2.0, 7, Some(0.3)),
        s(0.9, 600, Some(1.0)),
    ]
}

/// `ROWS` rows of logits in 1/8 steps over [-12, 12) (many ties), a few -inf, -0.0 beside +0.0, one
/// row all equal; and in some rounds a row the host sampler calls degenerate (a NaN, a +inf, all -inf),
/// after which the later rows and rounds must still agree (one draw per row on both sides).
fn crafted_logits(vocab: usize, round: u64) -> Vec<f32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ round.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(ROWS * vocab);
    for r in 0..ROWS {
        for i in 0..vocab {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = ((x >> 40) % 192) as f32 / 8.0 - 12.0;
            out.push(match (r, i % 997) {
                (2, _) => 0.5,
                (_, 13) => f32::NEG_INFINITY,
                _ if v == 0.0 && i % 2 == 1 => -0.0,
                _ => v,
            });
        }
    }
    match round % 4 {
        1 => out[vocab / 3] = f32::NAN,
        2 => out[vocab + 7] = f32::INFINITY,
        3 => out[..vocab].fill(f32::NEG_INFINITY),
        _ => {}
    }
    out
}

/// The tiny Llama's layout with a large vocabulary and zero weights: only its logits buffer matters.
fn wide_backend(vocab: usize) -> cuda::CudaBackend {
    let mut spec = spec("tiny-llama");
    spec.vocab_size = vocab;
    let mut weights = WeightMap::default();
    weights
        .tensors
        .extend(expected_tensors(&spec).into_iter().map(|(name, shape)| {
            let n = shape.iter().product();
            (
                name,
                HostTensor {
                    shape,
                    data: TensorData::F32(vec![0.0; n]),
                },
            )
        }));
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: 16,
        max_batch: ROWS,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant: runtime::format::QuantFormat::None,
    };
    cuda::build(&spec, &weights, &options, &NoProgress).expect("CUDA backend of the wide spec")
}

#[test]
#[ignore = "needs a CUDA GPU (run with --include-ignored)"]
fn device_top_k_sampling_picks_the_host_samplers_tokens() {
    for vocab in [256, 50_021] {
        let mut gpu = wide_backend(vocab);
        for params in settings() {
            let mut host = Sampler::try_new(params).expect("valid sampling");
            let mut draws = Sampler::try_new(params).expect("valid sampling");
            let mut picked = std::collections::BTreeSet::new();
            for round in 0..24 {
                let logits = crafted_logits(vocab, round);
                let want: Vec<u32> = logits.chunks(vocab).map(|r| host.sample(r)).collect();
                let u: Vec<f64> = (0..ROWS).map(|_| draws.draw()).collect();
                let got = gpu
                    .sample_rows(&logits, &params, &u)
                    .unwrap_or_else(|e| panic!("{params:?}: device sampling: {e}"));
                assert_eq!(got, want, "vocab {vocab}, {params:?}, round {round}");
                picked.extend(want);
            }
            println!(
                "vocab {vocab} {params:?}: {} distinct tokens, all equal",
                picked.len()
            );
            if params.top_k.unwrap_or(0) > 1 {
                assert!(picked.len() > 1, "{params:?}: a sampler that never varies");
            }
        }
    }
}

/// torch.argmax's choice for rows without NaN: the first index of the largest value (-0.0 equals
/// +0.0); NaNs are passed over (0 when every value is NaN), as the CPU engine's `sample::argmax` does
/// for a NaN anywhere but at index 0.
fn first_largest(row: &[f32]) -> u32 {
    let max = row
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    row.iter().position(|&x| x == max).unwrap_or(0) as u32
}

/// Rows whose greedy choice depends on each rule of [`first_largest`]: ties (first index wins, also
/// between -0.0 and +0.0 and between infinities), the winner at the first and the last index, only
/// negative values, subnormals, NaNs next to the winner, all NaN, all -inf.
fn argmax_rows(vocab: usize) -> Vec<Vec<f32>> {
    let base = |v: f32| vec![v; vocab];
    let mut rows = Vec::new();
    let mut r = base(-1.0);
    r[vocab / 2] = 3.0;
    r[vocab / 3] = 3.0;
    r[vocab - 1] = 3.0;
    rows.push(r);
    let mut r = base(-1.0);
    r[vocab - 1] = 0.5;
    rows.push(r);
    let mut r = base(-1.0);
    r[0] = 0.5;
    r[vocab - 1] = 0.5;
    rows.push(r);
    rows.push(base(0.25));
    let mut r = base(-2.0);
    r[7] = 0.0;
    r[5] = -0.0;
    rows.push(r);
    let mut r = base(-2.0);
    r[5] = 0.0;
    r[7] = -0.0;
    rows.push(r);
    let mut r: Vec<f32> = (0..vocab).map(|i| -1.0 - i as f32 / 64.0).collect();
    r[vocab / 5] = -0.75;
    rows.push(r);
    let mut r = base(0.0);
    r[9] = f32::from_bits(1);
    r[11] = f32::from_bits(2);
    rows.push(r);
    let mut r = base(1.0);
    r[3] = f32::NAN;
    r[4] = 2.0;
    r[vocab - 2] = f32::NAN;
    rows.push(r);
    rows.push(base(f32::NAN));
    rows.push(base(f32::NEG_INFINITY));
    let mut r = base(f32::MAX);
    r[vocab / 4] = f32::INFINITY;
    r[vocab / 2] = f32::INFINITY;
    rows.push(r);
    rows
}

#[test]
#[ignore = "needs a CUDA GPU (run with --include-ignored)"]
fn device_argmax_picks_the_first_largest_logit() {
    for vocab in [256, 50_021] {
        let mut gpu = wide_backend(vocab);
        let mut all = argmax_rows(vocab);
        for round in 0..8 {
            all.extend(
                crafted_logits(vocab, round)
                    .chunks(vocab)
                    .map(<[f32]>::to_vec),
            );
        }
        for (i, rows) in all.chunks(ROWS).enumerate() {
            let logits = rows.concat();
            let want: Vec<u32> = rows.iter().map(|r| first_largest(r)).collect();
            let got = gpu
                .argmax_rows(&logits)
                .unwrap_or_else(|e| panic!("vocab {vocab}: device argmax: {e}"));
            assert_eq!(got, want, "vocab {vocab}, rows {}..", i * ROWS);
            for (row, &w) in rows.iter().zip(&want) {
                if !row[0].is_nan() {
                    assert_eq!(runtime::sample::argmax(row), w, "CPU engine's argmax");
                }
            }
        }
        println!("vocab {vocab}: {} rows, all equal", all.len());
    }
}

#[test]
#[ignore = "needs a CUDA GPU (run with --include-ignored)"]
fn sampled_generation_equals_the_cpu_engine() {
    for name in ["tiny-llama", "tiny-qwen2", "tiny-gpt2"] {
        let source = WeightSource::HfDir(root().join("models").join(name));
        let sampled = |device| {
            let options = BuildOptions {
                device,
                ..options(Precision::Fp32, 2)
            };
            let mut e = Engine::build(spec(name), &source, options, &NoProgress)
                .unwrap_or_else(|e| panic!("{name} {device:?}: {e}"));
            let mut cache = e.new_cache(2).expect("cache");
            let opts = GenerateOptions {
                max_new_tokens: 24,
                sampling: Sampling {
                    temperature: 0.8,
                    top_k: Some(40),
                    top_p: Some(0.95),
                    seed: 7,
                },
                stop_at_eos: false,
                ..GenerateOptions::default()
            };
            let prompts = vec![vec![1, 5, 9, 2], vec![3, 3, 7, 11]];
            generate_with_static_cache(&mut e, &mut cache, &prompts, &opts, &mut |_, _| {})
                .unwrap_or_else(|e| panic!("{name} {device:?}: generate: {e}"))
                .tokens
        };
        let cpu = sampled(DeviceChoice::Cpu { threads: Some(2) });
        let gpu = sampled(DeviceChoice::Cuda { ordinal: 0 });
        println!("{name}: sampled {cpu:?}");
        assert_eq!(
            gpu, cpu,
            "{name}: sampled tokens on the GPU vs the CPU engine"
        );
    }
}

#[test]
fn device_sampling_is_chosen_for_top_k_up_to_the_kernels_limit() {
    let s = |temperature, top_k| Sampling {
        temperature,
        top_k,
        top_p: None,
        seed: 1,
    };
    assert!(cuda::sampling::on_device(&s(0.8, Some(50))));
    assert!(cuda::sampling::on_device(&s(0.8, Some(SAMPLE_MAX_K))));
    assert!(!cuda::sampling::on_device(&s(0.8, Some(SAMPLE_MAX_K + 1))));
    assert!(!cuda::sampling::on_device(&s(0.8, None)));
    assert!(
        !cuda::sampling::on_device(&s(0.0, Some(50))),
        "greedy is the lm_head argmax"
    );
}
