//! GGML tensor types as stored in GGUF tensor infos: which ones we dequantise, their block geometry, and
//! the names of the others (so that an unsupported tensor is refused by name, not by number).

/// The tensor types we can dequantise to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    /// The type with GGML id `id`, or the id's name (`Err`) when we do not support it.
    pub fn from_id(id: u32) -> Result<GgmlType, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            other => return Err(unsupported_name(other)),
        })
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
        }
    }

    /// Elements per block (1 for the plain float types).
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            // f16 scale + 32 4-bit values
            GgmlType::Q4_0 => 2 + 16,
            // f16 scale + f16 minimum + 32 4-bit values
            GgmlType::Q4_1 => 2 + 2 + 16,
            // f16 scale + 32 signed bytes
            GgmlType::Q8_0 => 2 + 32,
        }
    }
}

/// A readable name for a GGML type id we do not dequantise.
fn unsupported_name(id: u32) -> String {
    let name = match id {
        4 | 5 => "Q4_2/Q4_3 (removed from GGML)",
        6 => "Q5_0",
        7 => "Q5_1",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("{id} (unknown type id)"),
    };
    format!("{name} (type id {id}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
        ] {
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        assert!(GgmlType::from_id(12).unwrap_err().starts_with("Q4_K"));
        assert!(GgmlType::from_id(999).unwrap_err().contains("unknown"));
    }
}
