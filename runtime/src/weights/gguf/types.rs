//! GGML tensor types as stored in GGUF tensor infos: which ones we dequantise, their block geometry, and
//! the names of the others (so that an unsupported tensor is refused by name, not by number).

/// The tensor types we can dequantise to f32 (the names are GGML's, `Q4_K` and all).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// Elements in a K-quant super-block (GGML's `QK_K`).
const QK_K: usize = 256;

impl GgmlType {
    /// Every supported type: the float types, the 32-element blocks, the K-quant super-blocks.
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The type with GGML id `id`, or the id's name (`Err`) when we do not support it.
    pub fn from_id(id: u32) -> Result<GgmlType, String> {
        GgmlType::ALL
            .into_iter()
            .find(|t| t.id() == id)
            .ok_or_else(|| unsupported_name(id))
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
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
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Elements per block (1 for the plain float types, 256 for a K-quant super-block).
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                QK_K
            }
        }
    }

    /// Bytes per block (the layouts are spelled out in `dequant`).
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            // f16 scale + 32 4-bit values
            GgmlType::Q4_0 => 2 + 16,
            // f16 scale + f16 minimum + 32 4-bit values
            GgmlType::Q4_1 => 2 + 2 + 16,
            // f16 scale + 32 fifth bits + 32 4-bit values
            GgmlType::Q5_0 => 2 + 4 + 16,
            // f16 scale + f16 minimum + 32 fifth bits + 32 4-bit values
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            // f16 scale + 32 signed bytes
            GgmlType::Q8_0 => 2 + 32,
            // 16 scale/min nibble pairs + 256 2-bit values + f16 scale + f16 min scale
            GgmlType::Q2_K => QK_K / 16 + QK_K / 4 + 2 + 2,
            // 256 third bits + 256 2-bit values + 16 6-bit scales + f16 scale
            GgmlType::Q3_K => QK_K / 8 + QK_K / 4 + 12 + 2,
            // f16 scale + f16 min scale + 8 6-bit scales and 8 6-bit mins + 256 4-bit values
            GgmlType::Q4_K => 2 + 2 + 12 + QK_K / 2,
            // as Q4_K + 256 fifth bits
            GgmlType::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            // 256 low nibbles + 256 2-bit high parts + 16 i8 scales + f16 scale
            GgmlType::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }
}

/// A readable name for a GGML type id we do not dequantise.
fn unsupported_name(id: u32) -> String {
    let name = match id {
        4 | 5 => "Q4_2/Q4_3 (removed from GGML)",
        9 => "Q8_1",
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
    let supported: Vec<&str> = GgmlType::ALL.iter().map(|t| t.name()).collect();
    format!("{name} (type id {id}; supported: {})", supported.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
        }
    }

    #[test]
    fn block_sizes_are_ggml_ones() {
        let want = [
            ("Q5_0", 32, 22),
            ("Q5_1", 32, 24),
            ("Q2_K", 256, 84),
            ("Q3_K", 256, 110),
            ("Q4_K", 256, 144),
            ("Q5_K", 256, 176),
            ("Q6_K", 256, 210),
        ];
        for (name, elems, bytes) in want {
            let t = GgmlType::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .unwrap();
            assert_eq!((t.block_elems(), t.block_bytes()), (elems, bytes), "{name}");
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        for (id, name) in [(9, "Q8_1"), (15, "Q8_K"), (23, "IQ4_XS"), (20, "IQ4_NL")] {
            let e = GgmlType::from_id(id).unwrap_err();
            assert!(e.starts_with(name), "{e}");
            assert!(e.contains("supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"), "{e}");
        }
        assert!(GgmlType::from_id(999).unwrap_err().contains("unknown"));
    }
}
