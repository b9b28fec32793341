//! Shared by the long-context tests (`long_context.rs` on the CPU, `cuda_long_context.rs` on the GPU):
//! the fixtures of `scripts/make_long_fixtures.py` (transformers 5.17, torch 2.11) and the checks.
//!
//! Each model (`models/<name>/`, tiny random weights, GQA, 2 layers) has one prompt of 1100 token ids
//! and, in `tests/fixtures/<name>/long_reference.json`, transformers' fp32 outputs for the fp32 weights
//! and for the weights rounded to fp16 and to bf16: prefill logits at every 128th prompt position and
//! the last 8, the 20-token greedy continuation, and the logits of each generated step. An engine is
//! checked against them in three ways, each in the cache mode under test:
//! - prefill: the whole prompt in one step, the logits rows at the stored positions;
//! - decode steps: the prompt, then one step per reference token (teacher-forced: the step feeds
//!   transformers' token, so every step's logits stay comparable after a wrong choice), each step's
//!   logits against transformers' for that step; without a cache (`none`) a step is a forward of the
//!   whole sequence so far, so one forward of the prompt and the continuation gives every step's row;
//! - greedy: the engine's own greedy generation (`generate` / `generate_with_static_cache`).
//!
//! Error measure, as in the other parity tests: `max |ours - hf| / max |hf|` over the whole compared
//! tensor (`[stored positions, vocab]` for prefill, `[steps, vocab]` for decode).
#![allow(dead_code)]

use crate::common::greedy::{Continuation, Top2};
use crate::common::{ids, rel_err, root, spec};
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use serde_json::Value;

/// Heads 128 wide (Llama, llama3 rotary scaling), 96 (Qwen2, q/k/v biases) and 64 (Llama, plain
/// rotary, two KV heads of two query heads each).
pub const MODELS: [&str; 3] = [
    "tiny-llama-long-h128",
    "tiny-qwen2-long-h96",
    "tiny-llama-long-h64",
];
/// Cache length: the 1100-token prompt and the 20 generated tokens; the models'
/// `max_position_embeddings` is 2048.
pub const MAX_SEQ: usize = 1120;

/// transformers' outputs for one weight precision.
pub struct Run {
    /// `[positions.len() * vocab]`: the prefill logits rows at [`LongReference::positions`].
    pub prefill: Vec<f32>,
    pub greedy: Vec<u32>,
    /// `[greedy.len()][vocab]`: row `i` is what `greedy[i]` was chosen from.
    pub steps: Vec<Vec<f32>>,
}

pub struct LongReference {
    pub ids: Vec<u32>,
    pub positions: Vec<usize>,
    pub head_dim: usize,
    fp32: Run,
    fp16: Run,
    bf16: Run,
}

impl LongReference {
    /// transformers on the weights as the engine of `precision` stores them (fp32, or every matrix
    /// rounded to fp16 / bf16; compute in fp32 throughout).
    pub fn run(&self, precision: Precision) -> &Run {
        match precision {
            Precision::Fp32 => &self.fp32,
            Precision::Fp16 => &self.fp16,
            Precision::Bf16 => &self.bf16,
        }
    }
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("logits rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("logits row")
                .iter()
                .map(|x| x.as_f64().expect("logit") as f32)
                .collect()
        })
        .collect()
}

pub fn long_reference(name: &str) -> LongReference {
    let path = root()
        .join("tests/fixtures")
        .join(name)
        .join("long_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} ({e}; run scripts/make_long_fixtures.py)",
            path.display()
        )
    });
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let positions: Vec<usize> = ids(&v["positions"]).iter().map(|&p| p as usize).collect();
    let run = |label: &str| {
        let r = &v[label];
        let prefill = rows(&r["prefill_logits"]);
        assert_eq!(
            prefill.len(),
            positions.len(),
            "{name} {label}: prefill rows"
        );
        let greedy = ids(&r["greedy"]);
        let steps = rows(&r["step_logits"]);
        assert_eq!(steps.len(), greedy.len(), "{name} {label}: step rows");
        Run {
            prefill: prefill.concat(),
            greedy,
            steps,
        }
    };
    let r = LongReference {
        ids: ids(&v["input_ids"]),
        head_dim: v["head_dim"].as_u64().expect("head_dim") as usize,
        fp32: run("FP32"),
        fp16: run("FP16"),
        bf16: run("BF16"),
        positions,
    };
    assert!(
        r.ids.len() >= 1024 && r.ids.len() + r.fp32.greedy.len() <= MAX_SEQ,
        "{name}: prompt of {} tokens",
        r.ids.len()
    );
    r
}

/// An engine of `name` with a cache of [`MAX_SEQ`] positions for one sequence.
pub fn build(name: &str, precision: Precision, device: DeviceChoice) -> Engine {
    let spec = spec(name);
    assert!(MAX_SEQ <= spec.max_position_embeddings, "{name}");
    let source = WeightSource::HfDir(root().join("models").join(name));
    let options = BuildOptions {
        precision,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device,
        quant: runtime::format::QuantFormat::None,
    };
    Engine::build(spec, &source, options, &NoProgress)
        .unwrap_or_else(|e| panic!("{name} {precision} {device:?}: engine build: {e}"))
}

/// Logits of one forward of `ids` at positions `start..start + ids.len()`; `cache` is `None` in mode
/// `none`, which recomputes from position 0.
fn forward(
    e: &mut Engine,
    cache: Option<&mut runtime::cache::KvCache>,
    ids: &[u32],
    start: usize,
    mode: CacheMode,
    rows: LogitRows,
) -> Vec<f32> {
    let end = start + ids.len();
    let positions: Vec<u32> = (start as u32..end as u32).collect();
    let step = StepInputs {
        input_ids: ids,
        position_ids: &positions,
        batch: 1,
        seq_len: ids.len(),
        start_idx: start,
        end_idx: end,
    };
    let out = match cache {
        Some(c) => e.forward(&step, &mut c.layers_mut(), mode, rows),
        None => e.forward(&step, &mut [], mode, rows),
    };
    out.unwrap_or_else(|err| panic!("{mode:?} step {start}..{end}: {err}"))
        .data
}

/// The prompt's prefill logits in `mode`, rows at `positions` only, concatenated.
pub fn prefill_rows(e: &mut Engine, r: &LongReference, mode: CacheMode) -> Vec<f32> {
    let mut cache = e.new_cache(1).expect("cache");
    let cache = (mode != CacheMode::None).then_some(&mut cache);
    let all = forward(e, cache, &r.ids, 0, mode, LogitRows::All);
    let vocab = all.len() / r.ids.len();
    r.positions
        .iter()
        .flat_map(|&p| all[p * vocab..(p + 1) * vocab].iter().copied())
        .collect()
}

/// The logits of each generated step, teacher-forced with `greedy`, concatenated: the prompt's last
/// row, then one step per token of `greedy` but the last, each one token through the cache. Without
/// a cache (`none`) every step is a forward of the whole sequence so far from position 0, whose last
/// row is the step's logits: one forward of the prompt and `greedy` but its last token yields all of
/// them as its last `greedy.len()` rows (causal attention: a row sees only the positions before it).
pub fn decode_step_logits(
    e: &mut Engine,
    prompt: &[u32],
    greedy: &[u32],
    mode: CacheMode,
) -> Vec<f32> {
    let n = greedy.len();
    if mode == CacheMode::None {
        let seq = [prompt, &greedy[..n - 1]].concat();
        let all = forward(e, None, &seq, 0, mode, LogitRows::All);
        let vocab = all.len() / seq.len();
        return all[(prompt.len() - 1) * vocab..].to_vec();
    }
    let mut cache = e.new_cache(1).expect("cache");
    let mut out = forward(e, Some(&mut cache), prompt, 0, mode, LogitRows::Last);
    for (i, &t) in greedy[..n - 1].iter().enumerate() {
        let at = prompt.len() + i;
        out.extend(forward(
            e,
            Some(&mut cache),
            &[t],
            at,
            mode,
            LogitRows::Last,
        ));
    }
    out
}

/// The engine's own greedy continuation of `prompt`, `n` tokens, in `mode`.
pub fn greedy(e: &mut Engine, prompt: &[u32], n: usize, mode: CacheMode) -> Vec<u32> {
    let opts = GenerateOptions {
        max_new_tokens: n,
        mode,
        ..GenerateOptions::default()
    };
    let prompts = vec![prompt.to_vec()];
    let out = if mode == CacheMode::None {
        generate(e, &prompts, &opts, &mut |_, _| {})
    } else {
        let mut cache = e.new_cache(1).expect("cache");
        generate_with_static_cache(e, &mut cache, &prompts, &opts, &mut |_, _| {})
    };
    out.expect("generate").tokens.remove(0)
}

/// Checks `e` (built for `precision`) against transformers in `mode`: prefill and decode-step logits
/// within `tol`. Prints what it measured.
pub fn check_logits(
    label: &str,
    e: &mut Engine,
    r: &LongReference,
    precision: Precision,
    mode: CacheMode,
    tol: f32,
) {
    let want = r.run(precision);
    let label = format!("{label} {precision} {mode:?}");
    let prefill = rel_err(&prefill_rows(e, r, mode), &want.prefill);
    let decode = rel_err(
        &decode_step_logits(e, &r.ids, &want.greedy, mode),
        &want.steps.concat(),
    );
    eprintln!(
        "{label}: relative error prefill {prefill:.2e}, decode steps {decode:.2e} (bound {tol:.0e})"
    );
    assert!(prefill <= tol, "{label}: prefill relative error {prefill}");
    assert!(
        decode <= tol,
        "{label}: decode-step relative error {decode}"
    );
}

/// Checks the greedy generation of `e` (built for `precision`) in `mode` with the procedure of
/// `common/greedy.rs`: its tokens equal transformers', and where the two part, our token is
/// transformers' top 2 and transformers' top-2 gap there is at most `max_gap` of the row's largest
/// logit (0: they may not part). Prints the agreement.
pub fn check_greedy(
    label: &str,
    e: &mut Engine,
    r: &LongReference,
    precision: Precision,
    mode: CacheMode,
    max_gap: f32,
) {
    let want = r.run(precision);
    let label = format!("{label} {precision} {mode:?}");
    let got = greedy(e, &r.ids, want.greedy.len(), mode);
    let reference = Continuation {
        tokens: want.greedy.clone(),
        steps: want.steps.iter().map(|row| Top2::of_row(row)).collect(),
    };
    crate::common::greedy::check_greedy(&label, &got, &want.greedy, &reference, 0, max_gap);
}
