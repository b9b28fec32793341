//! The generated registry against `models.toml` and `runtime::config`: every model is listed, in
//! manifest order, and each generated crate's `spec()` and `entry()` equal what the runtime parses from
//! the same `config.json` and `models.toml` today (so a stale crate fails here as well as in
//! `generator --check`).

use runtime::config::load_config_file;
use runtime::manifest::Manifest;
use std::path::PathBuf;

fn manifest() -> Manifest {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Manifest::load(&root.join("models.toml")).expect("models.toml parses")
}

#[test]
fn registry_lists_the_manifest_in_order() {
    let manifest = manifest();
    let names: Vec<&str> = registry::all().iter().map(|m| m.name()).collect();
    let want: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, want);
    assert_eq!(registry::NAMES.to_vec(), want);
    assert_eq!(registry::DEFAULT_MODEL, manifest.default_model);
    assert!(registry::get(registry::DEFAULT_MODEL).is_some());
    assert!(registry::get("no-such-model").is_none());
}

#[test]
fn generated_specs_and_entries_equal_the_parsed_sources() {
    let manifest = manifest();
    for model in registry::all() {
        let entry = manifest.get(model.name()).expect("listed in models.toml");
        assert_eq!(&model.entry(), entry, "{}: entry", model.name());
        let dir = model.manifest_dir();
        let parsed =
            load_config_file(&entry.name, &dir.join(&entry.config)).expect("config parses");
        assert_eq!(model.spec(), parsed, "{}: spec", model.name());
    }
}

#[test]
fn typed_constants_match_the_spec() {
    let spec = tiny_llama::spec();
    assert_eq!(tiny_llama::NUM_LAYERS, spec.num_layers);
    assert_eq!(tiny_llama::NUM_KV_HEADS, spec.num_kv_heads);
    assert_eq!(tiny_llama::HEAD_DIM, spec.head_dim);
    assert_eq!(tiny_llama::NUM_PARAMETERS, spec.num_parameters());
    assert_eq!(tiny_gpt2::POSITIONS, runtime::spec::Positions::Learned);
}
