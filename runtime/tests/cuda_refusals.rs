//! Models whose layer plan the CUDA kernels cannot run are refused by name when a CUDA engine is
//! built, before any GPU is opened (so this runs on machines without one). The tiny models all run
//! (`common::cuda_models`); the refused plans here are theirs with one thing changed that the
//! kernels do not do.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use runtime::backend::BackendError;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{Error, ModelSpec, Precision};

fn cuda(max_seq_len: usize) -> BuildOptions {
    BuildOptions {
        precision: Precision::Fp32,
        max_seq_len,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant: runtime::format::QuantFormat::None,
    }
}

/// The build's error for `spec` on seeded weights (its own shapes), on a cache of `max_seq_len`.
fn build_error(spec: ModelSpec, max_seq_len: usize) -> Option<Error> {
    let source = WeightSource::Synthetic { seed: 1 };
    Engine::build(spec, &source, cuda(max_seq_len), &NoProgress).err()
}

#[test]
fn plans_the_kernels_cannot_run_are_refused_by_name() {
    let changed: [(&str, fn(&mut ModelSpec), &str); 3] = [
        ("tiny-qwen3", |s| s.qkv_bias = true, "biased projections"),
        (
            "tiny-gemma3",
            |s| s.o_bias = true,
            "sandwich norms follow biased projections",
        ),
        ("tiny-llama", |s| s.head_dim = 264, "head_dim 264"),
    ];
    for (name, change, reason) in changed {
        let mut s = spec(name);
        change(&mut s);
        let e = match build_error(s, MAX_SEQ) {
            None => panic!("{name}: a CUDA engine was built"),
            // The kind `run_llm` falls back to the CPU on when it chose the device itself.
            Some(e @ Error::Backend(BackendError::Unsupported(_))) => e.to_string(),
            Some(e) => panic!("{name}: refused as another kind of error: {e}"),
        };
        assert!(
            e.contains(name) && e.contains(reason) && e.contains("CUDA"),
            "{name}: {e}"
        );
    }
}

/// Windows shorter than the cache (rings), Gemma 3's differing local and global layers and its final
/// soft cap go past the plan check (to the GPU, which a machine without one then lacks).
#[test]
fn windowed_and_gemma_plans_are_not_refused() {
    for name in [
        "tiny-mistral-window",
        "tiny-phi3",
        "tiny-gemma3",
        "tiny-gemma3-softcap",
    ] {
        for max_seq_len in [8, MAX_SEQ] {
            if let Some(e) = build_error(spec(name), max_seq_len) {
                let e = e.to_string();
                assert!(
                    !e.contains("cannot run") && !e.contains("window"),
                    "{name} over {max_seq_len}: {e}"
                );
            }
        }
    }
}
