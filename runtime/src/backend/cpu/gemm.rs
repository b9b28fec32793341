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

/// Where a weight block's results go: token `i`, block row `j` at `ptr + i * ld + j`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    ld: usize,
}

impl Out {
    /// The same rows from column `j` on.
    ///
    /// # Safety
    /// `j` must be within the row length of the buffer `self` points into.
    unsafe fn at_col(self, j: usize) -> Out {
        Out {
            // SAFETY: inside the buffer (caller).
            ptr: unsafe { self.ptr.add(j) },
            ld: self.ld,
        }
    }
}

// SAFETY: an `Out` is only a place to write; the tasks that share one write disjoint columns of it
// (`gemm_with`), and it never outlives the buffer it points into.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

/// The tiles of one weight block `w` (`nb` rows of `k`) against all `n` tokens of `x`, into
/// `t` (token `i`, row `j` at `t.ptr + i * t.ld + j`), with micro-kernel `tile`.
///
/// # Safety
/// `t` must be valid for writes at `i * t.ld + j` for every `i < n`, `j < nb`, and no other thread
/// may touch those elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block<const MR: usize, const NR: usize>(
    tile: impl Fn([&[f32]; MR], [&[f32]; NR]) -> [[f32; NR]; MR],
    w: &[f32],
    nb: usize,
    x: &[f32],
    n: usize,
    k: usize,
    t: Out,
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
                        // SAFETY: i + r < n and j + c < nb: inside what the caller lent.
                        unsafe { *t.ptr.add((i + r) * t.ld + j + c) = y[r][c] };
                    }
                }
            }
        }
    }
}

/// [`block`] with the micro-kernel `kernel`. A short row (never produced by [`gemm`]) gives zeros.
///
/// # Safety
/// As [`block`].
unsafe fn run_block(kernel: Kernel, w: &[f32], nb: usize, x: &[f32], n: usize, k: usize, t: Out) {
    match kernel {
        Kernel::Portable { fused } => {
            let tile = |xr: [&[f32]; 2], wr: [&[f32]; 3]| {
                if !fused {
                    return tile_portable::<false, 2, 3>(xr, wr, k);
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `fused: true` is only made where `simd::fused` detected FMA.
                return unsafe { gemm_x86::tile_portable_fma(xr, wr, k) };
                #[cfg(not(target_arch = "x86_64"))]
                return tile_portable::<true, 2, 3>(xr, wr, k);
            };
            // SAFETY: the caller's contract on `t`, passed on.
            unsafe { block::<2, 3>(tile, w, nb, x, n, k, t) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            let tile = |xr: [&[f32]; 2], wr: [&[f32]; 3]| {
                if !fits(&xr, &wr, k) {
                    return [[0.0; 3]; 2];
                }
                // SAFETY: `Kernel::Avx2` is only made after AVX2 and FMA were detected; every row
                // holds `k` elements (checked above).
                unsafe { gemm_x86::tile_avx2(xr, wr, k) }
            };
            // SAFETY: the caller's contract on `t`, passed on.
            unsafe { block::<2, 3>(tile, w, nb, x, n, k, t) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            use gemm_x86::{AVX512_MR as MR, AVX512_NR as NR};
            let tile = |xr: [&[f32]; MR], wr: [&[f32]; NR]| {
                if !fits(&xr, &wr, k) {
                    return [[0.0; NR]; MR];
                }
                // SAFETY: `Kernel::Avx512` is only made after AVX-512F, AVX2 and FMA were
                // detected; every row holds `k` elements (checked above).
                unsafe { gemm_x86::tile_avx512(xr, wr, k) }
            };
            // SAFETY: the caller's contract on `t`, passed on.
            unsafe { block::<MR, NR>(tile, w, nb, x, n, k, t) }
        }
    }
}

/// `t[i * nb + j] = x[i, :] · w[j, :]` for f32 rows already in memory (`x` `[n, k]`, `w` `[nb, k]`),
/// each summed exactly as `simd::dot` sums it, single-threaded: the attention score block of the
/// prefill (`attn_prefill.rs`).
pub(super) fn gemm_rows_exact(w: &[f32], nb: usize, x: &[f32], n: usize, k: usize, t: &mut [f32]) {
    if n == 0 || nb == 0 {
        return;
    }
    assert!(t.len() >= n * nb, "the score block holds n * nb values");
    let out = Out {
        ptr: t.as_mut_ptr(),
        ld: nb,
    };
    // SAFETY: `t` (borrowed mutably here) holds `[n, nb]` (checked above).
    unsafe { run_block(Kernel::detect(), w, nb, x, n, k, out) };
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
/// dot product of its row. `x.len() >= n * m.cols`, `out.len() >= n * m.rows` (else a panic).
pub fn gemm(m: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    gemm_with(Kernel::detect(), m, x, n, out);
}

fn gemm_with(kernel: Kernel, m: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, k) = (m.rows, m.cols);
    if n == 0 || rows == 0 {
        return;
    }
    assert!(
        out.len() >= n * rows && x.len() >= n * k,
        "x holds [n, cols], out [n, rows]"
    );
    let cap = match m.store.dtype() {
        Some(Dtype::F32) => BLOCK_BYTES,
        // Rows widened (or dequantised) into the block buffer first.
        Some(Dtype::F16 | Dtype::Bf16) | None => WIDENED_BLOCK_BYTES,
    };
    let nb = block_rows(rows, k, cap);
    let o = Out {
        ptr: out.as_mut_ptr(),
        ld: rows,
    };
    (0..rows.div_ceil(nb)).into_par_iter().for_each(|b| {
        let (j0, j1) = (b * nb, ((b + 1) * nb).min(rows));
        BLOCK_BUF.with_borrow_mut(|buf| {
            let w = m.rows_f32(j0, j1, buf);
            // SAFETY: j0 < rows, the length of `out`'s rows.
            let at = unsafe { o.at_col(j0) };
            // SAFETY: `out` holds `[n, rows]` (checked above) and this task alone writes its
            // columns `j0..j1` (the blocks of different tasks are disjoint).
            unsafe { run_block(kernel, w, j1 - j0, x, n, k, at) };
        });
    });
}

thread_local! {
    /// The rows of one weight block widened or dequantised to f32, per thread, kept across calls so
    /// that a GEMM neither allocates, zeroes nor faults in its block buffers.
    static BLOCK_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
