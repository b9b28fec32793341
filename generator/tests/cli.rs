//! The `generator` binary: `--check` exits non-zero naming every difference, a plain run fixes them,
//! `--model` touches one crate, an unknown model is a clear error; every crate is printed with its
//! package name and its directory (no `..`, relative to the current directory when inside it); a
//! mistake in `models.toml` or a `config.json` exits with status 1 and one `error:` line naming the
//! file or the `models.toml` entry, never a panic or a backtrace.

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
    let engine_rs = out
        .canonicalize()
        .expect("out dir")
        .join("tiny-llama/src/engine.rs");
    assert!(
        text(&one).contains(&format!("wrote {}", engine_rs.display())),
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

/// A fresh scratch directory (by its canonical path) holding `models.toml` with `text` and the files
/// `files` (path relative to it, contents).
fn scratch(tag: &str, text: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmforge-gen-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let dir = dir.canonicalize().expect("scratch dir");
    std::fs::write(dir.join("models.toml"), text).expect("models.toml");
    for (rel, contents) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("file");
    }
    dir
}

/// A `models.toml` whose default model is `tiny`, with one `[[model]]` per (name, config path).
fn manifest_text(models: &[(&str, &str)]) -> String {
    let mut text = "default_model = \"tiny\"\n".to_string();
    for (name, config) in models {
        text += &format!(
            "\n[[model]]\nname = {name:?}\nhf_id = \"test/{name}\"\nconfig = {config:?}\n\
             precision = \"FP32\"\nmax_seq_len = 16\nbatch_size = 1\n\
             weights = [{{ kind = \"synthetic\", seed = 1 }}]\n"
        );
    }
    text
}

const TINY: (&str, &str) = (
    "models/tiny/config.json",
    include_str!("../../models/tiny-llama/config.json"),
);

/// The generator run in `dir` with `args` (`--manifest models.toml` unless they name one) and
/// RUST_BACKTRACE=1 (so that a backtrace would show).
fn generator_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_generator"));
    if !args.contains(&"--manifest") {
        cmd.args(["--manifest", "models.toml"]);
    }
    cmd.current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .output()
        .expect("generator runs")
}

/// A user's mistake: exit status 1, nothing on stdout, `error: ` then a message containing each of
/// `wants` on stderr, and no panic or backtrace.
fn assert_mistake(what: &str, o: &Output, wants: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: {}", text(o));
    assert!(o.stdout.is_empty(), "{what}: {}", text(o));
    assert!(err.starts_with("error: "), "{what}: {err}");
    for want in wants {
        assert!(err.contains(want), "{what}: {want:?} not in {err}");
    }
    for never in ["panicked", "backtrace", "Caused by"] {
        assert!(!err.contains(never), "{what}: {never:?} in {err}");
    }
}

#[test]
fn each_crate_is_printed_with_its_name_and_a_normalised_path() {
    let toml = manifest_text(&[("tiny", TINY.0), ("Tiny.Two", TINY.0)]);
    let dir = scratch("paths", &toml, &[TINY]);
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");

    // Inside the current directory: relative to it, without `.` or `..` segments.
    let o = generator_in(&dir, &["--manifest", "sub/../models.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "model \"tiny\" (models.toml entry 1): crate tiny in generated/tiny (7 written)\n",
        "model \"Tiny.Two\" (models.toml entry 2): crate tiny-two in generated/tiny-two (7 written)\n",
        "the registry of the 2 models: crate registry in generated/registry (3 written)\n",
        "wrote generated/tiny/src/lib.rs\n",
        "generated: 17 written, 0 removed, 0 unchanged\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    assert!(!out.contains(".."), "{out}");
    let o = generator_in(&dir, &["--manifest", "./models.toml", "--check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "model \"tiny\" (models.toml entry 1): crate tiny in generated/tiny (up to date)"
        ),
        "{out}"
    );
    assert!(out.ends_with("generated: 17 files up to date\n"), "{out}");

    // A stale crate is named in the --check listing.
    std::fs::write(dir.join("generated/tiny-two/src/cache.rs"), "// edited\n").expect("edit");
    let o = generator_in(&dir, &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("crate tiny-two in generated/tiny-two (1 stale)"),
        "{out}"
    );

    // Outside the current directory: absolute, still without `..`.
    let o = generator_in(
        &dir.join("sub"),
        &["--manifest", "../models.toml", "--model", "tiny"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let want = format!("crate tiny in {}/generated/tiny (unchanged)", dir.display());
    assert!(out.contains(&want), "{want:?} not in\n{out}");
    assert!(!out.contains(".."), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// What the case is, `models.toml`, one more file beside it (path, contents), the generator's
/// arguments and what its message must contain.
type Mistake<'a> = (
    &'a str,
    String,
    Option<(&'a str, &'a str)>,
    &'a [&'a str],
    &'a [&'a str],
);

#[test]
fn mistakes_exit_1_naming_the_file_or_the_entry_without_a_backtrace() {
    let tiny = ("tiny", TINY.0);
    let cases: [Mistake; 7] = [
        (
            "a missing config.json",
            manifest_text(&[tiny, ("gone", "models/gone/config.json")]),
            None,
            &[],
            &[
                "error: model \"gone\" (models.toml entry 2): config.json: cannot read \
                 models/gone/config.json: No such file",
            ],
        ),
        (
            "a config.json that is not JSON",
            manifest_text(&[tiny, ("junk", "models/junk/config.json")]),
            Some(("models/junk/config.json", "{\"model_type\":")),
            &[],
            &["error: model \"junk\" (models.toml entry 2): config.json is not valid JSON"],
        ),
        (
            "an architecture the runtime does not run",
            manifest_text(&[tiny, ("bert", "models/bert/config.json")]),
            Some(("models/bert/config.json", "{\"model_type\": \"bert\"}")),
            &[],
            &[
                "error: model \"bert\" (models.toml entry 2): config.json: unsupported model_type \"bert\"",
            ],
        ),
        (
            "a name that cannot be a crate",
            manifest_text(&[tiny, ("7b", TINY.0)]),
            None,
            &[],
            &[
                "error: model \"7b\" (models.toml entry 2): crate name \"7b\" must start with a letter",
            ],
        ),
        (
            "models.toml that is not TOML",
            "default_model = \"tiny\"\n[[model".to_string(),
            None,
            &[],
            &["error: models.toml: not valid TOML"],
        ),
        (
            "an entry with a field of the wrong type",
            manifest_text(&[tiny]).replace("batch_size = 1", "batch_size = \"one\""),
            None,
            &[],
            &["error: models.toml, model tiny: `batch_size`"],
        ),
        (
            "an unknown --model",
            manifest_text(&[tiny]),
            None,
            &["--model", "nope"],
            &["error: models.toml has no model named \"nope\""],
        ),
    ];
    for (i, (what, toml, config, args, wants)) in cases.iter().enumerate() {
        let files: Vec<(&str, &str)> = [TINY].into_iter().chain(*config).collect();
        let dir = scratch(&format!("mistake{i}"), toml, &files);
        assert_mistake(what, &generator_in(&dir, args), wants);
        let _ = std::fs::remove_dir_all(dir);
    }
    let o = generator_in(
        &std::env::temp_dir(),
        &["--manifest", "no/such/models.toml"],
    );
    assert_mistake(
        "no models.toml",
        &o,
        &["error: no/such/models.toml: No such file"],
    );
}
