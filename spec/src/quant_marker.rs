//! Compile-time markers of the format an engine stores its linear layers' weights in
//! (`--quant_format`), beside the precision markers: a typed engine carries one, so an engine of one
//! format is a different type from an engine of another, and an engine file of another format is
//! refused when a typed engine loads it.

use crate::format::QuantFormat;

/// A weight format as a type.
pub trait QuantMarker: Copy + Send + Sync + 'static + sealed::Sealed {
    const FORMAT: QuantFormat;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! marker {
    ($name:ident, $value:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl QuantMarker for $name {
            const FORMAT: QuantFormat = $value;
        }
    };
}

marker!(
    Dense,
    QuantFormat::None,
    "Linear layers dense in the engine precision (`--quant_format none`)."
);
marker!(
    GgufBlocks,
    QuantFormat::Gguf,
    "A GGUF file's own block types kept packed (`--quant_format gguf`)."
);
marker!(
    Int8Weights,
    QuantFormat::Int8,
    "Linear layers quantized at build to int8 per output channel (`--quant_format int8`)."
);
marker!(
    Int4Weights,
    QuantFormat::Int4,
    "Linear layers quantized at build to int4 in groups of 128 (`--quant_format int4`)."
);
marker!(
    Fp8Weights,
    QuantFormat::Fp8,
    "Linear layers quantized at build to FP8 E4M3 per output channel (`--quant_format fp8`)."
);

/// The marker type's name (in `runtime::codegen`) of `q`: what a generated crate's `DefaultQuant` is.
pub fn marker_name(q: QuantFormat) -> &'static str {
    match q {
        QuantFormat::None => "Dense",
        QuantFormat::Gguf => "GgufBlocks",
        QuantFormat::Int8 => "Int8Weights",
        QuantFormat::Int4 => "Int4Weights",
        QuantFormat::Fp8 => "Fp8Weights",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_formats() {
        assert_eq!(Dense::FORMAT, QuantFormat::None);
        assert_eq!(GgufBlocks::FORMAT, QuantFormat::Gguf);
        assert_eq!(Int8Weights::FORMAT, QuantFormat::Int8);
        assert_eq!(Int4Weights::FORMAT, QuantFormat::Int4);
        assert_eq!(Fp8Weights::FORMAT, QuantFormat::Fp8);
        assert_eq!(marker_name(QuantFormat::Int4), "Int4Weights");
    }
}
