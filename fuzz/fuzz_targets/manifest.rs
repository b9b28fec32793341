//! `models.toml` text → `Manifest`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runtime::manifest::Manifest::parse(text, std::path::PathBuf::from("/fuzz"));
    }
});
