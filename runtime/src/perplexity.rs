//! Perplexity of a token sequence, scored in fixed windows the way llama.cpp's perplexity tool scores
//! a text:
//!
//! - the sequence is cut into `len / ctx` consecutive windows of `ctx` tokens that do not overlap; a
//!   tail shorter than a window is left out;
//! - each window is evaluated on its own, from position 0, with the logits of every position;
//! - only its second half is scored: the logits at positions `ctx/2 ..= ctx-2` against the token that
//!   follows each, `ctx - 1 - ctx/2` tokens a window, so every scored token sees at least `ctx/2`
//!   tokens of context;
//! - with a BOS id (for a tokenizer that starts a text with BOS), each window's first token is
//!   replaced by it;
//! - the negative log-likelihood of a token is `-log_softmax(logits)[target]`, computed in f64 from the
//!   f32 logits; the perplexity is `exp` of its mean over every scored token.

use crate::engine::Engine;
use crate::step::{CacheMode, LogitRows, StepInputs};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// How a sequence of `tokens` ids is cut into windows of `ctx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub ctx: usize,
    /// Whole windows in the sequence.
    pub count: usize,
    /// The first position whose logits are scored (`ctx / 2`).
    pub first: usize,
}

impl Windows {
    /// The smallest window that scores a token: positions `1 ..= 1` of 3.
    pub const MIN_CTX: usize = 3;

    /// The windows of a sequence of `tokens` ids; an error when `ctx` scores nothing or the sequence
    /// is shorter than one window.
    pub fn new(tokens: usize, ctx: usize) -> Result<Windows> {
        if ctx < Self::MIN_CTX {
            return Err(Error::invalid(format!(
                "a perplexity window of {ctx} tokens scores no token; it needs at least {}",
                Self::MIN_CTX
            )));
        }
        if tokens < ctx {
            return Err(Error::invalid(format!(
                "the text is {tokens} tokens long, shorter than one window of {ctx} tokens"
            )));
        }
        Ok(Windows {
            ctx,
            count: tokens / ctx,
            first: ctx / 2,
        })
    }

    /// Tokens scored in each window.
    pub fn scored_per_window(&self) -> usize {
        self.ctx - 1 - self.first
    }

    /// Tokens scored in all windows.
    pub fn scored(&self) -> usize {
        self.count * self.scored_per_window()
    }

    /// The ids window `w` is evaluated on: `ids[w*ctx .. (w+1)*ctx]`, its first replaced by `bos`.
    pub fn input(&self, ids: &[u32], w: usize, bos: Option<u32>) -> Vec<u32> {
        let mut input = ids[w * self.ctx..(w + 1) * self.ctx].to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        input
    }
}

/// `-log softmax(logits)[target]`, in f64 (a max-shifted log-sum-exp).
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    max + sum.ln() - f64::from(logits[target as usize])
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    pub windows: Windows,
    /// Sum of the scored tokens' negative log-likelihoods, per window.
    pub window_nll: Vec<f64>,
    /// Mean negative log-likelihood over every scored token (nats).
    pub mean_nll: f64,
    /// `exp(mean_nll)`.
    pub perplexity: f64,
    /// Time spent in the engine's forward calls.
    pub forward_time: Duration,
}

impl Perplexity {
    /// Tokens the engine evaluated (every window whole) per second of forward time.
    pub fn tokens_per_s(&self) -> f64 {
        let s = self.forward_time.as_secs_f64();
        if s > 0.0 {
            (self.windows.count * self.windows.ctx) as f64 / s
        } else {
            0.0
        }
    }
}

/// The perplexity of `ids` in windows of `ctx` (see the module's comment), one forward without a
/// cache per window (`CacheMode::None`, logits of every position). `on_window` is called after each
/// window with its index.
pub fn evaluate(
    engine: &mut Engine,
    ids: &[u32],
    ctx: usize,
    bos: Option<u32>,
    on_window: &mut dyn FnMut(usize),
) -> Result<Perplexity> {
    let windows = Windows::new(ids.len(), ctx)?;
    let positions: Vec<u32> = (0..ctx as u32).collect();
    let mut window_nll = Vec::with_capacity(windows.count);
    let mut forward_time = Duration::ZERO;
    for w in 0..windows.count {
        let input = windows.input(ids, w, bos);
        let step = StepInputs {
            input_ids: &input,
            position_ids: &positions,
            batch: 1,
            seq_len: ctx,
            start_idx: 0,
            end_idx: ctx,
        };
        let t = Instant::now();
        let logits = engine.forward(&step, &mut [], CacheMode::None, LogitRows::All)?;
        forward_time += t.elapsed();
        if logits.rows != ctx {
            return Err(Error::invalid(format!(
                "the engine returned {} rows of logits for a window of {ctx}",
                logits.rows
            )));
        }
        let nll: f64 = (windows.first..ctx - 1)
            .map(|p| token_nll(logits.row(0, p), input[p + 1]))
            .sum();
        window_nll.push(nll);
        on_window(w);
    }
    let mean_nll = window_nll.iter().sum::<f64>() / windows.scored() as f64;
    Ok(Perplexity {
        windows,
        window_nll,
        mean_nll,
        perplexity: mean_nll.exp(),
        forward_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cut_whole_windows_and_score_their_second_half() {
        let w = Windows::new(1030, 512).unwrap();
        assert_eq!((w.count, w.first, w.scored_per_window()), (2, 256, 255));
        assert_eq!(w.scored(), 510);
        let odd = Windows::new(7, 7).unwrap();
        assert_eq!((odd.count, odd.first, odd.scored_per_window()), (1, 3, 3));
        let smallest = Windows::new(3, 3).unwrap();
        assert_eq!(smallest.scored_per_window(), 1);
    }

    #[test]
    fn too_short_text_or_window_is_refused() {
        let e = Windows::new(511, 512).unwrap_err().to_string();
        assert!(e.contains("511 tokens") && e.contains("512"), "{e}");
        let e = Windows::new(100, 2).unwrap_err().to_string();
        assert!(e.contains("at least 3"), "{e}");
        assert!(Windows::new(0, 3).is_err());
    }

    #[test]
    fn a_window_starts_with_bos_when_given_one() {
        let ids: Vec<u32> = (10..20).collect();
        let w = Windows::new(ids.len(), 4).unwrap();
        assert_eq!(w.count, 2);
        assert_eq!(w.input(&ids, 1, None), vec![14, 15, 16, 17]);
        assert_eq!(w.input(&ids, 1, Some(1)), vec![1, 15, 16, 17]);
    }

    #[test]
    fn token_nll_is_the_negative_log_softmax() {
        // Uniform logits: log(vocab).
        let nll = token_nll(&[3.0; 8], 5);
        assert!((nll - 8f64.ln()).abs() < 1e-12, "{nll}");
        // Two logits 0 and ln 3: p = 3/4 for the second.
        let nll = token_nll(&[0.0, 3f32.ln()], 1);
        assert!((nll - (4.0f64 / 3.0).ln()).abs() < 1e-7, "{nll}");
        // Large logits do not overflow.
        let nll = token_nll(&[1e4, 1e4 - 1.0], 0);
        assert!((nll - (1.0 + (-1f64).exp()).ln()).abs() < 1e-9, "{nll}");
    }
}
