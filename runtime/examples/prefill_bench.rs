//! Micro benchmark of the CPU prefill GEMM (`matrix::matmul` with several token rows) over matrices
//! kept as GGML blocks, as a whole prefill meets them: the four linear layers of SmolLM2-135M (QKV
//! 960×576, O 576×576, gate/up 3072×576, down 576×1536) repeated for `layers` layers, seeded random
//! blocks, so that (at 30 layers) the weights are larger than the caches and stream from memory once
//! per prefill. Prints the best time of `reps` passes over every layer and the GFLOP/s it makes
//! (wall clock: run it on a quiet machine, or interleave builds).
//!
//! `cargo run --release -p runtime --no-default-features --example prefill_bench -- Q8_0 2 16 30 10`
//! (block type or F32, threads, tokens, layers, repetitions).

use runtime::backend::cpu::matrix::{Matrix, Store, matmul};
use runtime::format::BlockType;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let kind = arg(0, "Q8_0");
    let threads: usize = arg(1, "2").parse()?;
    let n: usize = arg(2, "16").parse()?;
    let layers: usize = arg(3, "30").parse()?;
    let reps: usize = arg(4, "10").parse()?;
    let t = BlockType::ALL.into_iter().find(|t| t.name() == kind);
    if t.is_none() && kind != "F32" {
        return Err(format!("unknown block type {kind}").into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut matrix = |rows: usize, cols: usize| -> Matrix {
        let store = match t {
            Some(t) => {
                let bytes = t.row_bytes(cols).unwrap_or(0) * rows;
                let mut v: Vec<u8> = (0..bytes).map(|_| (next() >> 40) as u8).collect();
                // Finite f16 scales where each block type keeps them (random bytes could make
                // infinities or NaNs, which no quantizer writes).
                let at: &[usize] = match t {
                    BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[0],
                    BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4K | BlockType::Q5K => &[0, 2],
                    BlockType::Q2K => &[80, 82],
                    BlockType::Q3K => &[108],
                    BlockType::Q6K => &[208],
                };
                for b in v.chunks_exact_mut(t.block_bytes()) {
                    for &a in at {
                        let s = ((next() >> 40) as u8 as f32 - 128.0) / 4000.0;
                        b[a..a + 2].copy_from_slice(&half::f16::from_f32(s).to_le_bytes());
                    }
                }
                Store::Blocks(t, v)
            }
            None => Store::F32(
                (0..rows * cols)
                    .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                    .collect(),
            ),
        };
        Matrix { rows, cols, store }
    };
    let shapes = [(960, 576), (576, 576), (3072, 576), (576, 1536)];
    let stack: Vec<[Matrix; 4]> = (0..layers)
        .map(|_| shapes.map(|(r, c)| matrix(r, c)))
        .collect();
    let x: Vec<f32> = (0..n * 1536)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut out = vec![0.0f32; n * 3072];
    let mut tmp = Vec::new();
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let cpu = cpu_seconds();
        let start = Instant::now();
        pool.install(|| {
            for layer in &stack {
                for m in layer {
                    let o = &mut out[..n * m.rows];
                    matmul(m, &x[..n * m.cols], n, None, o, &mut tmp);
                }
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_seconds() - cpu);
    }
    let flop: usize = shapes.iter().map(|(r, c)| 2 * n * r * c).sum::<usize>() * layers;
    let bytes: usize = stack.iter().flatten().map(Matrix::bytes).sum();
    println!(
        "{kind} threads={threads} n={n} layers={layers}: best {:.2} ms, {:.1} GFLOP/s; CPU time {:.2} ms \
         ({:.1} GFLOP per CPU second); weights {:.1} MB",
        best * 1e3,
        flop as f64 / best / 1e9,
        best_cpu * 1e3,
        flop as f64 / best_cpu / 1e9,
        bytes as f64 / 1e6
    );
    Ok(())
}

/// CPU time of every thread of this process so far (Linux: `/proc/self/task/*/schedstat`, whose first
/// field is the nanoseconds a thread ran), so that a busy machine's waits are left out; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}
