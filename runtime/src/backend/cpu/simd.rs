//! Dot products of an f32 vector with f32 / bf16 / f16 weight rows, with `LANES` independent
//! accumulators summed in a fixed order, every product added by a fused multiply-add (one rounding).
//! On x86-64 with AVX2 + FMA (+F16C) the same lane structure is compiled for 256-bit registers,
//! chosen at run time; the portable path uses `f32::mul_add` where the CPU has FMA, so both paths
//! give bit-identical results. The prefill GEMM (`gemm.rs`) forms every output the same way, so
//! prefill and decode agree bit for bit. On a CPU without FMA (an x86-64 before Haswell /
//! Piledriver, where no SIMD path runs) the portable paths multiply, round and add instead
//! ([`fused`]): `mul_add` would be a software routine per element there. On an x86-64 with FMA but
//! without AVX2 the fused portable loops run compiled with FMA enabled.
//!
//! `dot4` computes four f32 rows against one vector at once: the same per-row lanes and summation
//! order (so each result is bit-identical to `dot` of that row), but four weight streams in flight and
//! one load of `x` per four rows. It made the FP32 decode matvec ~15% faster on the 2-core test machine;
//! the same treatment of bf16/f16 rows measured slower there, so 16-bit rows stay one at a time.

use half::{bf16, f16};

pub const LANES: usize = 16;

/// The lanes summed as a halving tree (lane `j` plus lane `j + 8`, then `j + 4`, `j + 2`, `j + 1`),
/// then the tail. Shared with the prefill GEMM (`gemm.rs`), whose AVX-512 tile forms the same tree
/// for 16 dot products at once in vector registers (`gemm_x86::tree16`).
#[inline(always)]
pub(super) fn finish(acc: [f32; LANES], tail: f32) -> f32 {
    const { assert!(LANES == 16) };
    let mut v = acc;
    for j in 0..8 {
        v[j] += v[j + 8];
    }
    for j in 0..4 {
        v[j] += v[j + 4];
    }
    for j in 0..2 {
        v[j] += v[j + 2];
    }
    (v[0] + v[1]) + tail
}

/// Whether this CPU has a fused multiply-add: how every portable dot product (here and in the
/// prefill GEMM) adds its products. Every SIMD path needs FMA, so where one runs this is `true`.
/// On x86-64 the fused portable loops are compiled with FMA enabled (`x86::fused`); aarch64 always
/// has it; elsewhere `f32::mul_add` may be a software routine, so those targets multiply and add.
pub(super) fn fused() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("fma");
    #[cfg(target_arch = "aarch64")]
    return true;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return false;
}

/// `a·b + c` rounded once (`FUSED`, [`fused`]) or twice.
#[inline(always)]
pub(super) fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// Bytes ahead of the current weight position that the dot products ask the cache for. The hardware
/// prefetchers of the test machine (a KVM guest) did not keep a decode matvec's weight stream in
/// flight: asking explicitly made FP16 decode ~25% faster there (bench/RESULTS.md).
const PREFETCH_BYTES: usize = 2048;

/// Ask for the cache line `PREFETCH_BYTES` past `p` (a hint: no fault, no effect on results).
#[inline(always)]
fn prefetch_ahead<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let ahead = (p as *const i8).wrapping_add(PREFETCH_BYTES);
        // SAFETY: a prefetch never faults and reads nothing into the program; any address is fine.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A weight element the dot products read, widened to f32 exactly.
pub(super) trait Weight: Copy {
    fn widen(self) -> f32;
}

impl Weight for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Weight for bf16 {
    /// A bf16 is the top half of its f32.
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
}

impl Weight for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// The portable dot product: products added fused (`F`) or not, lanes and tail summed by `finish`.
/// The SIMD paths and the prefill GEMM (whose tests compare against it) give the same bits.
#[inline(always)]
pub(super) fn dot_body<T: Weight, const F: bool>(w: &[T], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let mut acc = [0.0f32; LANES];
    let mut cw = w.chunks_exact(LANES);
    let mut cx = x.chunks_exact(LANES);
    for (xw, xx) in (&mut cw).zip(&mut cx) {
        prefetch_ahead(xw.as_ptr());
        for l in 0..LANES {
            acc[l] = madd::<F>(xw[l].widen(), xx[l], acc[l]);
        }
    }
    let mut tail = 0.0f32;
    for (a, b) in cw.remainder().iter().zip(cx.remainder()) {
        tail = madd::<F>(a.widen(), *b, tail);
    }
    finish(acc, tail)
}

/// [`dot_body`] with this CPU's numerics ([`fused`]): what every dot product falls back to without
/// a SIMD path. On x86-64 the fused loop runs compiled with FMA (`f32::mul_add` would otherwise be a
/// call per element).
#[inline]
fn portable<T: Weight>(w: &[T], x: &[f32]) -> f32 {
    if fused() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fused()` detected FMA on this x86-64.
        return unsafe { x86::fused(w, x) };
        #[cfg(not(target_arch = "x86_64"))]
        return dot_body::<T, true>(w, x);
    }
    dot_body::<T, false>(w, x)
}

/// Whether the AVX2 + FMA dot products run on this CPU (the prefill GEMM's SIMD kernels use the
/// same test, so that both add products alike).
#[cfg(target_arch = "x86_64")]
pub(super) use x86::has_avx2_fma;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LANES, Weight, finish, prefetch_ahead};
    use half::{bf16, f16};
    use std::arch::x86_64::{
        __m128i, __m256, _mm_loadu_si128, _mm256_castsi256_ps, _mm256_cvtepu16_epi32,
        _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_slli_epi32,
        _mm256_storeu_ps,
    };

    pub fn has_avx2_fma() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    pub fn has_f16c() -> bool {
        has_avx2_fma() && std::is_x86_feature_detected!("f16c")
    }

    /// A weight type the AVX2 walk loads 16 at a time, widened to f32.
    trait Widen: Weight {
        /// The 16 weights at `p` as f32, lanes 0–7 and 8–15.
        ///
        /// # Safety
        /// 16 elements must be readable at `p`; the CPU features of the calling dot product.
        unsafe fn load16(p: *const Self) -> (__m256, __m256);
    }

    impl Widen for f32 {
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> (__m256, __m256) {
            // SAFETY: 16 readable f32 at `p`, AVX (implied by the caller's AVX2); unaligned loads.
            unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
    }

    impl Widen for bf16 {
        #[inline(always)]
        unsafe fn load16(p: *const bf16) -> (__m256, __m256) {
            // SAFETY: 16 readable bf16 (32 bytes) at `p` (caller); unaligned loads; AVX2 (caller).
            // A bf16 is the top half of its f32: zero-extend to 32 bits and shift left by 16.
            unsafe {
                let half = |q: *const bf16| {
                    let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(q as *const __m128i));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
                };
                (half(p), half(p.add(8)))
            }
        }
    }

    impl Widen for f16 {
        #[inline(always)]
        unsafe fn load16(p: *const f16) -> (__m256, __m256) {
            // SAFETY: 16 readable f16 (32 bytes) at `p` (caller); unaligned loads; F16C (caller).
            unsafe {
                let h0 = _mm_loadu_si128(p as *const __m128i);
                let h1 = _mm_loadu_si128(p.add(8) as *const __m128i);
                (_mm256_cvtph_ps(h0), _mm256_cvtph_ps(h1))
            }
        }
    }

    /// The portable dot product's 16 lanes in two 256-bit registers (lanes 0–7 and 8–15), each
    /// updated by one FMA per block, the tail and the lanes then summed as `finish` does: the same
    /// result, bit for bit. Written out rather than left to the auto-vectoriser, which split the
    /// lanes into 128-bit registers once `finish` became a tree (15-25% slower decode).
    ///
    /// # Safety
    /// AVX2 and FMA (and F16C for f16) must be available (callers' `target_feature`).
    #[inline(always)]
    unsafe fn walk<T: Widen>(w: &[T], x: &[f32]) -> f32 {
        let n = w.len().min(x.len());
        let full = n - n % LANES;
        // SAFETY (whole body): AVX2/FMA available (caller); i + 16 <= full <= the length of both
        // slices for every load; the two stores write 8 f32 each into 16.
        unsafe {
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            while i < full {
                prefetch_ahead(w.as_ptr().wrapping_add(i));
                let (w0, w1) = T::load16(w.as_ptr().add(i));
                acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.as_ptr().add(i + 8)), acc1);
                i += LANES;
            }
            let mut acc = [0.0f32; LANES];
            _mm256_storeu_ps(acc.as_mut_ptr(), acc0);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), acc1);
            let mut tail = 0.0f32;
            for j in full..n {
                tail = w[j].widen().mul_add(x[j], tail);
            }
            finish(acc, tail)
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA (checked by the caller with `has_avx2_fma`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: AVX2 and FMA (this function's contract).
        unsafe { walk(a, b) }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA (checked by the caller with `has_avx2_fma`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
        // SAFETY: AVX2 and FMA (this function's contract).
        unsafe { walk(w, x) }
    }

    /// The portable fused dot product compiled with FMA enabled, for a CPU with FMA but without AVX2
    /// (without it `f32::mul_add` is a call per element).
    ///
    /// # Safety
    /// The CPU must support FMA.
    #[target_feature(enable = "fma")]
    pub unsafe fn fused<T: Weight>(w: &[T], x: &[f32]) -> f32 {
        super::dot_body::<T, true>(w, x)
    }

    /// `dst[i] = src[i]` widened (exact), 16 at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C (checked by the caller with `has_f16c`).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn widen_f16(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let full = n - n % LANES;
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= the length of both slices; unaligned loads and stores.
            unsafe {
                let (a, b) = <f16 as Widen>::load16(src.as_ptr().add(i));
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), a);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i + 8), b);
            }
            i += LANES;
        }
        for j in full..n {
            dst[j] = src[j].to_f32();
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C (checked by the caller with `has_f16c`).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
        // SAFETY: AVX2, FMA and F16C (this function's contract).
        unsafe { walk(w, x) }
    }

    /// Four rows at once: per row two 8-lane accumulators (lanes 0–7 and 8–15 of the portable
    /// layout), each updated with one fused multiply-add, then summed exactly as `finish` does.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; every row of `w` must hold at least `x.len()` elements
    /// (checked by the safe wrapper).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_f32(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        let n = x.len();
        let full = n - n % LANES;
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= n <= every row's length; unaligned loads throughout.
            unsafe {
                let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
                let x1 = _mm256_loadu_ps(x.as_ptr().add(i + 8));
                for (r, row) in w.iter().enumerate() {
                    let p = row.as_ptr().add(i);
                    prefetch_ahead(p);
                    let (w0, w1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                    acc[2 * r] = _mm256_fmadd_ps(w0, x0, acc[2 * r]);
                    acc[2 * r + 1] = _mm256_fmadd_ps(w1, x1, acc[2 * r + 1]);
                }
            }
            i += LANES;
        }
        let mut out = [0.0f32; 4];
        for (r, row) in w.iter().enumerate() {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds exactly 16 f32, the two unaligned stores write 8 each.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[2 * r]);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[2 * r + 1]);
            }
            let mut tail = 0.0f32;
            for j in full..n {
                tail = row[j].mul_add(x[j], tail);
            }
            out[r] = finish(lanes, tail);
        }
        out
    }
}

/// `dst[i] = src[i] as f32` (exact) for f16 rows: F16C where the CPU has it (the `half` crate's
/// slice conversion made a call per 8 values, a third of a short prompt's FP16 prefill time).
pub fn widen_f16(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::has_f16c() {
        // SAFETY: AVX2, FMA and F16C support were just detected.
        return unsafe { x86::widen_f16(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// Every row at least as long as `x` (what the unchecked SIMD loads rely on).
#[cfg(target_arch = "x86_64")]
fn rows_fit<T>(w: &[&[T]; 4], x: &[f32]) -> bool {
    w.iter().all(|r| r.len() >= x.len())
}

/// `[dot(w[0], x), …, dot(w[3], x)]`, each bit-identical to [`dot`].
#[inline]
pub fn dot4(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() && rows_fit(&w, x) {
        // SAFETY: AVX2 and FMA support were just detected and every row is long enough.
        return unsafe { x86::dot4_f32(w, x) };
    }
    w.map(|r| dot(r, x))
}

/// `Σ a[i]·b[i]`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        // SAFETY: AVX2 and FMA support were just detected.
        return unsafe { x86::dot_f32(a, b) };
    }
    portable(a, b)
}

/// `Σ w[i]·x[i]` with bf16 weights.
#[inline]
pub fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2_fma() {
        // SAFETY: AVX2 and FMA support were just detected.
        return unsafe { x86::dot_bf16(w, x) };
    }
    portable(w, x)
}

/// `Σ w[i]·x[i]` with f16 weights.
#[inline]
pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_f16c() {
        // SAFETY: AVX2, FMA and F16C support were just detected.
        return unsafe { x86::dot_f16(w, x) };
    }
    portable(w, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_paths_are_bit_identical_to_portable() {
        let mut s = 3u64;
        let mut r = || crate::backend::cpu::test_data::lcg(&mut s);
        for n in [0, 1, 15, 16, 17, 100, 576, 1537] {
            let a: Vec<f32> = (0..n).map(|_| r()).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
            let bb: Vec<bf16> = a.iter().map(|&v| bf16::from_f32(v)).collect();
            let [p32, pbf, ph] = [portable(&a, &b), portable(&bb, &b), portable(&h, &b)];
            assert_eq!(dot(&a, &b).to_bits(), p32.to_bits(), "f32 n={n}");
            assert_eq!(dot_bf16(&bb, &b).to_bits(), pbf.to_bits(), "bf16 n={n}");
            assert_eq!(dot_f16(&h, &b).to_bits(), ph.to_bits(), "f16 n={n}");
            let rows = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| x * 0.5 - 0.25).collect() };
            let (a1, a2, a3) = (rows(&a), rows(&b), rows(&rows(&a)));
            let four = dot4([&a, &a1, &a2, &a3], &b);
            for (got, row) in four.iter().zip([&a, &a1, &a2, &a3]) {
                assert_eq!(got.to_bits(), dot(row, &b).to_bits(), "dot4 f32 n={n}");
            }
            // Both numerics of the portable paths (whichever this CPU does not use included) against
            // the f64 dot product of the same (rounded) values: within the f32 dot product's bound.
            let exact = |w: &[f32]| -> (f64, f64) {
                let e = w.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
                let mag: f64 = w
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (*x as f64 * *y as f64).abs())
                    .sum();
                (e, mag * (n + 1) as f64 * f64::powi(2.0, -24))
            };
            let wh: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            let wb: Vec<f32> = bb.iter().map(|v| v.to_f32()).collect();
            // Each weight type's portable path equals the f32 one on the widened weights, bit for
            // bit, in both numerics (the GEMM, which widens blocks to f32, relies on it).
            let same = [
                (
                    dot_body::<bf16, true>(&bb, &b),
                    dot_body::<f32, true>(&wb, &b),
                ),
                (
                    dot_body::<bf16, false>(&bb, &b),
                    dot_body::<f32, false>(&wb, &b),
                ),
                (
                    dot_body::<f16, true>(&h, &b),
                    dot_body::<f32, true>(&wh, &b),
                ),
                (
                    dot_body::<f16, false>(&h, &b),
                    dot_body::<f32, false>(&wh, &b),
                ),
            ];
            for (i, (got, want)) in same.iter().enumerate() {
                assert_eq!(got.to_bits(), want.to_bits(), "widened pair {i}, n={n}");
            }
            // The FMA-compiled portable loops (a CPU with FMA but without AVX2) are the same loops.
            #[cfg(target_arch = "x86_64")]
            if fused() {
                // SAFETY: `fused()` detected FMA.
                let fma = unsafe { [x86::fused(&a, &b), x86::fused(&bb, &b), x86::fused(&h, &b)] };
                let want = [
                    dot_body::<f32, true>(&a, &b),
                    dot_body::<bf16, true>(&bb, &b),
                    dot_body::<f16, true>(&h, &b),
                ];
                for (g, w) in fma.iter().zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "FMA-compiled portable, n={n}");
                }
            }
            let got = [
                (dot_body::<f32, true>(&a, &b), exact(&a)),
                (dot_body::<f32, false>(&a, &b), exact(&a)),
                (dot_body::<bf16, true>(&bb, &b), exact(&wb)),
                (dot_body::<bf16, false>(&bb, &b), exact(&wb)),
                (dot_body::<f16, true>(&h, &b), exact(&wh)),
                (dot_body::<f16, false>(&h, &b), exact(&wh)),
            ];
            for (i, (g, (e, bound))) in got.iter().enumerate() {
                assert!(
                    (*g as f64 - e).abs() <= *bound,
                    "portable variant {i}, n={n}: {g} vs {e} (bound {bound})"
                );
            }
        }
    }
}
