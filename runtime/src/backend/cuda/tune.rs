//! GEMM choice at engine build: every distinct weight shape of the model is timed at the decode row
//! counts (1 and `max_batch`) and one prefill row count, for the `gemv` kernel (where it fits) and
//! cuBLASLt's top heuristic candidates; the fastest is recorded per shape (and in the engine file).
//! Decode steps of up to `GEMV_MAX_ROWS` sequences take the fused kernels (`decode.rs`) and do not
//! read these choices; short prefills and larger decode batches do.

use super::device::cuda_err;
use super::forward::{Model, gemm};
use super::gemm::{GemmChoice, GemmShape, Lt, gemv_fits};
use crate::Result;
use crate::options::BuildOptions;
use std::collections::BTreeMap;

/// cuBLASLt candidates timed per shape.
const LT_CANDIDATES: usize = 4;
const WARMUP: usize = 2;
const REPS: usize = 5;
/// Row count standing in for prefill.
const PREFILL_ROWS: usize = 512;

/// The row counts timed for an engine.
pub fn timed_rows(options: &BuildOptions) -> Vec<usize> {
    let mut ms = vec![1, options.max_batch];
    let prefill = (options.max_seq_len.saturating_mul(options.max_batch)).min(PREFILL_ROWS);
    ms.push(prefill);
    ms.sort_unstable();
    ms.dedup();
    ms
}

pub fn choose(
    m: &Model<'_>,
    lt: &mut Lt,
    options: &BuildOptions,
) -> Result<BTreeMap<GemmShape, GemmChoice>> {
    let l = m.layout;
    let mut mats = vec![l.lm_head];
    if let Some(first) = l.layers.first() {
        mats.extend([first.qkv, first.o, first.up, first.down]);
    }
    mats.sort_by_key(|w| (w.rows, w.cols));
    mats.dedup_by_key(|w| (w.rows, w.cols));
    let ms = timed_rows(options);
    let (m_max, k_max, n_max) = (
        ms.iter().copied().max().unwrap_or(1),
        mats.iter().map(|w| w.cols).max().unwrap_or(1),
        mats.iter().map(|w| w.rows).max().unwrap_or(1),
    );
    let x = m
        .gpu
        .zeros_stored(m.precision, &[m_max, k_max], "GEMM timing input")?;
    let y = m.gpu.zeros::<f32>(&[m_max, n_max], "GEMM timing output")?;
    let start = m
        .gpu
        .ctx
        .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(cuda_err("cuEventCreate"))?;
    let end = m
        .gpu
        .ctx
        .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(cuda_err("cuEventCreate"))?;
    let mut chosen = BTreeMap::new();
    for w in &mats {
        for &rows in &ms {
            let shape = GemmShape {
                m: rows,
                n: w.rows,
                k: w.cols,
            };
            let mut candidates = Vec::new();
            if gemv_fits(&shape, m.precision) {
                candidates.push(GemmChoice::Gemv);
            }
            if let Ok(algos) = lt.candidates(shape, w.cols) {
                candidates.extend(
                    algos
                        .into_iter()
                        .take(LT_CANDIDATES)
                        .map(|algo| GemmChoice::Lt { algo }),
                );
            }
            let mut best: Option<(f32, GemmChoice)> = None;
            for c in candidates {
                let one = BTreeMap::from([(shape, c)]);
                let mm = Model {
                    choices: &one,
                    ..*m
                };
                let mut run = || gemm(&mm, lt, w, x.view(), w.cols, rows, y.view_mut());
                let timed = (|| -> Result<f32> {
                    for _ in 0..WARMUP {
                        run()?;
                    }
                    start
                        .record(&m.gpu.stream)
                        .map_err(cuda_err("cuEventRecord"))?;
                    for _ in 0..REPS {
                        run()?;
                    }
                    end.record(&m.gpu.stream)
                        .map_err(cuda_err("cuEventRecord"))?;
                    end.synchronize().map_err(cuda_err("cuEventSynchronize"))?;
                    start
                        .elapsed_ms(&end)
                        .map_err(cuda_err("cuEventElapsedTime"))
                })();
                match timed {
                    Ok(ms) if best.is_none_or(|(b, _)| ms < b) => best = Some((ms, c)),
                    Ok(_) => {}
                    // A candidate that fails to run is simply not chosen; clear the sticky state.
                    Err(_) => m.gpu.sync("GEMM candidate").unwrap_or(()),
                }
            }
            if let Some((_, c)) = best {
                chosen.insert(shape, c);
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::DeviceChoice;
    use crate::precision::Precision;

    #[test]
    fn decode_and_prefill_rows_are_timed() {
        let o = |max_batch, max_seq_len| BuildOptions {
            precision: Precision::Fp16,
            max_seq_len,
            max_batch,
            device: DeviceChoice::Cuda { ordinal: 0 },
            quant: crate::format::QuantFormat::None,
        };
        assert_eq!(timed_rows(&o(1, 2176)), vec![1, 512]);
        assert_eq!(timed_rows(&o(4, 64)), vec![1, 4, 256]);
        assert_eq!(timed_rows(&o(1, 1)), vec![1]);
        // Options whose product overflows still give the prefill row count (the GPU then refuses
        // what does not fit, by name).
        assert_eq!(timed_rows(&o(1 << 40, 1 << 40)), vec![1, 512, 1 << 40]);
    }
}
