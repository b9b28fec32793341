//! Weight/activation precision of a built engine, as a runtime value and as compile-time markers used by
//! the generated crates (so a cache of one precision cannot be handed to an engine of another).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Storage precision of an engine's weights (and, on GPU, its activations and KV cache).
/// Compute always accumulates in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

    /// The spelling used on the command line and in `models.toml` (`FP32`, `FP16`, `BF16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "FP32",
            Precision::Fp16 => "FP16",
            Precision::Bf16 => "BF16",
        }
    }

    /// The precision of a checkpoint's torch dtype (`config.json`'s `torch_dtype` / `dtype`), if it
    /// is one of the three.
    pub fn from_torch_dtype(dtype: &str) -> Option<Precision> {
        match dtype {
            "float32" => Some(Precision::Fp32),
            "float16" => Some(Precision::Fp16),
            "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    pub fn bytes_per_element(self) -> usize {
        match self {
            Precision::Fp32 => 4,
            Precision::Fp16 | Precision::Bf16 => 2,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: expected one of FP32, FP16, BF16")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "FP32" | "F32" | "FLOAT32" => Ok(Precision::Fp32),
            "FP16" | "F16" | "FLOAT16" | "HALF" => Ok(Precision::Fp16),
            "BF16" | "BFLOAT16" => Ok(Precision::Bf16),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

/// Compile-time precision marker implemented by [`Fp32`], [`Fp16`] and [`Bf16`].
pub trait PrecisionMarker: Copy + Send + Sync + 'static + sealed::Sealed {
    const PRECISION: Precision;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! marker {
    ($name:ident, $value:expr) => {
        #[doc = concat!("Compile-time marker for ", stringify!($name), " engines and caches.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl PrecisionMarker for $name {
            const PRECISION: Precision = $value;
        }
    };
}

marker!(Fp32, Precision::Fp32);
marker!(Fp16, Precision::Fp16);
marker!(Bf16, Precision::Bf16);
