//! Micro benchmark of the CPU prefill GEMM (`backend::cpu::gemm`) on the linear-layer shapes of one
//! SmolLM2-135M layer (QKV 960×576, O 576×576, gate/up 3072×576, down 576×1536), seeded random
//! weights; prints GFLOP/s per shape (wall clock, best of `reps`: run it on a quiet machine).
//!
//! `cargo run --release -p runtime --example gemm_bench -- FP32 2 512 5`
//! (precision, threads, tokens, repetitions).

use half::{bf16, f16};
use runtime::backend::cpu::gemm::gemm;
use runtime::backend::cpu::matrix::{Matrix, Store};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let precision = arg(0, "FP32");
    let threads: usize = arg(1, "2").parse()?;
    let n: usize = arg(2, "512").parse()?;
    let reps: usize = arg(3, "5").parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut total = 0.0;
    for (name, rows, k) in [
        ("qkv", 960, 576),
        ("o", 576, 576),
        ("gate_up", 3072, 576),
        ("down", 576, 1536),
    ] {
        let w: Vec<f32> = (0..rows * k).map(|_| rnd()).collect();
        let store = match precision.as_str() {
            "FP16" => Store::F16(w.into_iter().map(f16::from_f32).collect()),
            "BF16" => Store::Bf16(w.into_iter().map(bf16::from_f32).collect()),
            _ => Store::F32(w),
        };
        let m = Matrix {
            rows,
            cols: k,
            store,
        };
        let x: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
        let mut out = vec![0.0f32; n * rows];
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            pool.install(|| gemm(&m, &x, n, &mut out));
            best = best.min(t.elapsed().as_secs_f64());
        }
        total += best;
        let gflop = 2.0 * (n * rows * k) as f64 / 1e9;
        println!(
            "{name:8} {rows:5}x{k:5} n={n}: {:8.3} ms  {:6.1} GFLOP/s",
            best * 1e3,
            gflop / best
        );
    }
    println!(
        "{precision} threads={threads}: one layer {:.2} ms, 30 layers {:.1} ms",
        total * 1e3,
        30.0 * total * 1e3
    );
    Ok(())
}
