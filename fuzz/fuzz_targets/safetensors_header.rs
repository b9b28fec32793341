//! A safetensors file image → validated header (our checks, then the reference library's).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runtime::weights::safetensors::parse_bytes(std::path::Path::new("<fuzz>"), data);
});
