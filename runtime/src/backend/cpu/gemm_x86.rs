//! x86-64 micro-kernels of the prefill GEMM (`gemm.rs`): `MR` tokens × `NR` weight rows over the whole
//! of `k`, each pair's 16 decode lanes held as two AVX2 registers (lanes 0–7, 8–15) or one AVX-512
//! register, updated by fused multiply-adds (bit-identical to `simd::dot`).
//! Every function here is `unsafe`: the caller must have detected the CPU features named in its
//! `target_feature` and must pass rows of at least `k` elements.

use super::gemm::close;
use super::simd::LANES;
use std::arch::x86_64::{
    __m256, __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

/// # Safety
/// AVX2 and FMA must be available; every row must hold at least `k` elements.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `h` picks both the register half and the load offset.
unsafe fn body256<const MR: usize, const NR: usize>(
    x: [&[f32]; MR],
    w: [&[f32]; NR],
    k: usize,
) -> [[f32; NR]; MR] {
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
                        acc[r][c][h] = _mm256_fmadd_ps(xv[r], wv, acc[r][c][h]);
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
/// AVX-512F must be available; every row must hold at least `k` elements.
#[inline(always)]
unsafe fn body512<const MR: usize, const NR: usize>(
    x: [&[f32]; MR],
    w: [&[f32]; NR],
    k: usize,
) -> [[f32; NR]; MR] {
    let full = k - k % LANES;
    // SAFETY: AVX-512F is available (caller).
    let mut acc = [[unsafe { _mm512_setzero_ps() }; NR]; MR];
    let mut o = 0;
    while o < full {
        // SAFETY: o + 16 <= full <= k <= every row's length (caller); unaligned loads.
        let xv: [__m512; MR] =
            std::array::from_fn(|r| unsafe { _mm512_loadu_ps(x[r].as_ptr().add(o)) });
        for c in 0..NR {
            // SAFETY: as above; AVX-512F arithmetic, available (caller).
            unsafe {
                let wv = _mm512_loadu_ps(w[c].as_ptr().add(o));
                for r in 0..MR {
                    acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
                }
            }
        }
        o += LANES;
    }
    let mut lanes = [[[0.0f32; LANES]; NR]; MR];
    for r in 0..MR {
        for c in 0..NR {
            // SAFETY: each destination holds exactly 16 f32; unaligned store.
            unsafe { _mm512_storeu_ps(lanes[r][c].as_mut_ptr(), acc[r][c]) };
        }
    }
    close(&lanes, x, w, k)
}

/// AVX2 tile: 2 tokens × 3 weight rows (12 accumulator registers of 16).
pub const AVX2_MR: usize = 2;
pub const AVX2_NR: usize = 3;
/// AVX-512 tile: 4 tokens × 6 weight rows (24 accumulator registers of 32).
pub const AVX512_MR: usize = 4;
pub const AVX512_NR: usize = 6;

/// # Safety
/// AVX2 and FMA must be available; every row must hold at least `k` elements.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_avx2(x: [&[f32]; 2], w: [&[f32]; 3], k: usize) -> [[f32; 3]; 2] {
    // SAFETY: forwarded from this function's contract.
    unsafe { body256::<AVX2_MR, AVX2_NR>(x, w, k) }
}

/// # Safety
/// AVX-512F must be available (it includes FMA); every row must hold at least `k` elements.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_avx512(x: [&[f32]; 4], w: [&[f32]; 6], k: usize) -> [[f32; 6]; 4] {
    // SAFETY: forwarded from this function's contract.
    unsafe { body512::<AVX512_MR, AVX512_NR>(x, w, k) }
}
