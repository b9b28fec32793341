//! The prompt (several token rows) matmul as a register- and cache-blocked GEMM:
//! `y[i, j] = x[i, :] · W[j, :]`, `x` f32 `[n, k]`, `W` row-major `[rows, k]` in f32 / f16 / bf16.
//!
//! Work layout:
//! - the weight rows are split in blocks (≤ 512 KiB of f32, so a block stays in L2) handed to the rayon
//!   pool; a 16-bit block is converted to f32 once into a per-thread buffer (F16C / a shift for bf16);
//! - inside a block, tokens go in groups of [`MC`] (their rows stay in L2), and for each tile of `NR`
//!   weight rows (kept in L1 while it is reused) the micro-kernel runs over every `MR`-token tile of
//!   the group: `MR × NR` dot products over the whole of `k` at once, so each loaded weight vector
//!   serves `MR` tokens and each token vector `NR` weight rows. Tiles: 4 × 4 with AVX-512 (one
//!   512-bit register per pair; the 16 pairs' lane sums are formed together by shuffles,
//!   `gemm_x86::tree16`), 2 × 3 with AVX2 (two 256-bit registers per pair), 2 × 3 portable.
//! - `k` is not blocked: a tile keeps its 16 lane accumulators in registers over the whole row, which
//!   is what makes the decode summation order possible. A 4 × 4 tile reads 8 rows of `k` floats
//!   (18 KiB at k = 576, 48 KiB at k = 1536): L1/L2-resident for the models this engine targets on
//!   the CPU; at k ≈ 14k (8B models) the weight tile streams from L2 instead.
//!
//! Numerics: each output is formed exactly as the decode dot product (`simd::dot`) forms it: 16 lane
//! accumulators over `k` (lane `l` takes the `k ≡ l (mod 16)` elements of the full 16-blocks), every
//! product added by a fused multiply-add, the `k mod 16` tail summed in order (also fused), the lanes
//! summed as `simd::finish`'s halving tree, then the tail added. So a token's result does not depend
//! on how many tokens are computed together. (Until 2026-12-02 both multiplied, rounded and added,
//! and summed the lanes one after another; bench/RESULTS.md "FMA numerics" measures the change.)

#[cfg(test)]
use super::matrix::Store;
use super::matrix::{Dtype, Matrix};
use super::simd::{LANES, finish, madd};
use rayon::prelude::*;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use super::gemm_x86;

/// Tokens per L2 group.
pub const MC: usize = 64;
/// Upper bound on one f32 weight block (bytes).
const BLOCK_BYTES: usize = 512 * 1024;
/// Upper bound on one 16-bit weight block once widened to f32 (bytes): smaller, so the widened copy
/// that every token tile re-reads stays close to the core (bench/RESULTS.md measures the two sizes).
const WIDENED_BLOCK_BYTES: usize = 128 * 1024;

/// The micro-kernel, chosen once per process. The SIMD variants are only constructed by
/// [`Kernel::available`] after their CPU features were detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Products added with FMA or not: as `simd`'s portable dot products on this CPU.
    Portable { fused: bool },
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// Every kernel this CPU can run, fastest first.
    fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            // Only where decode's SIMD dot products run too (AVX2 and FMA), so that both add products
            // alike (and Rust's `avx512f` implies AVX2 and FMA in the compiled code).
            let simd = super::simd::has_avx2_fma();
            if std::is_x86_feature_detected!("avx512f") && simd {
                all.push(Kernel::Avx512);
            }
            if simd {
                all.push(Kernel::Avx2);
            }
        }
        all.push(Kernel::Portable {
            fused: super::simd::fused(),
        });
        all
    }

    /// The fastest kernel, detected once (prefill attention asks for it per block).
    fn detect() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| Kernel::available()[0])
    }
}

/// The `k mod 16` tail of one pair (`x`, `w`: its rows from the last full 16-block on), summed in
/// order as `simd::dot` sums it.
#[inline(always)]
pub(super) fn tail<const F: bool>(x: &[f32], w: &[f32]) -> f32 {
    let mut t = 0.0f32;
    for (a, b) in x.iter().zip(w) {
        t = madd::<F>(*a, *b, t);
    }
    t
}

/// The `k mod 16` tail of every pair, then the lanes by `finish` (as `simd::dot`).
#[inline(always)]
pub(super) fn close<const F: bool, const MR: usize, const NR: usize>(
    lanes: &[[[f32; LANES]; NR]; MR],
    x: [&[f32]; MR],
    w: [&[f32]; NR],
    k: usize,
) -> [[f32; NR]; MR] {
    let full = k - k % LANES;
    let mut out = [[0.0f32; NR]; MR];
    for r in 0..MR {
        for c in 0..NR {
            out[r][c] = finish(lanes[r][c], tail::<F>(&x[r][full..k], &w[c][full..k]));
        }
    }
    out
}

/// The portable micro-kernel (lane loops of `simd::madd`).
pub(super) fn tile_portable<const F: bool, const MR: usize, const NR: usize>(
    x: [&[f32]; MR],
    w: [&[f32]; NR],
    k: usize,
) -> [[f32; NR]; MR] {
    let full = k - k % LANES;
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    for c0 in (0..full).step_by(LANES) {
        for r in 0..MR {
            let xs = &x[r][c0..c0 + LANES];
            for c in 0..NR {
                let ws = &w[c][c0..c0 + LANES];
                for l in 0..LANES {
                    acc[r][c][l] = madd::<F>(xs[l], ws[l], acc[r][c][l]);
                }
            }
        }
    }
    close::<F, MR, NR>(&acc, x, w, k)
}

/// Every row holds at least `k` elements (what the SIMD kernels' unchecked loads rely on).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fits<const MR: usize, const NR: usize>(x: &[&[f32]; MR], w: &[&[f32]; NR], k: usize) -> bool {
    x.iter().chain(w).all(|r| r.len() >= k)
}

/// The tiles of one weight block `w` (`nb` rows of `k`) against all `n` tokens of `x`, into
/// `t[i * nb + j]` (`t` is `[n, nb]`), with micro-kernel `tile`.
fn block<const MR: usize, const NR: usize>(
    tile: impl Fn([&[f32]; MR], [&[f32]; NR]) -> [[f32; NR]; MR],
    w: &[f32],
    nb: usize,
    x: &[f32],
    n: usize,
    k: usize,
    t: &mut [f32],
) {
    for i0 in (0..n).step_by(MC) {
        let i1 = (i0 + MC).min(n);
        for j in (0..nb).step_by(NR) {
            // Past the last row, repeat it (the duplicate results are not stored).
            let wr: [&[f32]; NR] = std::array::from_fn(|c| {
                let jj = (j + c).min(nb - 1);
                &w[jj * k..(jj + 1) * k]
            });
            for i in (i0..i1).step_by(MR) {
                let xr: [&[f32]; MR] = std::array::from_fn(|r| {
                    let ii = (i + r).min(n - 1);
                    &x[ii * k..(ii + 1) * k]
                });
                let y = tile(xr, wr);
                for c in 0..NR.min(nb - j) {
                    for r in 0..MR.min(n - i) {
                        t[(i + r) * nb + j + c] = y[r][c];
                    }
                }
            }
        }
    }
}

/// [`block`] with the micro-kernel `kernel`. A short row (never produced by [`gemm`]) gives zeros.
fn run_block(kernel: Kernel, w: &[f32], nb: usize, x: &[f32], n: usize, k: usize, t: &mut [f32]) {
    match kernel {
        Kernel::Portable { fused } => block::<2, 3>(
            |xr, wr| {
                if !fused {
                    return tile_portable::<false, 2, 3>(xr, wr, k);
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `fused: true` is only made where `simd::fused` detected FMA.
                return unsafe { gemm_x86::tile_portable_fma(xr, wr, k) };
                #[cfg(not(target_arch = "x86_64"))]
                return tile_portable::<true, 2, 3>(xr, wr, k);
            },
            w,
            nb,
            x,
            n,
            k,
            t,
        ),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => block::<2, 3>(
            |xr, wr| {
                if !fits(&xr, &wr, k) {
                    return [[0.0; 3]; 2];
                }
                // SAFETY: `Kernel::Avx2` is only made after AVX2 and FMA were detected; every row
                // holds `k` elements (checked above).
                unsafe { gemm_x86::tile_avx2(xr, wr, k) }
            },
            w,
            nb,
            x,
            n,
            k,
            t,
        ),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => block::<{ gemm_x86::AVX512_MR }, { gemm_x86::AVX512_NR }>(
            |xr, wr| {
                if !fits(&xr, &wr, k) {
                    return [[0.0; gemm_x86::AVX512_NR]; gemm_x86::AVX512_MR];
                }
                // SAFETY: `Kernel::Avx512` is only made after AVX-512F, AVX2 and FMA were
                // detected; every row holds `k` elements (checked above).
                unsafe { gemm_x86::tile_avx512(xr, wr, k) }
            },
            w,
            nb,
            x,
            n,
            k,
            t,
        ),
    }
}

/// `t[i * nb + j] = x[i, :] · w[j, :]` for f32 rows already in memory (`x` `[n, k]`, `w` `[nb, k]`),
/// each summed exactly as `simd::dot` sums it, single-threaded: the attention score block of the
/// prefill (`attn_prefill.rs`).
pub(super) fn gemm_rows_exact(w: &[f32], nb: usize, x: &[f32], n: usize, k: usize, t: &mut [f32]) {
    if n == 0 || nb == 0 {
        return;
    }
    run_block(Kernel::detect(), w, nb, x, n, k, t);
}

/// Weight rows per parallel block: about four blocks per thread, at most `cap_bytes` of f32, then
/// rounded up to a multiple of 12 (of every kernel's tile width) — so a block can pass the cap by up to
/// 11 rows, and is 12 rows whenever fewer than 12 fit in it (`k` above ~11k with the f32 cap, ~2.7k
/// with the widened one).
fn block_rows(rows: usize, k: usize, cap_bytes: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads().max(1);
    let cap = (cap_bytes / (4 * k.max(1))).max(1);
    rows.div_ceil(tasks).min(cap).div_ceil(12) * 12
}

/// `out[i * rows + j] = x[i, :] · m[j, :]` for `i < n` (no bias), each bit-identical to the decode
/// dot product of its row. `x.len() >= n * m.cols`, `out.len() >= n * m.rows`; `tmp` is a reused
/// scratch buffer (the results block by block).
pub fn gemm(m: &Matrix, x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>) {
    gemm_with(Kernel::detect(), m, x, n, out, tmp);
}

fn gemm_with(kernel: Kernel, m: &Matrix, x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>) {
    let (rows, k) = (m.rows, m.cols);
    if n == 0 || rows == 0 {
        return;
    }
    let cap = match m.store.dtype() {
        Some(Dtype::F32) => BLOCK_BYTES,
        // Rows widened (or dequantised) into the block buffer first.
        Some(Dtype::F16 | Dtype::Bf16) | None => WIDENED_BLOCK_BYTES,
    };
    let nb = block_rows(rows, k, cap);
    tmp.clear();
    tmp.resize(rows * n, 0.0);
    tmp.par_chunks_mut(nb * n)
        .enumerate()
        .for_each_init(Vec::<f32>::new, |buf, (b, t)| {
            let (j0, rows_here) = (b * nb, t.len() / n);
            let w = m.rows_f32(j0, j0 + rows_here, buf);
            run_block(kernel, w, rows_here, x, n, k, t);
        });
    // Block `b` holds `[n, rows_here]` at `b * nb * n`: each output row is a run of block rows.
    let tmp = &tmp[..];
    out[..n * rows]
        .par_chunks_mut(rows)
        .enumerate()
        .for_each(|(i, o)| {
            for (b, ob) in o.chunks_mut(nb).enumerate() {
                let at = b * nb * n + i * ob.len();
                ob.copy_from_slice(&tmp[at..at + ob.len()]);
            }
        });
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
