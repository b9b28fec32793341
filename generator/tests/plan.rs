//! The generator as a library: deterministic output, `@generated` headers, `--check` naming stale,
//! missing and extra files, writing only what changed, and errors that name the models.toml entry.

use generator::check::check;
use generator::write::write;
use llmforge_spec::manifest::Manifest;
use std::path::{Path, PathBuf};

fn manifest() -> Manifest {
    Manifest::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models.toml"))
        .expect("models.toml")
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmforge-gen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn output_is_deterministic_and_every_file_says_it_is_generated() {
    let m = manifest();
    let a = generator::plan(&m, None).expect("plan");
    let b = generator::plan(&m, None).expect("plan");
    assert_eq!(a, b);
    assert!(a.whole);
    for (path, text) in &a.files {
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains("@generated"), "{}: {first}", path.display());
        assert!(first.contains("models.toml"), "{}: {first}", path.display());
    }
    // Model crates name their entry and the sha256 of their config.json.
    for entry in &m.models {
        let spec = llmforge_spec::config::load_config_file(&entry.name, &m.config_path(entry))
            .expect("config");
        let lib = a
            .files
            .iter()
            .find(|(p, _)| {
                p.ends_with(Path::new("src/lib.rs"))
                    && p.starts_with(llmforge_spec::manifest::slug(&entry.name))
            })
            .map(|(_, t)| t)
            .expect("a lib.rs per model");
        let first = lib.lines().next().unwrap_or_default();
        assert!(first.contains(&format!("{:?}", entry.name)), "{first}");
        assert!(first.contains(&spec.config_hash), "{first}");
    }
}

#[test]
fn check_names_stale_missing_and_extra_files_and_write_fixes_them() {
    let m = manifest();
    let plan = generator::plan(&m, None).expect("plan");
    let root = scratch("check");
    let first = write(&root, &plan).expect("write");
    assert_eq!(first.written.len(), plan.files.len());
    assert!(check(&root, &plan).expect("check").is_clean());

    let stale = PathBuf::from("tiny-llama/src/cache.rs");
    std::fs::write(root.join(&stale), "// edited by hand\n").expect("edit");
    let missing = PathBuf::from("tiny-gpt2/README.md");
    std::fs::remove_file(root.join(&missing)).expect("remove");
    std::fs::write(root.join("tiny-qwen2/src/extra.rs"), "").expect("extra file");
    std::fs::create_dir_all(root.join("old-model/src")).expect("extra dir");
    std::fs::write(root.join("old-model/src/lib.rs"), "").expect("extra dir file");

    let report = check(&root, &plan).expect("check");
    assert_eq!(report.stale, vec![stale.clone()]);
    assert_eq!(report.missing, vec![missing.clone()]);
    assert_eq!(
        report.extra,
        vec![
            PathBuf::from("old-model"),
            PathBuf::from("tiny-qwen2/src/extra.rs")
        ]
    );
    let lines = report.lines();
    assert!(
        lines.contains(&"stale: tiny-llama/src/cache.rs".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"extra: old-model".to_string()), "{lines:?}");

    // One model's plan only looks at that model's directory.
    let one = generator::plan(&m, Some("tiny-llama")).expect("plan one");
    let report = check(&root, &one).expect("check one");
    assert_eq!(
        (report.stale, report.missing, report.extra.len()),
        (vec![stale.clone()], vec![], 0)
    );

    let fixed = write(&root, &plan).expect("rewrite");
    let mut written = fixed.written.clone();
    written.sort();
    assert_eq!(written, vec![missing, stale]);
    assert_eq!(fixed.removed.len(), 2);
    assert!(check(&root, &plan).expect("check").is_clean());
    std::fs::remove_dir_all(&root).expect("clean up");
}

#[test]
fn unknown_model_is_refused_by_name() {
    let err = generator::plan(&manifest(), Some("no-such-model")).expect_err("unknown model");
    assert!(err.to_string().contains("no-such-model"), "{err}");
}

#[test]
fn crate_names_follow_the_model_name_and_refuse_what_cannot_be_a_crate() {
    let names = generator::crate_names("Qwen2.5-0.5B-Instruct").expect("valid");
    assert_eq!(
        names,
        (
            "qwen2-5-0-5b-instruct".to_string(),
            "qwen2_5_0_5b_instruct".to_string()
        )
    );
    for bad in ["7b-model", "fn", "runtime", "run-llm", "std"] {
        let err = generator::crate_names(bad).expect_err(bad).to_string();
        assert!(err.contains(bad), "{err}");
    }
}

#[test]
fn an_entry_error_names_the_model_and_its_position_in_models_toml() {
    let mut text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models.toml"))
            .expect("models.toml");
    text = text.replace(
        "config = \"models/tiny-qwen2/config.json\"",
        "config = \"models/tiny-qwen2/absent.json\"",
    );
    let m = Manifest::parse(&text, PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .expect("parses");
    let entry = 1 + m
        .models
        .iter()
        .position(|e| e.name == "tiny-qwen2")
        .expect("listed");
    let err = generator::plan(&m, None)
        .expect_err("a missing config")
        .to_string();
    let want =
        format!("model \"tiny-qwen2\" (models.toml entry {entry}): config.json: cannot read ");
    assert!(err.starts_with(&want), "{err}");
    assert!(
        err.contains("models/tiny-qwen2/absent.json") && !err.contains(".."),
        "{err}"
    );
}
