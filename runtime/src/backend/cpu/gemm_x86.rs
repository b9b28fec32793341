//! x86-64 micro-kernels of the prefill GEMM (`gemm.rs`): `MR` tokens × `NR` weight rows over the whole
//! of `k`, each pair's 16 decode lanes held as two AVX2 registers (lanes 0–7, 8–15) or one AVX-512
//! register, updated by fused multiply-adds (bit-identical to `simd::dot`).
//! Every function here is `unsafe`: the caller must have detected the CPU features named in its
//! `target_feature` and must pass rows of at least `k` elements.

use super::gemm::{close, tail};
use super::simd::LANES;
use std::arch::x86_64::{
    __m256, __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
    _mm512_unpackhi_pd, _mm512_unpacklo_pd,
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
    close::<true, MR, NR>(&lanes, x, w, k)
}

/// # Safety
/// AVX-512F must be available; every row must hold at least `k` elements.
#[inline(always)]
unsafe fn body512<const MR: usize, const NR: usize>(
    x: [&[f32]; MR],
    w: [&[f32]; NR],
    k: usize,
) -> [[f32; NR]; MR] {
    // One tile is 16 pairs: their lane sums come out of one `tree16`.
    const { assert!(MR * NR == 16) };
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
    let mut pairs = [acc[0][0]; 16];
    for r in 0..MR {
        for c in 0..NR {
            pairs[r * NR + c] = acc[r][c];
        }
    }
    // SAFETY: AVX-512F is available (caller).
    let sums = unsafe { tree16(&pairs) };
    // Each pair's tail, added as `simd::finish` adds it. (Loops, not `array::from_fn`: its
    // closures were not inlined into this AVX-512 code.)
    let mut out = [[0.0f32; NR]; MR];
    for r in 0..MR {
        for c in 0..NR {
            out[r][c] = sums[r * NR + c] + tail::<true>(&x[r][full..k], &w[c][full..k]);
        }
    }
    out
}

/// The 16 lanes of each of 16 vectors summed as `simd::finish`'s halving tree, all at once: each
/// merge step adds two shuffles of a pair of registers, halving the lanes per vector and packing two
/// vectors' partial sums into one register (256-bit halves, 128-bit quarters, 64-bit pairs, then
/// single lanes). Returns the sums in the order of `v`. (With a 4 × 6 tile, 24 pairs in two trees,
/// the compiler kept accumulators on the stack through the main loop: 50% slower than 4 × 4.)
///
/// # Safety
/// AVX-512F must be available.
#[inline(always)]
unsafe fn tree16(v: &[__m512; 16]) -> [f32; 16] {
    // SAFETY (whole body): register-only AVX-512F arithmetic and shuffles, available (caller); the
    // one store writes exactly 16 f32.
    unsafe {
        let h = [
            halves(v[0], v[1]),
            halves(v[2], v[3]),
            halves(v[4], v[5]),
            halves(v[6], v[7]),
            halves(v[8], v[9]),
            halves(v[10], v[11]),
            halves(v[12], v[13]),
            halves(v[14], v[15]),
        ];
        let q = [
            quarters(h[0], h[1]),
            quarters(h[2], h[3]),
            quarters(h[4], h[5]),
            quarters(h[6], h[7]),
        ];
        let mut lanes = [0.0f32; 16];
        _mm512_storeu_ps(
            lanes.as_mut_ptr(),
            singles(pairs(q[0], q[1]), pairs(q[2], q[3])),
        );
        // Lane 4k + m holds vector 4m + k.
        let mut out = [0.0f32; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = lanes[4 * (i % 4) + i / 4];
        }
        out
    }
}

// The merge steps of `tree16` (functions, not closures, so that they are inlined into the caller's
// AVX-512 code). Each is `unsafe`: AVX-512F must be available.

/// Lanes 0-7 of the result are a's `j + (j + 8)`, lanes 8-15 b's.
#[inline(always)]
unsafe fn halves(a: __m512, b: __m512) -> __m512 {
    // SAFETY: AVX-512F (caller).
    unsafe {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    }
}

/// From two `halves` results (vectors a|b and c|d): quarter q holds vector q's `j + (j + 4)`.
#[inline(always)]
unsafe fn quarters(p: __m512, q: __m512) -> __m512 {
    // SAFETY: AVX-512F (caller).
    unsafe {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(p, q),
            _mm512_shuffle_f32x4::<0xDD>(p, q),
        )
    }
}

/// In each 128-bit lane k: lanes 0-1 hold `j + (j + 2)` of p's quarter k, lanes 2-3 q's.
#[inline(always)]
unsafe fn pairs(p: __m512, q: __m512) -> __m512 {
    // SAFETY: AVX-512F (caller).
    unsafe {
        let (p, q) = (_mm512_castps_pd(p), _mm512_castps_pd(q));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)),
        )
    }
}

/// In each 128-bit lane: the sums of r's two pairs, then s's.
#[inline(always)]
unsafe fn singles(r: __m512, s: __m512) -> __m512 {
    // SAFETY: AVX-512F (caller).
    unsafe {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(r, s),
            _mm512_shuffle_ps::<0xDD>(r, s),
        )
    }
}
/// AVX2 tile: 2 tokens × 3 weight rows (12 accumulator registers of 16).
pub const AVX2_MR: usize = 2;
pub const AVX2_NR: usize = 3;
/// AVX-512 tile: 4 tokens × 4 weight rows (16 accumulator registers of 32, one `tree16`).
pub const AVX512_MR: usize = 4;
pub const AVX512_NR: usize = 4;

/// # Safety
/// AVX2 and FMA must be available; every row must hold at least `k` elements.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_avx2(x: [&[f32]; 2], w: [&[f32]; 3], k: usize) -> [[f32; 3]; 2] {
    // SAFETY: forwarded from this function's contract.
    unsafe { body256::<AVX2_MR, AVX2_NR>(x, w, k) }
}

/// The portable tile (fused) compiled with FMA enabled, for a CPU with FMA but without AVX2
/// (without it `f32::mul_add` is a call per element).
///
/// # Safety
/// FMA must be available.
#[target_feature(enable = "fma")]
pub unsafe fn tile_portable_fma(x: [&[f32]; 2], w: [&[f32]; 3], k: usize) -> [[f32; 3]; 2] {
    super::gemm::tile_portable::<true, 2, 3>(x, w, k)
}

/// # Safety
/// AVX-512F, AVX2 and FMA must be available (Rust's `avx512f` implies the other two in the code it
/// compiles; the caller checks all three); every row must hold at least `k` elements.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_avx512(x: [&[f32]; 4], w: [&[f32]; 4], k: usize) -> [[f32; 4]; 4] {
    // SAFETY: forwarded from this function's contract.
    unsafe { body512::<AVX512_MR, AVX512_NR>(x, w, k) }
}
