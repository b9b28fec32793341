//! GGML block formats → f32, computed exactly as gguf-py's `gguf.quants.dequantize` computes them (and
//! therefore as transformers' GGUF loader does): the f16 scales widened to f32, each value one f32
//! multiply (and, for Q4_1, one f32 add — never fused).
//!
//! - `Q8_0`: blocks of 32 = f16 `d`, 32 × i8 `q`; `x = q · d`.
//! - `Q4_0`: blocks of 32 = f16 `d`, 16 bytes; element `j < 16` is the low nibble of byte `j`, element
//!   `j + 16` its high nibble; `x = (q − 8) · d`.
//! - `Q4_1`: blocks of 32 = f16 `d`, f16 `m`, 16 bytes as in Q4_0; `x = q · d + m`.

use super::types::GgmlType;
use half::{bf16, f16};

/// Dequantise `bytes` (exactly the tensor's data) holding `numel` values of type `ty`.
/// The caller has checked `bytes.len() == numel / block_elems * block_bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => blocks(ty, bytes, |b, out| {
            let d = half16(b, 0);
            for (o, &q) in out.iter_mut().zip(&b[2..34]) {
                *o = (q as i8) as f32 * d;
            }
        }),
        GgmlType::Q4_0 => blocks(ty, bytes, |b, out| {
            let d = half16(b, 0);
            nibbles(&b[2..18], out, |q| (q as f32 - 8.0) * d);
        }),
        GgmlType::Q4_1 => blocks(ty, bytes, |b, out| {
            let d = half16(b, 0);
            let m = half16(b, 2);
            nibbles(&b[4..20], out, |q| q as f32 * d + m);
        }),
    }
}

/// Apply `one` to each block of `ty` in `bytes`, writing its 32 outputs.
fn blocks(ty: GgmlType, bytes: &[u8], one: impl Fn(&[u8], &mut [f32])) -> Vec<f32> {
    let per = ty.block_elems();
    let n_blocks = bytes.len() / ty.block_bytes();
    let mut out = vec![0f32; n_blocks * per];
    for (b, o) in bytes
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(per))
    {
        one(b, o);
    }
    out
}

fn half16(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// 16 bytes of packed nibbles → 32 values: low nibbles first, then high nibbles.
fn nibbles(qs: &[u8], out: &mut [f32], f: impl Fn(u8) -> f32) {
    let (lo, hi) = out.split_at_mut(16);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = f(q & 0x0F);
        *h = f(q >> 4);
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
