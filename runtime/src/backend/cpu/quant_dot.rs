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
//! Decoding 16 weights (one chunk), with the scale applied:
//! - int8 widens its 16 signed bytes to f32 and multiplies them by the row's scale;
//! - int4, 512 bits: each 4-bit code indexes (`vpermps`) a register of its group's 16 possible
//!   weights, `scale ⊗ v` for every code, formed once per group of 128 with the product
//!   `dequantize_row` forms per weight. Lane `l` needs only its nibble at the bottom of its 32 bits
//!   (the permute reads an index's low 4 bits): the chunk's 8 bytes as a little-endian u64 hold
//!   weight `l` at bit `4l`, so lanes 0–7 take its low half and 8–15 its high half, each shifted
//!   right by `4 (l % 8)`. 256 bits: the nibbles are spread into 16 bytes (low nibble first), mapped
//!   to their values by `pshufb`, widened and multiplied by the scale;
//! - fp8: an E4M3 code `c` sign-extended to 32 bits, shifted left by 20 and masked to
//!   `(c & 0x80) << 24 | (c & 0x7F) << 20` is the f32 of value exactly `v ⊗ 2^-120` (E4M3's exponent
//!   field under a bias 120 larger; its subnormals are f32 subnormals), multiplied by
//!   `scale ⊗ 2^120`, which is exact and finite for `|scale| < 2^8` (every scale the quantizer makes
//!   of weights below 114,688 in magnitude): the same real product as `scale · v`, so the same
//!   rounding. A row with a larger scale is multiplied by `2^120` first (exact: that gives `v`),
//!   then by its scale.
//!
//! The codes `0x7F`/`0xFF` (E4M3's NaNs) are never written; read, they are ±480 here and in
//! `fp8_to_f32` alike. While a walk runs over four rows it asks the cache for the next four rows'
//! codes, a line at a time, as `block_dot.rs` and `simd::dot` do (the hardware prefetchers of the
//! 2-core test machine, a KVM guest, do not keep a matvec's stream in flight). CPUs without AVX2
//! and FMA dequantise each row into a buffer and call `dot`.

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
        super::super::simd::has_avx2_fma()
    }

    /// One quantization's decoder. A row's weights come in runs of `CHUNKS` chunks of 16 (a run
    /// shares one scale; `0`: the whole row does): `prep*(s, g)` readies run `g`'s scale (row's
    /// scales at `s`) once, and `w*(p, k, t)` gives the scaled weights `16k..16k + 16` of the row
    /// whose codes start at `p`, as `scale ⊗ v` in the order of `simd::dot`'s lanes; `tail(p, s, j)`
    /// gives weight `j` as a scalar.
    trait Kind {
        const CHUNKS: usize;
        /// Code bytes per 16 weights.
        const CHUNK_BYTES: usize;
        /// The decoder of rows whose first scale this one does not take (`takes`).
        type Big: Kind;
        /// Whether this decoder takes the row whose scales are at `s` (else `Big` does).
        ///
        /// # Safety
        /// The row's scales, if the kind reads them here (one per row where it does).
        #[inline(always)]
        unsafe fn takes(_s: *const f32) -> bool {
            true
        }
        /// # Safety
        /// AVX-512F; the row's scales at `s` hold run `g`'s.
        unsafe fn prep512(s: *const f32, g: usize) -> __m512;
        /// # Safety
        /// AVX-512F, BW and VL, and AVX2; the row's codes at `p` hold weights `16k..16k + 16`,
        /// and `t` is the run's (`prep512`).
        unsafe fn w512(p: *const u8, k: usize, t: __m512) -> __m512;
        /// # Safety
        /// AVX; the row's scales at `s` hold run `g`'s.
        unsafe fn prep256(s: *const f32, g: usize) -> __m256;
        /// # Safety
        /// AVX2; as [`Kind::w512`] with `prep256`'s `t`; weights `16k..16k + 8` and
        /// `16k + 8..16k + 16`.
        unsafe fn w256(p: *const u8, k: usize, t: __m256) -> (__m256, __m256);
        /// # Safety
        /// The row's codes and scales hold weight `j`.
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32;
    }

    /// 16 signed bytes as f32 lanes 0–7 and 8–15.
    #[inline(always)]
    unsafe fn i8x16(c: __m128i) -> (__m256, __m256) {
        // SAFETY: register-only AVX2 operations (caller's features).
        unsafe {
            (
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(c))),
            )
        }
    }

    struct Int8;
    impl Kind for Int8 {
        const CHUNKS: usize = 0;
        const CHUNK_BYTES: usize = 16;
        type Big = Self;
        #[inline(always)]
        unsafe fn prep512(s: *const f32, _: usize) -> __m512 {
            // SAFETY: the row's one scale (caller).
            unsafe { _mm512_set1_ps(*s) }
        }
        #[inline(always)]
        unsafe fn w512(p: *const u8, k: usize, t: __m512) -> __m512 {
            // SAFETY: 16 bytes at `16k` (caller); the rest is register-only.
            unsafe {
                let c = _mm_loadu_si128(p.add(16 * k) as *const __m128i);
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)), t)
            }
        }
        #[inline(always)]
        unsafe fn prep256(s: *const f32, _: usize) -> __m256 {
            // SAFETY: the row's one scale (caller).
            unsafe { _mm256_set1_ps(*s) }
        }
        #[inline(always)]
        unsafe fn w256(p: *const u8, k: usize, t: __m256) -> (__m256, __m256) {
            // SAFETY: 16 bytes at `16k` (caller); the rest is register-only.
            unsafe {
                let (v0, v1) = i8x16(_mm_loadu_si128(p.add(16 * k) as *const __m128i));
                (_mm256_mul_ps(v0, t), _mm256_mul_ps(v1, t))
            }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: byte `j` and the scale (caller).
            unsafe { *s * (*p.add(j) as i8) as f32 }
        }
    }

    /// Int4: a run is a group of 128 weights (8 chunks). The 512-bit decoder looks each code up in
    /// a table of the group's 16 possible weights (`scale ⊗ v` for the 16 codes, formed once per
    /// group with the same product `dequantize_row` forms per weight), indexed by the nibble itself:
    /// `vpermps` reads only an index's low 4 bits, so lane `l` needs just its code's nibble at the
    /// bottom of its 32 bits. The 256-bit decoder maps nibbles to signed bytes with `pshufb` and
    /// scales them.
    struct Int4;
    impl Int4 {
        /// The code value of each nibble `n`: `(n ^ 8) - 8`, so 0..7 then -8..-1.
        const VALUES: [f32; 16] = [
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0,
        ];
    }
    impl Kind for Int4 {
        const CHUNKS: usize = INT4_GROUP / LANES;
        const CHUNK_BYTES: usize = 8;
        type Big = Self;
        #[inline(always)]
        unsafe fn prep512(s: *const f32, g: usize) -> __m512 {
            // SAFETY: group `g`'s scale (caller); the table is 16 f32 in a constant.
            unsafe {
                let v = _mm512_loadu_ps(Int4::VALUES.as_ptr());
                _mm512_mul_ps(v, _mm512_set1_ps(*s.add(g)))
            }
        }
        #[inline(always)]
        unsafe fn w512(p: *const u8, k: usize, t: __m512) -> __m512 {
            // SAFETY: 8 bytes at `8k` (caller); the rest is register-only. Weight `16k + l` is the
            // nibble at bit `4l` of the little-endian u64: lanes 0–7 take its low 32 bits, 8–15
            // its high 32, each shifted right by `4 (l % 8)`.
            unsafe {
                let v = _mm_loadl_epi64(p.add(8 * k) as *const __m128i);
                let half = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
                let shift =
                    _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
                let n = _mm512_srlv_epi32(
                    _mm512_permutexvar_epi32(half, _mm512_castsi128_si512(v)),
                    shift,
                );
                _mm512_permutexvar_ps(n, t)
            }
        }
        #[inline(always)]
        unsafe fn prep256(s: *const f32, g: usize) -> __m256 {
            // SAFETY: group `g`'s scale (caller).
            unsafe { _mm256_set1_ps(*s.add(g)) }
        }
        #[inline(always)]
        unsafe fn w256(p: *const u8, k: usize, t: __m256) -> (__m256, __m256) {
            // SAFETY: 8 bytes at `8k` (caller); the rest is register-only SSE2/SSSE3/AVX2. The low
            // and high nibbles interleave into element order and `pshufb` maps each to its value.
            unsafe {
                let v = _mm_loadl_epi64(p.add(8 * k) as *const __m128i);
                let mask = _mm_set1_epi8(0x0F);
                let lo = _mm_and_si128(v, mask);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
                let values = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
                let c = _mm_shuffle_epi8(values, _mm_unpacklo_epi8(lo, hi));
                let (v0, v1) = i8x16(c);
                (_mm256_mul_ps(v0, t), _mm256_mul_ps(v1, t))
            }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: the byte and group of weight `j` (caller).
            unsafe { *s.add(j / INT4_GROUP) * int4_value(*p.add(j / 2) >> (4 * (j % 2))) as f32 }
        }
    }

    /// FP8 E4M3: each code `c` becomes the f32 with bits `(c & 0x80) << 24 | (c & 0x7F) << 20`,
    /// whose value is exactly `v ⊗ 2^-120` (E4M3's exponent field under a bias 120 larger, its
    /// subnormals f32 subnormals), then is multiplied by `scale ⊗ 2^120` — the same real product as
    /// `scale · v`, so the same rounding. `scale ⊗ 2^120` is exact and finite for `|scale| < 2^8`
    /// (every scale the quantizer makes of weights below 114688 in magnitude); for a larger one
    /// (`BIG`) the value is first multiplied by `2^120` (exact: it is `v`), then by the scale.
    struct Fp8<const BIG: bool>;
    impl<const BIG: bool> Fp8<BIG> {
        /// `2^120`.
        const UNBIAS: f32 = f32::from_bits((127 + 120) << 23);
    }
    impl<const BIG: bool> Kind for Fp8<BIG> {
        const CHUNKS: usize = 0;
        const CHUNK_BYTES: usize = 16;
        type Big = Fp8<true>;
        /// `scale ⊗ 2^120` exact and finite (a NaN scale goes to `Big` too: either gives NaNs).
        #[inline(always)]
        unsafe fn takes(s: *const f32) -> bool {
            // SAFETY: the row's one scale (caller).
            BIG || unsafe { (*s).abs() } < 256.0
        }
        #[inline(always)]
        unsafe fn prep512(s: *const f32, _: usize) -> __m512 {
            // SAFETY: the row's one scale (caller).
            unsafe { _mm512_set1_ps(if BIG { *s } else { *s * Self::UNBIAS }) }
        }
        #[inline(always)]
        unsafe fn w512(p: *const u8, k: usize, t: __m512) -> __m512 {
            // SAFETY: 16 bytes at `16k` (caller); register-only after the load. Each code
            // sign-extended to 32 bits and shifted left by 20 has its magnitude in bits 20–26 and
            // copies of its sign in bits 27–31; the mask keeps bit 31 of those.
            unsafe {
                let c = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(16 * k) as *const __m128i));
                let mask = _mm512_set1_epi32(0x87F0_0000u32 as i32);
                let h = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32::<20>(c), mask));
                if BIG {
                    _mm512_mul_ps(_mm512_mul_ps(h, _mm512_set1_ps(Self::UNBIAS)), t)
                } else {
                    _mm512_mul_ps(h, t)
                }
            }
        }
        #[inline(always)]
        unsafe fn prep256(s: *const f32, _: usize) -> __m256 {
            // SAFETY: the row's one scale (caller).
            unsafe { _mm256_set1_ps(if BIG { *s } else { *s * Self::UNBIAS }) }
        }
        #[inline(always)]
        unsafe fn w256(p: *const u8, k: usize, t: __m256) -> (__m256, __m256) {
            // SAFETY: 16 bytes at `16k` (caller).
            unsafe {
                let (h0, h1) = (fp8_bits256(p.add(16 * k)), fp8_bits256(p.add(16 * k + 8)));
                if BIG {
                    let u = _mm256_set1_ps(Self::UNBIAS);
                    (
                        _mm256_mul_ps(_mm256_mul_ps(h0, u), t),
                        _mm256_mul_ps(_mm256_mul_ps(h1, u), t),
                    )
                } else {
                    (_mm256_mul_ps(h0, t), _mm256_mul_ps(h1, t))
                }
            }
        }
        #[inline(always)]
        unsafe fn tail(p: *const u8, s: *const f32, j: usize) -> f32 {
            // SAFETY: byte `j` and the scale (caller).
            unsafe { *s * fp8_to_f32(*p.add(j)) }
        }
    }

    /// [`Fp8`]'s f32 bit patterns of the 8 E4M3 codes at `p` (see [`Fp8::w512`]).
    #[inline(always)]
    unsafe fn fp8_bits256(p: *const u8) -> __m256 {
        // SAFETY: 8 bytes at `p` (caller); register-only AVX2 operations after the load.
        unsafe {
            let c = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i));
            let mask = _mm256_set1_epi32(0x87F0_0000u32 as i32);
            _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32::<20>(c), mask))
        }
    }

    /// The rows' tails (weights `16 * chunks..cols`) as `simd::dot` adds them, then its lane sum.
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

    /// Chunks per run of `K` in a row of `chunks` chunks (at least 1).
    #[inline(always)]
    fn per_run<K: Kind>(chunks: usize) -> usize {
        if K::CHUNKS == 0 {
            chunks.max(1)
        } else {
            K::CHUNKS
        }
    }

    /// Bytes of a cache line: what one prefetch asks for.
    const LINE: usize = 64;

    /// Ask for the code bytes of the `R` rows after those at `p` (`R` rows of `cb` bytes, in one
    /// run) that chunk `k` of these rows corresponds to: over a walk, the next rows' codes, spread
    /// over its chunks (a hint: never faults).
    #[inline(always)]
    fn prefetch_next<K: Kind, const R: usize>(p: *const u8, cb: usize, k: usize) {
        let step = R * K::CHUNK_BYTES;
        let at = k * step;
        // One prefetch per cache line of the next rows, at the chunk that starts it.
        if at % LINE < step {
            let line = p.wrapping_add(R * cb + at - at % LINE);
            // SAFETY: a prefetch reads nothing into the program and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }

    /// `R` rows dotted with `x` in `simd::dot`'s lanes and order: for every 16 weights, one FMA into
    /// each row's lanes 0–7 and one into 8–15.
    ///
    /// # Safety
    /// AVX2 and FMA; row `r`'s codes at `p + r cb`, scales at `s[r]` (whole rows of `cols`);
    /// `x` holds `cols` values.
    #[inline(always)]
    unsafe fn walk<K: Kind, const R: usize>(
        p: *const u8,
        cb: usize,
        s: [*const f32; R],
        cols: usize,
        x: *const f32,
    ) -> [f32; R] {
        let rows: [*const u8; R] = std::array::from_fn(|r| p.wrapping_add(r * cb));
        let (chunks, per) = (cols / LANES, per_run::<K>(cols / LANES));
        // SAFETY (whole block): every chunk and scale read is inside the rows (caller).
        unsafe {
            let mut a0 = [_mm256_setzero_ps(); R];
            let mut a1 = [_mm256_setzero_ps(); R];
            let mut t = [_mm256_setzero_ps(); R];
            let mut k0 = 0;
            while k0 < chunks {
                for r in 0..R {
                    t[r] = K::prep256(s[r], k0 / per);
                }
                for k in k0..(k0 + per).min(chunks) {
                    prefetch_next::<K, R>(p, cb, k);
                    let x0 = _mm256_loadu_ps(x.add(16 * k));
                    let x1 = _mm256_loadu_ps(x.add(16 * k + 8));
                    for r in 0..R {
                        let (w0, w1) = K::w256(rows[r], k, t[r]);
                        a0[r] = _mm256_fmadd_ps(w0, x0, a0[r]);
                        a1[r] = _mm256_fmadd_ps(w1, x1, a1[r]);
                    }
                }
                k0 += per;
            }
            let mut acc = [[0.0f32; LANES]; R];
            for r in 0..R {
                _mm256_storeu_ps(acc[r].as_mut_ptr(), a0[r]);
                _mm256_storeu_ps(acc[r].as_mut_ptr().add(8), a1[r]);
            }
            finish_rows::<K, R>(acc, rows, s, cols, x)
        }
    }

    /// [`walk`] with a row's 16 lanes in one 512-bit register (the same lanes, products and order).
    ///
    /// # Safety
    /// As [`walk`], and AVX-512F, BW and VL.
    #[inline(always)]
    unsafe fn walk512<K: Kind, const R: usize>(
        p: *const u8,
        cb: usize,
        s: [*const f32; R],
        cols: usize,
        x: *const f32,
    ) -> [f32; R] {
        let rows: [*const u8; R] = std::array::from_fn(|r| p.wrapping_add(r * cb));
        let (chunks, per) = (cols / LANES, per_run::<K>(cols / LANES));
        // SAFETY (whole block): as in `walk`.
        unsafe {
            let mut a = [_mm512_setzero_ps(); R];
            let mut t = [_mm512_setzero_ps(); R];
            let mut k0 = 0;
            while k0 < chunks {
                for r in 0..R {
                    t[r] = K::prep512(s[r], k0 / per);
                }
                for k in k0..(k0 + per).min(chunks) {
                    prefetch_next::<K, R>(p, cb, k);
                    let xv = _mm512_loadu_ps(x.add(16 * k));
                    for r in 0..R {
                        a[r] = _mm512_fmadd_ps(K::w512(rows[r], k, t[r]), xv, a[r]);
                    }
                }
                k0 += per;
            }
            let mut acc = [[0.0f32; LANES]; R];
            for r in 0..R {
                _mm512_storeu_ps(acc[r].as_mut_ptr(), a[r]);
            }
            finish_rows::<K, R>(acc, rows, s, cols, x)
        }
    }

    /// Rows `R` at a time through `walk` (`$walk::<K, R>`), then one at a time.
    macro_rules! rows_in {
        (
            $walk:ident,
            $R:expr,
            $cb:expr,
            $sr:expr,
            $cols:expr,
            $codes:expr,
            $scales:expr,
            $x:expr,
            $out:expr
        ) => {{
            const R: usize = $R;
            let (cb, sr, cols, x, out) = ($cb, $sr, $cols, $x, $out);
            let (c, s) = ($codes.as_ptr(), $scales.as_ptr());
            let groups = out.len() / R;
            // SAFETY: rows `R g..R g + R` and `j` are inside `codes` and `scales` (the caller's
            // contract).
            unsafe {
                for g in 0..groups {
                    let r = R * g;
                    let sc: [*const f32; R] = std::array::from_fn(|i| s.add((r + i) * sr));
                    let v = if sc.iter().all(|&s| K::takes(s)) {
                        $walk::<K, R>(c.add(r * cb), cb, sc, cols, x)
                    } else {
                        $walk::<K::Big, R>(c.add(r * cb), cb, sc, cols, x)
                    };
                    out[r..r + R].copy_from_slice(&v);
                }
                for j in R * groups..out.len() {
                    let (p, sc) = (c.add(j * cb), [s.add(j * sr)]);
                    out[j] = if K::takes(sc[0]) {
                        $walk::<K, 1>(p, cb, sc, cols, x)[0]
                    } else {
                        $walk::<K::Big, 1>(p, cb, sc, cols, x)[0]
                    };
                }
            }
        }};
    }

    /// Rows four at a time, then one at a time; int4 two at a time: four rows' 8 accumulators and
    /// scales, `x` and its decoder's constants do not fit AVX2's 16 registers, and accumulators
    /// spilled to the stack put a store and a load into every FMA chain (what that cost depended on
    /// where the code was placed: up to 1.7x on the test machine).
    ///
    /// # Safety
    /// As [`rows_dot`], and AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_dot_kind<K: Kind>(
        cb: usize,
        sr: usize,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
        x: *const f32,
        out: &mut [f32],
    ) {
        if K::CHUNK_BYTES < LANES {
            rows_in!(walk, 2, cb, sr, cols, codes, scales, x, out)
        } else {
            rows_in!(walk, 4, cb, sr, cols, codes, scales, x, out)
        }
    }

    /// Rows four at a time, then one at a time.
    ///
    /// # Safety
    /// As [`rows_dot`], and AVX-512F, BW and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn rows_dot_kind512<K: Kind>(
        cb: usize,
        sr: usize,
        cols: usize,
        codes: &[u8],
        scales: &[f32],
        x: *const f32,
        out: &mut [f32],
    ) {
        rows_in!(walk512, 4, cb, sr, cols, codes, scales, x, out)
    }

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

    /// One row's weights (codes at `p`, scales at `s`, `cols` of them) stored at `o`.
    ///
    /// # Safety
    /// AVX2; the row's codes and scales, and `cols` values at `o`.
    #[inline(always)]
    unsafe fn dequantize_row256<K: Kind>(p: *const u8, s: *const f32, cols: usize, o: *mut f32) {
        let (chunks, per) = (cols / LANES, per_run::<K>(cols / LANES));
        // SAFETY: every chunk read and value written is inside the row (caller).
        unsafe {
            let mut t = _mm256_setzero_ps();
            for k in 0..chunks {
                if k % per == 0 {
                    t = K::prep256(s, k / per);
                }
                let (w0, w1) = K::w256(p, k, t);
                _mm256_storeu_ps(o.add(16 * k), w0);
                _mm256_storeu_ps(o.add(16 * k + 8), w1);
            }
            for j in cols - cols % LANES..cols {
                *o.add(j) = K::tail(p, s, j);
            }
        }
    }

    /// [`dequantize_row256`] 16 weights to a register.
    ///
    /// # Safety
    /// As [`dequantize_row256`], and AVX-512F, BW and VL.
    #[inline(always)]
    unsafe fn dequantize_row512<K: Kind>(p: *const u8, s: *const f32, cols: usize, o: *mut f32) {
        let (chunks, per) = (cols / LANES, per_run::<K>(cols / LANES));
        // SAFETY: as in `dequantize_row256`.
        unsafe {
            let mut t = _mm512_setzero_ps();
            for k in 0..chunks {
                if k % per == 0 {
                    t = K::prep512(s, k / per);
                }
                _mm512_storeu_ps(o.add(16 * k), K::w512(p, k, t));
            }
            for j in cols - cols % LANES..cols {
                *o.add(j) = K::tail(p, s, j);
            }
        }
    }

    macro_rules! dequantize_with {
        ($name:ident, $row:ident, $features:literal) => {
            /// Every weight of every row, stored.
            ///
            /// # Safety
            /// The features enabled here; `codes`, `scales` whole rows of `cols` weights of `q`,
            /// `dst` as many rows.
            #[target_feature(enable = $features)]
            unsafe fn $name<K: Kind>(
                cb: usize,
                sr: usize,
                cols: usize,
                codes: &[u8],
                scales: &[f32],
                dst: &mut [f32],
            ) {
                for (r, o) in dst.chunks_exact_mut(cols).enumerate() {
                    // SAFETY: row `r`'s codes, scales and values are inside the slices (caller).
                    unsafe {
                        let (p, s) = (codes.as_ptr().add(r * cb), scales.as_ptr().add(r * sr));
                        if K::takes(s) {
                            $row::<K>(p, s, cols, o.as_mut_ptr());
                        } else {
                            $row::<K::Big>(p, s, cols, o.as_mut_ptr());
                        }
                    }
                }
            }
        };
    }
    dequantize_with!(dequantize_kind, dequantize_row256, "avx2,fma");
    dequantize_with!(
        dequantize_kind512,
        dequantize_row512,
        "avx512f,avx512bw,avx512vl,avx2,fma"
    );

    /// The values of whole rows of `q`.
    ///
    /// # Safety
    /// AVX2 and FMA; `codes`, `scales` whole rows of `cols` weights of `q`, `dst` as many rows.
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
        macro_rules! each {
            ($f:ident) => {
                // SAFETY: the caller's contract, passed on; `$f` needs no more than it (the 512-bit
                // one only where `wide` detected its features).
                unsafe {
                    match q {
                        WeightQuant::Int8 => $f::<Int8>(cb, sr, cols, codes, scales, dst),
                        WeightQuant::Int4 => $f::<Int4>(cb, sr, cols, codes, scales, dst),
                        WeightQuant::Fp8 => $f::<Fp8<false>>(cb, sr, cols, codes, scales, dst),
                    }
                }
            };
        }
        if wide() {
            each!(dequantize_kind512)
        } else {
            each!(dequantize_kind)
        }
    }

    /// The register kernel of `q` over `out.len()` rows.
    ///
    /// # Safety
    /// AVX2 and FMA; `codes` and `scales` hold `out.len()` whole rows of `cols` weights of `q`
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
                        WeightQuant::Fp8 => $f::<Fp8<false>>(cb, sr, cols, codes, scales, x, out),
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
    /// and many magnitudes (up to about 2^100), or the quantization of random weights.
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
        // Every fifth scale is near 2^100: the fp8 kernels take scales of 2^8 and more another
        // way, so four-row walks see both kinds of row.
        let scales = (0..rows * sr)
            .map(|i| {
                let e = if i % 5 == 3 {
                    100
                } else {
                    (i % 7) as i32 * 3 - 12
                };
                lcg(s) * 2f32.powi(e)
            })
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
                (10, 48),
                (8, 256),
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
