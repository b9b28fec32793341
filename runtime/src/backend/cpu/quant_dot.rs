//! Dot products of rows quantized at build (`--quant_format int8|int4|fp8`, `crate::format`) with an
//! f32 input, dequantising in registers, and the dequantisation of whole rows for the prefill GEMM.
//!
//! Each weight is formed as `weights::quantize::dequantize_row` forms it (`scale ⊗ v`, `v` the
//! code's exact value, one f32 rounding) and accumulated into the 16 lanes of `simd::dot`'s walk in
//! its order, the last `cols % 16` weights into its tail: a row's result is bit-identical to
//! `dot(dequantised row, x)`, what the prefill GEMM computes from dequantised rows (the same property
//! `block_dot.rs` keeps for GGUF blocks, whose structure this follows: four rows at a time, and one
//! 512-bit register per row where the CPU has AVX-512F/BW/VL and `LLMFORGE_CPU_AVX512` is not `0`).
//!
//! Decoding 16 weights: int8 widens its 16 signed bytes; int4 spreads 8 bytes' nibbles into 16
//! bytes (low nibble first) and sign-extends them (`(n ^ 8) - 8`); an E4M3 code `c` becomes the f16
//! with bits `(c & 0x80) << 8 | (c & 0x7F) << 7`, whose value is exactly `v / 256` (the same
//! exponent field under a bias 8 larger, subnormals included), widened by F16C, and is multiplied by
//! `scale ⊗ 256` (exact: a power of two) — the same real product as `scale · v`, so the same rounding.
//! The codes `0x7F`/`0xFF` (E4M3's NaNs) are never written; read, they are ±480 here and in
//! `fp8_to_f32` alike. CPUs without AVX2, FMA and F16C dequantise each row into a buffer and call
//! `dot`.

use super::simd::dot;
use crate::format::WeightQuant;
use crate::weights::quantize::dequantize_rows;

/// `out[j] = dot(dequantised row j, x)` for the `out.len()` rows of `cols` weights whose codes and
/// scales are `codes` and `scales` (whole rows); `buf` is scratch for the fallback.
pub fn rows_dot(
    q: WeightQuant,
    cols: usize,
    codes: &[u8],
    scales: &[f32],
    x: &[f32],
    out: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let (Some(cb), Some(sr)) = (q.code_bytes(cols), q.scales(cols)) else {
        return;
    };
    let rows = out.len();
    if rows == 0 || codes.len() < rows * cb || scales.len() < rows * sr {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if x86::available() && x.len() >= cols {
        // SAFETY: the features were just detected; `codes` and `scales` hold `rows` whole rows and
        // `x` at least a row's values.
        unsafe { x86::rows_dot(q, cols, codes, scales, x.as_ptr(), out) };
        return;
    }
    buf.resize(cols, 0.0);
    for (j, o) in out.iter_mut().enumerate() {
        let (c, s) = (&codes[j * cb..(j + 1) * cb], &scales[j * sr..(j + 1) * sr]);
        dequantize_rows(q, cols, c, s, buf);
        *o = dot(buf, x);
    }
}

/// Whole rows to f32 (`dst.len()` a whole number of rows): `dequantize_rows`'s values, bit for bit,
/// decoded in registers where the CPU has the kernels' features.
pub fn dequantize(q: WeightQuant, cols: usize, codes: &[u8], scales: &[f32], dst: &mut [f32]) {
    let (Some(cb), Some(sr)) = (q.code_bytes(cols), q.scales(cols)) else {
        return;
    };
    let rows = dst.len().checked_div(cols).unwrap_or(0);
    #[cfg(target_arch = "x86_64")]
    if x86::available() && codes.len() >= rows * cb && scales.len() >= rows * sr {
        // SAFETY: the features were just detected; `codes`, `scales` and `dst` hold `rows` rows.
        unsafe { x86::dequantize(q, cols, codes, scales, &mut dst[..rows * cols]) };
        return;
    }
    dequantize_rows(q, cols, codes, scales, dst);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::simd::{LANES, finish};
    use crate::format::{INT4_GROUP, WeightQuant};
    use crate::weights::quantize::{fp8_to_f32, int4_value};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        super::super::simd::has_avx2_fma() && std::is_x86_feature_detected!("f16c")
    }

    /// One quantization's decoder: `codes(p, k)` gives the 16 codes of weights `16k..16k + 16` of a
    /// row whose codes start at `p`, as 16 bytes ready to widen (`SIGNED` bytes, or the 16-bit
    /// lanes of f16 bit patterns for `F16`), `scale(s, k)` the factor of those weights (scales of the
    /// row at `s`), and `tail(p, s, j)` weight `j` of the row as a scalar.
    trait Kind {
        const F16: bool;
        /// # Safety
        /// The row's codes at `p` hold weights `16k..16k + 16`.
        unsafe fn codes(p: *const u8, k: usize) -> __m128i;
        /// # Safety
        /// The row's scales at `s` hold the one of weight `16k`.
        unsafe fn scale(s: *const f32, k: usize) -> f32;
        /// # Safety
        /// The row's codes and scales hold weight `j`.
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32;
    }

    struct Int8;
    impl Kind for Int8 {
        const F16: bool = false;
        #[inline(always)]
        unsafe fn codes(p: *const u8, k: usize) -> __m128i {
            // SAFETY: 16 bytes at `16k` (caller).
            unsafe { _mm_loadu_si128(p.add(16 * k) as *const __m128i) }
        }
        #[inline(always)]
        unsafe fn scale(s: *const f32, _: usize) -> f32 {
            // SAFETY: the row's one scale (caller).
            unsafe { *s }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: byte `j` and the scale (caller).
            unsafe { *s * (*p.add(j) as i8) as f32 }
        }
    }

    struct Int4;
    impl Kind for Int4 {
        const F16: bool = false;
        #[inline(always)]
        unsafe fn codes(p: *const u8, k: usize) -> __m128i {
            // SAFETY: 8 bytes at `8k` (caller); the rest is register-only SSE2. The low and high
            // nibbles interleave into element order; `(n ^ 8) - 8` sign-extends each 4-bit code.
            unsafe {
                let v = _mm_loadl_epi64(p.add(8 * k) as *const __m128i);
                let mask = _mm_set1_epi8(0x0F);
                let lo = _mm_and_si128(v, mask);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
                let n = _mm_unpacklo_epi8(lo, hi);
                let eight = _mm_set1_epi8(8);
                _mm_sub_epi8(_mm_xor_si128(n, eight), eight)
            }
        }
        #[inline(always)]
        unsafe fn scale(s: *const f32, k: usize) -> f32 {
            // SAFETY: weight `16k` is in group `16k / 128` (caller).
            unsafe { *s.add(16 * k / INT4_GROUP) }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: the byte and group of weight `j` (caller).
            unsafe { *s.add(j / INT4_GROUP) * int4_value(*p.add(j / 2) >> (4 * (j % 2))) as f32 }
        }
    }

    struct Fp8;
    impl Kind for Fp8 {
        const F16: bool = true;
        #[inline(always)]
        unsafe fn codes(p: *const u8, k: usize) -> __m128i {
            // SAFETY: 16 bytes at `16k` (caller).
            unsafe { _mm_loadu_si128(p.add(16 * k) as *const __m128i) }
        }
        #[inline(always)]
        unsafe fn scale(s: *const f32, _: usize) -> f32 {
            // SAFETY: the row's one scale (caller). Times 256: exact.
            unsafe { *s * 256.0 }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: byte `j` and the scale (caller).
            unsafe { *s * fp8_to_f32(*p.add(j)) }
        }
    }

    /// The f16 bit patterns of 16 E4M3 codes, in 16-bit lanes.
    #[inline(always)]
    unsafe fn fp8_halves(c: __m128i) -> __m256i {
        // SAFETY: register-only AVX2 operations (caller's features).
        unsafe {
            let w = _mm256_cvtepu8_epi16(c);
            let sign = _mm256_slli_epi16::<8>(_mm256_and_si256(w, _mm256_set1_epi16(0x80)));
            let rest = _mm256_slli_epi16::<7>(_mm256_and_si256(w, _mm256_set1_epi16(0x7F)));
            _mm256_or_si256(sign, rest)
        }
    }

    /// Weights `16k..16k + 16` before their scale, as f32 lanes 0–7 and 8–15.
    #[inline(always)]
    unsafe fn values<K: Kind>(p: *const u8, k: usize) -> (__m256, __m256) {
        // SAFETY: the caller's contract; register-only AVX2/F16C operations after the codes.
        unsafe {
            let c = K::codes(p, k);
            if K::F16 {
                let h = fp8_halves(c);
                (
                    _mm256_cvtph_ps(_mm256_castsi256_si128(h)),
                    _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(h)),
                )
            } else {
                (
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)),
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(c))),
                )
            }
        }
    }

    /// [`values`] in one 512-bit register.
    #[inline(always)]
    unsafe fn values512<K: Kind>(p: *const u8, k: usize) -> __m512 {
        // SAFETY: the caller's contract; register-only AVX-512F operations after the codes.
        unsafe {
            let c = K::codes(p, k);
            if K::F16 {
                _mm512_cvtph_ps(fp8_halves(c))
            } else {
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c))
            }
        }
    }

    /// The rows' tails (weights `16 * groups..cols`) as `simd::dot` adds them, then its lane sum.
    ///
    /// # Safety
    /// Row `r`'s codes at `p[r]`, scales at `s[r]`; `x` holds `cols` values.
    #[inline(always)]
    unsafe fn finish_rows<K: Kind, const R: usize>(
        acc: [[f32; LANES]; R],
        p: [*const u8; R],
        s: [*const f32; R],
        cols: usize,
        x: *const f32,
    ) -> [f32; R] {
        std::array::from_fn(|r| {
            let mut tail = 0.0f32;
            for j in cols - cols % LANES..cols {
                // SAFETY: weight `j < cols` of row `r`, and `x[j]` (caller).
                let (w, xj) = unsafe { (K::tail(p[r], s[r], j), *x.add(j)) };
                tail = w.mul_add(xj, tail);
            }
            finish(acc[r], tail)
        })
    }

    /// `R` rows dotted with `x` in `simd::dot`'s lanes and order.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; row `r`'s codes at `p[r]`, scales at `s[r]` (whole rows of `cols`); `x`
    /// holds `cols` values.
    #[inline(always)]
    unsafe fn walk<K: Kind, const R: usize>(
        p: [*const u8; R],
        s: [*const f32; R],
        cols: usize,
        x: *const f32,
    ) -> [f32; R] {
        // SAFETY (whole body): every group read is below `cols` (caller).
        unsafe {
            let mut a0 = [_mm256_setzero_ps(); R];
            let mut a1 = [_mm256_setzero_ps(); R];
            for k in 0..cols / LANES {
                let x0 = _mm256_loadu_ps(x.add(16 * k));
                let x1 = _mm256_loadu_ps(x.add(16 * k + 8));
                for r in 0..R {
                    let (v0, v1) = values::<K>(p[r], k);
                    let sc = _mm256_set1_ps(K::scale(s[r], k));
                    a0[r] = _mm256_fmadd_ps(_mm256_mul_ps(v0, sc), x0, a0[r]);
                    a1[r] = _mm256_fmadd_ps(_mm256_mul_ps(v1, sc), x1, a1[r]);
                }
            }
            let acc = std::array::from_fn(|r| {
                let mut acc = [0.0f32; LANES];
                _mm256_storeu_ps(acc.as_mut_ptr(), a0[r]);
                _mm256_storeu_ps(acc.as_mut_ptr().add(8), a1[r]);
                acc
            });
            finish_rows::<K, R>(acc, p, s, cols, x)
        }
    }

    /// [`walk`] with a row's 16 lanes in one 512-bit register (the same lanes, products and order).
    ///
    /// # Safety
    /// As [`walk`], and AVX-512F, BW and VL.
    #[inline(always)]
    unsafe fn walk512<K: Kind, const R: usize>(
        p: [*const u8; R],
        s: [*const f32; R],
        cols: usize,
        x: *const f32,
    ) -> [f32; R] {
        // SAFETY (whole body): as in `walk`.
        unsafe {
            let mut a = [_mm512_setzero_ps(); R];
            for k in 0..cols / LANES {
                let xv = _mm512_loadu_ps(x.add(16 * k));
                for r in 0..R {
                    let w =
                        _mm512_mul_ps(values512::<K>(p[r], k), _mm512_set1_ps(K::scale(s[r], k)));
                    a[r] = _mm512_fmadd_ps(w, xv, a[r]);
                }
            }
            let acc = std::array::from_fn(|r| {
                let mut acc = [0.0f32; LANES];
                _mm512_storeu_ps(acc.as_mut_ptr(), a[r]);
                acc
            });
            finish_rows::<K, R>(acc, p, s, cols, x)
        }
    }

    macro_rules! rows_dot_with {
        ($name:ident, $walk:ident, $features:literal) => {
            /// Rows four at a time, then one at a time.
            ///
            /// # Safety
            /// As [`rows_dot`], and the features enabled here.
            #[target_feature(enable = $features)]
            unsafe fn $name<K: Kind>(
                cb: usize,
                sr: usize,
                cols: usize,
                codes: &[u8],
                scales: &[f32],
                x: *const f32,
                out: &mut [f32],
            ) {
                let (c, s) = (codes.as_ptr(), scales.as_ptr());
                let quads = out.len() / 4;
                // SAFETY: rows `4q..4q + 4` and `j` are inside `codes` and `scales` (caller).
                unsafe {
                    for q in 0..quads {
                        let r = 4 * q;
                        let p = std::array::from_fn(|i| c.add((r + i) * cb));
                        let sc = std::array::from_fn(|i| s.add((r + i) * sr));
                        let v = $walk::<K, 4>(p, sc, cols, x);
                        out[r..r + 4].copy_from_slice(&v);
                    }
                    for j in 4 * quads..out.len() {
                        out[j] = $walk::<K, 1>([c.add(j * cb)], [s.add(j * sr)], cols, x)[0];
                    }
                }
            }
        };
    }
    rows_dot_with!(rows_dot_kind, walk, "avx2,fma,f16c");
    rows_dot_with!(
        rows_dot_kind512,
        walk512,
        "avx512f,avx512bw,avx512vl,avx2,fma,f16c"
    );

    /// Whether the 512-bit walk runs (AVX-512F, BW, VL; `LLMFORGE_CPU_AVX512=0` keeps the 256-bit
    /// one, same results).
    fn wide() -> bool {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::env::var("LLMFORGE_CPU_AVX512").map_or(true, |v| v != "0")
        })
    }

    /// Every weight of every row, stored.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `codes`, `scales` whole rows of `cols` weights of `q`, `dst` as many rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dequantize_kind<K: Kind>(
        cb: usize,
        sr: usize,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
        dst: &mut [f32],
    ) {
        // SAFETY: row `r`'s codes, scales and values are inside the slices (caller).
        unsafe {
            for (r, o) in dst.chunks_exact_mut(cols).enumerate() {
                let (p, s) = (codes.as_ptr().add(r * cb), scales.as_ptr().add(r * sr));
                let o = o.as_mut_ptr();
                for k in 0..cols / LANES {
                    let (v0, v1) = values::<K>(p, k);
                    let sc = _mm256_set1_ps(K::scale(s, k));
                    _mm256_storeu_ps(o.add(16 * k), _mm256_mul_ps(v0, sc));
                    _mm256_storeu_ps(o.add(16 * k + 8), _mm256_mul_ps(v1, sc));
                }
                for j in cols - cols % LANES..cols {
                    *o.add(j) = K::tail(p, s, j);
                }
            }
        }
    }

    /// The values of whole rows of `q`.
    ///
    /// # Safety
    /// As [`dequantize_kind`].
    pub unsafe fn dequantize(
        q: WeightQuant,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
        dst: &mut [f32],
    ) {
        let (cb, sr) = (q.code_bytes(cols).unwrap_or(0), q.scales(cols).unwrap_or(0));
        if cols == 0 {
            return;
        }
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match q {
                WeightQuant::Int8 => dequantize_kind::<Int8>(cb, sr, cols, codes, scales, dst),
                WeightQuant::Int4 => dequantize_kind::<Int4>(cb, sr, cols, codes, scales, dst),
                WeightQuant::Fp8 => dequantize_kind::<Fp8>(cb, sr, cols, codes, scales, dst),
            }
        }
    }

    /// The register kernel of `q` over `out.len()` rows.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `codes` and `scales` hold `out.len()` whole rows of `cols` weights of `q`
    /// (which fit `q`); `x` at least `cols` values.
    pub unsafe fn rows_dot(
        q: WeightQuant,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
        x: *const f32,
        out: &mut [f32],
    ) {
        let (cb, sr) = (q.code_bytes(cols).unwrap_or(0), q.scales(cols).unwrap_or(0));
        macro_rules! each {
            ($f:ident) => {
                // SAFETY: the caller's contract, passed on; `$f` needs no more than it (the 512-bit
                // one only where `wide` detected its features).
                unsafe {
                    match q {
                        WeightQuant::Int8 => $f::<Int8>(cb, sr, cols, codes, scales, x, out),
                        WeightQuant::Int4 => $f::<Int4>(cb, sr, cols, codes, scales, x, out),
                        WeightQuant::Fp8 => $f::<Fp8>(cb, sr, cols, codes, scales, x, out),
                    }
                }
            };
        }
        if wide() {
            each!(rows_dot_kind512)
        } else {
            each!(rows_dot_kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::test_data::lcg;
    use crate::weights::quantize::{Quantized, quantize};

    /// Random codes (every byte value, the E4M3 NaN codes excepted) and scales of either sign
    /// and many magnitudes, or the quantization of random weights.
    fn random(q: WeightQuant, rows: usize, cols: usize, s: &mut u64) -> Quantized {
        let cb = q.code_bytes(cols).unwrap();
        let sr = q.scales(cols).unwrap();
        let mut codes: Vec<u8> = (0..rows * cb)
            .map(|_| ((lcg(s) + 1.0) * 128.0) as u8)
            .collect();
        if q == WeightQuant::Fp8 {
            for c in &mut codes {
                if *c & 0x7F == 0x7F {
                    *c ^= 1;
                }
            }
        }
        let scales = (0..rows * sr)
            .map(|i| lcg(s) * 2f32.powi((i % 7) as i32 * 3 - 12))
            .collect();
        Quantized { codes, scales }
    }

    /// Every format, random codes and scales: the register kernels (one row, the four-row walk and
    /// its remainder, widths with and without a tail) equal the scalar dequantisation then `dot`,
    /// bit for bit.
    #[test]
    fn register_kernels_equal_dequantise_then_dot() {
        let mut s = 5u64;
        for q in WeightQuant::ALL {
            for (rows, cols) in [
                (1, 128),
                (5, 256),
                (4, 384),
                (11, 128),
                (7, 150),
                (3, 16),
                (2, 7),
            ] {
                if !q.fits(cols) {
                    continue;
                }
                let m = match rows % 2 {
                    0 => random(q, rows, cols, &mut s),
                    _ => {
                        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
                        quantize(q, &w, rows, cols).unwrap()
                    }
                };
                let x: Vec<f32> = (0..cols).map(|_| lcg(&mut s)).collect();
                let mut deq = vec![0.0; rows * cols];
                dequantize_rows(q, cols, &m.codes, &m.scales, &mut deq);
                let mut fast = vec![1.0; rows * cols];
                dequantize(q, cols, &m.codes, &m.scales, &mut fast);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&deq), "{q:?} {rows}x{cols} dequantised");
                let mut out = vec![0.0; rows];
                rows_dot(q, cols, &m.codes, &m.scales, &x, &mut out, &mut Vec::new());
                let (cb, sr) = (q.code_bytes(cols).unwrap(), q.scales(cols).unwrap());
                for j in 0..rows {
                    let want = dot(&deq[j * cols..(j + 1) * cols], &x);
                    let mut one = [0.0];
                    let (c, sc) = (
                        &m.codes[j * cb..(j + 1) * cb],
                        &m.scales[j * sr..(j + 1) * sr],
                    );
                    rows_dot(q, cols, c, sc, &x, &mut one, &mut Vec::new());
                    let what = format!("{q:?} {rows}x{cols} row {j}");
                    assert_eq!(out[j].to_bits(), want.to_bits(), "{what}");
                    assert_eq!(one[0].to_bits(), want.to_bits(), "{what}, alone");
                }
            }
        }
    }
}
