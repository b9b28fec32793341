//! Reproducible pseudo-random test inputs for the CPU kernels' unit tests (one LCG, so every test
//! draws the same numbers on every run and machine).

/// The next value in [-1, 1) of the stream `seed`.
pub fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// `n` values of the stream starting at `seed`.
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n).map(|_| lcg(&mut s)).collect()
}
