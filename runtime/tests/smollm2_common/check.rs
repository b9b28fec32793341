//! SmolLM2-135M-Instruct against transformers' outputs on the same GGUF (`tests/fixtures/smollm2/`,
//! made by `scripts/smollm2_reference.py`, with transformers' top 2 along each greedy continuation from
//! `scripts/make_greedy_top2.py`), on any device and precision: prompt text and ids equal,
//! last-position logits within a relative bound (max abs diff / max abs reference), greedy tokens as
//! far as [`Greedy`] says (`common/greedy.rs`).

#[path = "../common/greedy.rs"]
pub mod greedy;

use super::root;
use greedy::{ALL_TOKENS, Continuation, check_greedy};
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::chat::{ChatTemplate, Message};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::tokenize::Tokenizer;
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use serde_json::Value;
use std::path::PathBuf;

const MAX_SEQ: usize = 128;

/// How much of the greedy continuation must equal the reference.
#[derive(Clone, Copy, PartialEq)]
pub enum Greedy {
    /// Every token and the decoded text.
    All,
    /// At least `min` tokens; where the run parts from transformers' after that, it must be at a
    /// near-tie: our token transformers' second and its top-2 gap at most `max_gap` of the largest
    /// logit (`check_greedy`).
    Prefix { min: usize, max_gap: f32 },
}

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

/// transformers' top 2 along each case's greedy tokens, by case name.
fn reference_top2() -> Vec<(String, Continuation)> {
    let path = root().join("tests/fixtures/smollm2/greedy_top2.json");
    let text =
        std::fs::read_to_string(path).expect("greedy_top2.json (run scripts/make_greedy_top2.py)");
    let v: Value = serde_json::from_str(&text).expect("greedy_top2 JSON");
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                greedy::continuation(c),
            )
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Build the engine from the GGUF at `path` on `device` in `precision` and compare both reference cases.
pub fn check(path: PathBuf, device: DeviceChoice, precision: Precision, tol: f32, greedy: Greedy) {
    let r = reference();
    let file = GgufFile::open(&path).unwrap();
    let spec = file.spec("SmolLM2-135M-Instruct").unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file)
        .unwrap()
        .expect("chat template");
    let options = BuildOptions {
        precision,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device,
        quant: runtime::format::QuantFormat::None,
    };
    let vocab = spec.vocab_size;
    let mut engine = Engine::build(spec, &WeightSource::Gguf(path), options, &NoProgress).unwrap();
    let want_logits = reference_logits(vocab);
    let top2 = reference_top2();

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
        eprintln!(
            "{name} {precision}: last-position logits max|diff| = {diff:e}, relative {rel:e}"
        );
        assert!(
            rel <= tol,
            "{name} {precision}: relative logits error {rel:e} > {tol:e}"
        );

        let want_tokens = ids(&case["greedy"]);
        let opts = GenerateOptions {
            max_new_tokens: want_tokens.len(),
            stop_at_eos: false,
            ..GenerateOptions::default()
        };
        let mut cache = engine.new_cache(1).unwrap();
        let out =
            generate_with_static_cache(&mut engine, &mut cache, &[prompt], &opts, &mut |_, _| {})
                .unwrap();
        let got = &out.tokens[0];
        let (top2_name, hf) = &top2[i];
        assert_eq!(top2_name, name, "greedy_top2.json: cases in another order");
        let label = format!("{name} {precision}");
        match greedy {
            Greedy::All => {
                check_greedy(&label, got, &want_tokens, hf, ALL_TOKENS, 0.0);
                assert_eq!(
                    tokenizer.decode(got).unwrap(),
                    case["decoded"].as_str().unwrap(),
                    "{name}: decoded text"
                );
            }
            Greedy::Prefix { min, max_gap } => {
                check_greedy(&label, got, &want_tokens, hf, min, max_gap);
            }
        }
    }
}
