//! Hostile tokenizer files: something that is not a `tokenizer.json` (absent, a directory, empty,
//! binary, another JSON file, a weights file, a half-downloaded tokenizer), broken sibling files that
//! carry the special ids, GGUF files without tokenizer metadata, and ids outside the vocabulary while
//! streaming. Each is an error naming the file (or key, or id) and the problem.

mod hostile_common;

use hostile_common::{Scratch, assert_names, err_msg, root};
use runtime::tokenize::Tokenizer;
use runtime::weights::gguf::GgufFile;

fn tiny_tokenizer() -> Vec<u8> {
    std::fs::read(root().join("models/tiny-llama/tokenizer.json")).expect("fixture")
}

#[test]
fn files_that_are_not_tokenizers() {
    let dir = Scratch::new("tok-files");
    let path = dir.join("tokenizer.json");
    let msg = err_msg("absent", Tokenizer::from_file(&path));
    assert_names("absent", &msg, &["tokenizer.json", "No such file"]);
    let msg = err_msg("directory", Tokenizer::from_file(dir.path()));
    assert_names("directory", &msg, &[&dir.path().display().to_string()]);

    let config = std::fs::read(root().join("models/tiny-llama/config.json")).expect("config");
    let safetensors =
        std::fs::read(root().join("models/tiny-llama/model.safetensors")).expect("st");
    let gguf = std::fs::read(root().join("tests/fixtures/gguf/quants.gguf")).expect("gguf");
    let cases: [(&str, &[u8]); 8] = [
        ("empty", b""),
        ("binary", b"\x00\xff\x13\x37"),
        ("a config.json", &config),
        ("a safetensors file", &safetensors[..4096]),
        ("a GGUF file", &gguf),
        (
            "the wrong model type",
            br#"{"model": {"type": "Unigram", "vocab": "x"}}"#,
        ),
        // Both once panicked inside the tokenizers crate (0.23.2): a decoder cut short, and a
        // normaliser whose character map is not base64.
        ("a truncated decoder", br#"{"decoder": {"type": "#),
        (
            "a bad precompiled normaliser",
            br#"{"normalizer": {"type": "Precompiled", "precompiled_charsmap": "!!"}}"#,
        ),
    ];
    for (what, bytes) in cases {
        std::fs::write(&path, bytes).expect("write");
        let msg = err_msg(what, Tokenizer::from_file(&path));
        assert_names(
            what,
            &msg,
            &["cannot load the tokenizer from", "tokenizer.json"],
        );
    }
}

#[test]
fn a_half_downloaded_tokenizer() {
    let dir = Scratch::new("tok-cut");
    let path = dir.join("tokenizer.json");
    let bytes = tiny_tokenizer();
    let end = bytes
        .iter()
        .rposition(|&b| b == b'}')
        .expect("closing brace");
    for len in (0..end).step_by(31) {
        std::fs::write(&path, &bytes[..len]).expect("write");
        let msg = err_msg("prefix", Tokenizer::from_file(&path));
        assert_names(
            &format!("prefix {len}"),
            &msg,
            &["cannot load the tokenizer from"],
        );
    }
    std::fs::write(&path, &bytes).expect("write");
    assert!(Tokenizer::from_file(&path).is_ok(), "the whole file loads");
}

#[test]
fn broken_special_id_files_beside_the_tokenizer() {
    let dir = Scratch::new("tok-siblings");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tiny_tokenizer()).expect("write");
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "generation_config.json",
            "{\"eos_token_id\": ",
            &["generation_config.json"],
        ),
        (
            "generation_config.json",
            "[2]",
            &["generation_config.json", "not a JSON object"],
        ),
        (
            "config.json",
            "{\"eos_token_id\": \"</s>\"}",
            &["config.json", "`eos_token_id`"],
        ),
        (
            "config.json",
            "{\"bos_token_id\": -1}",
            &["config.json", "`bos_token_id`"],
        ),
    ];
    for (file, text, want) in cases {
        let sibling = dir.join(file);
        std::fs::write(&sibling, text).expect("write");
        let msg = err_msg(file, Tokenizer::from_file(&path));
        assert_names(&format!("{file}: {text}"), &msg, want);
        std::fs::remove_file(&sibling).expect("rm");
    }
}

#[test]
fn a_gguf_without_a_tokenizer() {
    // The quantisation fixture holds tensors and test metadata, no `tokenizer.ggml.*` keys.
    let file = GgufFile::open(&root().join("tests/fixtures/gguf/quants.gguf")).expect("fixture");
    let msg = err_msg("no tokenizer", Tokenizer::from_gguf(&file));
    assert_names("no tokenizer", &msg, &["quants.gguf", "tokenizer.ggml"]);
}

#[test]
fn ids_outside_the_vocabulary_while_streaming() {
    let tok = Tokenizer::from_file(&root().join("models/tiny-llama/tokenizer.json")).expect("load");
    let vocab = tok.vocab_size() as u32;
    let mut stream = tok.stream();
    assert!(stream.push(70).is_ok());
    let msg = err_msg("stream", stream.push(vocab + 5));
    assert_names("stream", &msg, &[&format!("token id {}", vocab + 5)]);
    let msg = err_msg("decode", tok.decode(&[u32::MAX]));
    assert_names(
        "decode",
        &msg,
        &[&u32::MAX.to_string(), "outside the vocabulary"],
    );
}
