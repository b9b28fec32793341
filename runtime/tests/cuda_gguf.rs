//! `--quant_format gguf` on the GPU: a GGUF file's block-quantized matrices stay packed in device
//! memory. A step of few rows runs each matrix's GEMVs over its blocks (`gemv_blocks`; a fused
//! projection whose parts the file holds in different types runs one GEMV per part into its columns),
//! a longer one dequantises each matrix into the dense staging matrix (`dequant_blocks`) for its GEMM.
//! The reference is the CPU engine keeping the same blocks at FP32, which equals the dense FP32 engine
//! bit for bit (`gguf_blocks.rs`), itself compared with transformers on these files (`gguf.rs`,
//! `gguf_archs.rs`). tiny-llama.gguf holds q Q4_0, k Q4_1, v F16, gate Q8_0, up Q4_1, down Q4_0,
//! o BF16; the arch files hold Q8_0.
//!
//! Bounds (`max |gpu - cpu| / max |cpu|` over the logits), the dense families' against transformers
//! (`cuda_parity.rs`): FP32 1.5e-5 and greedy tokens identical, FP16 1e-2, BF16 5e-2 (the GPU keeps
//! GEMM inputs and the cache in 16 bits; the dequantised weights are rounded to 16 bits on the
//! prefill's path, not on the GEMVs'). They need a GPU, so they are `#[ignore]`d in a plain
//! `cargo test`; the GPU scripts run them with `--include-ignored`.
#![cfg(feature = "cuda")]

mod common;

use common::{MAX_SEQ, decode_step_logits, prefill_logits, rel_err};
use common::{gguf_fixture as fixture, gguf_spec as spec};
use runtime::backend::CacheMode;
use runtime::backend::cuda::device;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{ModelSpec, Precision};

const FILES: [&str; 6] = [
    "tiny-llama",
    "tiny-qwen2",
    "tiny-qwen3-q8_0",
    "tiny-gemma3-q8_0",
    "tiny-phi3-q8_0",
    "tiny-mistral-window-q8_0",
];

fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("{e}");
    }
}

fn options(precision: Precision, device: DeviceChoice) -> BuildOptions {
    BuildOptions {
        precision,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device,
        quant: QuantFormat::Gguf,
    }
}

fn engine(name: &str, precision: Precision, device: DeviceChoice) -> Engine {
    let source = WeightSource::Gguf(fixture(name));
    Engine::build(spec(name), &source, options(precision, device), &NoProgress)
        .unwrap_or_else(|e| panic!("{name} {precision}: build: {e}"))
}

fn gpu() -> DeviceChoice {
    DeviceChoice::Cuda { ordinal: 0 }
}

fn cpu() -> DeviceChoice {
    DeviceChoice::Cpu { threads: Some(2) }
}

fn bound(precision: Precision) -> f32 {
    match precision {
        Precision::Fp32 => 1.5e-5,
        Precision::Fp16 => 1e-2,
        Precision::Bf16 => 5e-2,
    }
}

fn prompt(spec: &ModelSpec) -> Vec<u32> {
    (0..20)
        .map(|i| ((i * 37 + 11) % spec.vocab_size) as u32)
        .collect()
}

fn greedy(e: &mut Engine, ids: &[u32]) -> Vec<u32> {
    let opts = GenerateOptions {
        max_new_tokens: 24,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let mut cache = e.new_cache(1).expect("cache");
    generate_with_static_cache(
        e,
        &mut cache,
        std::slice::from_ref(&ids.to_vec()),
        &opts,
        &mut |_, _| {},
    )
    .expect("generates")
    .tokens
    .remove(0)
}

/// Prefill (dequantised into the staging matrix) in every cache mode, then the prompt token by token
/// (each matrix's GEMVs over its blocks), against the CPU engine keeping the same blocks.
#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn kept_blocks_match_the_cpu_engine_on_the_gpu() {
    require_cuda();
    for name in FILES {
        let s = spec(name);
        let ids = prompt(&s);
        let mut reference = engine(name, Precision::Fp32, cpu());
        let want = prefill_logits(&mut reference, &ids, CacheMode::StaticV1);
        let want_greedy = greedy(&mut reference, &ids);
        let vocab = s.vocab_size;
        for precision in Precision::ALL {
            let b = bound(precision);
            let mut e = engine(name, precision, gpu());
            for mode in CacheMode::ALL {
                let got = prefill_logits(&mut e, &ids, mode);
                let err = rel_err(&got, &want);
                println!("{name} {precision} {mode:?}: prefill {err:.2e}");
                assert!(
                    err <= b,
                    "{name} {precision} {mode:?}: prefill {err:.2e} > {b:.1e}"
                );
            }
            let mut worst = 0.0f32;
            for (t, got) in decode_step_logits(&mut e, &ids).iter().enumerate() {
                let err = rel_err(got, &want[t * vocab..(t + 1) * vocab]);
                worst = worst.max(err);
                assert!(err <= b, "{name} {precision} step {t}: {err:.2e} > {b:.1e}");
            }
            println!("{name} {precision}: decode steps, worst {worst:.2e}");
            if precision == Precision::Fp32 {
                assert_eq!(greedy(&mut e, &ids), want_greedy, "{name}: greedy tokens");
            }
        }
    }
}

/// An engine file of a GPU engine keeping blocks records which tensors it keeps, and loads back to
/// the same logits bit for bit.
#[test]
#[ignore = "needs a GPU (run with --include-ignored on a machine with CUDA)"]
fn a_gpu_engine_file_keeps_blocks() {
    require_cuda();
    let name = "tiny-llama";
    let ids = prompt(&spec(name));
    let mut built = engine(name, Precision::Fp16, gpu());
    let path =
        std::env::temp_dir().join(format!("llmforge-cuda-gguf-{}.engine", std::process::id()));
    built.save(&path).expect("saves");
    let mut loaded =
        Engine::load(&path, &spec(name), &options(Precision::Fp16, gpu())).expect("loads");
    for mode in CacheMode::ALL {
        let want = prefill_logits(&mut built, &ids, mode);
        let got = prefill_logits(&mut loaded, &ids, mode);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&got) == bits(&want), "{mode:?}: loaded logits differ");
    }
    std::fs::remove_file(&path).ok();
}
