//! A GGUF file → validated header, then the model spec, the tokenizer and the canonical (dequantised)
//! weights it describes. The reader maps a file, so each input is written to a scratch file first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::weights::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("llmforge-fuzz-{}.gguf", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(file) = GgufFile::open(&path) {
        let _ = runtime::tokenize::Tokenizer::from_gguf(&file);
        if let Ok(spec) = file.spec("fuzz") {
            let _ = file.canonical_weights(&spec);
        }
    }
});
