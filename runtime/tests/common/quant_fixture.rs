//! The references of `scripts/make_quant_fixtures.py` (`tests/fixtures/quant/`): transformers' logits
//! and greedy tokens of tiny models with their layer linears replaced by their torchao-quantized, then
//! dequantised weights, f32 values stored as their bits.
#![allow(dead_code)]

use super::root;
use serde_json::Value;
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures/quant")
}

pub fn json(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("fixture parses")
}

/// f32 values stored as their bits.
pub fn f32s(v: &Value) -> Vec<f32> {
    let a = v.as_array().expect("array");
    a.iter()
        .map(|x| f32::from_bits(x.as_i64().expect("bits") as u32))
        .collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    let a = v.as_array().expect("array");
    a.iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// The model directory of a fixture's model (tiny-llama-w128 lives beside the references).
pub fn model_dir(name: &str) -> PathBuf {
    match name {
        "tiny-llama-w128" => fixtures().join(name),
        _ => root().join("models").join(name),
    }
}
