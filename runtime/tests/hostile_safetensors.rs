//! Hostile safetensors checkpoints: truncated files, headers that lie about offsets, dtypes or shapes,
//! missing or mis-shaped tensors (broken shard indexes: `hostile_safetensors_index.rs`). Every case is an error whose message names the
//! file or tensor and the problem; none panics.
//!
//! The broken files are derived from the tiny Llama fixture (`models/tiny-llama/model.safetensors`,
//! written by `scripts/make_fixtures.py` with the reference `safetensors` library).

mod hostile_common;

use hostile_common::*;
use runtime::ModelSpec;
use runtime::weights::safetensors::{SafetensorsSet, write_file};
use runtime::weights::{HostTensor, WeightMap, WeightSource, WeightsError, load};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

fn tiny_dir() -> std::path::PathBuf {
    root().join("models/tiny-llama")
}

fn spec() -> ModelSpec {
    ModelSpec::from_dir(&tiny_dir()).expect("tiny-llama config")
}

fn original() -> Vec<u8> {
    std::fs::read(tiny_dir().join("model.safetensors")).expect("fixture")
}

/// The JSON header and the data section of a safetensors file.
fn split(bytes: &[u8]) -> (Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = match serde_json::from_slice(&bytes[8..8 + n]) {
        Ok(Value::Object(m)) => m,
        _ => panic!("fixture header is not a JSON object"),
    };
    (header, bytes[8 + n..].to_vec())
}

/// Header + data back into a file image (header padded with spaces to 8 bytes, as the writers do).
fn assemble(header: &Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).expect("serialise header");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Edit one tensor's header entry of the fixture and write the result as `dir/model.safetensors`.
fn with_entry(dir: &Scratch, tensor: &str, edit: impl FnOnce(&mut Map<String, Value>)) {
    let (mut header, data) = split(&original());
    match header.get_mut(tensor) {
        Some(Value::Object(entry)) => edit(entry),
        _ => panic!("fixture has no tensor {tensor}"),
    }
    std::fs::write(dir.join("model.safetensors"), assemble(&header, &data)).expect("write");
}

fn load_dir(dir: &Path) -> Result<WeightMap, WeightsError> {
    load(&spec(), &WeightSource::HfDir(dir.to_path_buf()))
}

/// Every tensor of the fixture by HF name.
fn fixture_tensors() -> BTreeMap<String, HostTensor> {
    let set = SafetensorsSet::open_dir(&tiny_dir()).expect("fixture opens");
    let names: Vec<String> = set.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| {
            let t = set.tensor(&n).expect("fixture tensor");
            (n, t)
        })
        .collect()
}

#[test]
fn the_fixture_itself_loads() {
    // The positive control for every case below: the unmodified bytes, reassembled, load.
    let dir = Scratch::new("st-control");
    let (header, data) = split(&original());
    std::fs::write(dir.join("model.safetensors"), assemble(&header, &data)).expect("write");
    assert!(load_dir(dir.path()).is_ok());
}

#[test]
fn truncated_files_say_truncated() {
    let dir = Scratch::new("st-trunc");
    let bytes = original();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let path = dir.join("model.safetensors");
    // Inside the length word, inside the header, header only, inside the data, one byte short.
    for len in [0, 3, 20, 8 + n, 8 + n + 1000, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..len]).expect("write");
        let r = load_dir(dir.path());
        assert!(
            matches!(r, Err(WeightsError::Truncated { .. })),
            "prefix {len}: {:?}",
            r.err()
        );
        let msg = err_msg("truncated", load_dir(dir.path()));
        assert_names("truncated", &msg, &["model.safetensors", "is truncated"]);
    }
}

#[test]
fn header_length_that_lies() {
    let dir = Scratch::new("st-len");
    let path = dir.join("model.safetensors");
    let mut bytes = original();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let msg = err_msg("huge header length", load_dir(dir.path()));
    assert_names("huge header length", &msg, &["bad header", "header length"]);

    let total = bytes.len() as u64;
    bytes[..8].copy_from_slice(&total.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let msg = err_msg("header past the end", load_dir(dir.path()));
    assert_names(
        "header past the end",
        &msg,
        &["is truncated", "header claims"],
    );
}

#[test]
fn header_that_is_not_json() {
    let dir = Scratch::new("st-json");
    let path = dir.join("model.safetensors");
    let mut bytes = 16u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\": [1, 2, 3 ");
    bytes.push(b' ');
    std::fs::write(&path, &bytes).expect("write");
    let msg = err_msg("not json", load_dir(dir.path()));
    assert_names("not json", &msg, &["bad header", "not JSON"]);

    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc, 0x7b, 0x7d, 0x20, 0x20]);
    std::fs::write(&path, &bytes).expect("write");
    let msg = err_msg("not utf-8", load_dir(dir.path()));
    assert_names("not utf-8", &msg, &["bad header", "UTF-8"]);

    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"[1,2,3] ");
    std::fs::write(&path, &bytes).expect("write");
    let msg = err_msg("not an object", load_dir(dir.path()));
    assert_names("not an object", &msg, &["not a JSON object"]);
}

#[test]
fn offsets_that_lie() {
    let dir = Scratch::new("st-offsets");
    let t = "lm_head.weight";
    // The span disagrees with dtype x shape.
    with_entry(&dir, t, |e| {
        e.insert("data_offsets".into(), json!([0, 100]));
    });
    let msg = err_msg("short span", load_dir(dir.path()));
    assert_names("short span", &msg, &[t, "need 65536 bytes", "[0, 100]"]);

    with_entry(&dir, t, |e| {
        e.insert("data_offsets".into(), json!([65536, 0]));
    });
    let msg = err_msg("backwards", load_dir(dir.path()));
    assert_names("backwards", &msg, &[t, "run backwards"]);

    // The right size, but past the end of the data section.
    let data_len = split(&original()).1.len() as u64;
    with_entry(&dir, t, |e| {
        e.insert("data_offsets".into(), json!([data_len, data_len + 65536]));
    });
    let msg = err_msg("past the end", load_dir(dir.path()));
    assert_names("past the end", &msg, &["is truncated", t, "ends at byte"]);

    // Two tensors over the same bytes (each span plausible on its own): the reference library's
    // contiguity check refuses the file.
    with_entry(&dir, "model.embed_tokens.weight", |e| {
        e.insert("data_offsets".into(), json!([0, 65536]));
    });
    let msg = err_msg("overlap", load_dir(dir.path()));
    assert_names("overlap", &msg, &["model.safetensors", "bad header"]);

    with_entry(&dir, t, |e| {
        e.remove("data_offsets");
    });
    let msg = err_msg("no offsets", load_dir(dir.path()));
    assert_names("no offsets", &msg, &[t, "data_offsets"]);

    with_entry(&dir, t, |e| {
        e.insert("data_offsets".into(), json!([0, -5]));
    });
    let msg = err_msg("negative offset", load_dir(dir.path()));
    assert_names("negative offset", &msg, &[t, "data_offsets"]);
}

#[test]
fn dtypes_that_lie() {
    let dir = Scratch::new("st-dtype");
    let t = "lm_head.weight";
    // A wider dtype than the bytes hold.
    with_entry(&dir, t, |e| {
        e.insert("dtype".into(), "F64".into());
    });
    let msg = err_msg("F64", load_dir(dir.path()));
    assert_names("F64", &msg, &[t, "F64", "need 131072 bytes"]);

    // No such dtype.
    with_entry(&dir, t, |e| {
        e.insert("dtype".into(), "Q9".into());
    });
    let r = load_dir(dir.path());
    assert!(
        matches!(r, Err(WeightsError::UnknownDtype { .. })),
        "{:?}",
        r.err()
    );
    let msg = err_msg("Q9", load_dir(dir.path()));
    assert_names("Q9", &msg, &[t, "unsupported dtype Q9"]);

    // A real dtype of the same width that is not a float: the header is consistent, the load refuses.
    with_entry(&dir, t, |e| {
        e.insert("dtype".into(), "I32".into());
    });
    let msg = err_msg("I32", load_dir(dir.path()));
    assert_names("I32", &msg, &[t, "unsupported dtype I32"]);

    // F16 with twice the rows is byte-for-byte consistent; the shape check against the config catches
    // it.
    with_entry(&dir, t, |e| {
        e.insert("dtype".into(), "F16".into());
        e.insert("shape".into(), json!([512, 64]));
    });
    let r = load_dir(dir.path());
    assert!(
        matches!(r, Err(WeightsError::Shape { .. })),
        "{:?}",
        r.err()
    );
    let msg = err_msg("F16 reshape", load_dir(dir.path()));
    assert_names(
        "F16 reshape",
        &msg,
        &["lm_head.weight", "[512, 64]", "[256, 64]"],
    );

    with_entry(&dir, t, |e| {
        e.insert("shape".into(), json!("256x64"));
    });
    let msg = err_msg("shape string", load_dir(dir.path()));
    assert_names("shape string", &msg, &[t, "no valid shape"]);

    with_entry(&dir, t, |e| {
        e.insert("shape".into(), json!([u64::MAX, u64::MAX]));
    });
    let msg = err_msg("overflowing shape", load_dir(dir.path()));
    assert_names("overflowing shape", &msg, &[t, "overflows"]);
}

#[test]
fn missing_misshaped_and_extra_tensors() {
    let dir = Scratch::new("st-tensors");
    let path = dir.join("model.safetensors");

    let mut tensors = fixture_tensors();
    tensors.remove("model.layers.1.self_attn.k_proj.weight");
    write_file(&path, &tensors).expect("write");
    let r = load_dir(dir.path());
    assert!(
        matches!(r, Err(WeightsError::Missing { .. })),
        "{:?}",
        r.err()
    );
    let msg = err_msg("missing", load_dir(dir.path()));
    assert_names("missing", &msg, &["layers.1.k", "missing"]);

    // Same number of elements, another shape.
    let mut tensors = fixture_tensors();
    let k = tensors
        .get_mut("model.layers.1.self_attn.k_proj.weight")
        .expect("k_proj");
    k.shape = vec![64, 32];
    write_file(&path, &tensors).expect("write");
    let msg = err_msg("mis-shaped", load_dir(dir.path()));
    assert_names(
        "mis-shaped",
        &msg,
        &["layers.1.k.weight", "[64, 32]", "[32, 64]"],
    );

    // A tensor the config has no place for (a third layer in a two-layer config).
    let mut tensors = fixture_tensors();
    let extra = tensors["model.layers.1.input_layernorm.weight"].clone();
    tensors.insert("model.layers.2.input_layernorm.weight".into(), extra);
    write_file(&path, &tensors).expect("write");
    let msg = err_msg("extra", load_dir(dir.path()));
    assert_names("extra", &msg, &["layers.2", "does not use it"]);
}

#[test]
fn weights_of_another_model() {
    // tiny-qwen2's checkpoint under tiny-llama's config: the sizes disagree.
    let r = load(
        &spec(),
        &WeightSource::HfDir(root().join("models/tiny-qwen2")),
    );
    let msg = err_msg("qwen2 weights for llama", r);
    // Qwen2 has one KV head where the Llama config has two: the first K projection is the wrong shape.
    assert_names(
        "qwen2 weights for llama",
        &msg,
        &["layers.0.k.weight", "[16, 64]", "[32, 64]"],
    );
}

#[test]
fn a_directory_without_weights() {
    let dir = Scratch::new("st-empty");
    let r = load_dir(dir.path());
    assert!(
        matches!(r, Err(WeightsError::NoWeights { .. })),
        "{:?}",
        r.err()
    );
    let msg = err_msg("no weights", load_dir(dir.path()));
    assert_names("no weights", &msg, &["model.safetensors"]);
}
