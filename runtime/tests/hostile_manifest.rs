//! Hostile `models.toml` files beyond the per-key refusals of `runtime/src/manifest/tests.rs`
//! (missing field, duplicate name, unknown key): absent, half-written or binary files, values of the
//! wrong type, and weight sources that point nowhere. Every case is an error naming the problem.

mod hostile_common;

use hostile_common::{Scratch, assert_names, err_msg, root};
use runtime::manifest::{Manifest, ResolveWeights};

const ONE: &str = r#"default_model = "m"

[[model]]
name = "m"
hf_id = "org/m"
config = "models/m/config.json"
precision = "FP32"
max_seq_len = 64
batch_size = 1
weights = [{ kind = "hf_dir", path = "models/m" }]
"#;

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(text, root()).map_err(|e| e.to_string())
}

#[test]
fn the_base_manifest_parses() {
    assert!(parse(ONE).is_ok());
}

#[test]
fn files_that_are_not_manifests() {
    let dir = Scratch::new("mf-files");
    let path = dir.join("models.toml");
    let msg = err_msg("absent", Manifest::load(&path));
    assert_names("absent", &msg, &["models.toml", "No such file"]);
    let msg = err_msg("directory", Manifest::load(dir.path()));
    assert_names("directory", &msg, &[&dir.path().display().to_string()]);
    std::fs::write(&path, b"\xff\xfe\x00binary").expect("write");
    let msg = err_msg("binary", Manifest::load(&path));
    assert_names("binary", &msg, &["models.toml"]);
    std::fs::write(&path, "{\"default_model\": \"m\"}").expect("write");
    let msg = err_msg("json", Manifest::load(&path));
    assert_names("json", &msg, &["models.toml", "not valid TOML"]);
}

#[test]
fn every_cut_of_the_project_manifest_is_refused_or_complete() {
    // A half-written models.toml either fails with a message, or (cut between entries) is a shorter
    // valid manifest; it never panics.
    let text = std::fs::read_to_string(root().join("models.toml")).expect("models.toml");
    let full = parse(&text).expect("project manifest");
    let mut refused = 0;
    for (len, _) in text.char_indices() {
        match parse(&text[..len]) {
            Err(msg) => {
                assert!(msg.starts_with("models.toml"), "cut {len}: {msg}");
                refused += 1;
            }
            Ok(m) => {
                assert!(m.models.len() <= full.models.len());
                assert!(
                    full.models.starts_with(&m.models[..m.models.len() - 1]),
                    "cut {len}"
                );
            }
        }
    }
    assert!(
        refused > text.len() / 2,
        "{refused} of {} cuts refused",
        text.len()
    );
}

#[test]
fn values_of_the_wrong_type() {
    for (from, to, want) in [
        ("max_seq_len = 64", "max_seq_len = \"long\"", "max_seq_len"),
        ("max_seq_len = 64", "max_seq_len = -1", "max_seq_len"),
        ("max_seq_len = 64", "max_seq_len = 6.4", "max_seq_len"),
        ("batch_size = 1", "batch_size = 0", "`batch_size`"),
        ("precision = \"FP32\"", "precision = 16", "precision"),
        (
            "weights = [{ kind = \"hf_dir\", path = \"models/m\" }]",
            "weights = []",
            "`weights`",
        ),
        (
            "weights = [{ kind = \"hf_dir\", path = \"models/m\" }]",
            "weights = \"hf\"",
            "weights",
        ),
        (
            "{ kind = \"hf_dir\", path = \"models/m\" }",
            "{ kind = \"synthetic\", seed = -3 }",
            "`weights`",
        ),
        (
            "{ kind = \"hf_dir\", path = \"models/m\" }",
            "{ kind = \"hf_dir\" }",
            "path",
        ),
    ] {
        assert!(ONE.contains(from), "{from}");
        let msg = err_msg(to, parse(&ONE.replace(from, to)));
        assert_names(to, &msg, &["models.toml", "model m", want]);
    }
    let msg = err_msg("no models", parse("default_model = \"m\"\n"));
    assert_names("no models", &msg, &["no [[model]] entries"]);
    let msg = err_msg(
        "model table",
        parse("default_model = \"m\"\n[model]\nname = \"m\"\n"),
    );
    assert_names("model table", &msg, &["array of tables"]);
    let msg = err_msg(
        "default type",
        parse(&ONE.replace("default_model = \"m\"", "default_model = 3")),
    );
    assert_names("default type", &msg, &["`default_model` must be a string"]);
}

#[test]
fn weight_sources_that_point_nowhere() {
    let dir = Scratch::new("mf-weights");
    let text = ONE.replace(
        "weights = [{ kind = \"hf_dir\", path = \"models/m\" }]",
        "weights = [{ kind = \"hf_dir\", path = \"models/m\" }, { kind = \"gguf\", path = \"m.gguf\" }, \
         { kind = \"hf_cache\", id = \"llmforge-test/no-such-model\" }]",
    );
    let m = Manifest::parse(&text, dir.path().to_path_buf()).expect("parses");
    let msg = err_msg("nowhere", m.resolve_weights(&m.models[0]));
    assert_names(
        "nowhere",
        &msg,
        &[
            "model m: no weights found",
            "models/m",
            "m.gguf",
            "llmforge-test/no-such-model",
        ],
    );
    // A directory that exists but holds a half-finished download (no weights file yet).
    std::fs::create_dir_all(dir.join("models/m")).expect("mkdir");
    std::fs::write(
        dir.join("models/m/model.safetensors.incomplete"),
        b"partial",
    )
    .expect("write");
    let msg = err_msg("incomplete", m.resolve_weights(&m.models[0]));
    assert_names(
        "incomplete",
        &msg,
        &["models/m", "neither model.safetensors"],
    );
}
