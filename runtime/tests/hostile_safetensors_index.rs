//! Hostile sharded safetensors checkpoints: an index naming a shard that is not there, placing a tensor
//! in a shard that does not hold it, naming a path outside the directory, or not being JSON; a shard
//! cut short. Each is an error naming the index or shard and the problem.

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

fn load_dir(dir: &Path) -> Result<WeightMap, WeightsError> {
    let spec = ModelSpec::from_dir(&tiny_dir()).expect("tiny-llama config");
    load(&spec, &WeightSource::HfDir(dir.to_path_buf()))
}

/// Every tensor of the tiny Llama fixture by HF name.
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

/// Split the fixture into two shards plus an index; returns the index's weight map.
fn write_shards(dir: &Scratch) -> Map<String, Value> {
    let tensors = fixture_tensors();
    let (a, b): (BTreeMap<_, _>, BTreeMap<_, _>) = tensors
        .into_iter()
        .partition(|(n, _)| n.contains("layers.0") || n.contains("embed"));
    let mut weight_map = Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", &a),
        ("model-00002-of-00002.safetensors", &b),
    ] {
        write_file(&dir.join(file), part).expect("write shard");
        for n in part.keys() {
            weight_map.insert(n.clone(), file.into());
        }
    }
    weight_map
}

fn write_index(dir: &Scratch, weight_map: &Map<String, Value>) {
    let index = json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");
}

#[test]
fn shard_indexes() {
    let dir = Scratch::new("st-shards");
    let map = write_shards(&dir);
    write_index(&dir, &map);
    // Positive control: the sharded set loads.
    assert!(load_dir(dir.path()).is_ok());

    // A shard that is not there (a half-finished download).
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).expect("rm");
    let r = load_dir(dir.path());
    assert!(
        matches!(r, Err(WeightsError::MissingShard { .. })),
        "{:?}",
        r.err()
    );
    let msg = err_msg("missing shard", load_dir(dir.path()));
    assert_names(
        "missing shard",
        &msg,
        &[
            "model.safetensors.index.json",
            "model-00002-of-00002.safetensors",
            "does not exist",
        ],
    );

    // The index places a tensor in a shard that does not hold it.
    let dir = Scratch::new("st-shards2");
    let mut map = write_shards(&dir);
    map.insert(
        "lm_head.weight".into(),
        "model-00001-of-00002.safetensors".into(),
    );
    write_index(&dir, &map);
    let msg = err_msg("wrong shard", load_dir(dir.path()));
    assert_names("wrong shard", &msg, &["lm_head.weight", "does not hold it"]);

    // A shard name that escapes the directory.
    map.insert("lm_head.weight".into(), "../model.safetensors".into());
    write_index(&dir, &map);
    let msg = err_msg("path escape", load_dir(dir.path()));
    assert_names(
        "path escape",
        &msg,
        &["../model.safetensors", "not a plain file name"],
    );

    // An index that is not JSON, or has no weight_map.
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        "{\"weight_map\": {",
    )
    .expect("w");
    let msg = err_msg("index json", load_dir(dir.path()));
    assert_names("index json", &msg, &["index is not JSON"]);
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        "{\"metadata\": {}}",
    )
    .expect("w");
    let msg = err_msg("no weight_map", load_dir(dir.path()));
    assert_names("no weight_map", &msg, &["no weight_map"]);
    // A shard named by the index that is truncated.
    write_index(&dir, &write_shards(&dir));
    let shard = dir.join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).expect("read shard");
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).expect("cut shard");
    let msg = err_msg("truncated shard", load_dir(dir.path()));
    assert_names(
        "truncated shard",
        &msg,
        &["model-00001-of-00002.safetensors", "is truncated"],
    );
}
