//! `--perplexity FILE`: the model's perplexity on a text, in windows of `--ctx` tokens scored as
//! llama.cpp's perplexity tool scores them (`runtime::perplexity`: windows that do not overlap, each
//! evaluated from position 0 without a cache, the second half of each scored, log-softmax in f64).
//!
//! The text is tokenized without special tokens. When the tokenizer starts a text with BOS (its
//! post-processor adds one, as Llama's do, or a GGUF says `tokenizer.ggml.add_bos_token`), the
//! sequence starts with BOS and every window's first token is replaced by BOS; otherwise (SmolLM2,
//! Qwen2, GPT-2) no BOS is added anywhere.

use crate::args::Args;
use crate::engine_setup::{self, Need};
use crate::progress::Bars;
use crate::report::{self, RunInfo};
use crate::resolve::Model;
use anyhow::{Context, Result, bail};
use runtime::backend::CacheMode;
use runtime::perplexity::{self, Windows};
use runtime::progress::Progress;
use runtime::tokenize::Tokenizer;
use serde::Serialize;
use std::path::Path;

/// What `--perplexity` reports (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct PerplexityReport {
    pub mode: &'static str,
    pub run: RunInfo,
    /// The text file, as given.
    pub text: String,
    pub text_bytes: usize,
    /// Tokens of the whole text (with the BOS, when one is added).
    pub text_tokens: usize,
    /// The BOS id each window starts with, when the tokenizer adds one.
    pub bos: Option<u32>,
    pub ctx: usize,
    pub windows: usize,
    pub scored_tokens: usize,
    /// How windows are cut and scored, in words.
    pub convention: &'static str,
    /// Mean negative log-likelihood of the scored tokens, nats.
    pub mean_nll: f64,
    pub perplexity: f64,
    /// Sum of the scored tokens' negative log-likelihoods, per window.
    pub window_nll: Vec<f64>,
    /// Seconds spent in the engine's forward calls.
    pub forward_s: f64,
    /// Tokens evaluated (whole windows) per second of forward time.
    pub tokens_per_s: f64,
    /// Peak resident set of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
}

const CONVENTION: &str = "llama.cpp's: windows of ctx tokens that do not overlap (a shorter tail is \
left out), each evaluated from position 0; the logits at positions ctx/2..=ctx-2 are scored against \
the next token; a tokenizer that adds BOS has each window start with it";

pub fn run(args: &Args, text_path: &Path, model: &Model, need: Need) -> Result<()> {
    let text = std::fs::read_to_string(text_path)
        .with_context(|| format!("reading the --perplexity text {}", text_path.display()))?;
    if text.trim().is_empty() {
        bail!(
            "the --perplexity text {} is empty: it needs at least one window of --ctx {} tokens",
            text_path.display(),
            args.ctx
        );
    }
    let tokenizer = model
        .tokenizer(args.tokenizer.as_deref())
        .context("--perplexity tokenizes its text with the model's tokenizer")?;
    let (ids, bos) = text_ids(&tokenizer, &text)?;
    let windows = Windows::new(ids.len(), args.ctx).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; give a longer text or a smaller --ctx",
            text_path.display()
        )
    })?;
    let need = Need {
        seq_len: args.ctx,
        prompt_len: args.ctx,
        batch: 1,
        cache: CacheMode::None,
        keep_weights: false,
        ..need
    };
    let bars = Bars::new(args.json);
    let got = engine_setup::obtain(model, &need, args.engine.as_deref(), &bars)?;
    let mut run = crate::run_info(args, model, &need, &got);
    run.cache = CacheMode::None.as_str().to_string();
    let mut engine = got.engine;
    if !args.json {
        report::say_err(report::header_text(&run))?;
    }
    bars.stage("perplexity windows", windows.count as u64);
    let measured = perplexity::evaluate(&mut engine, &ids, args.ctx, bos, &mut |_| bars.advance(1));
    bars.finish();
    let measured = measured.context("evaluating the perplexity windows")?;
    let report = PerplexityReport {
        mode: "perplexity",
        run,
        text: text_path.display().to_string(),
        text_bytes: text.len(),
        text_tokens: ids.len(),
        bos,
        ctx: args.ctx,
        windows: windows.count,
        scored_tokens: windows.scored(),
        convention: CONVENTION,
        mean_nll: measured.mean_nll,
        perplexity: measured.perplexity,
        window_nll: measured.window_nll.clone(),
        forward_s: measured.forward_time.as_secs_f64(),
        tokens_per_s: measured.tokens_per_s(),
        peak_rss_bytes: crate::limits::peak_rss(),
    };
    let line = format!(
        "perplexity {:.4} (mean NLL {:.5} nats) over {} scored tokens: {} windows of {} of the text's {} \
         tokens, second half of each scored · {:.1} tokens/s · {}",
        report.perplexity,
        report.mean_nll,
        report.scored_tokens,
        report.windows,
        report.ctx,
        report.text_tokens,
        report.tokens_per_s,
        report::engine_line(&report.run)
    );
    report::emit(args.json, &report, line, None, report::TextTo::Stdout)
}

/// The text's ids without special tokens, preceded by BOS when the tokenizer starts a text with one;
/// and that BOS.
fn text_ids(tokenizer: &Tokenizer, text: &str) -> Result<(Vec<u32>, Option<u32>)> {
    let plain = tokenizer
        .encode(text, false)
        .context("tokenizing the --perplexity text")?;
    let with_special = tokenizer
        .encode(text, true)
        .context("tokenizing the --perplexity text")?;
    let bos = tokenizer
        .bos_id()
        .filter(|&b| with_special.first() == Some(&b) && plain.first() != Some(&b));
    Ok(match bos {
        Some(b) => (std::iter::once(b).chain(plain).collect(), Some(b)),
        None => (plain, None),
    })
}
