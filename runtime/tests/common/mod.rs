//! Shared helpers of the parity tests: the tiny fixtures under `models/` and `tests/fixtures/` made by
//! `scripts/make_fixtures.py` (transformers 5.17, torch 2.11), with transformers' top 2 along each
//! greedy continuation from `scripts/make_greedy_top2.py`.
#![allow(dead_code)]

pub mod greedy;
pub mod quant_fixture;

use greedy::Continuation;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{ModelSpec, Precision};
use serde_json::Value;
use std::path::PathBuf;

/// The tiny models: tiny-llama-bias is tiny-llama with `attention_bias` and `mlp_bias`, so its q, k, v,
/// o, gate, up and down projections carry (nonzero, random) biases; tiny-qwen3 has per-head RMSNorms of
/// q and k (random gains) and a head_dim of 32 beside a hidden size of 64 over 4 heads; tiny-mistral is a
/// Mistral (`sliding_window: null`) with tied embeddings; tiny-mistral-window is a Mistral whose every
/// layer slides over 8 keys (the prompts and continuations are far longer); tiny-gemma3 is a Gemma 3
/// (sandwich norms stored as `gain - 1`, GeGLU, q/k norms, attention scale 24^-1/2, embeddings scaled
/// by 8) whose layers 2 and 5 attend globally with linearly scaled RoPE and the others over a window
/// of 8 with their own base; tiny-gemma3-softcap is tiny-gemma3's config with its final logits
/// soft-capped at 0.5 (and an attention cap of 1.0, which transformers' Gemma 3 does not apply);
/// tiny-phi3 is a Phi-3 (q/k/v and gate/up stored fused, GQA 4/2, untied) whose every layer slides
/// over 8 keys; tiny-qwen2-yarn is tiny-qwen2's config with YaRN rotary scaling (factor 4 over 4096
/// original positions: its frequency ramp falls inside the head, and cos/sin carry an attention
/// factor of 1.1386).
pub const MODELS: [&str; 11] = [
    "tiny-llama",
    "tiny-llama-bias",
    "tiny-qwen2",
    "tiny-qwen3",
    "tiny-mistral",
    "tiny-mistral-window",
    "tiny-gemma3",
    "tiny-gemma3-softcap",
    "tiny-phi3",
    "tiny-gpt2",
    "tiny-qwen2-yarn",
];
pub const MAX_SEQ: usize = 64;

/// The tiny models the CUDA engine runs: all of [`MODELS`] (windowed layers keep rings, Gemma 3's
/// local and global layers take their windows and rotary tables per layer).
pub fn cuda_models() -> impl Iterator<Item = &'static str> {
    MODELS.into_iter()
}

/// FP32 bound of [`rel_err`] against transformers for each tiny model, CPU and GPU engines alike (and
/// the CPU engine's 16-bit weight storage, which computes in f32): 5-7x the largest error measured on
/// either, so a tenfold regression fails. Measured, every prompt, cache mode and batch row (tiny-llama,
/// tiny-qwen2, tiny-gpt2):
/// - CPU (`bench/cpu-results/2026-12-07-accuracy/parity.txt`): 2.15e-6, 1.50e-6, 8.77e-7;
/// - GPU prefill (`bench/gpu-results/h200-session8-verify.txt`, H200, and the same on an H100,
///   `bench/gpu-results/h100-2026-12-07-verify.txt`): 2.12e-6, 1.79e-6, 7.45e-7;
/// - GPU decode graph steps (the H100 file): 2.37e-6, 1.72e-6, 1.18e-6.
///
/// tiny-llama-bias, tiny-qwen3 and tiny-mistral take tiny-llama's bound: on the CPU their largest errors
/// are 2.07e-6 (`bench/cpu-results/2026-12-07-tiny-llama-bias/parity.txt`), 9.98e-7 and 1.88e-6
/// (`bench/cpu-results/2026-12-07-tiny-qwen3-mistral/parity.txt`). tiny-mistral-window, tiny-gemma3 and
/// tiny-phi3 take it too: on an H100 the largest errors of the six over prefill and decode graph steps
/// are 1.66e-6, 9.34e-7, 1.62e-6, 2.29e-6, 1.80e-6 and 1.14e-6
/// (`bench/gpu-results/h100-2026-12-08-session12/w1/cuda_parity.log`). tiny-gemma3-softcap (tiny-gemma3
/// with its logits soft-capped) takes tiny-gemma3's.
pub fn fp32_tol(name: &str) -> f32 {
    match name {
        "tiny-llama" | "tiny-llama-bias" | "tiny-qwen3" | "tiny-mistral" => 1.5e-5,
        "tiny-mistral-window" | "tiny-gemma3" | "tiny-gemma3-softcap" | "tiny-phi3" => 1.5e-5,
        "tiny-qwen2" | "tiny-qwen2-yarn" => 1.2e-5,
        "tiny-gpt2" => 6e-6,
        other => panic!("no FP32 bound measured for {other}"),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Prompt {
    pub ids: Vec<u32>,
    /// `[len][vocab]`
    pub logits: Vec<Vec<f32>>,
    pub greedy: Vec<u32>,
    /// transformers' top 2 along `greedy`.
    pub top2: Continuation,
}

pub struct Reference {
    pub prompts: Vec<Prompt>,
    pub batch_ids: Vec<Vec<u32>>,
    pub batch_last_logits: Vec<Vec<f32>>,
    pub batch_greedy: Vec<Vec<u32>>,
    pub batch_top2: Vec<Continuation>,
    pub eos: u32,
    raw: Value,
    top2: Value,
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

    /// transformers' top 2 along the greedy continuation of [`Reference::rounded`].
    pub fn rounded_top2(&self, precision: Precision) -> Continuation {
        greedy::continuation(&self.top2["rounded"][precision.as_str()])
    }
}

pub fn ids(v: &Value) -> Vec<u32> {
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

fn json(name: &str, file: &str, script: &str) -> Value {
    let path = root().join("tests/fixtures").join(name).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} ({e}; run {script})", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn reference(name: &str) -> Reference {
    let v = json(name, "reference.json", "scripts/make_fixtures.py");
    let top2 = json(name, "greedy_top2.json", "scripts/make_greedy_top2.py");
    // transformers writes a scalar or, for Gemma 3, a one-element list.
    let eos = match &v["eos_token_id"] {
        Value::Array(ids) if ids.len() == 1 => ids[0].as_u64(),
        one => one.as_u64(),
    };
    let eos = eos.expect("one eos token id") as u32;
    let prompts = v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .zip(top2["prompts"].as_array().expect("top-2 prompts"))
        .map(|(p, t)| Prompt {
            ids: ids(&p["input_ids"]),
            logits: p["prefill_logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(floats)
                .collect(),
            greedy: until_eos(ids(&p["greedy"]), eos),
            top2: greedy::continuation(t),
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
        batch_top2: top2["batch"]
            .as_array()
            .expect("top-2 batch")
            .iter()
            .map(greedy::continuation)
            .collect(),
        eos,
        raw: v,
        top2,
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
        quant: runtime::format::QuantFormat::None,
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

/// The logits of each position of `ids` fed one token per step (decode steps against a fresh
/// static_v1 cache).
pub fn decode_step_logits(engine: &mut Engine, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = engine.new_cache(1).expect("cache");
    (0..ids.len())
        .map(|t| {
            let pos = [t as u32];
            let step = StepInputs {
                input_ids: &ids[t..t + 1],
                position_ids: &pos,
                batch: 1,
                seq_len: 1,
                start_idx: t,
                end_idx: t + 1,
            };
            engine
                .forward(
                    &step,
                    &mut cache.layers_mut(),
                    CacheMode::StaticV1,
                    LogitRows::Last,
                )
                .expect("decode step")
                .data
        })
        .collect()
}

/// A GGUF file of `tests/fixtures/gguf` (`scripts/make_gguf_fixtures.py`).
pub fn gguf_fixture(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/gguf")
        .join(format!("{name}.gguf"))
}

/// The spec a GGUF fixture's metadata gives.
pub fn gguf_spec(name: &str) -> ModelSpec {
    runtime::weights::gguf::GgufFile::open(&gguf_fixture(name))
        .expect("opens")
        .spec(name)
        .expect("spec")
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
