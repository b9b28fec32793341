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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_formats() {
        assert_eq!(Dense::FORMAT, QuantFormat::None);
        assert_eq!(GgufBlocks::FORMAT, QuantFormat::Gguf);
    }
}
