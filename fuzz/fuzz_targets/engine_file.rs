//! An engine file image → header, then the CPU payload's tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_header, end)) = runtime::engine_file::parse_header(data) {
        let mut payload = &data[end..];
        let len = payload.len() as u64;
        let _ = runtime::backend::cpu::payload::read(&mut payload, len);
    }
});
