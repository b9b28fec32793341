use super::*;
use crate::weights::{TensorData, WeightSource, finish, load};
use std::path::PathBuf;

const TINY: [&str; 4] = ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "tiny-phi3"];

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
}

fn spec(name: &str) -> ModelSpec {
    ModelSpec::from_dir(&model_dir(name)).expect("fixture config")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmforge-synthetic-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn every_expected_tensor_with_its_shape() {
    for name in TINY {
        let s = spec(name);
        let map = finish(&s, generate(&s, 7).expect("synthetic weights"))
            .expect("synthetic weights satisfy the spec");
        assert_eq!(map.tensors.len(), expected_tensors(&s).len(), "{name}");
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let s = spec("tiny-llama");
    let a = generate(&s, 11).expect("synthetic weights");
    let b = generate(&s, 11).expect("synthetic weights");
    let c = generate(&s, 12).expect("synthetic weights");
    for (name, t) in &a.tensors {
        assert_eq!(t, &b.tensors[name], "{name} differs for the same seed");
    }
    assert_ne!(
        a.tensors["layers.0.q.weight"],
        c.tensors["layers.0.q.weight"]
    );
    // Tensors of one model do not repeat each other's streams.
    assert_ne!(
        a.tensors["layers.0.k.weight"].to_f32(),
        a.tensors["layers.1.k.weight"].to_f32()
    );
}

#[test]
fn matrices_are_n_0_002_norms_one_biases_zero() {
    let s = spec("tiny-gpt2");
    let map = generate(&s, 3).expect("synthetic weights");
    // Every matrix together: ~100k draws, so mean and deviation are known to well under 1%.
    let mut all = Vec::new();
    for (name, t) in &map.tensors {
        match (t.shape.len(), &t.data) {
            (2, TensorData::BF16(v)) => all.extend(v.iter().map(|x| x.to_f64())),
            (2, _) => panic!("{name}: matrices are bf16"),
            (1, _) if name.ends_with("norm.weight") => {
                assert!(t.to_f32().iter().all(|&x| x == 1.0), "{name}")
            }
            (1, _) => assert!(t.to_f32().iter().all(|&x| x == 0.0), "{name}"),
            _ => panic!("{name}: unexpected rank"),
        }
    }
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let std = (all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(n > 50_000.0);
    assert!(mean.abs() < 5e-4, "mean {mean}");
    assert!(
        (std - INIT_STD as f64).abs() < 0.02 * INIT_STD as f64,
        "std {std}"
    );
    let max = all.iter().fold(0f64, |m, x| m.max(x.abs()));
    // Irwin–Hall of order 4 is bounded by 2·sqrt(3) standard deviations.
    assert!(
        max <= 2.0 * 3f64.sqrt() * INIT_STD as f64 * 1.01,
        "max {max}"
    );
}

#[test]
fn write_hf_dir_round_trips_through_load() {
    for name in TINY {
        let s = spec(name);
        let generated = finish(&s, generate(&s, 5).expect("synthetic weights")).unwrap();
        let dir = scratch(name);
        write_hf_dir(&s, &model_dir(name).join("config.json"), &generated, &dir).unwrap();
        assert_eq!(
            ModelSpec::from_dir(&dir).unwrap().config_hash,
            s.config_hash
        );
        let loaded = load(&s, &WeightSource::HfDir(dir.clone())).expect("load written dir");
        assert_eq!(loaded.tensors.len(), generated.tensors.len(), "{name}");
        for (n, t) in &generated.tensors {
            assert_eq!(
                t, &loaded.tensors[n],
                "{name}: {n} changed on the round trip"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn real_weights_round_trip_too() {
    // The PyTorch baseline of a GGUF model goes through the same writer with f32 tensors.
    for name in TINY {
        let s = spec(name);
        let original = load(&s, &WeightSource::HfDir(model_dir(name))).unwrap();
        let dir = scratch(&format!("real-{name}"));
        write_hf_dir(&s, &model_dir(name).join("config.json"), &original, &dir).unwrap();
        let again = load(&s, &WeightSource::HfDir(dir.clone())).unwrap();
        for (n, t) in &original.tensors {
            assert_eq!(t, &again.tensors[n], "{name}: {n}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn refuses_a_config_of_another_model() {
    let s = spec("tiny-llama");
    let map = generate(&s, 1).expect("synthetic weights");
    let dir = scratch("mismatch");
    let err = write_hf_dir(&s, &model_dir("tiny-qwen2").join("config.json"), &map, &dir)
        .expect_err("another model's config must be refused");
    assert!(err.to_string().contains("config hash"), "{err}");
    assert!(!dir.exists());
}

#[test]
fn a_model_too_large_for_memory_is_an_error_not_an_abort() {
    let mut s = spec("tiny-llama");
    // Valid sizes whose embedding alone (vocab × hidden bf16) is far beyond any machine's memory.
    s.vocab_size = 1 << 40;
    s.hidden_size = 1 << 16;
    let err = generate(&s, 1).expect_err("cannot allocate");
    let msg = err.to_string();
    assert!(
        msg.contains("embed.weight") && msg.contains("too large"),
        "{msg}"
    );
}
