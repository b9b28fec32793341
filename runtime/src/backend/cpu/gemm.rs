//! The prompt (several token rows) matmul as a register- and cache-blocked GEMM:
//! `y[i, j] = x[i, :] · W[j, :]`, `x` f32 `[n, k]`, `W` row-major `[rows, k]` in f32 / f16 / bf16.
//!
//! Work layout:
//! - the weight rows are split in blocks (≤ 512 KiB of f32, so a block stays in L2) handed to the rayon
//!   pool; a 16-bit block is converted to f32 once into a per-thread buffer (F16C / a shift for bf16);
//! - inside a block, tokens go in groups of [`MC`] (their rows stay in L2), and for each tile of
//!   [`NR`] weight rows (kept in L1 while it is reused) the micro-kernel runs over every [`MR`]-token
//!   tile of the group: `MR × NR` dot products over the whole of `k` at once, so each loaded weight
//!   vector serves `MR` tokens and each token vector `NR` weight rows.
//!
//! Numerics ([`Numerics::MatchDecode`], what the engine uses): each output is formed exactly as the
//! decode dot product (`simd::dot`) forms it: 16 lane accumulators over `k` (lane `l` takes the
//! `k ≡ l (mod 16)` elements of the full 16-blocks), every product rounded and then added (no FMA),
//! the `k mod 16` tail summed in order, lanes summed in order by `simd::finish`. So a token's result
//! does not depend on how many tokens are computed together. [`Numerics::Fused`] uses FMA for the
//! lane updates instead: about twice the arithmetic throughput, results that differ from decode in
//! the last bits (see `matrix::PREFILL_NUMERICS`).

use super::matrix::{Matrix, Store};
use super::simd::{LANES, finish};
use half::{bf16, f16};
use rayon::prelude::*;

/// Tokens per micro-tile.
pub const MR: usize = 2;
/// Weight rows per micro-tile.
pub const NR: usize = 3;
/// Tokens per L2 group.
pub const MC: usize = 64;
/// Upper bound on one weight block converted to f32 (bytes).
const BLOCK_BYTES: usize = 512 * 1024;

/// How a lane accumulates a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numerics {
    /// Multiply, round, add: bit-identical to the decode dot product.
    MatchDecode,
    /// Fused multiply-add where the CPU has FMA (falls back to `MatchDecode` otherwise).
    Fused,
}

type Tile = [[f32; NR]; MR];

/// The micro-kernel implementation, chosen once per GEMM by run-time CPU detection. The SIMD
/// variants are only constructed by [`Kernel::detect`] after their features were detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    fn detect(numerics: Numerics) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            if numerics == Numerics::Fused && std::is_x86_feature_detected!("fma") {
                return Kernel::Avx2Fma;
            }
            return Kernel::Avx2;
        }
        let _ = numerics;
        Kernel::Portable
    }
}

/// The `k mod 16` tail of every pair, summed in order, then the lanes by `finish` (as `simd::dot`).
#[inline(always)]
fn close(lanes: &[[[f32; LANES]; NR]; MR], x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
    let full = k - k % LANES;
    let mut out = [[0.0f32; NR]; MR];
    for r in 0..MR {
        for c in 0..NR {
            let mut tail = 0.0f32;
            for (a, b) in x[r][full..k].iter().zip(&w[c][full..k]) {
                tail += a * b;
            }
            out[r][c] = finish(lanes[r][c], tail);
        }
    }
    out
}

/// The portable micro-kernel (auto-vectorised lane loops; multiply then add).
fn tile_portable(x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
    let full = k - k % LANES;
    let mut acc = [[[0.0f32; LANES]; NR]; MR];
    for c0 in (0..full).step_by(LANES) {
        for r in 0..MR {
            let xs = &x[r][c0..c0 + LANES];
            for c in 0..NR {
                let ws = &w[c][c0..c0 + LANES];
                for l in 0..LANES {
                    acc[r][c][l] += xs[l] * ws[l];
                }
            }
        }
    }
    close(&acc, x, w, k)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LANES, MR, NR, Tile, close};
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    /// `MR × NR` pairs, each as two 8-lane registers (lanes 0–7 and 8–15 of the 16-lane layout).
    ///
    /// # Safety
    /// AVX2 (and FMA when `FUSED`) must be available; every row must hold at least `k` elements.
    #[inline(always)]
    unsafe fn body<const FUSED: bool>(x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
        let full = k - k % LANES;
        // SAFETY: AVX is available (implied by the caller's AVX2).
        let mut acc = [[[unsafe { _mm256_setzero_ps() }; 2]; NR]; MR];
        let mut c0 = 0;
        while c0 < full {
            for h in 0..2 {
                let o = c0 + 8 * h;
                // SAFETY: o + 8 <= full <= k <= every row's length (caller); unaligned loads.
                let xv: [__m256; MR] =
                    std::array::from_fn(|r| unsafe { _mm256_loadu_ps(x[r].as_ptr().add(o)) });
                for c in 0..NR {
                    // SAFETY: as above; the arithmetic needs AVX2 / FMA, guaranteed by the caller.
                    unsafe {
                        let wv = _mm256_loadu_ps(w[c].as_ptr().add(o));
                        for r in 0..MR {
                            let a = acc[r][c][h];
                            acc[r][c][h] = if FUSED {
                                _mm256_fmadd_ps(xv[r], wv, a)
                            } else {
                                _mm256_add_ps(a, _mm256_mul_ps(xv[r], wv))
                            };
                        }
                    }
                }
            }
            c0 += LANES;
        }
        let mut lanes = [[[0.0f32; LANES]; NR]; MR];
        for r in 0..MR {
            for c in 0..NR {
                // SAFETY: each destination holds 16 f32; the two unaligned stores write 8 each.
                unsafe {
                    _mm256_storeu_ps(lanes[r][c].as_mut_ptr(), acc[r][c][0]);
                    _mm256_storeu_ps(lanes[r][c].as_mut_ptr().add(8), acc[r][c][1]);
                }
            }
        }
        close(&lanes, x, w, k)
    }

    /// # Safety
    /// AVX2 must be available; every row must hold at least `k` elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_avx2(x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
        // SAFETY: forwarded from this function's contract.
        unsafe { body::<false>(x, w, k) }
    }

    /// # Safety
    /// AVX2 and FMA must be available; every row must hold at least `k` elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2_fma(x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
        // SAFETY: forwarded from this function's contract.
        unsafe { body::<true>(x, w, k) }
    }

    /// f16 → f32 with F16C, 8 at a time.
    ///
    /// # Safety
    /// F16C (and AVX) must be available.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps};
        let n = src.len().min(dst.len());
        let full = n - n % 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 <= n <= both lengths; unaligned load and store.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for i in full..n {
            dst[i] = src[i].to_f32();
        }
    }
}

/// One micro-tile; rows shorter than `k` (never produced by [`gemm`]) give zeros, not UB.
#[inline(always)]
fn tile(kernel: Kernel, x: [&[f32]; MR], w: [&[f32]; NR], k: usize) -> Tile {
    if x.iter().chain(&w).any(|r| r.len() < k) {
        return [[0.0; NR]; MR];
    }
    match kernel {
        Kernel::Portable => tile_portable(x, w, k),
        // SAFETY: `Kernel::Avx2` is only made by `detect` after AVX2 was detected; rows checked above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { x86::tile_avx2(x, w, k) },
        // SAFETY: `Kernel::Avx2Fma` is only made after AVX2 and FMA were detected; rows checked above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => unsafe { x86::tile_avx2_fma(x, w, k) },
    }
}

/// f16 / bf16 weight rows to f32 (exact conversions).
fn widen_f16(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") {
        // SAFETY: F16C support (which implies AVX on every CPU that has it) was just detected.
        return unsafe { x86::f16_to_f32(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

/// Weight rows per parallel block: about four blocks per thread, a multiple of `NR`, at most
/// `BLOCK_BYTES` of f32.
fn block_rows(rows: usize, k: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads().max(1);
    let cap = (BLOCK_BYTES / (4 * k.max(1))).max(NR);
    rows.div_ceil(tasks).min(cap).div_ceil(NR) * NR
}

/// The tiles of one weight block `w` (`nb` rows of `k`) against all `n` tokens of `x`, into
/// `t[j * n + i]` (`t` is `[nb, n]`).
fn block(kernel: Kernel, w: &[f32], nb: usize, x: &[f32], n: usize, k: usize, t: &mut [f32]) {
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
                let y = tile(kernel, xr, wr, k);
                for c in 0..NR.min(nb - j) {
                    for r in 0..MR.min(n - i) {
                        t[(j + c) * n + i + r] = y[r][c];
                    }
                }
            }
        }
    }
}

/// `out[i * rows + j] = x[i, :] · m[j, :]` for `i < n` (no bias). `x.len() >= n * m.cols`,
/// `out.len() >= n * m.rows`; `tmp` is a reused scratch buffer (`[rows, n]` results).
pub fn gemm(m: &Matrix, x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>, num: Numerics) {
    let (rows, k) = (m.rows, m.cols);
    if n == 0 || rows == 0 {
        return;
    }
    let kernel = Kernel::detect(num);
    let nb = block_rows(rows, k);
    tmp.clear();
    tmp.resize(rows * n, 0.0);
    tmp.par_chunks_mut(nb * n).enumerate().for_each_init(
        Vec::<f32>::new,
        |buf, (b, t)| {
            let (j0, rows_here) = (b * nb, t.len() / n);
            let range = j0 * k..(j0 + rows_here) * k;
            let w: &[f32] = match &m.store {
                Store::F32(v) => &v[range],
                Store::F16(v) => {
                    buf.resize(rows_here * k, 0.0);
                    widen_f16(&v[range], buf);
                    buf
                }
                Store::Bf16(v) => {
                    buf.resize(rows_here * k, 0.0);
                    widen_bf16(&v[range], buf);
                    buf
                }
            };
            block(kernel, w, rows_here, x, n, k, t);
        },
    );
    let tmp = &tmp[..];
    out[..n * rows]
        .par_chunks_mut(rows)
        .enumerate()
        .for_each(|(i, o)| {
            for (j, v) in o.iter_mut().enumerate() {
                *v = tmp[j * n + i];
            }
        });
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
