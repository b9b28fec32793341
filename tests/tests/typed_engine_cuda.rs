//! The generated crates' typed API on the CUDA backend (`EngineOptions::device = Cuda`), against the
//! same Hugging Face references as `typed_engine.rs`. It needs a GPU, so it is `#[ignore]`d in a plain
//! `cargo test` (reported as ignored, not passed); run it with `--include-ignored` on a GPU machine,
//! where missing CUDA libraries fail it. Tolerances are the
//! runtime's CUDA parity tests' (`runtime/tests/cuda_parity.rs`): greedy tokens identical, FP32 and FP16
//! (against HF with fp16-rounded weights).

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use runtime::backend::CacheMode;
use runtime::backend::cuda::device;
use runtime::codegen::{DeviceChoice, EngineOptions, GenerateOptions, NoProgress, WeightSource};

fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("{e}");
    }
}

fn gpu() -> EngineOptions {
    EngineOptions {
        max_seq_len: 64,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
    }
}

#[test]
#[ignore = "needs a CUDA GPU (run with --include-ignored)"]
fn tiny_llama_typed_api_on_cuda_matches_hf() {
    use tiny_llama::{Engine, Fp16, Fp32};
    require_cuda();
    let r = common::reference("tiny-llama");
    let weights = WeightSource::HfDir(common::root().join("models/tiny-llama"));
    let greedy = GenerateOptions {
        max_new_tokens: 24,
        mode: CacheMode::StaticV1,
        ..GenerateOptions::default()
    };
    let p = &r.prompts[0];
    let prompts = std::slice::from_ref(&p.ids);

    let mut fp32 = Engine::<Fp32>::build(&weights, gpu(), &NoProgress).expect("build FP32");
    let mut cache = fp32.new_cache(1).expect("cache");
    let out = fp32
        .generate_with_static_cache(&mut cache, prompts, &greedy, &mut |_, _| {})
        .expect("generate FP32");
    assert_eq!(out.tokens[0], p.greedy, "FP32");

    let (_, want) = r.rounded(runtime::Precision::Fp16);
    let mut fp16 = Engine::<Fp16>::build(&weights, gpu(), &NoProgress).expect("build FP16");
    let mut cache = fp16.new_cache(1).expect("cache");
    let out = fp16
        .generate_with_static_cache(&mut cache, prompts, &greedy, &mut |_, _| {})
        .expect("generate FP16");
    assert_eq!(out.tokens[0], want, "FP16");
}
