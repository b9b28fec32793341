//! The weight-format axis: how a linear layer's weight matrix is stored. Both backends' linear layers
//! take a matrix together with its format (the CPU's packed `Matrix`, CUDA's `Mat`), size and pack it
//! through this one description, and pick their product kernel by it; a quantized format is a new
//! variant here plus its kernels, not a new copy of the layer loop.

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
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 2] = [QuantFormat::None, QuantFormat::Gguf];

    /// The spelling of `--quant_format` and `models.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantFormat::None => "none",
            QuantFormat::Gguf => "gguf",
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
            .ok_or_else(|| format!("unknown quant format {s:?} (expected none or gguf)"))
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
    /// The format an engine built at `precision` stores `linear` in: every linear layer dense in the
    /// engine precision.
    pub fn of_linear(_linear: &LinearPlan, precision: Precision) -> WeightFormat {
        WeightFormat::Dense(precision)
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
        }
    }

    /// [`WeightFormat::matrix_bytes`], or `None` where the size overflows (sizes from user input) or
    /// `cols` is not a whole number of a block format's blocks.
    pub fn checked_matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        match self {
            WeightFormat::Dense(p) => rows.checked_mul(cols)?.checked_mul(p.bytes_per_element()),
            WeightFormat::Blocks(t) => rows.checked_mul(t.row_bytes(cols)?),
        }
    }

    /// The floating-point precision of the stored elements of a dense format.
    pub fn dense(self) -> Option<Precision> {
        match self {
            WeightFormat::Dense(p) => Some(p),
            WeightFormat::Blocks(_) => None,
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightFormat::Dense(p) => write!(f, "dense {p}"),
            WeightFormat::Blocks(t) => write!(f, "GGUF {}", t.name()),
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
}
