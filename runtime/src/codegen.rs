//! The one curated surface that generated crates use (`::runtime::codegen::…`), so the runtime can change
//! inside without breaking emitted code.
