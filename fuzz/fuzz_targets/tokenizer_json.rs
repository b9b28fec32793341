//! `tokenizer.json` bytes → a tokenizer, then an encode/decode round of a short text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::tokenize::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("<fuzz>/tokenizer.json");
    if let Ok(tok) = Tokenizer::from_json_bytes(path, data, Vec::new(), None) {
        if let Ok(ids) = tok.encode("Hello, wörld! 12", true) {
            let _ = tok.decode(&ids);
        }
    }
});
