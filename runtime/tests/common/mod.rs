//! Shared helpers of the parity tests: the tiny fixtures under `models/` and `tests/fixtures/` made by
//! `scripts/make_fixtures.py` (transformers 5.17, torch 2.11).
#![allow(dead_code)]

use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{ModelSpec, Precision};
use serde_json::Value;
use std::path::PathBuf;

pub const MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"];
pub const MAX_SEQ: usize = 64;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Prompt {
    pub ids: Vec<u32>,
    /// `[len][vocab]`
    pub logits: Vec<Vec<f32>>,
    pub greedy: Vec<u32>,
}

pub struct Reference {
    pub prompts: Vec<Prompt>,
    pub batch_ids: Vec<Vec<u32>>,
    pub batch_last_logits: Vec<Vec<f32>>,
    pub batch_greedy: Vec<Vec<u32>>,
    pub eos: u32,
    raw: Value,
}

impl Reference {
    /// First prompt's prefill logits (flattened) and greedy continuation of HF with 2-D weights rounded
    /// to `precision`.
    pub fn rounded(&self, precision: Precision) -> (Vec<f32>, Vec<u32>) {
        let r = &self.raw["rounded"][precision.as_str()];
        let logits = r["prefill_logits"]
            .as_array()
            .expect("rounded logits")
            .iter()
            .flat_map(floats)
            .collect();
        (logits, until_eos(ids(&r["greedy"]), self.eos))
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("float list")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

/// HF's greedy continuation up to and including the first EOS (HF pads after it).
fn until_eos(mut t: Vec<u32>, eos: u32) -> Vec<u32> {
    if let Some(i) = t.iter().position(|&x| x == eos) {
        t.truncate(i + 1);
    }
    t
}

pub fn reference(name: &str) -> Reference {
    let path = root()
        .join("tests/fixtures")
        .join(name)
        .join("reference.json");
    let text =
        std::fs::read_to_string(&path).expect("reference.json (run scripts/make_fixtures.py)");
    let v: Value = serde_json::from_str(&text).expect("reference json");
    let eos = v["eos_token_id"].as_u64().expect("eos") as u32;
    let prompts = v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| Prompt {
            ids: ids(&p["input_ids"]),
            logits: p["prefill_logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(floats)
                .collect(),
            greedy: until_eos(ids(&p["greedy"]), eos),
        })
        .collect();
    let b = &v["batch"];
    Reference {
        prompts,
        batch_ids: b["input_ids"]
            .as_array()
            .expect("batch ids")
            .iter()
            .map(ids)
            .collect(),
        batch_last_logits: b["last_logits"]
            .as_array()
            .expect("batch logits")
            .iter()
            .map(floats)
            .collect(),
        batch_greedy: b["greedy"]
            .as_array()
            .expect("batch greedy")
            .iter()
            .map(|g| until_eos(ids(g), eos))
            .collect(),
        eos,
        raw: v.clone(),
    }
}

pub fn spec(name: &str) -> ModelSpec {
    ModelSpec::from_dir(&root().join("models").join(name)).expect("tiny config parses")
}

pub fn options(precision: Precision, max_batch: usize) -> BuildOptions {
    BuildOptions {
        precision,
        max_seq_len: MAX_SEQ,
        max_batch,
        device: DeviceChoice::Cpu { threads: Some(2) },
    }
}

pub fn engine(name: &str, precision: Precision, max_batch: usize) -> Engine {
    let source = WeightSource::HfDir(root().join("models").join(name));
    Engine::build(
        spec(name),
        &source,
        options(precision, max_batch),
        &NoProgress,
    )
    .expect("engine builds")
}

/// Prefill logits at every position of one prompt, in `mode`.
pub fn prefill_logits(engine: &mut Engine, ids: &[u32], mode: CacheMode) -> Vec<f32> {
    let mut cache = engine.new_cache(1).expect("cache");
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let step = StepInputs {
        input_ids: ids,
        position_ids: &positions,
        batch: 1,
        seq_len: ids.len(),
        start_idx: 0,
        end_idx: ids.len(),
    };
    let mut layers = cache.layers_mut();
    engine
        .forward(&step, &mut layers, mode, LogitRows::All)
        .expect("forward")
        .data
}

/// `max |a - b| / max |ref|` over a whole logits tensor: the tolerance measure of these tests.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}
