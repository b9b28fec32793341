//! Snapshot tests: the crates emitted for the tiny test models (`models.toml` entries `tiny-*`) against
//! committed copies in `tests/snapshots/<crate>/<file>.snap`. A difference fails with a line diff; new
//! output is accepted only by re-running with `BLESS=1`.

use generator::{ModelInput, emit};
use llmforge_spec::manifest::Manifest;
use std::path::{Path, PathBuf};

const MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"];

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The changed region of two texts: the common head and tail are skipped, the rest is shown as
/// `-` (committed) and `+` (emitted) lines with their line numbers.
fn diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = format!("first difference at line {}:\n", head + 1);
    for (i, line) in a[head..a.len() - tail].iter().enumerate() {
        out += &format!("-{:>5} {line}\n", head + i + 1);
    }
    for (i, line) in b[head..b.len() - tail].iter().enumerate() {
        out += &format!("+{:>5} {line}\n", head + i + 1);
    }
    out
}

fn snapshot_path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(format!("{rel}.snap"))
}

#[test]
fn tiny_model_crates_match_their_snapshots() {
    let manifest = Manifest::load(&here().join("../models.toml")).expect("models.toml");
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for name in MODELS {
        let entry = manifest
            .get(name)
            .unwrap_or_else(|| panic!("models.toml lists {name}"));
        let input = ModelInput::load(&manifest, entry).expect("config parses");
        let dir = here().join("tests/snapshots").join(&input.package);
        for (rel, text) in emit::model_crate(&input).expect("emits") {
            let path = snapshot_path(&dir, &rel);
            if bless {
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, &text).expect("write snapshot");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(want) if want == text => {}
                Ok(want) => failures.push(format!("{}:\n{}", path.display(), diff(&want, &text))),
                Err(e) => failures.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "emitted crates differ from their snapshots (re-run with BLESS=1 to accept):\n\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_diff_names_the_changed_lines() {
    let d = diff("a\nb\nc\n", "a\nB\nc\n");
    assert_eq!(d, "first difference at line 2:\n-    2 b\n+    2 B\n");
}
