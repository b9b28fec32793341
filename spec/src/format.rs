//! The weight-format axis: how a linear layer's weight matrix is stored. Both backends' linear layers
//! take a matrix together with its format (the CPU's packed `Matrix`, CUDA's `Mat`), size and pack it
//! through this one description, and pick their product kernel by it; a quantized format is a new
//! variant here plus its kernels, not a new copy of the layer loop.
//!
//! # Build-time weight-only quantization (`--quant_format int8|int4|fp8`)
//!
//! Every linear layer of the layer plan (the fused `[q | k | v]`, `o`, `[gate | up]` or `fc`, `down`
//! or `proj`) is quantized at build from the source's values widened to f32 (f32/f16/bf16
//! safetensors, a dequantised GGUF), round to nearest; **the embedding table and the lm_head stay
//! dense in the engine precision** (tied or not), as do norms and biases. Activations stay f32: a
//! product dequantises each weight (`w = scale ⊗ q`, one f32 rounding) and multiplies it as the dense
//! engine multiplies an f32 weight. The formulas are torchao's `choose_qparams_affine` /
//! `quantize_affine` (`MappingType.SYMMETRIC`) and torch's float8 cast, on f32 inputs, bit for bit
//! (`tests/fixtures/quant/`, made by `scripts/make_quant_fixtures.py`). Each matrix `[rows, cols]`
//! is stored as below; both backends read these bytes (little endian).
//!
//! - [`WeightQuant::Int8`], per output channel: `i8 [rows, cols]` row-major, then `f32 [rows]`
//!   scales. `scale[r] = max(amax_r / 127.5, 2^-23)` where `amax_r = max_c |w[r][c]|` (torchao's
//!   int8 range `[-128, 127]`: `(127 - (-128)) / 2`, and its f32-epsilon floor), then
//!   `q = clamp(round_half_even(w ⊗ (1 ⊘ scale)), -128, 127)`.
//! - [`WeightQuant::Int4`], groups of [`INT4_GROUP`] along the input: codes two per byte
//!   `u8 [rows, cols / 2]` (element `2i` in the low nibble, `2i + 1` in the high, each `q & 0xF`,
//!   two's complement, `q ∈ [-8, 7]`), then `f32 [rows, cols / 128]` scales. Per group `g` of row
//!   `r`: `scale = max(amax / 7.5, 2^-126)` (the range `[-8, 7]`, torchao's default floor: f32's
//!   smallest normal), `q = clamp(round_half_even(w ⊗ (1 ⊘ scale)), -8, 7)`. A linear whose
//!   `in_features` is not a multiple of 128 stays dense ([`WeightFormat::of_linear`]).
//! - [`WeightQuant::Fp8`], E4M3 "fn" (no infinities; `0x7F`/`0xFF` are NaN and never written; largest
//!   finite 448), per output channel: codes `u8 [rows, cols]`, then `f32 [rows]` scales.
//!   `scale[r] = max(amax_r ⊘ 448, 2^-126)`, `code = e4m3fn(clamp(w ⊘ scale, -448, 448))` rounded to
//!   nearest even (torch's `w.div(scale).clamp(-448, 448).to(torch.float8_e4m3fn)`), and
//!   `w ≈ scale ⊗ fp8_to_f32(code)`.
//!
//! (`⊗`, `⊘`: f32 operations, rounded to nearest even.) Every dequantised weight is `scale ⊗ v`
//! with `v` the code's exact value.

use crate::plan::LinearPlan;
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WeightFormat {
    /// Every element in a floating-point precision, row-major `[out_features, in_features]`.
    Dense(Precision),
    /// GGML's blocks as a GGUF file stores them: each row `in_features / block_elems` blocks, rows in
    /// order; the matrix stays packed, its rows dequantised by the product kernels as they go.
    Blocks(BlockType),
    /// Quantized at build (`--quant_format int8|int4|fp8`): the codes, then the scales (the layouts
    /// and formulas of [`WeightQuant`], in the module documentation).
    Quantized(WeightQuant),
}

/// The weight-only quantizations made at build time; each matrix is its codes followed by its f32
/// scales (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WeightQuant {
    /// Symmetric int8, one scale per output row: `i8 [rows, cols]`, then `f32 [rows]`.
    Int8,
    /// Symmetric int4 in groups of [`INT4_GROUP`] along the input: `u8 [rows, cols / 2]` (two codes
    /// a byte, low nibble first), then `f32 [rows, cols / 128]`.
    Int4,
    /// FP8 E4M3 (fn), one scale per output row: `u8 [rows, cols]`, then `f32 [rows]`.
    Fp8,
}

/// Weights per int4 scale, along the input.
pub const INT4_GROUP: usize = 128;

impl WeightQuant {
    pub const ALL: [WeightQuant; 3] = [WeightQuant::Int8, WeightQuant::Int4, WeightQuant::Fp8];

    /// The `--quant_format` spelling.
    pub fn name(self) -> &'static str {
        match self {
            WeightQuant::Int8 => "int8",
            WeightQuant::Int4 => "int4",
            WeightQuant::Fp8 => "fp8",
        }
    }

    /// Whether a row of `cols` weights can be stored (int4: whole groups).
    pub fn fits(self, cols: usize) -> bool {
        match self {
            WeightQuant::Int4 => cols.is_multiple_of(INT4_GROUP),
            WeightQuant::Int8 | WeightQuant::Fp8 => true,
        }
    }

    /// Bytes of a row's codes (`None` where `cols` does not [`fit`](WeightQuant::fits)).
    pub fn code_bytes(self, cols: usize) -> Option<usize> {
        self.fits(cols).then(|| match self {
            WeightQuant::Int4 => cols / 2,
            WeightQuant::Int8 | WeightQuant::Fp8 => cols,
        })
    }

    /// Scales per row (`None` where `cols` does not fit).
    pub fn scales(self, cols: usize) -> Option<usize> {
        self.fits(cols).then(|| match self {
            WeightQuant::Int4 => cols / INT4_GROUP,
            WeightQuant::Int8 | WeightQuant::Fp8 => 1,
        })
    }

    /// Bytes of one row's codes and scales together (the matrix is `rows` times this).
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        Some(self.code_bytes(cols)? + 4 * self.scales(cols)?)
    }
}

/// How an engine stores its linear layers' weights (`--quant_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantFormat {
    /// Dense in the engine precision (a quantized source is dequantised at load).
    #[default]
    None,
    /// A GGUF file's own block types, kept packed (other sources: dense).
    Gguf,
    /// Every linear layer quantized at build to int8 per output channel ([`WeightQuant::Int8`]).
    Int8,
    /// Every linear layer whose input width is whole groups of 128 quantized to int4
    /// ([`WeightQuant::Int4`]); the others dense.
    Int4,
    /// Every linear layer quantized to FP8 E4M3 per output channel ([`WeightQuant::Fp8`]).
    Fp8,
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 5] = [
        QuantFormat::None,
        QuantFormat::Gguf,
        QuantFormat::Int8,
        QuantFormat::Int4,
        QuantFormat::Fp8,
    ];

    /// The spelling of `--quant_format` and `models.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantFormat::None => "none",
            QuantFormat::Gguf => "gguf",
            QuantFormat::Int8 => "int8",
            QuantFormat::Int4 => "int4",
            QuantFormat::Fp8 => "fp8",
        }
    }

    /// The quantization made at build, if this format makes one.
    pub fn weight_quant(self) -> Option<WeightQuant> {
        match self {
            QuantFormat::None | QuantFormat::Gguf => None,
            QuantFormat::Int8 => Some(WeightQuant::Int8),
            QuantFormat::Int4 => Some(WeightQuant::Int4),
            QuantFormat::Fp8 => Some(WeightQuant::Fp8),
        }
    }
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QuantFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        QuantFormat::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| {
                format!("unknown quant format {s:?} (expected none, gguf, int8, int4 or fp8)")
            })
    }
}

/// GGML's block-quantized tensor types: `block_elems` weights in `block_bytes` bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl BlockType {
    pub const ALL: [BlockType; 10] = [
        BlockType::Q4_0,
        BlockType::Q4_1,
        BlockType::Q5_0,
        BlockType::Q5_1,
        BlockType::Q8_0,
        BlockType::Q2K,
        BlockType::Q3K,
        BlockType::Q4K,
        BlockType::Q5K,
        BlockType::Q6K,
    ];

    /// GGML's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Q4_0 => "Q4_0",
            BlockType::Q4_1 => "Q4_1",
            BlockType::Q5_0 => "Q5_0",
            BlockType::Q5_1 => "Q5_1",
            BlockType::Q8_0 => "Q8_0",
            BlockType::Q2K => "Q2_K",
            BlockType::Q3K => "Q3_K",
            BlockType::Q4K => "Q4_K",
            BlockType::Q5K => "Q5_K",
            BlockType::Q6K => "Q6_K",
        }
    }

    /// The type with GGML id `id`, if it is a block type.
    pub fn from_ggml_id(id: u32) -> Option<BlockType> {
        BlockType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// GGML's id of the type in GGUF tensor infos.
    pub fn ggml_id(self) -> u32 {
        match self {
            BlockType::Q4_0 => 2,
            BlockType::Q4_1 => 3,
            BlockType::Q5_0 => 6,
            BlockType::Q5_1 => 7,
            BlockType::Q8_0 => 8,
            BlockType::Q2K => 10,
            BlockType::Q3K => 11,
            BlockType::Q4K => 12,
            BlockType::Q5K => 13,
            BlockType::Q6K => 14,
        }
    }

    /// Weights per block: 32 for the legacy types, 256 for the K-quants' super-blocks.
    pub fn block_elems(self) -> usize {
        match self {
            BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 => 32,
            BlockType::Q8_0 => 32,
            _ => 256,
        }
    }

    /// Bytes per block (scales included).
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::Q4_0 => 18,
            BlockType::Q4_1 => 20,
            BlockType::Q5_0 => 22,
            BlockType::Q5_1 => 24,
            BlockType::Q8_0 => 34,
            BlockType::Q2K => 84,
            BlockType::Q3K => 110,
            BlockType::Q4K => 144,
            BlockType::Q5K => 176,
            BlockType::Q6K => 210,
        }
    }

    /// Bytes of one row of `cols` weights, `None` unless `cols` is a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        cols.is_multiple_of(self.block_elems())
            .then(|| cols / self.block_elems() * self.block_bytes())
    }
}

impl WeightFormat {
    /// The format an engine built at `precision` without build-time quantization stores `linear` in:
    /// dense in the engine precision.
    pub fn of_linear(linear: &LinearPlan, precision: Precision) -> WeightFormat {
        WeightFormat::of_linear_as(linear, precision, QuantFormat::None)
    }

    /// The format an engine built at `precision` with `quant` stores a layer's `linear` in: dense in
    /// the engine precision, unless `quant` quantizes at build and the linear's rows fit the
    /// quantization (int4: an `in_features` of whole groups of 128, else the linear stays dense).
    /// The lm_head and the embedding tables are never quantized (`of_table`), so callers pass only
    /// the layers' linears here.
    pub fn of_linear_as(
        linear: &LinearPlan,
        precision: Precision,
        quant: QuantFormat,
    ) -> WeightFormat {
        match quant.weight_quant() {
            Some(q) if q.fits(linear.in_features) => WeightFormat::Quantized(q),
            _ => WeightFormat::Dense(precision),
        }
    }

    /// The format of the embedding tables (gathered from, never multiplied), dense in the engine
    /// precision.
    pub fn of_table(precision: Precision) -> WeightFormat {
        WeightFormat::Dense(precision)
    }

    /// Bytes of a `[rows, cols]` matrix in this format (a block format's `cols` a whole number of
    /// blocks).
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> usize {
        match self {
            WeightFormat::Dense(p) => rows * cols * p.bytes_per_element(),
            WeightFormat::Blocks(t) => rows * (cols / t.block_elems()) * t.block_bytes(),
            WeightFormat::Quantized(q) => rows * q.row_bytes(cols).unwrap_or(0),
        }
    }

    /// [`WeightFormat::matrix_bytes`], or `None` where the size overflows (sizes from user input) or
    /// `cols` is not a whole number of a block format's blocks.
    pub fn checked_matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        match self {
            WeightFormat::Dense(p) => rows.checked_mul(cols)?.checked_mul(p.bytes_per_element()),
            WeightFormat::Blocks(t) => rows.checked_mul(t.row_bytes(cols)?),
            WeightFormat::Quantized(q) => rows.checked_mul(q.row_bytes(cols)?),
        }
    }

    /// The floating-point precision of the stored elements of a dense format.
    pub fn dense(self) -> Option<Precision> {
        match self {
            WeightFormat::Dense(p) => Some(p),
            WeightFormat::Blocks(_) | WeightFormat::Quantized(_) => None,
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightFormat::Dense(p) => write!(f, "dense {p}"),
            WeightFormat::Blocks(t) => write!(f, "GGUF {}", t.name()),
            WeightFormat::Quantized(WeightQuant::Int8) => f.write_str("int8 (per channel)"),
            WeightFormat::Quantized(WeightQuant::Int4) => {
                write!(f, "int4 (groups of {INT4_GROUP})")
            }
            WeightFormat::Quantized(WeightQuant::Fp8) => f.write_str("fp8 E4M3 (per channel)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_sizes_and_names() {
        let f = WeightFormat::Dense(Precision::Bf16);
        assert_eq!(f.matrix_bytes(3, 5), 30);
        assert_eq!(WeightFormat::Dense(Precision::Fp32).matrix_bytes(3, 5), 60);
        assert_eq!(f.to_string(), "dense BF16");
        assert_eq!(f.dense(), Some(Precision::Bf16));
        assert_eq!(f.checked_matrix_bytes(3, 5), Some(30));
        assert_eq!(f.checked_matrix_bytes(usize::MAX / 2, 2), None);
    }

    #[test]
    fn block_sizes_and_names() {
        let q = WeightFormat::Blocks(BlockType::Q4_1);
        assert_eq!(q.matrix_bytes(3, 64), 3 * 2 * 20);
        assert_eq!(q.checked_matrix_bytes(3, 64), Some(120));
        assert_eq!(q.checked_matrix_bytes(3, 48), None);
        assert_eq!(q.to_string(), "GGUF Q4_1");
        assert_eq!(q.dense(), None);
        let k = WeightFormat::Blocks(BlockType::Q6K);
        assert_eq!(k.matrix_bytes(2, 512), 2 * 2 * 210);
        assert_eq!("gguf".parse::<QuantFormat>(), Ok(QuantFormat::Gguf));
        assert!("int3".parse::<QuantFormat>().unwrap_err().contains("int3"));
    }

    #[test]
    fn quantized_sizes_and_names() {
        let i8 = WeightFormat::Quantized(WeightQuant::Int8);
        assert_eq!(i8.matrix_bytes(3, 10), 3 * 10 + 3 * 4);
        assert_eq!(i8.to_string(), "int8 (per channel)");
        let i4 = WeightFormat::Quantized(WeightQuant::Int4);
        assert_eq!(i4.matrix_bytes(3, 256), 3 * 128 + 3 * 2 * 4);
        assert_eq!(i4.checked_matrix_bytes(3, 576), None);
        assert_eq!(i4.to_string(), "int4 (groups of 128)");
        let f8 = WeightFormat::Quantized(WeightQuant::Fp8);
        assert_eq!(f8.checked_matrix_bytes(2, 7), Some(2 * 7 + 2 * 4));
        assert_eq!(f8.dense(), None);
        for q in QuantFormat::ALL {
            assert_eq!(q.as_str().parse::<QuantFormat>(), Ok(q));
        }
        assert_eq!(QuantFormat::Int4.weight_quant(), Some(WeightQuant::Int4));
    }
}
