//! Build-time weight-only quantization (`--quant_format int8|int4|fp8`): a dense `[rows, cols]`
//! matrix, as f32, to the codes and scales of [`WeightQuant`], round to nearest, and back. The
//! formulas and byte layouts are `crate::format`'s (torchao's and torch's, bit for bit); the CPU's
//! product kernels (`backend/cpu/quant_dot.rs`) dequantise in registers to exactly
//! [`dequantize_row`]'s values.

use super::{HostTensor, TensorData, WeightsError};
use crate::format::{INT4_GROUP, WeightQuant};
use rayon::prelude::*;

/// torchao's int8 floor on a scale: f32's machine epsilon (`torch.finfo(torch.float32).eps`).
const INT8_EPS: f32 = f32::EPSILON;
/// The floor on int4 and fp8 scales: f32's smallest normal (torchao's default `eps`).
const SMALL_EPS: f32 = f32::MIN_POSITIVE;
/// The largest finite E4M3 (fn) value.
pub const FP8_MAX: f32 = 448.0;

/// A quantized matrix: `codes` (`rows × code_bytes(cols)`) and `scales` (`rows × scales(cols)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
}

impl Quantized {
    /// The stored bytes: the codes, then the scales little endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.codes.len() + 4 * self.scales.len());
        out.extend_from_slice(&self.codes);
        for s in &self.scales {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// The matrix `[rows, cols]` stored as `bytes` (codes, then scales), checked for size.
    pub fn from_bytes(
        q: WeightQuant,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Quantized, WeightsError> {
        let bad = || {
            WeightsError::Other(format!(
                "{} bytes are not a {rows}x{cols} matrix quantized as {}",
                bytes.len(),
                q.name()
            ))
        };
        let code_len = q
            .code_bytes(cols)
            .and_then(|c| c.checked_mul(rows))
            .ok_or_else(bad)?;
        let scale_len = q
            .scales(cols)
            .and_then(|s| s.checked_mul(rows))
            .ok_or_else(bad)?;
        if code_len.checked_add(scale_len.checked_mul(4).ok_or_else(bad)?) != Some(bytes.len()) {
            return Err(bad());
        }
        let (codes, scales) = bytes.split_at(code_len);
        Ok(Quantized {
            codes: codes.to_vec(),
            scales: scales
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// `torch.round`: to nearest, ties to even.
fn round(x: f32) -> f32 {
    x.round_ties_even()
}

/// The largest magnitude of `v` (0 for an empty slice; NaNs ignored, as `max` does).
fn amax(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Symmetric integer codes of `v` with `scale`: `clamp(round(x ⊗ (1 ⊘ scale)), lo, hi)`.
fn int_codes(v: &[f32], scale: f32, lo: f32, hi: f32) -> impl Iterator<Item = i8> + '_ {
    let inv = 1.0 / scale;
    v.iter().map(move |&x| round(x * inv).clamp(lo, hi) as i8)
}

/// `x` (finite, `|x| <= 448`) as E4M3 (fn), rounded to nearest even: torch's
/// `.to(torch.float8_e4m3fn)`.
pub fn f32_to_fp8(x: f32) -> u8 {
    let sign = ((x.to_bits() >> 24) & 0x80) as u8;
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7F;
    }
    // Below the smallest normal (2^-6) the codes are multiples of 2^-9: the product is exact, so
    // one rounding to an integer rounds the value (a result of 8 is the smallest normal's code).
    if a < 2f32.powi(-6) {
        return sign | round(a * 512.0) as u8;
    }
    // Keep 3 mantissa bits, ties to even; a carry moves into the exponent, as it should.
    let bits = a.to_bits();
    let rounded = bits + 0x7_FFFF + ((bits >> 20) & 1);
    let e = (rounded >> 23) as i32 - 127 + 7;
    let m = (rounded >> 20) & 7;
    let code = ((e as u32) << 3) | m;
    // 448 is the largest finite value (code 0x7E); larger magnitudes are clamped before the cast.
    sign | code.min(0x7E) as u8
}

/// The exact value of an E4M3 (fn) code. The NaN codes `0x7F` and `0xFF` are never written; read,
/// they are ±480 (the value their bits would have as a normal number), as in the product kernels.
#[inline(always)]
pub fn fp8_to_f32(code: u8) -> f32 {
    let sign = ((code & 0x80) as u32) << 24;
    let (e, m) = (((code >> 3) & 0xF) as u32, (code & 7) as u32);
    if e == 0 {
        // Subnormal: m · 2^-9, exact.
        return f32::from_bits(sign | (m as f32 / 512.0).to_bits());
    }
    // Normal: 2^(e - 7) · (1 + m / 8), the exponent rebiased from 7 to 127.
    f32::from_bits(sign | ((e + 120) << 23) | (m << 20))
}

/// Quantize the `[rows, cols]` matrix `w` (row-major f32). `cols` must fit `q` (int4: whole groups
/// of 128) and `w` hold `rows * cols` values.
pub fn quantize(
    q: WeightQuant,
    w: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Quantized, WeightsError> {
    let (Some(code_bytes), Some(per_row)) = (q.code_bytes(cols), q.scales(cols)) else {
        return Err(WeightsError::Other(format!(
            "a row of {cols} weights cannot be quantized as {} (its groups are {INT4_GROUP} wide)",
            q.name()
        )));
    };
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(WeightsError::Other(format!(
            "{} values are not a {rows}x{cols} matrix",
            w.len()
        )));
    }
    // A NaN would be skipped by the scale's maximum and an infinity would make it infinite: either
    // way the row's codes would not be the weights'.
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(WeightsError::Other(format!(
            "the weight at row {}, column {} is {}: only finite weights can be quantized as {}",
            i / cols.max(1),
            i % cols.max(1),
            w[i],
            q.name()
        )));
    }
    // Rows are independent: quantized in parallel, then stacked in order.
    let quantized: Vec<(Vec<u8>, Vec<f32>)> = w
        .par_chunks_exact(cols.max(1))
        .take(rows)
        .map(|row| quantize_row(q, row))
        .collect();
    let mut codes = Vec::with_capacity(rows * code_bytes);
    let mut scales = Vec::with_capacity(rows * per_row);
    for (c, s) in quantized {
        codes.extend_from_slice(&c);
        scales.extend_from_slice(&s);
    }
    if rows == 0 || cols == 0 {
        // No rows (or empty ones): no codes, and one scale per row for the per-row formats.
        scales.resize(rows * per_row, INT8_EPS);
    }
    Ok(Quantized { codes, scales })
}

/// One row's codes and scales.
fn quantize_row(q: WeightQuant, row: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut codes = Vec::new();
    let mut scales = Vec::new();
    match q {
        WeightQuant::Int8 => {
            let scale = (amax(row) / 127.5).max(INT8_EPS);
            scales.push(scale);
            codes.extend(int_codes(row, scale, -128.0, 127.0).map(|c| c as u8));
        }
        WeightQuant::Int4 => {
            for g in row.chunks_exact(INT4_GROUP) {
                let scale = (amax(g) / 7.5).max(SMALL_EPS);
                scales.push(scale);
                let c: Vec<i8> = int_codes(g, scale, -8.0, 7.0).collect();
                codes.extend(
                    c.chunks_exact(2)
                        .map(|p| (p[0] as u8 & 0xF) | ((p[1] as u8 & 0xF) << 4)),
                );
            }
        }
        WeightQuant::Fp8 => {
            let scale = (amax(row) / FP8_MAX).max(SMALL_EPS);
            scales.push(scale);
            codes.extend(
                row.iter()
                    .map(|&x| f32_to_fp8((x / scale).clamp(-FP8_MAX, FP8_MAX))),
            );
        }
    }
    (codes, scales)
}

/// The signed value of the int4 code in the low nibble of `b`.
#[inline(always)]
pub fn int4_value(b: u8) -> i8 {
    (((b & 0xF) ^ 8) as i8) - 8
}

/// One row's weights from its codes and scales (`out.len()` = the row's `cols`): `scale ⊗ v`.
pub fn dequantize_row(q: WeightQuant, codes: &[u8], scales: &[f32], out: &mut [f32]) {
    match q {
        WeightQuant::Int8 => {
            let s = scales[0];
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = s * (c as i8) as f32;
            }
        }
        WeightQuant::Int4 => {
            for (j, o) in out.iter_mut().enumerate() {
                let b = codes[j / 2] >> (4 * (j % 2));
                *o = scales[j / INT4_GROUP] * int4_value(b) as f32;
            }
        }
        WeightQuant::Fp8 => {
            let s = scales[0];
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = s * fp8_to_f32(c);
            }
        }
    }
}

/// Rows of a quantized matrix (`codes` and `scales` of whole rows of `cols`) dequantised into `out`.
pub fn dequantize_rows(q: WeightQuant, cols: usize, codes: &[u8], scales: &[f32], out: &mut [f32]) {
    let (Some(cb), Some(sr)) = (q.code_bytes(cols), q.scales(cols)) else {
        return;
    };
    if cols == 0 {
        return;
    }
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        let (c, s) = (&codes[r * cb..(r + 1) * cb], &scales[r * sr..(r + 1) * sr]);
        dequantize_row(q, c, s, o);
    }
}

/// The fused matrix of `parts` (each `[rows_i, cols]`, stacked in order) quantized as `q`: parts
/// already quantized as `q` are taken as they are, the others quantized from their values. Every
/// format quantizes row by row, so quantizing part by part is quantizing the fused matrix.
pub fn quantize_parts(
    q: WeightQuant,
    parts: &[&HostTensor],
    cols: usize,
) -> Result<Quantized, WeightsError> {
    let mut m = Quantized {
        codes: Vec::new(),
        scales: Vec::new(),
    };
    for p in parts {
        let part_rows = p.shape.first().copied().unwrap_or(0);
        let got = match &p.data {
            TensorData::Quantized { quant, bytes } if *quant == q => {
                Quantized::from_bytes(q, part_rows, cols, bytes)?
            }
            _ => quantize(q, &p.to_f32(), part_rows, cols)?,
        };
        m.codes.extend_from_slice(&got.codes);
        m.scales.extend_from_slice(&got.scales);
    }
    Ok(m)
}

/// A 2-D tensor quantized (from its values widened to f32) into `TensorData::Quantized`.
pub fn quantize_tensor(q: WeightQuant, t: &HostTensor) -> Result<HostTensor, WeightsError> {
    let [rows, cols] = t.shape[..] else {
        return Err(WeightsError::Other(format!(
            "only matrices are quantized, not a tensor of shape {:?}",
            t.shape
        )));
    };
    let m = quantize(q, &t.to_f32(), rows, cols)?;
    Ok(HostTensor {
        shape: t.shape.clone(),
        data: TensorData::Quantized {
            quant: q,
            bytes: m.to_bytes(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN or infinite weight is refused, naming where it sits, for every format.
    #[test]
    fn non_finite_weights_are_refused() {
        for q in [WeightQuant::Int8, WeightQuant::Int4, WeightQuant::Fp8] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut w = vec![0.5f32; 2 * 128];
                w[128 + 3] = bad;
                let e = quantize(q, &w, 2, 128).unwrap_err().to_string();
                assert!(e.contains("row 1, column 3") && e.contains("finite"), "{e}");
            }
        }
    }

    /// Every finite E4M3 code survives the round trip, and values between two codes go to the
    /// nearer one (ties to the even code).
    #[test]
    fn fp8_codes_round_trip_and_round_to_nearest_even() {
        for c in 0..=255u8 {
            if c & 0x7F == 0x7F {
                assert_eq!(fp8_to_f32(c).abs(), 480.0);
                continue;
            }
            let v = fp8_to_f32(c);
            let back = f32_to_fp8(v);
            // +0 and -0 keep their signs.
            assert_eq!(back, c, "code {c:#x} = {v}");
        }
        assert_eq!(fp8_to_f32(0x7E), 448.0);
        assert_eq!(fp8_to_f32(0x01), 2f32.powi(-9));
        // Halfway between 1.0 (0x38) and 1.125 (0x39): to the even code 0x38; 1.1875 to 0x3A.
        assert_eq!(f32_to_fp8(1.0625), 0x38);
        assert_eq!(f32_to_fp8(1.1875), 0x3A);
        // Halfway between the two smallest subnormals.
        assert_eq!(f32_to_fp8(1.5 * 2f32.powi(-9)), 0x02);
        assert_eq!(f32_to_fp8(-448.0), 0xFE);
    }

    #[test]
    fn layouts_and_sizes() {
        let w: Vec<f32> = (0..2 * 256).map(|i| (i as f32 - 200.0) / 37.0).collect();
        for q in WeightQuant::ALL {
            let m = quantize(q, &w, 2, 256).unwrap();
            let bytes = m.to_bytes();
            assert_eq!(Some(bytes.len()), q.row_bytes(256).map(|r| 2 * r));
            assert_eq!(Quantized::from_bytes(q, 2, 256, &bytes).unwrap(), m);
            let mut back = vec![0.0; 512];
            dequantize_rows(q, 256, &m.codes, &m.scales, &mut back);
            let amax = amax(&w);
            // Half a step of the grid (fp8: half a unit in the last of its 3 mantissa bits).
            let bound = match q {
                WeightQuant::Int8 => amax / 255.0,
                WeightQuant::Int4 => amax / 15.0,
                WeightQuant::Fp8 => amax / 16.0,
            } * 1.001;
            for (a, b) in w.iter().zip(&back) {
                assert!((a - b).abs() <= bound, "{q:?} {a} {b}");
            }
        }
        assert!(quantize(WeightQuant::Int4, &w, 4, 128 + 0).is_ok());
        assert!(quantize(WeightQuant::Int4, &w[..2 * 64], 2, 64).is_err());
        assert!(Quantized::from_bytes(WeightQuant::Int8, 2, 3, &[0; 7]).is_err());
    }

    #[test]
    fn int4_nibbles_are_low_first_twos_complement() {
        let mut w = vec![0.0f32; 128];
        w[0] = -7.5; // the largest magnitude: scale 1, code round(-7.5) = -8 (ties to even)
        w[1] = 3.0;
        w[2] = 7.0;
        let m = quantize(WeightQuant::Int4, &w, 1, 128).unwrap();
        assert_eq!(m.scales, vec![1.0]);
        assert_eq!(m.codes[0], 0x38);
        assert_eq!(m.codes[1], 0x07);
        assert_eq!(int4_value(0x8), -8);
        assert_eq!(int4_value(0x7), 7);
    }
}
