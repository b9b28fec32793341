//! How far a greedy run must follow transformers', shared by the tiny-fixture tests (CPU and GPU) and
//! the SmolLM2 checks (`smollm2_common/check.rs` includes this file by path).
//!
//! transformers' own logits along each reference continuation are in `greedy_top2.json` beside the
//! reference (`scripts/make_greedy_top2.py`): at every generated step its two largest logits, their
//! ids, and the largest magnitude of that step's row. A run must equal the reference for at least the
//! measured number of tokens; if it parts from it after that, then at the first differing step our
//! token must be transformers' second choice and transformers' own top-2 gap there, relative to the
//! row's largest magnitude (as `bench/gpu_hf.py compare` reports it), must be within the bound: the
//! two runs parted at a near-tie that rounding may decide either way, not at a clear choice.
#![allow(dead_code)]

use runtime::Precision;
use serde_json::Value;

/// Split-gap bounds: four roundings of the largest logit in the engine's 16-bit type (2^-11 for
/// FP16, 2^-8 for BF16). The measured splits lie below them: tiny-llama BF16 parts at a gap of
/// 1.8e-3 (`tests/fixtures/tiny-llama/greedy_top2.json`, step 8 of `rounded.BF16`); the full-size
/// models in `bench/RESULTS.md` (session 8) part at 7.0e-4 in FP16 and 3.4e-3 to 1.1e-2 in BF16.
/// An FP32 run must follow the reference to the end, so it has no split bound.
pub const FP16_SPLIT_GAP: f32 = 4.0 / 2048.0;
pub const BF16_SPLIT_GAP: f32 = 4.0 / 256.0;

pub fn split_gap(precision: Precision) -> f32 {
    match precision {
        Precision::Fp32 => 0.0,
        Precision::Fp16 => FP16_SPLIT_GAP,
        Precision::Bf16 => BF16_SPLIT_GAP,
    }
}

/// `min_prefix` of [`check_greedy`] for a run that must equal the reference to its end.
pub const ALL_TOKENS: usize = usize::MAX;

/// transformers' top 2 at one generated step.
#[derive(Clone, Copy, Debug)]
pub struct Top2 {
    pub ids: [u32; 2],
    pub logits: [f32; 2],
    /// Largest magnitude of the step's logits row.
    pub max_abs: f32,
}

impl Top2 {
    /// The two largest logits of a full `row` (the first index on a tie) and its largest magnitude.
    pub fn of_row(row: &[f32]) -> Top2 {
        let mut best = [(f32::NEG_INFINITY, 0u32); 2];
        for (i, &x) in row.iter().enumerate() {
            if x > best[0].0 {
                best = [(x, i as u32), best[0]];
            } else if x > best[1].0 {
                best[1] = (x, i as u32);
            }
        }
        Top2 {
            ids: [best[0].1, best[1].1],
            logits: [best[0].0, best[1].0],
            max_abs: row.iter().fold(0.0f32, |m, x| m.max(x.abs())),
        }
    }

    /// `(first - second) / max |row|`.
    pub fn rel_gap(&self) -> f32 {
        (self.logits[0] - self.logits[1]) / self.max_abs
    }
}

/// One reference continuation: transformers' greedy tokens and its top 2 at each of them.
#[derive(Clone, Debug)]
pub struct Continuation {
    pub tokens: Vec<u32>,
    pub steps: Vec<Top2>,
}

fn pairs<T>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<[T; 2]> {
    v.as_array()
        .expect("list of pairs")
        .iter()
        .map(|p| {
            let p = p.as_array().expect("pair");
            assert_eq!(p.len(), 2, "top-2 entry of length {}", p.len());
            [f(&p[0]), f(&p[1])]
        })
        .collect()
}

/// Parses one `{"tokens", "top2_ids", "top2_logits", "max_abs"}` object of `greedy_top2.json`.
pub fn continuation(v: &Value) -> Continuation {
    let id = |x: &Value| x.as_u64().expect("token id") as u32;
    let float = |x: &Value| x.as_f64().expect("logit") as f32;
    let tokens = v["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(id)
        .collect::<Vec<_>>();
    let ids = pairs(&v["top2_ids"], id);
    let logits = pairs(&v["top2_logits"], float);
    let max_abs: Vec<f32> = v["max_abs"]
        .as_array()
        .expect("max_abs")
        .iter()
        .map(float)
        .collect();
    assert!(
        ids.len() == tokens.len() && logits.len() == tokens.len() && max_abs.len() == tokens.len(),
        "greedy_top2.json: one top-2 entry per token expected"
    );
    let steps = (0..tokens.len())
        .map(|i| Top2 {
            ids: ids[i],
            logits: logits[i],
            max_abs: max_abs[i],
        })
        .collect();
    Continuation { tokens, steps }
}

/// Checks `got` against transformers' continuation `want` (the first `want.len()` of `reference`'s
/// tokens, e.g. up to its EOS): at least `min_prefix` tokens equal (all of them when `min_prefix >=
/// want.len()`), and where the two part, our token is transformers' top 2 and transformers' top-2
/// gap there is at most `max_gap`. Prints the agreement and, at a split, the gap. Returns the number of
/// equal leading tokens.
pub fn check_greedy(
    label: &str,
    got: &[u32],
    want: &[u32],
    reference: &Continuation,
    min_prefix: usize,
    max_gap: f32,
) -> usize {
    assert!(
        reference.tokens.starts_with(want),
        "{label}: greedy_top2.json does not hold the reference continuation {want:?} (run \
         scripts/make_greedy_top2.py)"
    );
    let n = want.len();
    let agree = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    if agree == n {
        eprintln!("{label}: greedy agreement {agree}/{n}");
        assert_eq!(
            got.len(),
            n,
            "{label}: our run goes on after transformers' {n} tokens: {got:?}"
        );
        return agree;
    }
    let step = &reference.steps[agree];
    let gap = step.rel_gap();
    let ours = got.get(agree).copied();
    eprintln!(
        "{label}: greedy agreement {agree}/{n}; parts at step {agree}: ours {ours:?}, transformers' \
         top 2 {:?} (logits {:?}), top-2 gap {gap:.2e} of the largest logit (bound {max_gap:.2e})",
        step.ids, step.logits
    );
    assert!(
        agree >= min_prefix.min(n),
        "{label}: greedy tokens equal transformers' for {agree} tokens, at least {} required\n  ours \
         {got:?}\n  hf   {want:?}",
        min_prefix.min(n)
    );
    let Some(ours) = ours else {
        panic!("{label}: our run stopped after {agree} tokens, transformers' goes on: {want:?}");
    };
    assert!(
        step.ids.contains(&ours),
        "{label}: at step {agree} our token {ours} is not among transformers' top 2 {:?}",
        step.ids
    );
    assert!(
        gap <= max_gap,
        "{label}: parts from transformers at step {agree}, where transformers' top-2 gap is {gap:.2e} \
         of the largest logit, above the near-tie bound {max_gap:.2e}"
    );
    agree
}
