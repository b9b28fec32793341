//! The generated crates' typed API end to end, against Hugging Face transformers' outputs on the tiny
//! random-weight fixtures (`tests/fixtures/tiny-*/reference.json`, made by `scripts/make_fixtures.py`):
//! build on the CPU, `generate_with_static_cache` and `generate` greedily, `forward(Inputs)` for prefill
//! and decode, save/load. Tolerance as in `runtime/tests/parity.rs`: FP32 logits within the per-model
//! bound of `common::fp32_tol` (times `max |hf|`), greedy tokens identical.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use runtime::backend::CacheMode;
use runtime::codegen::{DeviceChoice, EngineOptions, GenerateOptions, NoProgress, WeightSource};
use runtime::sample::argmax;

const NEW_TOKENS: usize = 24;

fn options() -> EngineOptions {
    EngineOptions {
        max_seq_len: 64,
        max_batch: 2,
        device: DeviceChoice::Cpu { threads: Some(2) },
    }
}

fn greedy(mode: CacheMode) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: NEW_TOKENS,
        mode,
        ..GenerateOptions::default()
    }
}

fn weights(name: &str) -> WeightSource {
    WeightSource::HfDir(common::root().join("models").join(name))
}

/// One test per generated crate: the same body over distinct types.
macro_rules! typed_parity {
    ($test:ident, $krate:ident, $name:literal) => {
        #[test]
        fn $test() {
            use $krate::{Engine, Fp32, Inputs};
            let r = common::reference($name);
            let mut engine =
                Engine::<Fp32>::build(&weights($name), options(), &NoProgress).expect("build");
            for (i, p) in r.prompts.iter().enumerate() {
                let prompts = std::slice::from_ref(&p.ids);
                for mode in [CacheMode::StaticV1, CacheMode::StaticV2] {
                    let mut cache = engine.new_cache(1).expect("cache");
                    let mut streamed = Vec::new();
                    let out = engine
                        .generate_with_static_cache(
                            &mut cache,
                            prompts,
                            &greedy(mode),
                            &mut |_, t| streamed.push(t),
                        )
                        .expect("generate_with_static_cache");
                    assert_eq!(out.tokens[0], p.greedy, "{} prompt {i} {mode:?}", $name);
                    assert_eq!(streamed, p.greedy, "{} prompt {i} {mode:?} streamed", $name);
                }
                let out = engine
                    .generate(prompts, &greedy(CacheMode::None), &mut |_, _| {})
                    .expect("generate");
                assert_eq!(out.tokens[0], p.greedy, "{} prompt {i} no cache", $name);

                // The engine signature by hand: prefill [0, len), then one token per step.
                let mut cache = engine.new_cache(1).expect("cache");
                let len = p.ids.len();
                let positions: Vec<u32> = (0..len as u32).collect();
                let logits = engine
                    .forward(Inputs {
                        input_ids: &p.ids,
                        position_ids: &positions,
                        cache: &mut cache,
                        start_idx: 0,
                        end_idx: len,
                    })
                    .expect("prefill");
                let err = common::rel_err(&logits.data, &p.logits.concat());
                eprintln!(
                    "{} prompt {i} prefill: relative error {err:.2e} (bound {:.1e})",
                    $name,
                    common::fp32_tol($name)
                );
                assert!(
                    err <= common::fp32_tol($name),
                    "{} prompt {i} prefill: relative error {err}",
                    $name
                );
                let mut tokens = vec![argmax(logits.row(0, len - 1))];
                let mut end = len;
                while tokens.len() < p.greedy.len() {
                    let last = [*tokens.last().expect("a token")];
                    let logits = engine
                        .forward(Inputs {
                            input_ids: &last,
                            position_ids: &[end as u32],
                            cache: &mut cache,
                            start_idx: end,
                            end_idx: end + 1,
                        })
                        .expect("decode step");
                    tokens.push(argmax(logits.row(0, 0)));
                    end += 1;
                }
                assert_eq!(tokens, p.greedy, "{} prompt {i} by forward(Inputs)", $name);
            }
        }
    };
}

typed_parity!(tiny_llama_typed_api_matches_hf, tiny_llama, "tiny-llama");
typed_parity!(tiny_qwen2_typed_api_matches_hf, tiny_qwen2, "tiny-qwen2");
typed_parity!(tiny_gpt2_typed_api_matches_hf, tiny_gpt2, "tiny-gpt2");

/// The weights named by `models.toml`, a batch of two, and 16-bit storage through the precision type.
#[test]
fn tiny_llama_manifest_weights_batch_and_fp16() {
    use tiny_llama::{Engine, Fp16, Fp32};
    let r = common::reference("tiny-llama");
    let mut engine = Engine::<Fp32>::build_from_manifest(options(), &NoProgress).expect("build");
    let mut cache = engine.new_cache(2).expect("cache");
    let out = engine
        .generate_with_static_cache(
            &mut cache,
            &r.batch_ids,
            &greedy(CacheMode::StaticV1),
            &mut |_, _| {},
        )
        .expect("batch");
    assert_eq!(out.tokens, r.batch_greedy);

    let (_, want) = r.rounded(runtime::Precision::Fp16);
    let mut half = Engine::<Fp16>::build_from_manifest(options(), &NoProgress).expect("build fp16");
    assert_eq!(half.options().precision, runtime::Precision::Fp16);
    let mut cache = half.new_cache(1).expect("cache");
    let out = half
        .generate_with_static_cache(
            &mut cache,
            std::slice::from_ref(&r.prompts[0].ids),
            &greedy(CacheMode::StaticV1),
            &mut |_, _| {},
        )
        .expect("fp16");
    assert_eq!(out.tokens[0], want);
}

/// Save and load through the typed API; an engine file of another precision is refused with an error.
#[test]
fn tiny_llama_save_load_round_trip() {
    use tiny_llama::{Engine, Fp16, Fp32};
    let r = common::reference("tiny-llama");
    let engine =
        Engine::<Fp32>::build(&weights("tiny-llama"), options(), &NoProgress).expect("build");
    let path = std::env::temp_dir().join(format!("llmforge-typed-{}.engine", std::process::id()));
    engine.save(&path).expect("save");
    let loaded = Engine::<Fp32>::load(&path, options());
    let refused = Engine::<Fp16>::load(&path, options());
    std::fs::remove_file(&path).expect("remove the engine file");
    let mut loaded = loaded.expect("load");
    assert!(refused.is_err(), "an FP32 engine file loaded as FP16");
    let p = &r.prompts[0];
    assert_eq!(tiny_llama_greedy(&mut loaded, &p.ids), p.greedy);
}

/// tiny-llama's greedy continuation of `ids` through the typed static cache.
fn tiny_llama_greedy<P, Q>(engine: &mut tiny_llama::Engine<P, Q>, ids: &[u32]) -> Vec<u32>
where
    P: runtime::codegen::PrecisionMarker,
    Q: runtime::codegen::QuantMarker,
{
    let mut cache = engine.new_cache(1).expect("cache");
    let out = engine
        .generate_with_static_cache(
            &mut cache,
            &[ids.to_vec()],
            &greedy(CacheMode::StaticV1),
            &mut |_, _| {},
        )
        .expect("generate");
    out.tokens[0].clone()
}

/// The weight format is part of the engine's type: an engine built as `GgufBlocks` records
/// `--quant_format gguf` (a safetensors source has no blocks to keep, so its linears are dense and it
/// gives transformers' tokens), and its engine file loads as `GgufBlocks` only; a dense engine file
/// is refused as `GgufBlocks`.
#[test]
fn tiny_llama_weight_format_is_typed() {
    use runtime::format::QuantFormat;
    use tiny_llama::{Dense, Engine, Fp32, GgufBlocks};
    let r = common::reference("tiny-llama");
    let built = Engine::<Fp32, GgufBlocks>::build(&weights("tiny-llama"), options(), &NoProgress)
        .expect("build");
    assert_eq!(built.options().quant, QuantFormat::Gguf);
    let dense =
        Engine::<Fp32>::build(&weights("tiny-llama"), options(), &NoProgress).expect("build dense");
    assert_eq!(dense.options().quant, QuantFormat::None);
    let int8 = Engine::<Fp32, tiny_llama::Int8Weights>::build(
        &weights("tiny-llama"),
        options(),
        &NoProgress,
    )
    .expect("build int8");
    assert_eq!(int8.options().quant, QuantFormat::Int8);
    let dir = std::env::temp_dir();
    let kept_path = dir.join(format!("llmforge-typed-gguf-{}.engine", std::process::id()));
    let dense_path = dir.join(format!(
        "llmforge-typed-dense-{}.engine",
        std::process::id()
    ));
    built.save(&kept_path).expect("save");
    dense.save(&dense_path).expect("save dense");
    let as_dense = Engine::<Fp32, Dense>::load(&kept_path, options());
    let dense_as_kept = Engine::<Fp32, GgufBlocks>::load(&dense_path, options());
    let loaded = Engine::<Fp32, GgufBlocks>::load(&kept_path, options());
    std::fs::remove_file(&kept_path).expect("remove the engine file");
    std::fs::remove_file(&dense_path).expect("remove the engine file");
    for refused in [as_dense.err(), dense_as_kept.err()] {
        let e = refused
            .expect("an engine file of another format is refused")
            .to_string();
        assert!(e.contains("quant format"), "{e}");
    }
    let mut loaded = loaded.expect("load");
    let p = &r.prompts[0];
    assert_eq!(tiny_llama_greedy(&mut loaded, &p.ids), p.greedy);
}
