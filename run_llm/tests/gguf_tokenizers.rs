//! GGUF files whose tokenizer is Llama 3's (`llama-bpe`), Qwen2's (`qwen2`) or Llama 2's SentencePiece
//! (`llama`), run end to end from a text prompt: each of tests/fixtures/gguf-tokenizers/ is a one-layer
//! model of random weights carrying its tokenizer (scripts/make_gguf_tokenizer_fixtures.py). The prompt's
//! ids must be llama.cpp's for the same file (reference.json), and the text the generated ids decoded.

mod common;
use common::*;
use runtime::tokenize::Tokenizer;
use runtime::weights::gguf::GgufFile;
use serde_json::Value;

const PROMPT: &str = "Hello, world!";

#[test]
fn gguf_models_with_llama_bpe_qwen2_and_sentencepiece_tokenizers_run_from_text() {
    let dir = root().join("tests/fixtures/gguf-tokenizers");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    for name in ["llama-bpe", "qwen2", "llama-spm"] {
        let file = dir.join(format!("{name}.gguf"));
        let case = reference[name]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["text"] == PROMPT)
            .expect("the prompt is a reference case");
        let v = json(&mut command(&[
            "--model",
            file.to_str().unwrap(),
            "--prompt",
            PROMPT,
            "--num_tokens",
            "4",
            "--precision",
            "FP32",
            "--device",
            "cpu",
            "--json",
        ]));
        assert_eq!(
            ids(&v["prompt_ids"]),
            ids(&case["ids_with_special"]),
            "{name}: prompt ids"
        );
        let tokens = ids(&v["tokens"]);
        assert_eq!(tokens.len(), 4, "{name}");
        let tok = Tokenizer::from_gguf(&GgufFile::open(&file).unwrap()).unwrap();
        assert_eq!(v["text"], tok.decode(&tokens).unwrap(), "{name}: text");
    }
}
