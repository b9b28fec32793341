//! GGUF tokenizers beyond GPT-2's byte-level BPE against llama.cpp: the vocab-only files of
//! `tests/fixtures/gguf-tokenizers/` (Llama 3's `llama-bpe` and Qwen2's `qwen2` split regexes over
//! byte-level BPE, and a SentencePiece BPE `llama` tokenizer with byte fallback) and the ids
//! llama.cpp gives for a set of hard strings, all made by `scripts/make_gguf_tokenizer_fixtures.py`.
//! Our ids must be llama.cpp's, with and without the file's special tokens, decoding must give back the
//! text encoded, and streaming must give the same text piece by piece. A pre-tokenizer or tokenizer
//! model we do not know, or a SentencePiece file without scores, is refused naming the key.

mod hostile_common;

use hostile_common::{Scratch, assert_names, err_msg, root};
use runtime::tokenize::Tokenizer;
use runtime::weights::gguf::GgufFile;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    root().join(format!("tests/fixtures/gguf-tokenizers/{name}.gguf"))
}

fn reference(name: &str) -> Value {
    let path = root().join("tests/fixtures/gguf-tokenizers/reference.json");
    let text = std::fs::read_to_string(path)
        .expect("reference (run scripts/make_gguf_tokenizer_fixtures.py)");
    let all: Value = serde_json::from_str(&text).expect("reference JSON");
    all[name].clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn load(name: &str) -> Tokenizer {
    let file = GgufFile::open(&fixture(name)).expect("fixture opens");
    Tokenizer::from_gguf(&file).expect("tokenizer from GGUF")
}

/// Every case of `name`'s reference: llama.cpp's ids, lossless decoding, streaming.
fn check_against_llama_cpp(name: &str) {
    let tok = load(name);
    let cases = reference(name)["cases"].clone();
    let mut mismatches = Vec::new();
    for case in cases.as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let plain = tok.encode(text, false).expect("encode");
        if plain != ids(&case["ids"]) {
            mismatches.push(format!(
                "{text:?}: ours {plain:?}, llama.cpp {:?}",
                ids(&case["ids"])
            ));
        }
        let special = tok.encode(text, true).expect("encode with special tokens");
        if special != ids(&case["ids_with_special"]) {
            mismatches.push(format!(
                "{text:?} with special tokens: ours {special:?}, llama.cpp {:?}",
                ids(&case["ids_with_special"])
            ));
        }
        if !case["round_trip"].as_bool().expect("round_trip") {
            continue;
        }
        for ids in [&plain, &special] {
            let decoded = tok.decode(ids).expect("decode");
            assert_eq!(decoded, text, "{name}: decode of the ids of {text:?}");
            let mut stream = tok.stream();
            let mut streamed = String::new();
            for &id in ids {
                streamed.push_str(&stream.push(id).expect("stream"));
            }
            streamed.push_str(&stream.finish().expect("finish"));
            assert_eq!(streamed, text, "{name}: streamed ids of {text:?}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: ids differ from llama.cpp's:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    check_against_llama_cpp("llama-bpe");
    let tok = load("llama-bpe");
    assert_eq!(tok.bos_id(), tok.token_to_id("<|begin_of_text|>"));
    assert_eq!(
        tok.eos_ids(),
        &[tok.token_to_id("<|end_of_text|>").unwrap()]
    );
    // The file has no add_bos_token; llama.cpp adds BOS for llama-bpe all the same.
    assert_eq!(tok.encode("hi", true).unwrap()[0], tok.bos_id().unwrap());
}

#[test]
fn qwen2_matches_llama_cpp() {
    check_against_llama_cpp("qwen2");
    let tok = load("qwen2");
    assert_eq!(tok.eos_ids(), &[tok.token_to_id("<|im_end|>").unwrap()]);
    // add_bos_token is false.
    assert_eq!(
        tok.encode("hi", true).unwrap(),
        tok.encode("hi", false).unwrap()
    );
}

#[test]
fn sentencepiece_matches_llama_cpp() {
    check_against_llama_cpp("llama-spm");
    let tok = load("llama-spm");
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    // Emoji are not in the vocabulary: their bytes' tokens come out, and decode back to the emoji.
    let ids = tok.encode("🚀", false).unwrap();
    let rocket = ["<0xF0>", "<0x9F>", "<0x9A>", "<0x80>"].map(|t| tok.token_to_id(t).unwrap());
    assert!(ids.ends_with(&rocket), "{ids:?}");
}

/// `name`'s fixture with `from` replaced by `to` (of the same length, so the file stays well formed).
fn patched(scratch: &Scratch, name: &str, from: &str, to: &str) -> GgufFile {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(fixture(name)).expect("fixture");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from:?} in {name}"));
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    let path = scratch.join(&format!("{name}.gguf"));
    std::fs::write(&path, bytes).expect("write");
    GgufFile::open(&path).expect("patched file opens")
}

#[test]
fn unknown_pre_tokenizers_and_models_are_refused_by_name() {
    let scratch = Scratch::new("gguf-tokenizers");
    let file = patched(&scratch, "llama-bpe", "llama-bpe", "llama-xyz");
    let msg = err_msg("pre", Tokenizer::from_gguf(&file));
    assert_names(
        "pre",
        &msg,
        &[
            "tokenizer.ggml.pre",
            "llama-xyz",
            "llama-bpe",
            "qwen2",
            "gpt2",
        ],
    );

    let file = patched(
        &scratch,
        "qwen2",
        "\x04\0\0\0\0\0\0\0gpt2",
        "\x04\0\0\0\0\0\0\0bert",
    );
    let msg = err_msg("model", Tokenizer::from_gguf(&file));
    assert_names(
        "model",
        &msg,
        &["tokenizer.ggml.model", "bert", "\"gpt2\"", "\"llama\""],
    );
}

#[test]
fn sentencepiece_without_scores_is_refused() {
    let scratch = Scratch::new("gguf-tokenizers-scores");
    let file = patched(
        &scratch,
        "llama-spm",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.scorez",
    );
    let msg = err_msg("scores", Tokenizer::from_gguf(&file));
    assert_names("scores", &msg, &["tokenizer.ggml.scores", "missing"]);
}
