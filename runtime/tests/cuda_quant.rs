//! Weights quantized at build (`--quant_format int8|int4|fp8`) on the GPU, against the references
//! of `scripts/make_quant_fixtures.py` (`tests/fixtures/quant/`): transformers' fp32 logits and
//! greedy tokens of each model with its layer linears replaced by their torchao-quantized, then
//! dequantised weights, which is the function a quantized engine computes. The prefill runs the
//! general path (each quantized matrix dequantised into a dense staging matrix, then the GEMM); the
//! generation's decode steps run the fused GEMVs, which read the codes and scales themselves.
//! tiny-llama under int4 mixes formats within a layer (its 64-wide linears stay dense, `down` is
//! int4). They need a GPU, so they are `#[ignore]`d in a plain `cargo test`; the GPU scripts run
//! them with `--include-ignored`.
//!
//! Bounds (`max |ours - hf| / max |hf|` over the prompt's prefill logits), those of the dense
//! families (`cuda_parity.rs`): FP32 1.5e-5 (the CPU engine's bound on these fixtures, `quant.rs`),
//! greedy tokens identical; FP16 1e-2 and BF16 5e-2, where 16-bit runs may part from transformers'
//! greedy tokens only at a near-tie (`common/greedy.rs`) of the FP32 engine's logits along
//! transformers' continuation (the FP32 engine of the same format, itself within 1.5e-5 of
//! transformers and greedy-equal to it).
#![cfg(feature = "cuda")]

mod common;

use common::greedy::{ALL_TOKENS, Continuation, Top2, check_greedy, split_gap};
use common::quant_fixture::{f32s, json, model_dir, u32s};
use common::{MAX_SEQ, decode_step_logits, prefill_logits, rel_err, root};
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::backend::cuda::device;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::spec::ModelSpec;
use runtime::weights::WeightSource;

const FP32_BOUND: f32 = 1.5e-5;
const FP16_BOUND: f32 = 1e-2;
const BF16_BOUND: f32 = 5e-2;
const NEW_TOKENS: usize = 24;

const MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen3", "tiny-llama-w128"];
const FORMATS: [QuantFormat; 3] = [QuantFormat::Int8, QuantFormat::Int4, QuantFormat::Fp8];

fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("{e}");
    }
}

fn engine(name: &str, precision: Precision, quant: QuantFormat, device: DeviceChoice) -> Engine {
    let dir = model_dir(name);
    let spec = ModelSpec::from_dir(&dir).expect("config parses");
    let options = BuildOptions {
        precision,
        max_seq_len: MAX_SEQ,
        max_batch: 2,
        device,
        quant,
    };
    Engine::build(spec, &WeightSource::HfDir(dir), options, &NoProgress)
        .unwrap_or_else(|e| panic!("{name} {precision} {quant}: build: {e}"))
}

fn bound_of(precision: Precision) -> f32 {
    match precision {
        Precision::Fp32 => FP32_BOUND,
        Precision::Fp16 => FP16_BOUND,
        Precision::Bf16 => BF16_BOUND,
    }
}

fn gpu() -> DeviceChoice {
    DeviceChoice::Cuda { ordinal: 0 }
}

fn greedy(e: &mut Engine, prompts: &[Vec<u32>], mode: CacheMode) -> Vec<Vec<u32>> {
    let opts = GenerateOptions {
        max_new_tokens: NEW_TOKENS,
        stop_at_eos: false,
        mode,
        ..GenerateOptions::default()
    };
    let mut cache = e.new_cache(prompts.len()).expect("cache");
    generate_with_static_cache(e, &mut cache, prompts, &opts, &mut |_, _| {})
        .expect("generates")
        .tokens
}

/// The FP32 CPU engine's top 2 at each step of `tokens` after `prompt` (one prefill over the
/// prompt and the continuation: row `prompt.len() - 1 + i` predicts token `i`).
fn cpu_continuation(cpu: &mut Engine, prompt: &[u32], tokens: &[u32]) -> Continuation {
    let ids: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
    let logits = prefill_logits(cpu, &ids, CacheMode::StaticV1);
    let vocab = logits.len() / ids.len();
    let steps = (0..tokens.len())
        .map(|i| {
            let row = prompt.len() - 1 + i;
            Top2::of_row(&logits[row * vocab..(row + 1) * vocab])
        })
        .collect();
    Continuation {
        tokens: tokens.to_vec(),
        steps,
    }
}

#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn quantized_engines_match_transformers_on_the_gpu() {
    require_cuda();
    for name in MODELS {
        let f = json(&format!("{name}.json"));
        let prompt = u32s(&f["prompt"]);
        for quant in FORMATS {
            let r = &f["formats"][quant.as_str()];
            let want = f32s(&r["logits"]);
            let want_greedy = u32s(&r["greedy"]);
            let mut cpu = engine(
                name,
                Precision::Fp32,
                quant,
                DeviceChoice::Cpu { threads: Some(2) },
            );
            let reference = cpu_continuation(&mut cpu, &prompt, &want_greedy);
            for precision in Precision::ALL {
                let bound = bound_of(precision);
                let mut e = engine(name, precision, quant, gpu());
                for mode in CacheMode::ALL {
                    let label = format!("{name} {quant} {precision} {mode:?}");
                    let got = prefill_logits(&mut e, &prompt, mode);
                    let err = rel_err(&got, &want);
                    println!("{label}: prefill max |Δ| / max |logit| = {err:.2e}");
                    assert!(err <= bound, "{label}: {err:.2e} > {bound:.1e}");
                    let tokens = greedy(&mut e, std::slice::from_ref(&prompt), mode);
                    let min_prefix = match precision {
                        Precision::Fp32 => ALL_TOKENS,
                        _ => 0,
                    };
                    check_greedy(
                        &label,
                        &tokens[0],
                        &want_greedy,
                        &reference,
                        min_prefix,
                        split_gap(precision),
                    );
                }
            }
        }
    }
}

/// Token by token through the fused decode GEMVs (f32 ones in FP32, tensor-core ones in FP16 and
/// BF16): each step's logits against transformers' prefill row of the same position, with the
/// prefill's bounds.
#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn quantized_decode_steps_match_transformers() {
    require_cuda();
    for name in MODELS {
        let f = json(&format!("{name}.json"));
        let prompt = u32s(&f["prompt"]);
        for quant in FORMATS {
            let want = f32s(&f["formats"][quant.as_str()]["logits"]);
            let vocab = want.len() / prompt.len();
            for precision in Precision::ALL {
                let bound = bound_of(precision);
                let mut e = engine(name, precision, quant, gpu());
                let mut worst = 0.0f32;
                for (t, got) in decode_step_logits(&mut e, &prompt).iter().enumerate() {
                    let err = rel_err(got, &want[t * vocab..(t + 1) * vocab]);
                    worst = worst.max(err);
                    assert!(
                        err <= bound,
                        "{name} {quant} {precision} decode step {t}: {err:.2e} > {bound:.1e}"
                    );
                }
                println!("{name} {quant} {precision}: decode steps, worst {worst:.2e}");
            }
        }
    }
}

/// Layers of full width: Llama-3.2-1B's (hidden 2048, intermediate 8192) in one layer, a vocabulary
/// of 2048, seeded synthetic weights. Every decode GEMV walks several steps per warp (int4 `down`:
/// 64 steps of 128 weights over 8 warps; int8: 128 of 64), reusing the tensor-core kernels' ring of
/// loads, and their `_n` variants take 8 rows. The reference is the CPU engine of the same format at
/// FP32 (dequantised weights in f32, `quant.rs`): prefill and each decode step of the GPU engine in
/// every precision within the bounds above, and a batch of 8 decoding each row as alone.
#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn quantized_full_width_layers_match_the_cpu_engine() {
    require_cuda();
    let mut spec =
        ModelSpec::from_dir(&root().join("models/Llama-3.2-1B-Instruct")).expect("config");
    spec.num_layers = 1;
    spec.vocab_size = 2048;
    let map = runtime::weights::finish(
        &spec,
        runtime::weights::synthetic::generate(&spec, 7).expect("weights"),
    )
    .expect("weights");
    let ids: Vec<u32> = (0..24).map(|i| (i * 613 + 5) % 2048).collect();
    let build = |precision, quant, device, max_batch| {
        let options = BuildOptions {
            precision,
            max_seq_len: MAX_SEQ,
            max_batch,
            device,
            quant,
        };
        Engine::build_from_weights(spec.clone(), &map, options, &NoProgress)
            .unwrap_or_else(|e| panic!("{precision} {quant}: build: {e}"))
    };
    for quant in FORMATS {
        let mut cpu = build(
            Precision::Fp32,
            quant,
            DeviceChoice::Cpu { threads: Some(2) },
            1,
        );
        let want = prefill_logits(&mut cpu, &ids, CacheMode::StaticV1);
        let vocab = spec.vocab_size;
        for precision in Precision::ALL {
            let bound = bound_of(precision);
            let mut e = build(precision, quant, gpu(), 8);
            let err = rel_err(&prefill_logits(&mut e, &ids, CacheMode::StaticV1), &want);
            println!("1B-wide {quant} {precision}: prefill {err:.2e}");
            assert!(
                err <= bound,
                "{quant} {precision}: prefill {err:.2e} > {bound:.1e}"
            );
            let mut worst = 0.0f32;
            for (t, got) in decode_step_logits(&mut e, &ids).iter().enumerate() {
                let err = rel_err(got, &want[t * vocab..(t + 1) * vocab]);
                worst = worst.max(err);
                assert!(
                    err <= bound,
                    "{quant} {precision} step {t}: {err:.2e} > {bound:.1e}"
                );
            }
            println!("1B-wide {quant} {precision}: decode steps, worst {worst:.2e}");
            if precision == Precision::Fp32 {
                let rows: Vec<Vec<u32>> = (0..8)
                    .map(|r| ids.iter().map(|&i| (i + 97 * r) % 2048).collect())
                    .collect();
                let alone: Vec<Vec<u32>> = rows
                    .iter()
                    .map(|p| greedy(&mut e, std::slice::from_ref(p), CacheMode::StaticV1).remove(0))
                    .collect();
                let together = greedy(&mut e, &rows, CacheMode::StaticV1);
                assert_eq!(
                    together, alone,
                    "{quant}: a batch of 8 against each row alone"
                );
            }
        }
    }
}

/// Two sequences decode together through the `_n` GEMVs (codes shared by both rows) and each gets
/// the tokens it gets alone, in FP32 (where the one-row run equals transformers').
#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn a_quantized_batch_decodes_as_its_sequences_alone() {
    require_cuda();
    for name in ["tiny-llama-w128", "tiny-qwen3"] {
        let prompt = u32s(&json(&format!("{name}.json"))["prompt"]);
        let other: Vec<u32> = prompt.iter().rev().copied().collect();
        for quant in FORMATS {
            let mut e = engine(name, Precision::Fp32, quant, gpu());
            let alone: Vec<Vec<u32>> = [&prompt, &other]
                .iter()
                .map(|p| greedy(&mut e, std::slice::from_ref(p), CacheMode::StaticV1).remove(0))
                .collect();
            let both = greedy(
                &mut e,
                &[prompt.clone(), other.clone()],
                CacheMode::StaticV1,
            );
            assert_eq!(
                both, alone,
                "{name} {quant}: batch of two against each alone"
            );
        }
    }
}
