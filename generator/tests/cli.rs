//! The `generator` binary: `--check` exits non-zero naming every difference, a plain run fixes them,
//! `--model` touches one crate, an unknown model is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn generator(out: &Path, args: &[&str]) -> Output {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models.toml");
    Command::new(env!("CARGO_BIN_EXE_generator"))
        .arg("--manifest")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("generator runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_fails_naming_differences_and_a_run_fixes_them() {
    let out = std::env::temp_dir().join(format!("llmforge-gen-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    let fresh = generator(&out, &["--check"]);
    assert!(
        !fresh.status.success(),
        "check of an empty directory passed"
    );
    assert!(
        text(&fresh).contains("missing: registry/src/lib.rs"),
        "{}",
        text(&fresh)
    );

    let run = generator(&out, &[]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(generator(&out, &["--check"]).status.success());

    std::fs::write(out.join("tiny-llama/src/engine.rs"), "// edited\n").expect("edit");
    std::fs::create_dir_all(out.join("stray")).expect("stray dir");
    let stale = generator(&out, &["--check"]);
    assert!(!stale.status.success());
    let report = text(&stale);
    assert!(
        report.contains("stale: tiny-llama/src/engine.rs"),
        "{report}"
    );
    assert!(report.contains("extra: stray"), "{report}");

    let one = generator(&out, &["--model", "tiny-llama"]);
    assert!(one.status.success(), "{}", text(&one));
    assert!(
        text(&one).contains("wrote tiny-llama/src/engine.rs"),
        "{}",
        text(&one)
    );
    // The stray directory is outside that model's crate: still reported by a whole check.
    let report = text(&generator(&out, &["--check"]));
    assert!(
        !report.contains("stale:") && report.contains("extra: stray"),
        "{report}"
    );

    let unknown = generator(&out, &["--model", "no-such-model"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("no-such-model"),
        "{}",
        text(&unknown)
    );
    std::fs::remove_dir_all(&out).expect("clean up");
}
