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

    /// Bytes of a `[rows, cols]` matrix in this format.
    pub fn matrix_bytes(self, rows: usize, cols: usize) -> usize {
        match self {
            WeightFormat::Dense(p) => rows * cols * p.bytes_per_element(),
        }
    }

    /// [`WeightFormat::matrix_bytes`], or `None` where the size overflows (sizes from user input).
    pub fn checked_matrix_bytes(self, rows: usize, cols: usize) -> Option<usize> {
        match self {
            WeightFormat::Dense(p) => rows.checked_mul(cols)?.checked_mul(p.bytes_per_element()),
        }
    }

    /// The floating-point precision of the stored elements of a dense format.
    pub fn dense(self) -> Option<Precision> {
        match self {
            WeightFormat::Dense(p) => Some(p),
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightFormat::Dense(p) => write!(f, "dense {p}"),
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
}
