//! Micro benchmark of the CPU decode matvec over matrices kept as GGML blocks
//! (`backend::cpu::block_dot` through `matrix::matmul`, one input), and of the f32 matvec of the same
//! shape for reference: seeded random blocks of every type, `rows × cols` (larger than the caches by
//! default, so the weights stream from memory as in decode); prints the best time per product of
//! `reps` and the weight bytes read per second (wall clock: run it on a quiet machine).
//!
//! `cargo run --release -p runtime --no-default-features --example block_bench -- 2 16384 1536 20`
//! (threads, rows, cols, repetitions).

use runtime::backend::cpu::matrix::{Matrix, Store, matmul};
use runtime::format::BlockType;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let threads: usize = arg(0, "2").parse()?;
    let rows: usize = arg(1, "16384").parse()?;
    let cols: usize = arg(2, "1536").parse()?;
    let reps: usize = arg(3, "20").parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as u8
    };
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut out = vec![0.0f32; rows];
    let mut time = |m: &Matrix| {
        let mut best = f64::INFINITY;
        pool.install(|| {
            for _ in 0..reps {
                let t = Instant::now();
                matmul(m, &x, 1, None, &mut out, &mut Vec::new());
                best = best.min(t.elapsed().as_secs_f64());
            }
        });
        best
    };
    let dense = Matrix {
        rows,
        cols,
        store: Store::F32((0..rows * cols).map(|i| (i % 7) as f32 * 0.01).collect()),
    };
    let t = time(&dense);
    let bytes = (rows * cols * 4) as f64;
    println!("F32   {:8.3} ms  {:6.2} GB/s", t * 1e3, bytes / t / 1e9);
    for ty in BlockType::ALL {
        if cols % ty.block_elems() != 0 {
            continue;
        }
        let mut data: Vec<u8> = (0..rows * ty.row_bytes(cols).unwrap_or(0))
            .map(|_| byte())
            .collect();
        // Finite f16 scales at each block's scale offsets (random bytes could be NaN).
        let halves: &[usize] = match ty {
            BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[0],
            BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4K | BlockType::Q5K => &[0, 2],
            BlockType::Q2K => &[80, 82],
            BlockType::Q3K => &[108],
            BlockType::Q6K => &[208],
        };
        for b in data.chunks_exact_mut(ty.block_bytes()) {
            for &at in halves {
                b[at..at + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            }
        }
        let bytes = data.len() as f64;
        let m = Matrix {
            rows,
            cols,
            store: Store::Blocks(ty, data),
        };
        let t = time(&m);
        println!(
            "{:5} {:8.3} ms  {:6.2} GB/s  {:6.2} Gweights/s",
            ty.name(),
            t * 1e3,
            bytes / t / 1e9,
            (rows * cols) as f64 / t / 1e9
        );
    }
    Ok(())
}
