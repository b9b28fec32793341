//! Generation loops: `generate_with_static_cache` (prefill once, then one token per step through the
//! static cache) and `generate` (the seed's no-cache loop: recompute the whole sequence every step).
//!
//! Prompts of a batch have equal length. Each sequence stops at one of the model's EOS ids (included in
//! its output) when `stop_at_eos`; the batch runs until every sequence stopped, `max_new_tokens` were
//! produced, or the static cache is full.

use crate::cache::{KvCache, LayerKvMut};
use crate::engine::Engine;
use crate::sample::{Sampler, Sampling};
use crate::step::{CacheMode, StepInputs};
use crate::{Error, Result};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// `StaticV1` or `StaticV2` for the static-cache loop; `None` recomputes every step.
    pub mode: CacheMode,
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 32,
            sampling: Sampling::default(),
            mode: CacheMode::StaticV1,
            stop_at_eos: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Prefill plus the first token's selection.
    pub time_to_first_token: Duration,
    /// All decode steps after the first token.
    pub decode_time: Duration,
    pub decode_steps: usize,
    /// Prompt tokens processed by the prefill (all sequences).
    pub prefill_tokens: usize,
}

impl Timings {
    /// Decode tokens per second per sequence (steps / decode time).
    pub fn decode_steps_per_second(&self) -> f64 {
        let s = self.decode_time.as_secs_f64();
        if s > 0.0 {
            self.decode_steps as f64 / s
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// New tokens per sequence (the EOS that stopped a sequence included).
    pub tokens: Vec<Vec<u32>>,
    pub timings: Timings,
}

fn check_prompts(prompts: &[Vec<u32>], max_seq_len: usize) -> Result<usize> {
    let len = prompts
        .first()
        .map(Vec::len)
        .ok_or_else(|| Error::invalid("no prompts given"))?;
    if len == 0 {
        return Err(Error::invalid("prompts must not be empty"));
    }
    if let Some((i, p)) = prompts.iter().enumerate().find(|(_, p)| p.len() != len) {
        return Err(Error::invalid(format!(
            "prompts of a batch must have equal length: prompt 0 has {len} tokens, prompt {i} has {}",
            p.len()
        )));
    }
    if len > max_seq_len {
        return Err(Error::invalid(format!(
            "prompt of {len} tokens does not fit the static cache of max_seq_len {max_seq_len}"
        )));
    }
    Ok(len)
}

/// Per-sequence bookkeeping shared by both loops.
struct Progress {
    tokens: Vec<Vec<u32>>,
    done: Vec<bool>,
    eos: Vec<u32>,
    stop_at_eos: bool,
}

/// What both loops start from: the prompts' common length (checked against the engine), the
/// sampler, empty progress per sequence and timings that count the prefill.
struct Start {
    len: usize,
    sampler: Sampler,
    st: Progress,
    timings: Timings,
}

fn start(engine: &Engine, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<Start> {
    let len = check_prompts(prompts, engine.options().max_seq_len)?;
    let sampler = Sampler::try_new(opts.sampling)?;
    let batch = prompts.len();
    Ok(Start {
        len,
        sampler,
        st: Progress {
            tokens: vec![Vec::new(); batch],
            done: vec![false; batch],
            eos: engine.spec().eos_token_ids.clone(),
            stop_at_eos: opts.stop_at_eos,
        },
        timings: Timings {
            prefill_tokens: batch * len,
            ..Timings::default()
        },
    })
}

impl Progress {
    fn push(&mut self, next: &[u32], on_token: &mut dyn FnMut(usize, u32)) {
        for (b, &t) in next.iter().enumerate() {
            if self.done[b] {
                continue;
            }
            self.tokens[b].push(t);
            on_token(b, t);
            if self.stop_at_eos && self.eos.contains(&t) {
                self.done[b] = true;
            }
        }
    }
    fn all_done(&self) -> bool {
        self.done.iter().all(|&d| d)
    }
    /// The token each sequence feeds next (a finished sequence repeats its last token; its output is
    /// ignored).
    fn last(&self) -> Vec<u32> {
        self.tokens
            .iter()
            .map(|t| t.last().copied().unwrap_or(0))
            .collect()
    }
}

/// [`generate_with_static_cache_layers`] over an untyped [`KvCache`].
pub fn generate_with_static_cache(
    engine: &mut Engine,
    cache: &mut KvCache,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<GenerateOutput> {
    let mut layers = cache.layers_mut();
    generate_with_static_cache_layers(engine, &mut layers, prompts, opts, on_token)
}

/// Prefill `[0, len)` once, then decode one token per step at `[end, end + 1)` through the static
/// cache lent as per-layer views (the generated crates pass their named `key_cache_i`/`value_cache_i`).
/// `opts.mode == CacheMode::None` ignores the cache and runs [`generate`]'s recompute loop.
pub fn generate_with_static_cache_layers(
    engine: &mut Engine,
    cache: &mut [LayerKvMut<'_>],
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<GenerateOutput> {
    if opts.mode == CacheMode::None {
        return generate(engine, prompts, opts, on_token);
    }
    let max_seq = engine.options().max_seq_len;
    let Start {
        len,
        mut sampler,
        mut st,
        mut timings,
    } = start(engine, prompts, opts)?;
    let batch = prompts.len();
    if opts.max_new_tokens == 0 {
        return Ok(GenerateOutput {
            tokens: st.tokens,
            timings,
        });
    }
    let t0 = Instant::now();
    let ids: Vec<u32> = prompts.concat();
    let positions: Vec<u32> = (0..batch).flat_map(|_| 0..len as u32).collect();
    let step = StepInputs {
        input_ids: &ids,
        position_ids: &positions,
        batch,
        seq_len: len,
        start_idx: 0,
        end_idx: len,
    };
    let next = engine.next_tokens(&step, cache, opts.mode, &mut sampler)?;
    st.push(&next, on_token);
    timings.time_to_first_token = t0.elapsed();

    let t1 = Instant::now();
    let mut end = len;
    let mut produced = 1;
    let mut positions = vec![0u32; batch];
    // Each decode step writes position `end`; the cache holds positions 0..max_seq.
    while produced < opts.max_new_tokens && !st.all_done() && end < max_seq {
        let ids = st.last();
        positions.fill(end as u32);
        let step = StepInputs {
            input_ids: &ids,
            position_ids: &positions,
            batch,
            seq_len: 1,
            start_idx: end,
            end_idx: end + 1,
        };
        let next = engine.next_tokens(&step, cache, opts.mode, &mut sampler)?;
        st.push(&next, on_token);
        end += 1;
        produced += 1;
        timings.decode_steps += 1;
    }
    timings.decode_time = t1.elapsed();
    Ok(GenerateOutput {
        tokens: st.tokens,
        timings,
    })
}

/// The seed's `generate`: no cache, the whole sequence recomputed every step (cache mode `none`).
pub fn generate(
    engine: &mut Engine,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<GenerateOutput> {
    let max_seq = engine.options().max_seq_len;
    let Start {
        mut sampler,
        mut st,
        mut timings,
        ..
    } = start(engine, prompts, opts)?;
    let batch = prompts.len();
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let start = Instant::now();
    let mut produced = 0;
    while produced < opts.max_new_tokens && !st.all_done() {
        let cur = seqs[0].len();
        if cur > max_seq {
            break;
        }
        let ids: Vec<u32> = seqs.concat();
        let positions: Vec<u32> = (0..batch).flat_map(|_| 0..cur as u32).collect();
        let step = StepInputs {
            input_ids: &ids,
            position_ids: &positions,
            batch,
            seq_len: cur,
            start_idx: 0,
            end_idx: cur,
        };
        let next = engine.next_tokens(&step, &mut [], CacheMode::None, &mut sampler)?;
        st.push(&next, on_token);
        for (s, t) in seqs.iter_mut().zip(&next) {
            s.push(*t);
        }
        produced += 1;
        if produced == 1 {
            timings.time_to_first_token = start.elapsed();
        } else {
            timings.decode_steps += 1;
        }
    }
    timings.decode_time = start.elapsed().saturating_sub(timings.time_to_first_token);
    Ok(GenerateOutput {
        tokens: st.tokens,
        timings,
    })
}
