//! Dot products of rows kept as GGML blocks with an f32 input, without widening the row in memory:
//! on x86-64 with AVX2 and FMA, each block's weights are dequantised in registers with the GGUF
//! loader's arithmetic (`weights::gguf`'s `dequant.rs`: the f16 scale widened, one multiply per value,
//! Q4_1's minimum added after it) and accumulated into the 16 lanes of `simd::dot`'s AVX2 walk in the
//! same order, so a row's result is bit-identical to `dot(dequantised row, x)` — what the prefill
//! GEMM computes from dequantised rows, and the dense engine from the dequantised weights. Types
//! without a kernel here (and CPUs without AVX2) dequantise the row into a buffer and call `dot`.

use super::simd::dot;
use crate::format::BlockType;

/// `Σ row[i]·x[i]` for one row of `cols` weights stored as blocks of `t`; `buf` is scratch of at least
/// `cols` values for the types dequantised first.
pub fn row_dot(t: BlockType, row: &[u8], x: &[f32], buf: &mut Vec<f32>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2_fma() {
        // SAFETY: AVX2 and FMA support were just detected; `row` holds whole blocks of `t` and `x`
        // at least as many values as they do (the callers' matrix shapes).
        if let Some(v) = unsafe { x86::row_dot(t, row, x) } {
            return v;
        }
    }
    let cols = row.len() / t.block_bytes() * t.block_elems();
    buf.resize(cols, 0.0);
    super::matrix::blocks_to_f32(t, row, buf);
    dot(buf, x)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::simd::{LANES, finish};
    use crate::format::BlockType;
    use half::f16;
    use std::arch::x86_64::{
        __m128i, __m256, _mm_and_si128, _mm_loadl_epi64, _mm_loadu_si128, _mm_set1_epi8,
        _mm_srli_epi16, _mm_srli_si128, _mm256_add_ps, _mm256_cvtepi8_epi32, _mm256_cvtepi32_ps,
        _mm256_cvtepu8_epi32, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps,
    };

    fn half(b: &[u8], at: usize) -> f32 {
        f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
    }

    /// The 16 unsigned bytes of `v` as f32, lanes 0–7 and 8–15.
    ///
    /// # Safety
    /// AVX2 (caller).
    #[inline(always)]
    unsafe fn u8x16(v: __m128i) -> (__m256, __m256) {
        // SAFETY: register-only AVX2 operations (caller guarantees AVX2).
        unsafe {
            (
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)),
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(v))),
            )
        }
    }

    /// The 16 signed bytes at `p` as f32, lanes 0–7 and 8–15.
    ///
    /// # Safety
    /// AVX2 (caller); 16 readable bytes at `p`.
    #[inline(always)]
    unsafe fn i8x16(p: *const u8) -> (__m256, __m256) {
        // SAFETY: two 8-byte loads within the 16 bytes at `p` (caller); AVX2 (caller).
        unsafe {
            let lo = _mm_loadl_epi64(p as *const __m128i);
            let hi = _mm_loadl_epi64(p.add(8) as *const __m128i);
            (
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)),
            )
        }
    }

    /// `simd::dot`'s AVX2 walk over a row whose weights come 16 at a time from `next`, 32 per block,
    /// `cols` a multiple of 16 (so no tail).
    ///
    /// # Safety
    /// AVX2 and FMA (caller); `x` holds at least `2 * LANES * blocks` values.
    #[inline(always)]
    unsafe fn walk(
        row: &[u8],
        block_bytes: usize,
        x: &[f32],
        mut block: impl FnMut(&[u8]) -> [(__m256, __m256); 2],
    ) -> f32 {
        // SAFETY (whole body): AVX2/FMA available (caller); every load reads 8 f32 of `x` below
        // `2 * LANES * blocks`, which the caller guarantees; the stores write 16 f32 into `acc`.
        unsafe {
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut i = 0;
            for b in row.chunks_exact(block_bytes) {
                for (w0, w1) in block(b) {
                    acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
                    acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.as_ptr().add(i + 8)), acc1);
                    i += LANES;
                }
            }
            let mut acc = [0.0f32; LANES];
            _mm256_storeu_ps(acc.as_mut_ptr(), acc0);
            _mm256_storeu_ps(acc.as_mut_ptr().add(8), acc1);
            finish(acc, 0.0)
        }
    }

    /// The fused dot product of a row of `t`, or `None` for a type without a kernel here.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `row` whole blocks of `t`; `x` at least their values long.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn row_dot(t: BlockType, row: &[u8], x: &[f32]) -> Option<f32> {
        let values = row.len() / t.block_bytes() * t.block_elems();
        if x.len() < values {
            // The matrix shape checks never let this happen; `dot` on the widened row copes.
            return None;
        }
        // SAFETY (each arm): AVX2/FMA (this function's contract); every block is `block_bytes`
        // long, so the 16-byte loads at offsets 2/4 (+16) and the 8-byte loads stay inside it; `x`
        // is long enough (checked above).
        unsafe {
            Some(match t {
                BlockType::Q8_0 => walk(row, 34, x, |b| {
                    let d = _mm256_set1_ps(half(b, 0));
                    let (a0, a1) = i8x16(b.as_ptr().add(2));
                    let (c0, c1) = i8x16(b.as_ptr().add(18));
                    [
                        (_mm256_mul_ps(a0, d), _mm256_mul_ps(a1, d)),
                        (_mm256_mul_ps(c0, d), _mm256_mul_ps(c1, d)),
                    ]
                }),
                BlockType::Q4_0 => walk(row, 18, x, |b| {
                    let d = _mm256_set1_ps(half(b, 0));
                    let eight = _mm256_set1_ps(8.0);
                    let q = _mm_loadu_si128(b.as_ptr().add(2) as *const __m128i);
                    let mask = _mm_set1_epi8(0x0F);
                    let (l0, l1) = u8x16(_mm_and_si128(q, mask));
                    let (h0, h1) = u8x16(_mm_and_si128(_mm_srli_epi16::<4>(q), mask));
                    let w = |v| _mm256_mul_ps(_mm256_sub_ps(v, eight), d);
                    [(w(l0), w(l1)), (w(h0), w(h1))]
                }),
                BlockType::Q4_1 => walk(row, 20, x, |b| {
                    let d = _mm256_set1_ps(half(b, 0));
                    let m = _mm256_set1_ps(half(b, 2));
                    let q = _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i);
                    let mask = _mm_set1_epi8(0x0F);
                    let (l0, l1) = u8x16(_mm_and_si128(q, mask));
                    let (h0, h1) = u8x16(_mm_and_si128(_mm_srli_epi16::<4>(q), mask));
                    let w = |v| _mm256_add_ps(_mm256_mul_ps(v, d), m);
                    [(w(l0), w(l1)), (w(h0), w(h1))]
                }),
                _ => return None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blocks of each type with a kernel (finite scales of either sign), against the
    /// dequantise-then-`dot` path, bit for bit, for rows of 1, 2 and 9 blocks.
    #[test]
    fn fused_rows_equal_dequantised_dot() {
        let mut s = 11u64;
        let mut byte = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        for t in [BlockType::Q8_0, BlockType::Q4_0, BlockType::Q4_1] {
            for blocks in [1, 2, 9] {
                let mut row: Vec<u8> = (0..blocks * t.block_bytes()).map(|_| byte()).collect();
                for b in row.chunks_exact_mut(t.block_bytes()) {
                    let scales = if t == BlockType::Q4_1 { 2 } else { 1 };
                    for k in 0..scales {
                        let v = (byte() as f32 - 128.0) / 4000.0;
                        b[2 * k..2 * k + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
                let cols = blocks * 32;
                let x: Vec<f32> = (0..cols)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                let mut want = vec![0.0; cols];
                super::super::matrix::blocks_to_f32(t, &row, &mut want);
                let want = dot(&want, &x);
                let got = row_dot(t, &row, &x, &mut Vec::new());
                assert_eq!(got.to_bits(), want.to_bits(), "{} x{blocks}", t.name());
            }
        }
    }
}
