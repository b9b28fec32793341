//! The committed fuzz corpora, replayed as ordinary tests (no nightly toolchain needed): every seed
//! under `fuzz/corpus/<target>/` parses, and every input under `fuzz/regressions/<target>/` (inputs
//! that once crashed a parser, see docs/fuzzing.md) is refused with an error instead.

mod hostile_common;

use hostile_common::root;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// What each fuzz target runs, as `Ok(())` or the error message.
fn run(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "config" => runtime::config::parse_config("fuzz", data)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "manifest" => {
            let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
            runtime::manifest::Manifest::parse(text, PathBuf::from("/fuzz"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "safetensors_header" => {
            runtime::weights::safetensors::parse_bytes(Path::new("<fuzz>"), data)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "engine_file" => {
            let (_, end) = runtime::engine_file::parse_header(data).map_err(|e| e.to_string())?;
            let mut payload = &data[end..];
            let len = payload.len() as u64;
            runtime::backend::cpu::payload::read(&mut payload, len)
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
        // A GGUF need not describe a model (the quantisation fixture does not); when it does, its
        // weights must load or be refused.
        "gguf" => {
            let file = open_gguf(data)?;
            match file.spec("fuzz") {
                Ok(spec) => file
                    .canonical_weights(&spec)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(_) => Ok(()),
            }
        }
        "tokenizer_json" => {
            let path = Path::new("<fuzz>/tokenizer.json");
            runtime::tokenize::Tokenizer::from_json_bytes(path, data, Vec::new(), None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        other => panic!("no fuzz target {other}"),
    }
}

const TARGETS: [&str; 6] = [
    "config",
    "manifest",
    "safetensors_header",
    "engine_file",
    "gguf",
    "tokenizer_json",
];

/// The GGUF reader maps files: write `data` to a scratch file and open it.
fn open_gguf(data: &[u8]) -> Result<runtime::weights::gguf::GgufFile, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "llmforge-hostile-corpus-{}-{}.gguf",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data).map_err(|e| e.to_string())?;
    let r = runtime::weights::gguf::GgufFile::open(&path).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    r
}

#[test]
fn every_seed_parses() {
    for target in TARGETS {
        let seeds = files(&root().join("fuzz/corpus").join(target));
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for seed in seeds {
            let data = std::fs::read(&seed).expect("read seed");
            if let Err(e) = run(target, &data) {
                panic!("{}: {e}", seed.display());
            }
        }
    }
}

#[test]
fn every_regression_input_is_refused() {
    for target in TARGETS {
        for input in files(&root().join("fuzz/regressions").join(target)) {
            let data = std::fs::read(&input).expect("read input");
            assert!(run(target, &data).is_err(), "{} accepted", input.display());
        }
    }
}

#[test]
fn the_gguf_seed_reaches_spec_tokenizer_and_weights() {
    // The mini Llama seed is only useful to the fuzzer if every stage after the header accepts it.
    let data = std::fs::read(root().join("fuzz/corpus/gguf/mini-llama.gguf")).expect("seed");
    let file = open_gguf(&data).expect("opens");
    let spec = file.spec("mini").expect("spec");
    assert_eq!(
        (spec.hidden_size, spec.num_layers, spec.vocab_size),
        (8, 1, 8)
    );
    let tok = runtime::tokenize::Tokenizer::from_gguf(&file).expect("tokenizer");
    assert_eq!(tok.vocab_size(), 8);
    assert!(file.canonical_weights(&spec).is_ok());
}

#[test]
fn a_gguf_attention_weight_with_zero_rows_is_refused() {
    // Found by the `gguf` fuzz target: a Q projection with a zero first dimension made the Q/K
    // un-permutation divide by zero.
    let data =
        std::fs::read(root().join("fuzz/regressions/gguf/zero-row-attn-q.gguf")).expect("input");
    let msg = run("gguf", &data).expect_err("refused");
    assert!(msg.contains("0 rows cannot be split"), "{msg}");
}

#[test]
fn a_tokenizer_that_panics_inside_the_tokenizers_crate_is_refused() {
    // Found by the `tokenizer_json` fuzz target: valid JSON whose decoder the `tokenizers` crate
    // `expect`s to parse.
    let path = root().join("fuzz/regressions/tokenizer_json/decoder-helper-panic.json");
    let data = std::fs::read(path).expect("input");
    let msg = run("tokenizer_json", &data).expect_err("refused");
    assert!(msg.contains("the tokenizers library failed on it"), "{msg}");
}
