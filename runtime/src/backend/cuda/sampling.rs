//! Sampling on the device (`runtime/templates/kernels/sample.cu`): with a `top_k` of at most
//! [`SAMPLE_MAX_K`], the token of each sequence is chosen next to its logits, with the host sampler's
//! semantics and its seeded draws, and only the ids come back. Other settings (no `top_k`, or a larger
//! one) sample on the host from the copied logits.

use super::forward::{self, Call};
use super::kernels::SAMPLE_MAX_K;
use super::launch::Grid;
use super::launchers::SampleTopK;
use super::scratch::argmax_id;
use super::{CudaBackend, missing_scratch};
use crate::sample::Sampling;
use crate::step::CacheMode;
use crate::{Error, Result};

/// Threads of a `sample_top_k` block (one block per sequence).
const THREADS: u32 = 1024;

/// Whether `sampling` runs on the device: not greedy (that is the argmax in the lm_head epilogue),
/// with a `top_k` the kernel takes.
pub fn on_device(sampling: &Sampling) -> bool {
    !sampling.is_greedy() && sampling.top_k.is_some_and(|k| k <= SAMPLE_MAX_K)
}

impl CudaBackend {
    /// Pick one token for each of the first `draws.len()` rows of the scratch logits, row b with the
    /// host's uniform draw `draws[b]`.
    pub(super) fn sample_logits(&mut self, sampling: &Sampling, draws: &[f64]) -> Result<Vec<u32>> {
        let k = match sampling.top_k {
            Some(k) if on_device(sampling) => k.max(1),
            _ => {
                return Err(Error::invalid(format!(
                    "device sampling takes a top_k of 1 to {SAMPLE_MAX_K}, got {:?}",
                    sampling.top_k
                )));
            }
        };
        let (m, _, scratch, _) = self.split();
        let s = scratch.as_mut().ok_or_else(missing_scratch)?;
        m.gpu.write(&mut s.draws, draws, "sampling draws")?;
        let s = &*s;
        SampleTopK {
            logits: s.logits.view(),
            draws: s.draws.view(),
            inv_t: 1.0 / sampling.temperature,
            k: k as i32,
            // Above 1: no top-p (the kernel applies it for values up to 1, as the host sampler does).
            top_p: sampling.top_p.unwrap_or(2.0),
            out: s.best.view_mut(),
        }
        .launch(
            &m.stream(),
            &m.k.sample,
            Grid::new((draws.len() as u32, 1, 1), THREADS),
        )?;
        self.read_ids(draws.len())
    }

    /// The token ids of the first `n` sequences, as the lm_head argmax or the sampler left them in
    /// `scratch.best`.
    pub(super) fn read_ids(&self, n: usize) -> Result<Vec<u32>> {
        let s = self.scratch.as_ref().ok_or_else(missing_scratch)?;
        let mut keys = vec![0u64; n];
        self.gpu.read(&s.best, &mut keys, "next token ids")?;
        Ok(keys.into_iter().map(argmax_id).collect())
    }

    /// The greedy choice of each row of the given logits (`[rows, vocab]`, 1 to `max_batch` rows) by
    /// the device `argmax` kernel that follows a prefill, its keys read back as a step reads them: for
    /// tests against the argmax's definition on crafted numbers.
    pub fn argmax_rows(&mut self, logits: &[f32]) -> Result<Vec<u32>> {
        let vocab = self.spec.vocab_size;
        let rows = logits.len() / vocab.max(1);
        if logits.len() != rows * vocab || rows == 0 || rows > self.options.max_batch {
            return Err(Error::invalid(format!(
                "argmax_rows: {} logits are not 1 to {} rows of a {vocab}-token vocabulary",
                logits.len(),
                self.options.max_batch
            )));
        }
        self.ensure_scratch(rows)?;
        let (m, _, scratch, _) = self.split();
        let s = scratch.as_mut().ok_or_else(missing_scratch)?;
        m.gpu.write(&mut s.logits, logits, "logits")?;
        let call = Call {
            batch: rows,
            seq_len: 1,
            mode: CacheMode::None,
            all_rows: false,
            argmax: true,
        };
        forward::argmax(&m, s, &call)?;
        self.read_ids(rows)
    }

    /// Sample rows of the given logits (`[rows, vocab]`, one draw per row) on the device, as a decode
    /// step does with its own logits: for tests against the host sampler on the same numbers.
    pub fn sample_rows(
        &mut self,
        logits: &[f32],
        sampling: &Sampling,
        draws: &[f64],
    ) -> Result<Vec<u32>> {
        sampling.validate()?;
        let vocab = self.spec.vocab_size;
        let rows = draws.len();
        if logits.len() != rows * vocab || rows == 0 || rows > self.options.max_batch {
            return Err(Error::invalid(format!(
                "sample_rows: {} logits for {rows} draws of a {vocab}-token vocabulary \
                 (1 to {} rows)",
                logits.len(),
                self.options.max_batch
            )));
        }
        if let Some(u) = draws.iter().find(|u| !(0.0..1.0).contains(*u)) {
            return Err(Error::invalid(format!(
                "sampling draw {u} is not in [0, 1)"
            )));
        }
        self.ensure_scratch(rows)?;
        let s = self.scratch.as_mut().ok_or_else(missing_scratch)?;
        self.gpu.write(&mut s.logits, logits, "logits")?;
        self.sample_logits(sampling, draws)
    }
}
