use super::resolve::{hf_cache_snapshot_in, single_gguf};
use super::*;
use crate::precision::Precision;
use crate::weights::WeightSource;
use std::path::{Path, PathBuf};

const ONE: &str = r#"
default_model = "a"

[[model]]
name = "a"
hf_id = "org/a"
config = "models/a/config.json"
precision = "FP16"
max_seq_len = 128
batch_size = 2
weights = [{ kind = "hf_cache" }, { kind = "synthetic", seed = 7 }]
"#;

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(text, PathBuf::from("/base")).map_err(|e| e.to_string())
}

/// A fresh empty directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmforge-manifest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map(|_| dir)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn parses_a_model_entry() {
    let m = parse(ONE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.default_model, "a");
    let a = &m.models[0];
    assert_eq!((a.name.as_str(), a.hf_id.as_str()), ("a", "org/a"));
    assert_eq!(
        a.defaults(),
        ModelDefaults {
            precision: Precision::Fp16,
            max_seq_len: 128,
            batch_size: 2
        }
    );
    assert_eq!(
        a.weights,
        vec![
            WeightEntry::HfCache { id: None },
            WeightEntry::Synthetic { seed: 7 }
        ]
    );
    assert_eq!(
        m.config_path(a),
        PathBuf::from("/base/models/a/config.json")
    );
}

#[test]
fn duplicate_names_are_refused() {
    let twice = format!("{ONE}{}", ONE.replace("default_model = \"a\"", ""));
    let msg = parse(&twice).err().unwrap_or_default();
    assert!(msg.contains("\"a\" appears more than once"), "{msg}");
    // Different names that would give the same crate are refused too.
    let clash = format!(
        "{ONE}{}",
        ONE.replace("default_model = \"a\"", "")
            .replace("\"a\"", "\"A\"")
    );
    let msg = parse(&clash).err().unwrap_or_default();
    assert!(msg.contains("same crate name"), "{msg}");
}

#[test]
fn missing_field_names_model_and_field() {
    let msg = parse(&ONE.replace("hf_id = \"org/a\"\n", ""))
        .err()
        .unwrap_or_default();
    assert!(
        msg.contains("model a") && msg.contains("missing field `hf_id`"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let msg = parse(&ONE.replace("batch_size = 2", "batch_size = 2\ncolour = \"red\"")).err();
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("model a") && msg.contains("unknown field `colour`"),
        "{msg}"
    );
    let msg = parse(&ONE.replace("seed = 7", "seed = 7, extra = 1"))
        .err()
        .unwrap_or_default();
    assert!(msg.contains("model a") && msg.contains("extra"), "{msg}");
    let msg = parse(&ONE.replace("\"synthetic\"", "\"s3\""))
        .err()
        .unwrap_or_default();
    assert!(msg.contains("model a") && msg.contains("s3"), "{msg}");
    let msg = parse(&format!("colour = 1\n{ONE}"))
        .err()
        .unwrap_or_default();
    assert!(msg.contains("unknown top-level key `colour`"), "{msg}");
}

#[test]
fn bad_values_are_refused() {
    let msg = parse(&ONE.replace("\"FP16\"", "\"INT3\""))
        .err()
        .unwrap_or_default();
    assert!(msg.contains("model a") && msg.contains("INT3"), "{msg}");
    let msg = parse(&ONE.replace("batch_size = 2", "batch_size = 0"))
        .err()
        .unwrap_or_default();
    assert!(
        msg.contains("model a") && msg.contains("`batch_size`"),
        "{msg}"
    );
    let msg = parse(&ONE.replace("default_model = \"a\"", "default_model = \"b\"")).err();
    assert!(msg.unwrap_or_default().contains("\"b\" is not one of"));
    let msg = parse(&ONE.replace("name = \"a\"", "name = \"a/b\""))
        .err()
        .unwrap_or_default();
    assert!(msg.contains("model a/b") && msg.contains("`name`"), "{msg}");
}

#[test]
fn slugs() {
    assert_eq!(slug("Qwen2.5-0.5B-Instruct"), "qwen2-5-0-5b-instruct");
    assert_eq!(slug("Llama-3.1-8B-Instruct"), "llama-3-1-8b-instruct");
    assert_eq!(slug("gpt2"), "gpt2");
}

#[test]
fn relative_paths_resolve_against_the_manifest_dir() {
    let base = scratch("hfdir");
    let snap = base.join("models/x");
    std::fs::create_dir_all(&snap).unwrap_or_else(|e| panic!("{e}"));
    let entry = WeightEntry::HfDir {
        path: "models/x".into(),
    };
    let missing = resolve_entry("org/x", &entry, &base)
        .err()
        .map(|e| e.to_string());
    assert!(
        missing
            .unwrap_or_default()
            .contains("neither model.safetensors")
    );
    std::fs::write(snap.join("model.safetensors"), b"").unwrap_or_else(|e| panic!("{e}"));
    let r = resolve_entry("org/x", &entry, &base).map_err(|e| e.to_string());
    assert_eq!(r, Ok(WeightSource::HfDir(base.join("models/x"))));
}

#[test]
fn first_present_source_wins_and_failures_are_listed() {
    let base = scratch("order");
    let entries = [
        WeightEntry::Gguf {
            path: "nope.gguf".into(),
        },
        WeightEntry::Synthetic { seed: 3 },
    ];
    let r = resolve_weights("m", "org/m", &entries, &base).map_err(|e| e.to_string());
    assert_eq!(r, Ok(WeightSource::Synthetic { seed: 3 }));
    let msg = resolve_weights("m", "org/m", &entries[..1], &base)
        .err()
        .map(|e| e.to_string());
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("model m: no weights found") && msg.contains("nope.gguf"),
        "{msg}"
    );
}

#[test]
fn hf_cache_layout() {
    let hub = scratch("hub");
    let repo = hub.join("models--org--m");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(repo.join("refs")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.join("refs/main"), "abc123\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(hf_cache_snapshot_in(&hub, "org/m").is_err());
    std::fs::write(snap.join("model.safetensors.index.json"), "{}")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hf_cache_snapshot_in(&hub, "org/m").map_err(|e| e.to_string()),
        Ok(snap)
    );
    let msg = hf_cache_snapshot_in(&hub, "org/other")
        .err()
        .map(|e| e.to_string());
    assert!(
        msg.unwrap_or_default()
            .contains("org/other is not in the Hugging Face cache")
    );
}

#[test]
fn package_gguf_lookup() {
    let dir = scratch("pkg");
    assert!(single_gguf("p", &dir).is_err());
    std::fs::write(dir.join("m.Q4_1.gguf"), b"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        single_gguf("p", &dir).map_err(|e| e.to_string()),
        Ok(dir.join("m.Q4_1.gguf"))
    );
    std::fs::write(dir.join("n.gguf"), b"").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        single_gguf("p", &dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("2 .gguf")
    );
}

#[test]
fn missing_package_is_a_clear_error() {
    let msg = locate_python_package("llmforge-no-such-package")
        .err()
        .map(|e| e.to_string());
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("llmforge-no-such-package is not installed"),
        "{msg}"
    );
    assert!(
        msg.contains("pip install --no-deps llmforge-no-such-package"),
        "{msg}"
    );
}

#[test]
fn the_project_manifest_loads_and_every_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml");
    let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.default_model, "SmolLM2-135M-Instruct");
    for model in &m.models {
        let spec = crate::config::load_config_file(&model.name, &m.config_path(model));
        let spec = spec.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            model.max_seq_len <= spec.max_position_embeddings,
            "{}",
            model.name
        );
    }
}
