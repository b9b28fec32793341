//! `tokenizer.json` bytes → a tokenizer, then an encode/decode round of a short text.
//!
//! `Tokenizer::from_json_bytes` turns a panic inside the `tokenizers` crate during loading into an
//! error (that crate `expect`s on some inputs). libFuzzer's panic hook aborts on every panic, caught or
//! not, so this target lets a panic raised inside `tokenizers` unwind to that `catch_unwind`; every
//! other panic — and one that escapes — still aborts and is reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::tokenize::Tokenizer;
use std::sync::Once;

static HOOK: Once = Once::new();

fn tolerate_panics_inside_tokenizers() {
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = info
                .location()
                .is_some_and(|l| l.file().contains("/tokenizers-"));
            if !inside {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_panics_inside_tokenizers();
    let path = std::path::Path::new("<fuzz>/tokenizer.json");
    if let Ok(tok) = Tokenizer::from_json_bytes(path, data, Vec::new(), None) {
        if let Ok(ids) = tok.encode("Hello, wörld! 12", true) {
            let _ = tok.decode(&ids);
        }
    }
});
