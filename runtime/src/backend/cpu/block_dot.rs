//! Dot products of rows kept as GGML blocks with an f32 input, without widening the rows in memory,
//! and the fast dequantisation of whole rows for the prefill GEMM.
//!
//! On x86-64 with AVX2, FMA and F16C every block type has a register kernel: each 16 weights of a
//! block are decoded from their codes with the GGUF loader's arithmetic (`weights::gguf`'s
//! `dequant.rs`: the f16 scales widened, the integer code formed exactly, then the same f32 steps) and
//! accumulated into the 16 lanes of `simd::dot`'s AVX2 walk in the same order, so a row's result is
//! bit-identical to `dot(dequantised row, x)` — what the prefill GEMM computes from dequantised rows,
//! and the dense engine from the dequantised weights. Where the loader multiplies and then adds
//! (`(q ⊗ d) ⊕ m`, `((d ⊗ sc) ⊗ q) ⊖ (dmin ⊗ m)`) the kernels fuse the two into one FMA: the product
//! is exact in f32 (`dequant.rs` says why), so the one rounding is the loader's.
//!
//! A decode matvec is bound by the latency of its accumulators' FMA chains as much as by memory: a row
//! has only two chains (the 16 lanes), so [`rows_dot`] walks four rows at once, loading each 16
//! values of `x` once for the four. Where the CPU also has AVX-512 (F, BW and VL), a row's 16 lanes
//! sit in one 512-bit register and 16 codes widen in one instruction (the same lanes, products and
//! order, so the same bits; `LLMFORGE_CPU_AVX512=0` keeps the 256-bit walk), which about halves the
//! instructions per weight: decoding, not memory, bounded the 256-bit walk of the 4- and 5-bit
//! types. CPUs without AVX2, FMA and F16C dequantise each row into a buffer and call `dot`.

use super::simd::dot;
use crate::format::BlockType;

/// `Σ row[i]·x[i]` for one row of `cols` weights stored as blocks of `t`; `buf` is scratch of at least
/// `cols` values for the fallback that dequantises first.
pub fn row_dot(t: BlockType, row: &[u8], x: &[f32], buf: &mut Vec<f32>) -> f32 {
    let mut out = [0.0];
    rows_dot(t, row, x, &mut out, buf);
    out[0]
}

/// `out[j] = row_dot(row j, x)` for the `out.len()` rows of blocks of `t` in `rows` (each the same
/// number of bytes), bit for bit.
pub fn rows_dot(t: BlockType, rows: &[u8], x: &[f32], out: &mut [f32], buf: &mut Vec<f32>) {
    if out.is_empty() {
        return;
    }
    let rb = rows.len() / out.len();
    let cols = rb / t.block_bytes() * t.block_elems();
    #[cfg(target_arch = "x86_64")]
    if x86::available() && x.len() >= cols && rb % t.block_bytes() == 0 {
        // SAFETY: the features were just detected; `rows` holds `out.len()` rows of `rb` bytes,
        // whole blocks of `t`, and `x` at least the `cols` values of a row.
        unsafe { x86::rows_dot(t, rows, rb, x.as_ptr(), out) };
        return;
    }
    buf.resize(cols, 0.0);
    for (j, o) in out.iter_mut().enumerate() {
        crate::weights::dequantize_blocks_into(t, &rows[j * rb..(j + 1) * rb], buf);
        *o = dot(buf, x);
    }
}

/// Whole blocks of `t` in `src` to f32 in `dst`: the GGUF loader's values, bit for bit (signs of
/// zero included), decoded in registers where the CPU has the kernels' features.
pub fn dequantize(t: BlockType, src: &[u8], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available()
        && src.len() % t.block_bytes() == 0
        && dst.len() >= src.len() / t.block_bytes() * t.block_elems()
    {
        // SAFETY: the features were just detected; `src` is whole blocks, `dst` long enough.
        unsafe { x86::dequantize(t, src, dst) };
        return;
    }
    crate::weights::dequantize_blocks_into(t, src, dst);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::simd::{LANES, finish};
    use crate::format::BlockType;
    use crate::weights::gguf::dequant::scale_min;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        super::super::simd::has_avx2_fma() && std::is_x86_feature_detected!("f16c")
    }

    /// The little-endian f16 at `p`, widened.
    ///
    /// # Safety
    /// F16C (caller); two readable bytes at `p`.
    #[inline(always)]
    unsafe fn half(p: *const u8) -> f32 {
        // SAFETY: a 2-byte unaligned read (caller); F16C (caller).
        unsafe {
            let bits = (p as *const u16).read_unaligned();
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }
    }

    /// # Safety
    /// 16 readable bytes at `p`.
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m128i {
        // SAFETY: an unaligned 16-byte load (caller).
        unsafe { _mm_loadu_si128(p as *const __m128i) }
    }

    /// The 16 unsigned bytes of `v` as f32, lanes 0–7 and 8–15.
    #[inline(always)]
    unsafe fn u8x16(v: __m128i) -> (__m256, __m256) {
        // SAFETY: register-only AVX2 operations (caller's features).
        unsafe {
            (
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)),
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(v))),
            )
        }
    }

    /// The 16 signed bytes of `v` as f32, lanes 0–7 and 8–15.
    #[inline(always)]
    unsafe fn i8x16(v: __m128i) -> (__m256, __m256) {
        // SAFETY: register-only AVX2 operations (caller's features).
        unsafe {
            (
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(v))),
            )
        }
    }

    /// Bits `b` of a byte in each byte of `v` shifted down to the bottom (`(v >> b) & mask`, per byte).
    #[inline(always)]
    unsafe fn bits(v: __m128i, b: u32, mask: i8) -> __m128i {
        // SAFETY: register-only SSE2 operations. Shifting 16-bit lanes moves bits of a lane's high
        // byte into its low byte's top bits, which `mask` (below `0x100 >> b`) clears.
        unsafe {
            _mm_and_si128(
                _mm_srl_epi16(v, _mm_cvtsi32_si128(b as i32)),
                _mm_set1_epi8(mask),
            )
        }
    }

    /// How a group's codes `c` become weights, with the group's `(a, m)` from [`Kind::affine`]:
    /// `c ⊗ a`, `(c ⊗ a) ⊕ m` or `(a ⊗ c) ⊖ m`. Every product is exact (`dequant.rs`), so the fused
    /// multiply-add or -subtract rounds once, as the loader's sum or difference does.
    #[derive(PartialEq, Eq)]
    enum Op {
        Mul,
        Add,
        Sub,
    }

    /// One block type's decoder: a block of `BYTES` bytes holds `16 * GROUPS` weights; `prep` reads
    /// its scales once, `codes(k)` gives the integer codes of weights `16k..16k + 16` as 16 bytes
    /// (`SIGNED` or not), and `affine(k)` the f32 factors that make them the loader's values.
    trait Kind {
        const BYTES: usize;
        const GROUPS: usize;
        const SIGNED: bool;
        const OP: Op;
        type Scales: Copy;
        /// # Safety
        /// `BYTES` readable bytes at `b`; AVX2, FMA, F16C.
        unsafe fn prep(b: *const u8) -> Self::Scales;
        /// The codes; `BW`: the caller has AVX-512BW and VL, which shorten some of them.
        ///
        /// # Safety
        /// As [`Kind::prep`], `k < GROUPS`.
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i;
        fn affine(s: &Self::Scales, k: usize) -> (f32, f32);
    }

    /// Weights `16k..16k + 16` of a block as f32, lanes 0–7 and 8–15.
    ///
    /// # Safety
    /// As [`Kind::codes`]; `s` the block's scales.
    #[inline(always)]
    unsafe fn group<K: Kind>(b: *const u8, s: &K::Scales, k: usize) -> (__m256, __m256) {
        // SAFETY: the caller's contract; register-only AVX2/FMA operations after the codes.
        unsafe {
            let c = K::codes::<false>(b, k);
            let (c0, c1) = if K::SIGNED { i8x16(c) } else { u8x16(c) };
            let (a, m) = K::affine(s, k);
            let (a, m) = (_mm256_set1_ps(a), _mm256_set1_ps(m));
            match K::OP {
                Op::Mul => (_mm256_mul_ps(c0, a), _mm256_mul_ps(c1, a)),
                Op::Add => (_mm256_fmadd_ps(c0, a, m), _mm256_fmadd_ps(c1, a, m)),
                Op::Sub => (_mm256_fmsub_ps(a, c0, m), _mm256_fmsub_ps(a, c1, m)),
            }
        }
    }

    /// [`group`] in one 512-bit register.
    ///
    /// # Safety
    /// As [`group`], and AVX-512F, BW and VL.
    #[inline(always)]
    unsafe fn group512<K: Kind>(b: *const u8, s: &K::Scales, k: usize) -> __m512 {
        // SAFETY: the caller's contract; register-only AVX-512F operations after the codes.
        unsafe {
            let c = K::codes::<true>(b, k);
            let c = _mm512_cvtepi32_ps(if K::SIGNED {
                _mm512_cvtepi8_epi32(c)
            } else {
                _mm512_cvtepu8_epi32(c)
            });
            let (a, m) = K::affine(s, k);
            let (a, m) = (_mm512_set1_ps(a), _mm512_set1_ps(m));
            match K::OP {
                Op::Mul => _mm512_mul_ps(c, a),
                Op::Add => _mm512_fmadd_ps(c, a, m),
                Op::Sub => _mm512_fmsub_ps(a, c, m),
            }
        }
    }

    /// `v` plus `add` in the bytes whose bit of `h` is set (bit `j` for byte `j`).
    ///
    /// # Safety
    /// AVX2; with `BW`, AVX-512BW and VL.
    #[inline(always)]
    unsafe fn add_where<const BW: bool>(v: __m128i, h: u16, add: i8) -> __m128i {
        // SAFETY: register-only operations of the features the caller has.
        unsafe {
            if BW {
                _mm_mask_add_epi8(v, h, v, _mm_set1_epi8(add))
            } else {
                let set = _mm_shuffle_epi8(
                    _mm_set1_epi16(h as i16),
                    _mm_set_epi64x(0x0101_0101_0101_0101, 0),
                );
                let select = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
                let set = _mm_cmpeq_epi8(_mm_and_si128(set, select), select);
                _mm_add_epi8(v, _mm_and_si128(set, _mm_set1_epi8(add)))
            }
        }
    }

    /// `v` plus `add` in the bytes of `v` whose byte of `h` has bit `bit` set.
    ///
    /// # Safety
    /// AVX2; with `BW`, AVX-512BW and VL.
    #[inline(always)]
    unsafe fn add_where_bit<const BW: bool>(v: __m128i, h: __m128i, bit: u32, add: i8) -> __m128i {
        // SAFETY: register-only operations of the features the caller has.
        unsafe {
            if BW {
                let set = _mm_test_epi8_mask(h, _mm_set1_epi8((1u8 << bit) as i8));
                _mm_mask_add_epi8(v, set, v, _mm_set1_epi8(add))
            } else {
                let one = bits(h, bit, 1);
                _mm_add_epi8(v, _mm_mullo_epi16(one, _mm_set1_epi16(add as i16)))
            }
        }
    }

    /// The 4-bit codes of group `k` of a 32-weight block whose 16 code bytes are at `qs`: low nibbles
    /// for weights 0–15, high nibbles for 16–31.
    #[inline(always)]
    unsafe fn nibbles(qs: *const u8, k: usize) -> __m128i {
        // SAFETY: 16 readable bytes at `qs` (caller).
        unsafe { bits(load16(qs), 4 * k as u32, 0x0F) }
    }

    /// The 5-bit codes (plus `bias`) of group `k` of a Q5_0/Q5_1 block: nibbles at `qs`, fifth bits
    /// from the little-endian u32 at `qh`.
    #[inline(always)]
    unsafe fn five<const BW: bool>(qh: *const u8, qs: *const u8, k: usize, bias: i8) -> __m128i {
        // SAFETY: 4 bytes at `qh`, 16 at `qs` (caller).
        unsafe {
            let h = (qh as *const u32).read_unaligned() >> (16 * k);
            let q = _mm_add_epi8(nibbles(qs, k), _mm_set1_epi8(bias));
            add_where::<BW>(q, h as u16, 16)
        }
    }

    struct Q8_0;
    impl Kind for Q8_0 {
        const BYTES: usize = 34;
        const GROUPS: usize = 2;
        const SIGNED: bool = true;
        const OP: Op = Op::Mul;
        type Scales = f32;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> f32 {
            // SAFETY: the f16 `d` at 0 (caller: a whole block).
            unsafe { half(b) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `q` is bytes 2..34; group `k < 2` reads 16 of them.
            unsafe { load16(b.add(2 + 16 * k)) }
        }
        #[inline(always)]
        fn affine(d: &f32, _: usize) -> (f32, f32) {
            (*d, 0.0)
        }
    }

    struct Q4_0;
    impl Kind for Q4_0 {
        const BYTES: usize = 18;
        const GROUPS: usize = 2;
        const SIGNED: bool = true;
        const OP: Op = Op::Mul;
        type Scales = f32;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> f32 {
            // SAFETY: the f16 `d` at 0.
            unsafe { half(b) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qs` is bytes 2..18. The code minus 8 is formed exactly in bytes.
            unsafe { _mm_sub_epi8(nibbles(b.add(2), k), _mm_set1_epi8(8)) }
        }
        #[inline(always)]
        fn affine(d: &f32, _: usize) -> (f32, f32) {
            (*d, 0.0)
        }
    }

    struct Q4_1;
    impl Kind for Q4_1 {
        const BYTES: usize = 20;
        const GROUPS: usize = 2;
        const SIGNED: bool = false;
        const OP: Op = Op::Add;
        type Scales = (f32, f32);
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> (f32, f32) {
            // SAFETY: the f16 `d` at 0 and `m` at 2.
            unsafe { (half(b), half(b.add(2))) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qs` is bytes 4..20.
            unsafe { nibbles(b.add(4), k) }
        }
        #[inline(always)]
        fn affine(s: &(f32, f32), _: usize) -> (f32, f32) {
            *s
        }
    }

    struct Q5_0;
    impl Kind for Q5_0 {
        const BYTES: usize = 22;
        const GROUPS: usize = 2;
        const SIGNED: bool = true;
        const OP: Op = Op::Mul;
        type Scales = f32;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> f32 {
            // SAFETY: the f16 `d` at 0.
            unsafe { half(b) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qh` is bytes 2..6, `qs` 6..22. The code minus 16 is formed exactly in bytes.
            unsafe { five::<BW>(b.add(2), b.add(6), k, -16) }
        }
        #[inline(always)]
        fn affine(d: &f32, _: usize) -> (f32, f32) {
            (*d, 0.0)
        }
    }

    struct Q5_1;
    impl Kind for Q5_1 {
        const BYTES: usize = 24;
        const GROUPS: usize = 2;
        const SIGNED: bool = false;
        const OP: Op = Op::Add;
        type Scales = (f32, f32);
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> (f32, f32) {
            // SAFETY: the f16 `d` at 0 and `m` at 2.
            unsafe { (half(b), half(b.add(2))) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qh` is bytes 4..8, `qs` 8..24.
            unsafe { five::<BW>(b.add(4), b.add(8), k, 0) }
        }
        #[inline(always)]
        fn affine(s: &(f32, f32), _: usize) -> (f32, f32) {
            *s
        }
    }

    /// Sub-block scales of a K-quant super-block as the loader forms them: `d ⊗ sc` and `dmin ⊗ m`.
    #[derive(Clone, Copy)]
    struct KScales<const N: usize> {
        dl: [f32; N],
        ml: [f32; N],
    }

    struct Q2K;
    impl Kind for Q2K {
        const BYTES: usize = 84;
        const GROUPS: usize = 16;
        const SIGNED: bool = false;
        const OP: Op = Op::Sub;
        type Scales = KScales<16>;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> KScales<16> {
            // SAFETY: `scales` are bytes 0..16, the f16 `d` and `dmin` at 80 and 82.
            unsafe {
                let (d, dmin) = (half(b.add(80)), half(b.add(82)));
                let s = |i: usize| *b.add(i);
                KScales {
                    dl: std::array::from_fn(|i| d * (s(i) & 0x0F) as f32),
                    ml: std::array::from_fn(|i| dmin * (s(i) >> 4) as f32),
                }
            }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qs` is bytes 16..80; half `k / 8` of it, 16 bytes at `16 * (k % 2)` in it.
            // Weights `16k..16k + 16` are the 2-bit fields `(k / 2) % 4` of those bytes.
            unsafe {
                let q = load16(b.add(16 + 32 * (k / 8) + 16 * (k % 2)));
                bits(q, 2 * ((k / 2) % 4) as u32, 3)
            }
        }
        #[inline(always)]
        fn affine(s: &KScales<16>, k: usize) -> (f32, f32) {
            (s.dl[k], s.ml[k])
        }
    }

    struct Q3K;
    impl Kind for Q3K {
        const BYTES: usize = 110;
        const GROUPS: usize = 16;
        const SIGNED: bool = true;
        const OP: Op = Op::Mul;
        type Scales = [f32; 16];
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> [f32; 16] {
            // SAFETY: the 12 scale bytes are 96..108, the f16 `d` at 108.
            unsafe {
                let d = half(b.add(108));
                let s = |i: usize| *b.add(96 + i);
                std::array::from_fn(|i| {
                    let low = if i < 8 { s(i) & 0x0F } else { s(i - 8) >> 4 };
                    let high = (s(8 + i % 4) >> (2 * (i / 4))) & 3;
                    d * ((low | high << 4) as i32 - 32) as f32
                })
            }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `hmask` is bytes 0..32 and `qs` 32..96, read 16 bytes at a time inside them.
            // The code is the 2-bit field minus 4, plus 4 where the `hmask` bit `k / 2` is set.
            unsafe {
                let q = load16(b.add(32 + 32 * (k / 8) + 16 * (k % 2)));
                let q = _mm_sub_epi8(bits(q, 2 * ((k / 2) % 4) as u32, 3), _mm_set1_epi8(4));
                add_where_bit::<BW>(q, load16(b.add(16 * (k % 2))), (k / 2) as u32, 4)
            }
        }
        #[inline(always)]
        fn affine(dl: &[f32; 16], k: usize) -> (f32, f32) {
            (dl[k], 0.0)
        }
    }

    /// Q4_K/Q5_K scales: bytes 4..16 of the block, `d` and `dmin` at 0 and 2.
    ///
    /// # Safety
    /// 16 readable bytes at `b`; F16C.
    #[inline(always)]
    unsafe fn k45_scales(b: *const u8) -> KScales<8> {
        // SAFETY: the first 16 bytes of the block (caller).
        unsafe {
            let (d, dmin) = (half(b), half(b.add(2)));
            let s = std::slice::from_raw_parts(b.add(4), 12);
            let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min(s, j));
            KScales {
                dl: sm.map(|(sc, _)| d * sc as f32),
                ml: sm.map(|(_, m)| dmin * m as f32),
            }
        }
    }

    /// The low 4 bits of the codes of group `k` of a Q4_K/Q5_K super-block whose `qs` are at `qs`:
    /// sub-block `j = k / 2` is the low (`j` even) or high nibbles of the 32 bytes at `32 * (j / 2)`.
    #[inline(always)]
    unsafe fn k45_low(qs: *const u8, k: usize) -> __m128i {
        // SAFETY: 128 readable bytes at `qs` (caller); this reads 16 of them.
        unsafe {
            let j = k / 2;
            bits(
                load16(qs.add(32 * (j / 2) + 16 * (k % 2))),
                4 * (j % 2) as u32,
                0x0F,
            )
        }
    }

    struct Q4K;
    impl Kind for Q4K {
        const BYTES: usize = 144;
        const GROUPS: usize = 16;
        const SIGNED: bool = false;
        const OP: Op = Op::Sub;
        type Scales = KScales<8>;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> KScales<8> {
            // SAFETY: a whole block (caller).
            unsafe { k45_scales(b) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qs` is bytes 16..144.
            unsafe { k45_low(b.add(16), k) }
        }
        #[inline(always)]
        fn affine(s: &KScales<8>, k: usize) -> (f32, f32) {
            (s.dl[k / 2], s.ml[k / 2])
        }
    }

    struct Q5K;
    impl Kind for Q5K {
        const BYTES: usize = 176;
        const GROUPS: usize = 16;
        const SIGNED: bool = false;
        const OP: Op = Op::Sub;
        type Scales = KScales<8>;
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> KScales<8> {
            // SAFETY: a whole block (caller).
            unsafe { k45_scales(b) }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `qh` is bytes 16..48 (bit `j` of byte `l` is weight `32j + l`'s fifth bit),
            // `qs` 48..176.
            unsafe {
                let h = load16(b.add(16 + 16 * (k % 2)));
                add_where_bit::<BW>(k45_low(b.add(48), k), h, (k / 2) as u32, 16)
            }
        }
        #[inline(always)]
        fn affine(s: &KScales<8>, k: usize) -> (f32, f32) {
            (s.dl[k / 2], s.ml[k / 2])
        }
    }

    struct Q6K;
    impl Kind for Q6K {
        const BYTES: usize = 210;
        const GROUPS: usize = 16;
        const SIGNED: bool = true;
        const OP: Op = Op::Mul;
        type Scales = [f32; 16];
        #[inline(always)]
        unsafe fn prep(b: *const u8) -> [f32; 16] {
            // SAFETY: the 16 i8 scales are bytes 192..208, the f16 `d` at 208.
            unsafe {
                let d = half(b.add(208));
                std::array::from_fn(|i| d * (*b.add(192 + i) as i8) as f32)
            }
        }
        #[inline(always)]
        unsafe fn codes<const BW: bool>(b: *const u8, k: usize) -> __m128i {
            // SAFETY: `ql` is bytes 0..128, `qh` 128..192, read 16 bytes at a time inside them.
            // Weight `128h + r` (`h = k / 8`, `r = 16 (k % 8) + t`) has its low 4 bits in nibble
            // `r / 64` of `ql[64h + r % 64]` and its high 2 bits in field `r / 32` of
            // `qh[32h + r % 32]`; the code minus 32 is formed exactly in bytes.
            unsafe {
                let (h, kk) = (k / 8, k % 8);
                let low = bits(
                    load16(b.add(64 * h + 16 * (kk % 4))),
                    4 * (kk / 4) as u32,
                    0x0F,
                );
                let high = bits(
                    load16(b.add(128 + 32 * h + 16 * (kk % 2))),
                    2 * (kk / 2) as u32,
                    3,
                );
                let q = _mm_or_si128(low, _mm_slli_epi16::<4>(high));
                _mm_sub_epi8(q, _mm_set1_epi8(32))
            }
        }
        #[inline(always)]
        fn affine(dl: &[f32; 16], k: usize) -> (f32, f32) {
            (dl[k], 0.0)
        }
    }

    /// Bytes of the next rows that a walk asks the cache for, spread over its blocks.
    const PREFETCH_LINE: usize = 64;

    /// Ask for the cache lines of the next `R` rows' share of block `b` (a hint: never faults).
    #[inline(always)]
    fn prefetch_next<K: Kind, const R: usize>(p: *const u8, rb: usize, b: usize) {
        let ahead = p.wrapping_add(R * rb + b * R * K::BYTES);
        let mut off = 0;
        while off < R * K::BYTES {
            // SAFETY: a prefetch reads nothing into the program and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off) as *const i8) };
            off += PREFETCH_LINE;
        }
    }

    /// `R` rows of `blocks` blocks each, `rb` bytes apart from `p`, dotted with `x` in `simd::dot`'s
    /// lanes and order: for every 16 values, one FMA into each row's lanes 0–7 and one into 8–15.
    /// While it walks, it asks the cache for the `R` rows after these.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `R` rows of `blocks` whole blocks of `K` at `p`, `rb` bytes apart; `x`
    /// holds `16 * K::GROUPS * blocks` values.
    #[inline(always)]
    unsafe fn walk<K: Kind, const R: usize>(
        p: *const u8,
        rb: usize,
        blocks: usize,
        x: *const f32,
    ) -> [f32; R] {
        // SAFETY (whole body): every block read is one of the `R × blocks` blocks (caller); every
        // `x` load reads 8 values below `16 * GROUPS * blocks` (caller).
        unsafe {
            let mut a0 = [_mm256_setzero_ps(); R];
            let mut a1 = [_mm256_setzero_ps(); R];
            for b in 0..blocks {
                prefetch_next::<K, R>(p, rb, b);
                let blk: [*const u8; R] = std::array::from_fn(|r| p.add(r * rb + b * K::BYTES));
                let s: [K::Scales; R] = std::array::from_fn(|r| K::prep(blk[r]));
                let xb = x.add(b * 16 * K::GROUPS);
                for k in 0..K::GROUPS {
                    let x0 = _mm256_loadu_ps(xb.add(16 * k));
                    let x1 = _mm256_loadu_ps(xb.add(16 * k + 8));
                    for r in 0..R {
                        let (w0, w1) = group::<K>(blk[r], &s[r], k);
                        a0[r] = _mm256_fmadd_ps(w0, x0, a0[r]);
                        a1[r] = _mm256_fmadd_ps(w1, x1, a1[r]);
                    }
                }
            }
            std::array::from_fn(|r| {
                let mut acc = [0.0f32; LANES];
                _mm256_storeu_ps(acc.as_mut_ptr(), a0[r]);
                _mm256_storeu_ps(acc.as_mut_ptr().add(8), a1[r]);
                finish(acc, 0.0)
            })
        }
    }

    /// [`walk`] with the 16 lanes of a row in one 512-bit register (the same lanes, products and
    /// order, so the same bits).
    ///
    /// # Safety
    /// As [`walk`], and AVX-512F, BW and VL.
    #[inline(always)]
    unsafe fn walk512<K: Kind, const R: usize>(
        p: *const u8,
        rb: usize,
        blocks: usize,
        x: *const f32,
    ) -> [f32; R] {
        // SAFETY (whole body): as in `walk`; every `x` load reads 16 values below
        // `16 * GROUPS * blocks`.
        unsafe {
            let mut a = [_mm512_setzero_ps(); R];
            for b in 0..blocks {
                prefetch_next::<K, R>(p, rb, b);
                let blk: [*const u8; R] = std::array::from_fn(|r| p.add(r * rb + b * K::BYTES));
                let s: [K::Scales; R] = std::array::from_fn(|r| K::prep(blk[r]));
                let xb = x.add(b * 16 * K::GROUPS);
                for k in 0..K::GROUPS {
                    let xv = _mm512_loadu_ps(xb.add(16 * k));
                    for r in 0..R {
                        a[r] = _mm512_fmadd_ps(group512::<K>(blk[r], &s[r], k), xv, a[r]);
                    }
                }
            }
            std::array::from_fn(|r| {
                let mut acc = [0.0f32; LANES];
                _mm512_storeu_ps(acc.as_mut_ptr(), a[r]);
                finish(acc, 0.0)
            })
        }
    }

    /// Rows four at a time, then one at a time.
    ///
    /// # Safety
    /// As [`rows_dot`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_dot_kind<K: Kind>(rows: &[u8], rb: usize, x: *const f32, out: &mut [f32]) {
        let blocks = rb / K::BYTES;
        let p = rows.as_ptr();
        let quads = out.len() / 4;
        // SAFETY: rows `4q..4q + 4` and `j` are inside `rows` (caller: `out.len()` rows of `rb`).
        unsafe {
            for q in 0..quads {
                let v = walk::<K, 4>(p.add(4 * q * rb), rb, blocks, x);
                out[4 * q..4 * q + 4].copy_from_slice(&v);
            }
            for j in 4 * quads..out.len() {
                out[j] = walk::<K, 1>(p.add(j * rb), rb, blocks, x)[0];
            }
        }
    }

    /// [`rows_dot_kind`] with [`walk512`].
    ///
    /// # Safety
    /// As [`rows_dot`], and AVX-512F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn rows_dot_kind512<K: Kind>(rows: &[u8], rb: usize, x: *const f32, out: &mut [f32]) {
        let blocks = rb / K::BYTES;
        let p = rows.as_ptr();
        let quads = out.len() / 4;
        // SAFETY: rows `4q..4q + 4` and `j` are inside `rows` (caller: `out.len()` rows of `rb`).
        unsafe {
            for q in 0..quads {
                let v = walk512::<K, 4>(p.add(4 * q * rb), rb, blocks, x);
                out[4 * q..4 * q + 4].copy_from_slice(&v);
            }
            for j in 4 * quads..out.len() {
                out[j] = walk512::<K, 1>(p.add(j * rb), rb, blocks, x)[0];
            }
        }
    }

    /// Every weight of every block, stored.
    ///
    /// # Safety
    /// As [`dequantize`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dequantize_kind<K: Kind>(src: &[u8], dst: &mut [f32]) {
        // SAFETY: block `i` is inside `src` and its `16 * GROUPS` values inside `dst` (caller).
        unsafe {
            for (i, b) in src.chunks_exact(K::BYTES).enumerate() {
                let b = b.as_ptr();
                let s = K::prep(b);
                let o = dst.as_mut_ptr().add(i * 16 * K::GROUPS);
                for k in 0..K::GROUPS {
                    let (w0, w1) = group::<K>(b, &s, k);
                    _mm256_storeu_ps(o.add(16 * k), w0);
                    _mm256_storeu_ps(o.add(16 * k + 8), w1);
                }
            }
        }
    }

    /// [`dequantize_kind`] in 512-bit registers.
    ///
    /// # Safety
    /// As [`dequantize`], and AVX-512F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn dequantize_kind512<K: Kind>(src: &[u8], dst: &mut [f32]) {
        // SAFETY: block `i` is inside `src` and its `16 * GROUPS` values inside `dst` (caller).
        unsafe {
            for (i, b) in src.chunks_exact(K::BYTES).enumerate() {
                let b = b.as_ptr();
                let s = K::prep(b);
                let o = dst.as_mut_ptr().add(i * 16 * K::GROUPS);
                for k in 0..K::GROUPS {
                    _mm512_storeu_ps(o.add(16 * k), group512::<K>(b, &s, k));
                }
            }
        }
    }

    /// Whether the 512-bit walk runs ([`available`] and AVX-512F, BW, VL); `LLMFORGE_CPU_AVX512=0`
    /// keeps the 256-bit one (same results).
    fn wide() -> bool {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::env::var("LLMFORGE_CPU_AVX512").map_or(true, |v| v != "0")
        })
    }

    /// The register kernel of `t` over `out.len()` rows of `rb` bytes.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `rows` holds `out.len()` rows of `rb` bytes, `rb` whole blocks of `t`; `x`
    /// at least a row's values.
    pub unsafe fn rows_dot(t: BlockType, rows: &[u8], rb: usize, x: *const f32, out: &mut [f32]) {
        macro_rules! each {
            ($f:ident) => {
                // SAFETY: the caller's contract, passed on; `$f` needs no more than it (the 512-bit
                // one only where `wide` detected its features).
                unsafe {
                    match t {
                        BlockType::Q8_0 => $f::<Q8_0>(rows, rb, x, out),
                        BlockType::Q4_0 => $f::<Q4_0>(rows, rb, x, out),
                        BlockType::Q4_1 => $f::<Q4_1>(rows, rb, x, out),
                        BlockType::Q5_0 => $f::<Q5_0>(rows, rb, x, out),
                        BlockType::Q5_1 => $f::<Q5_1>(rows, rb, x, out),
                        BlockType::Q2K => $f::<Q2K>(rows, rb, x, out),
                        BlockType::Q3K => $f::<Q3K>(rows, rb, x, out),
                        BlockType::Q4K => $f::<Q4K>(rows, rb, x, out),
                        BlockType::Q5K => $f::<Q5K>(rows, rb, x, out),
                        BlockType::Q6K => $f::<Q6K>(rows, rb, x, out),
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

    /// The loader's values of the whole blocks of `t` in `src`, into `dst`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `src` whole blocks of `t`; `dst` at least their values long.
    pub unsafe fn dequantize(t: BlockType, src: &[u8], dst: &mut [f32]) {
        macro_rules! each {
            ($f:ident) => {
                // SAFETY: the caller's contract, passed on; `$f` needs no more than it (the 512-bit
                // one only where `wide` detected its features).
                unsafe {
                    match t {
                        BlockType::Q8_0 => $f::<Q8_0>(src, dst),
                        BlockType::Q4_0 => $f::<Q4_0>(src, dst),
                        BlockType::Q4_1 => $f::<Q4_1>(src, dst),
                        BlockType::Q5_0 => $f::<Q5_0>(src, dst),
                        BlockType::Q5_1 => $f::<Q5_1>(src, dst),
                        BlockType::Q2K => $f::<Q2K>(src, dst),
                        BlockType::Q3K => $f::<Q3K>(src, dst),
                        BlockType::Q4K => $f::<Q4K>(src, dst),
                        BlockType::Q5K => $f::<Q5K>(src, dst),
                        BlockType::Q6K => $f::<Q6K>(src, dst),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes for whole blocks of `t`, with every f16 scale finite and of either sign (random
    /// bytes would make some of them infinities or NaNs, which no quantizer writes).
    fn random_blocks(t: BlockType, blocks: usize, s: &mut u64) -> Vec<u8> {
        let mut byte = || {
            *s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*s >> 33) as u8
        };
        let mut row: Vec<u8> = (0..blocks * t.block_bytes()).map(|_| byte()).collect();
        let halves: &[usize] = match t {
            BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[0],
            BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4K | BlockType::Q5K => &[0, 2],
            BlockType::Q2K => &[80, 82],
            BlockType::Q3K => &[108],
            BlockType::Q6K => &[208],
        };
        for b in row.chunks_exact_mut(t.block_bytes()) {
            for &at in halves {
                let v = (byte() as f32 - 128.0) / 4000.0;
                b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
        row
    }

    /// Every block type, random blocks, against the loader's dequantisation then `dot`, bit for bit:
    /// one row and `rows` rows at once (the four-row walk and its remainder), and the fast
    /// dequantisation against the loader's (signs of zero included).
    #[test]
    fn register_kernels_equal_the_loaders_values_and_dot() {
        let mut s = 11u64;
        for t in BlockType::ALL {
            for (blocks, rows) in [(1, 1), (2, 5), (9, 4), (3, 11)] {
                let rb = blocks * t.block_bytes();
                let data = random_blocks(t, blocks * rows, &mut s);
                let cols = blocks * t.block_elems();
                let x: Vec<f32> = (0..cols)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                let mut want = vec![0.0; cols * rows];
                crate::weights::dequantize_blocks_into(t, &data, &mut want);
                let mut got = vec![1.0; cols * rows];
                dequantize(t, &data, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{} dequantised", t.name());
                let mut out = vec![0.0; rows];
                rows_dot(t, &data, &x, &mut out, &mut Vec::new());
                for j in 0..rows {
                    let w = dot(&want[j * cols..(j + 1) * cols], &x);
                    let one = row_dot(t, &data[j * rb..(j + 1) * rb], &x, &mut Vec::new());
                    let what = format!("{} {blocks} blocks, row {j} of {rows}", t.name());
                    assert_eq!(out[j].to_bits(), w.to_bits(), "{what}");
                    assert_eq!(one.to_bits(), w.to_bits(), "{what}, alone");
                }
            }
        }
    }
}
