//! `config.json` bytes → `ModelSpec`, then everything the runtime derives from a spec's sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = runtime::config::parse_config("fuzz", data) {
        let _ = spec.num_parameters();
        let _ = runtime::weights::expected_tensors(&spec);
        let _ = spec.kv_shape(0, 1, 1);
    }
});
