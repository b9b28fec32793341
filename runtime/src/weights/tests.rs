//! `HostTensor`'s row operations refuse what they cannot do instead of indexing out of bounds; Phi-3's
//! fused tensors are split into canonical parts and fused back exactly.

use super::names::{canonical_to_hf, hf_to_canonical};
use super::{HostTensor, TensorData, WeightMap, WeightsError};
use crate::spec::ModelSpec;
use std::collections::BTreeMap;

fn tensor(shape: &[usize]) -> HostTensor {
    let n = shape.iter().product();
    HostTensor {
        shape: shape.to_vec(),
        data: TensorData::F32((0..n).map(|i| i as f32).collect()),
    }
}

#[test]
fn rows_of_a_scalar_are_an_error() {
    let scalar = tensor(&[]);
    assert!(scalar.rows(0, 0).is_err());
    assert!(scalar.rows(0, 1).is_err());
}

#[test]
fn concatenating_scalars_is_an_error() {
    let scalar = tensor(&[]);
    let err = HostTensor::concat_rows(&[&scalar, &scalar]).unwrap_err();
    assert!(err.to_string().contains("scalars"), "{err}");
}

#[test]
fn rows_and_concat_round_trip() {
    let t = tensor(&[3, 2]);
    let (a, b) = (t.rows(0, 1).unwrap(), t.rows(1, 3).unwrap());
    assert_eq!(a.shape, [1, 2]);
    assert_eq!(b.shape, [2, 2]);
    assert_eq!(HostTensor::concat_rows(&[&a, &b]).unwrap(), t);
    assert!(t.rows(2, 4).is_err());
    assert!(t.rows(2, 1).is_err());
}

/// A Phi-3 of hidden 8, 4 heads of 2 over 2 KV heads (q 8 rows, k and v 4 each), intermediate 6, one
/// layer.
fn phi3_spec() -> ModelSpec {
    let text = r#"{"model_type": "phi3", "hidden_size": 8, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 1, "intermediate_size": 6, "vocab_size": 5,
        "max_position_embeddings": 32, "sliding_window": 4, "rope_theta": 10000.0}"#;
    crate::config::parse_config("phi3-names", text.as_bytes()).expect("phi3 test config")
}

/// A tensor whose every element is distinct across tensors (`tag` * 1000 + its index).
fn tagged(shape: &[usize], tag: usize) -> HostTensor {
    let n: usize = shape.iter().product();
    HostTensor {
        shape: shape.to_vec(),
        data: TensorData::F32((0..n).map(|i| (tag * 1000 + i) as f32).collect()),
    }
}

/// The tensors transformers writes for [`phi3_spec`].
fn phi3_hf() -> BTreeMap<String, HostTensor> {
    let l = "model.layers.0.";
    [
        ("model.embed_tokens.weight".to_string(), tagged(&[5, 8], 1)),
        ("model.norm.weight".into(), tagged(&[8], 2)),
        ("lm_head.weight".into(), tagged(&[5, 8], 3)),
        (format!("{l}input_layernorm.weight"), tagged(&[8], 4)),
        (
            format!("{l}post_attention_layernorm.weight"),
            tagged(&[8], 5),
        ),
        (format!("{l}self_attn.qkv_proj.weight"), tagged(&[16, 8], 6)),
        (format!("{l}self_attn.o_proj.weight"), tagged(&[8, 8], 7)),
        (format!("{l}mlp.gate_up_proj.weight"), tagged(&[12, 8], 8)),
        (format!("{l}mlp.down_proj.weight"), tagged(&[8, 6], 9)),
    ]
    .into_iter()
    .collect()
}

fn load_hf(spec: &ModelSpec, hf: &BTreeMap<String, HostTensor>) -> Result<WeightMap, WeightsError> {
    let load = |n: &str| Ok(hf[n].clone());
    hf_to_canonical(spec, hf.keys().map(String::as_str), &load)
}

#[test]
fn phi3_fused_tensors_split_into_their_parts_and_fuse_back() {
    let spec = phi3_spec();
    let hf = phi3_hf();
    let map = super::finish(&spec, load_hf(&spec, &hf).unwrap()).unwrap();
    let qkv = &hf["model.layers.0.self_attn.qkv_proj.weight"];
    let gate_up = &hf["model.layers.0.mlp.gate_up_proj.weight"];
    for (name, fused, start, end) in [
        ("q", qkv, 0, 8),
        ("k", qkv, 8, 12),
        ("v", qkv, 12, 16),
        ("gate", gate_up, 0, 6),
        ("up", gate_up, 6, 12),
    ] {
        let part = &map.tensors[&format!("layers.0.{name}.weight")];
        assert_eq!(part, &fused.rows(start, end).unwrap(), "{name}");
    }
    assert_eq!(
        map.tensors["layers.0.o.weight"],
        hf["model.layers.0.self_attn.o_proj.weight"]
    );
    assert_eq!(
        map.tensors["layers.0.down.weight"],
        hf["model.layers.0.mlp.down_proj.weight"]
    );
    assert_eq!(
        map.tensors["layers.0.mlp_norm.weight"],
        hf["model.layers.0.post_attention_layernorm.weight"]
    );
    assert_eq!(map.tensors["embed.weight"], hf["model.embed_tokens.weight"]);
    assert_eq!(map.tensors["lm_head.weight"], hf["lm_head.weight"]);
    assert_eq!(canonical_to_hf(&spec, &map).unwrap(), hf);
}

#[test]
fn phi3_shape_errors_name_the_tensor() {
    let spec = phi3_spec();
    for (name, shape) in [
        ("model.layers.0.self_attn.qkv_proj.weight", [24, 8]),
        ("model.layers.0.mlp.gate_up_proj.weight", [12, 4]),
    ] {
        let mut hf = phi3_hf();
        hf.insert(name.into(), tagged(&shape, 1));
        let err = load_hf(&spec, &hf).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(&format!("{shape:?}")),
            "{err}"
        );
    }
    let mut map = load_hf(&spec, &phi3_hf()).unwrap();
    map.tensors
        .insert("layers.0.v.weight".into(), tagged(&[3, 8], 1));
    let err = canonical_to_hf(&spec, &map).unwrap_err().to_string();
    assert!(
        err.contains("layers.0.v.weight") && err.contains("[3, 8]"),
        "{err}"
    );
    map.tensors.remove("layers.0.v.weight");
    let err = canonical_to_hf(&spec, &map).unwrap_err().to_string();
    assert!(err.contains("layers.0.v.weight"), "{err}");
}
