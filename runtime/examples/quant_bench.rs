//! Micro benchmark of the CPU decode matvec over matrices quantized at build
//! (`--quant_format int8|int4|fp8`: `backend::cpu::quant_dot` through `matrix::matmul`, one input),
//! beside the f32 matvec of the same shape: seeded random weights quantized by
//! `weights::quantize::quantize`, `rows × cols` (by default SmolLM2-135M's 30 layers of `down`,
//! larger than the caches, so the weights stream from memory as in decode). Prints the best time per
//! product of `reps` (each product over a different one of `mats` matrices, so a matrix that fits
//! the caches is not read from them), the bytes read per second and the weights per second (wall
//! clock: run it on a quiet machine). `QUANT_BENCH_TINY=1` makes most fp8 codes subnormal.
//!
//! `cargo run --release -p runtime --no-default-features --example quant_bench -- 2 576 1536 30 20`
//! (threads, rows, cols, mats, repetitions).

use runtime::backend::cpu::matrix::{Matrix, Store, matmul};
use runtime::format::WeightQuant;
use runtime::weights::quantize::quantize;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let threads: usize = arg(0, "2").parse()?;
    let rows: usize = arg(1, "576").parse()?;
    let cols: usize = arg(2, "1536").parse()?;
    let mats: usize = arg(3, "30").parse()?;
    let reps: usize = arg(4, "20").parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    // `QUANT_BENCH_TINY=1`: all but one weight in 64 are tiny beside the rows' largest, so most fp8
    // codes are E4M3 subnormals (the kernels' f32 subnormals).
    let tiny = std::env::var("QUANT_BENCH_TINY").is_ok_and(|v| v == "1");
    let weights: Vec<f32> = (0..rows * cols)
        .map(|i| {
            if tiny && i % 64 != 0 {
                next() * 2e-6
            } else {
                next() * 0.1
            }
        })
        .collect();
    let x: Vec<f32> = (0..cols).map(|_| next()).collect();
    let mut out = vec![0.0f32; rows];
    let mut time = |ms: &[Matrix]| {
        let mut best = f64::INFINITY;
        pool.install(|| {
            for _ in 0..reps {
                let t = Instant::now();
                for m in ms {
                    matmul(m, &x, 1, None, &mut out, &mut Vec::new());
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
        });
        best / ms.len() as f64
    };
    let report = |name: &str, t: f64, bytes: usize| {
        println!(
            "{name:5} {:8.4} ms  {:6.2} GB/s  {:6.2} Gweights/s",
            t * 1e3,
            bytes as f64 / t / 1e9,
            (rows * cols) as f64 / t / 1e9
        );
    };
    let dense: Vec<Matrix> = (0..mats)
        .map(|_| Matrix {
            rows,
            cols,
            store: Store::F32(weights.clone()),
        })
        .collect();
    report("F32", time(&dense), rows * cols * 4);
    drop(dense);
    for q in WeightQuant::ALL {
        if !q.fits(cols) {
            println!("{:5} does not fit {cols} columns", q.name());
            continue;
        }
        let m = quantize(q, &weights, rows, cols)?;
        let bytes = m.codes.len() + 4 * m.scales.len();
        let ms: Vec<Matrix> = (0..mats)
            .map(|_| Matrix {
                rows,
                cols,
                store: Store::Quantized(q, m.clone()),
            })
            .collect();
        report(q.name(), time(&ms), bytes);
    }
    Ok(())
}
