//! GGML block formats → f32, computed exactly as gguf-py's `gguf.quants.dequantize` computes them (and
//! therefore as transformers' GGUF loader does). That code is numpy in float32 throughout: every f16
//! scale is widened to f32, the small integer codes are formed exactly in integer arithmetic and then
//! converted to f32, and each step is one correctly rounded f32 operation, never fused. We take the
//! same steps in the same order: below, `a ⊗ b` is an f32 product and `⊕`/`⊖` an f32 sum/difference
//! (Rust never contracts `a * b - c` into a fused multiply-add).
//!
//! Where the order matters, and where it does not: every product here is exact in f32 (an f16 scale
//! has an 11-bit significand, an integer scale or code at most 7 bits; the largest product, Q6_K's
//! `d ⊗ sc ⊗ q`, needs 11 + 7 + 5 = 23 of f32's 24 bits), so grouping the multiplications as
//! `(d ⊗ sc) ⊗ q` (gguf-py) or `d ⊗ (sc ⊗ q)`, or fusing a multiply-add, changes no bit. The one
//! rounding is the final `⊕ m` (Q4_1, Q5_1) or `⊖ (dmin ⊗ m)` (Q2_K, Q4_K, Q5_K), and it must be
//! exactly that operation: `−((dmin ⊗ m) ⊖ product)` rounds the same but gives `−0` where gguf-py
//! gives `+0`. Zeros keep IEEE signs throughout (a negative scale times a zero code is `−0`), as
//! numpy's do; the fixture test compares bits, signs of zero included.
//!
//! Blocks of 32 (`d`, `m` are f16; `qs` bytes hold two 4-bit codes, element `j < 16` in the low nibble
//! of byte `j` and element `j + 16` in its high nibble):
//!
//! - `Q8_0`: blocks of 32 = f16 `d`, 32 × i8 `q`; `x = q ⊗ d`.
//! - `Q4_0`: blocks of 32 = f16 `d`, 16 bytes `qs`; `x = (q − 8) ⊗ d`.
//! - `Q4_1`: blocks of 32 = f16 `d`, f16 `m`, 16 bytes `qs`; `x = (q ⊗ d) ⊕ m`.
//! - `Q5_0`: blocks of 32 (22 bytes) = f16 `d`, u32 `qh` (little-endian), 16 bytes `qs`; the 5-bit code
//!   of element `j` is its nibble from `qs` plus bit `j` of `qh` as bit 4; `x = (q − 16) ⊗ d`.
//! - `Q5_1`: blocks of 32 (24 bytes) = f16 `d`, f16 `m`, u32 `qh`, 16 bytes `qs`, codes as in Q5_0;
//!   `x = (q ⊗ d) ⊕ m`.
//!
//! K-quants: super-blocks of 256 elements in sub-blocks of 16 or 32, each sub-block with its own
//! integer scale `sc` (and minimum `m`), themselves scaled by the super-block's f16 `d` (and `dmin`).
//! gguf-py, and we, first form the sub-block's f32 scale `d ⊗ sc` (and `dmin ⊗ m`), then multiply the
//! code by it, then subtract the minimum term: `x = ((d ⊗ sc) ⊗ q) ⊖ (dmin ⊗ m)`. Element `e` of the
//! super-block is written `e = 128·h + 32·s + l` (`h < 2`, `s < 4`, `l < 32`) or `e = 32·j + l`
//! (`j < 8`) where the layout follows those indices.
//!
//! - `Q2_K` (84 bytes): 16 bytes `scales`, 64 bytes `qs`, f16 `d`, f16 `dmin`. Sub-block `i = e / 16`
//!   has `sc = scales[i] & 15`, `m = scales[i] >> 4`; the 2-bit code is
//!   `q = (qs[32·h + l] >> 2·s) & 3`; `x = ((d ⊗ sc) ⊗ q) ⊖ (dmin ⊗ m)`.
//! - `Q3_K` (110 bytes): 32 bytes `hmask`, 64 bytes `qs`, 12 bytes `scales`, f16 `d`. Of the 16 6-bit
//!   scales, scale `i` has as low 4 bits the low (`i < 8`) or high (`i ≥ 8`) nibble of
//!   `scales[i mod 8]`, as high 2 bits bits `2·(i / 4)` and `2·(i / 4) + 1` of `scales[8 + i mod 4]`;
//!   `sc = that − 32` (−32..31). The code is the 2-bit `(qs[32·h + l] >> 2·s) & 3`, minus 4 where bit
//!   `e / 32` of `hmask[l]` is *clear* (a set bit means no offset): `q ∈ −4..3`;
//!   `x = (d ⊗ sc) ⊗ q` with `i = e / 16`.
//! - `Q4_K` (144 bytes): f16 `d`, f16 `dmin`, 12 bytes `scales` holding 8 6-bit scales and 8 6-bit
//!   mins, 128 bytes `qs`. For `j < 4`: `sc = scales[j] & 63`, `m = scales[j + 4] & 63`; for
//!   `j ≥ 4`: `sc = (scales[j + 4] & 15) | (scales[j − 4] >> 6) << 4`,
//!   `m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4`. Sub-block `j` (32 elements) holds the low
//!   (`j` even) or high (`j` odd) nibbles of the 32 bytes from `qs[32·(j / 2)]`:
//!   `q = (qs[32·(j / 2) + l] >> 4·(j mod 2)) & 15`; `x = ((d ⊗ sc) ⊗ q) ⊖ (dmin ⊗ m)`.
//! - `Q5_K` (176 bytes): f16 `d`, f16 `dmin`, 12 bytes `scales` (as Q4_K), 32 bytes `qh`, 128 bytes
//!   `qs` (as Q4_K); the code gains bit `j` of `qh[l]` as bit 4 (`q ∈ 0..31`);
//!   `x = ((d ⊗ sc) ⊗ q) ⊖ (dmin ⊗ m)`.
//! - `Q6_K` (210 bytes): 128 bytes `ql`, 64 bytes `qh`, 16 × i8 `scales`, f16 `d`. With
//!   `e = 128·h + r`, the code's low 4 bits are `(ql[64·h + r mod 64] >> 4·(r / 64)) & 15`, its high
//!   2 bits `(qh[32·h + r mod 32] >> 2·(r / 32)) & 3`, and `q = that − 32` (−32..31);
//!   `x = (d ⊗ scales[e / 16]) ⊗ q`.

use super::types::GgmlType;
use half::{bf16, f16};

/// Dequantise `bytes` (exactly the tensor's data) holding `numel` values of type `ty`.
/// The caller has checked `bytes.len() == numel / block_elems * block_bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / ty.block_bytes() * ty.block_elems()];
    dequantize_into(ty, bytes, &mut out);
    out
}

/// [`dequantize`] into `dst` (as many values as `bytes` holds), allocating nothing: the CPU engine
/// dequantises rows of kept blocks with it.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => blocks(ty, bytes, dst, |b, out| {
            let d = half16(b, 0);
            for (o, &q) in out.iter_mut().zip(&b[2..34]) {
                *o = (q as i8) as f32 * d;
            }
        }),
        GgmlType::Q4_0 => blocks(ty, bytes, dst, |b, out| {
            let d = half16(b, 0);
            nibbles(&b[2..18], out, |q| (q as f32 - 8.0) * d);
        }),
        GgmlType::Q4_1 => blocks(ty, bytes, dst, |b, out| {
            let d = half16(b, 0);
            let m = half16(b, 2);
            nibbles(&b[4..20], out, |q| q as f32 * d + m);
        }),
        GgmlType::Q5_0 => blocks(ty, bytes, dst, |b, out| {
            let d = half16(b, 0);
            five_bits(le32(b, 2), &b[6..22], out, |q| (q as f32 - 16.0) * d);
        }),
        GgmlType::Q5_1 => blocks(ty, bytes, dst, |b, out| {
            let d = half16(b, 0);
            let m = half16(b, 2);
            five_bits(le32(b, 4), &b[8..24], out, |q| q as f32 * d + m);
        }),
        GgmlType::Q2_K => blocks(ty, bytes, dst, q2_k),
        GgmlType::Q3_K => blocks(ty, bytes, dst, q3_k),
        GgmlType::Q4_K => blocks(ty, bytes, dst, |b, out| q45_k(b, None, &b[16..144], out)),
        GgmlType::Q5_K => blocks(ty, bytes, dst, |b, out| {
            q45_k(b, Some(&b[16..48]), &b[48..176], out)
        }),
        GgmlType::Q6_K => blocks(ty, bytes, dst, q6_k),
    }
}

/// Apply `one` to each block of `ty` in `bytes`, writing its `block_elems` outputs into `dst`.
fn blocks(ty: GgmlType, bytes: &[u8], dst: &mut [f32], one: impl Fn(&[u8], &mut [f32])) {
    let per = ty.block_elems();
    for (b, o) in bytes
        .chunks_exact(ty.block_bytes())
        .zip(dst.chunks_exact_mut(per))
    {
        one(b, o);
    }
}

fn half16(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// 16 bytes of packed nibbles → 32 values: low nibbles first, then high nibbles.
fn nibbles(qs: &[u8], out: &mut [f32], f: impl Fn(u8) -> f32) {
    let (lo, hi) = out.split_at_mut(16);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = f(q & 0x0F);
        *h = f(q >> 4);
    }
}

/// Q5_0/Q5_1 codes: the nibbles of `qs` as in [`nibbles`], bit `j` of `qh` as bit 4 of element `j`.
fn five_bits(qh: u32, qs: &[u8], out: &mut [f32], f: impl Fn(u8) -> f32) {
    let bit = |j: usize| (((qh >> j) & 1) as u8) << 4;
    let (lo, hi) = out.split_at_mut(16);
    for (j, ((&q, l), h)) in qs.iter().zip(lo).zip(hi).enumerate() {
        *l = f((q & 0x0F) | bit(j));
        *h = f((q >> 4) | bit(j + 16));
    }
}

/// The 2-bit code of super-block element `e` in 64 bytes `qs` (Q2_K, and the low bits of Q3_K):
/// 32 bytes per half, four 2-bit fields per byte, the lowest first.
fn crumb(qs: &[u8], e: usize) -> u8 {
    (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3
}

/// Q2_K: 16 bytes scales (low nibble scale, high nibble min), 64 bytes qs, f16 d, f16 dmin.
fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let d = half16(b, 80);
    let dmin = half16(b, 82);
    for (i, sub) in out.chunks_exact_mut(16).enumerate() {
        let dl = d * (scales[i] & 0x0F) as f32;
        let ml = dmin * (scales[i] >> 4) as f32;
        for (k, o) in sub.iter_mut().enumerate() {
            *o = dl * crumb(qs, 16 * i + k) as f32 - ml;
        }
    }
}

/// Q3_K: 32 bytes hmask, 64 bytes qs, 12 bytes of 16 packed 6-bit scales, f16 d.
fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
    let d = half16(b, 108);
    for (i, sub) in out.chunks_exact_mut(16).enumerate() {
        let low = if i < 8 {
            scales[i] & 0x0F
        } else {
            scales[i - 8] >> 4
        };
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
        let sc = ((low | high << 4) as i32 - 32) as f32;
        let dl = d * sc;
        for (k, o) in sub.iter_mut().enumerate() {
            let e = 16 * i + k;
            // A clear hmask bit subtracts 4; a set one leaves the 2-bit code as it is.
            let offset = if (hmask[e % 32] >> (e / 32)) & 1 == 0 {
                4
            } else {
                0
            };
            *o = dl * (crumb(qs, e) as i32 - offset) as f32;
        }
    }
}

/// The 6-bit scale and min of sub-block `j < 8` from Q4_K/Q5_K's 12 scale bytes: bytes 0..4 hold
/// scales 0..4 (low 6 bits) and the top bits of scales 4..8, bytes 4..8 the same for the mins, bytes
/// 8..12 the low nibbles of scales 4..8 (low half) and mins 4..8 (high half).
pub(crate) fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4,
            (s[j + 4] >> 4) | (s[j] >> 6) << 4,
        )
    }
}

/// Q4_K (`qh` absent) and Q5_K: f16 d, f16 dmin, 12 scale bytes, [32 bytes qh], 128 bytes qs.
fn q45_k(b: &[u8], qh: Option<&[u8]>, qs: &[u8], out: &mut [f32]) {
    let d = half16(b, 0);
    let dmin = half16(b, 2);
    let scales = &b[4..16];
    for (j, sub) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(scales, j);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let bytes = &qs[32 * (j / 2)..][..32];
        let shift = 4 * (j % 2);
        for (l, o) in sub.iter_mut().enumerate() {
            let mut q = (bytes[l] >> shift) & 0x0F;
            if let Some(qh) = qh {
                q |= ((qh[l] >> j) & 1) << 4;
            }
            *o = dl * q as f32 - ml;
        }
    }
}

/// Q6_K: 128 bytes ql, 64 bytes qh, 16 i8 scales, f16 d.
fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half16(b, 208);
    for (i, sub) in out.chunks_exact_mut(16).enumerate() {
        let dl = d * (scales[i] as i8) as f32;
        for (k, o) in sub.iter_mut().enumerate() {
            let e = 16 * i + k;
            let (h, r) = (e / 128, e % 128);
            let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
            let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            *o = dl * ((low | high << 4) as i32 - 32) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_scales_signed_bytes() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let out = dequantize(GgmlType::Q8_0, &block);
        let want: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn q4_nibble_order_is_low_then_high() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let out = dequantize(GgmlType::Q4_0, &block);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 2.0);
            assert_eq!(out[j + 16], ((15 - j) as f32 - 8.0) * 2.0);
        }
        let mut block = f16_bytes(2.0).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let out = dequantize(GgmlType::Q4_1, &block);
        assert_eq!(out[3], 3.0 * 2.0 - 1.0);
        assert_eq!(out[16], 15.0 * 2.0 - 1.0);
    }

    #[test]
    fn bf16_is_the_high_half_of_f32() {
        let out = dequantize(GgmlType::BF16, &[0x80, 0x3f, 0x00, 0xc0]);
        assert_eq!(out, vec![1.0, -2.0]);
    }
}
