//! Models whose layer plan the CUDA kernels cannot run are refused by name when a CUDA engine is
//! built, before any GPU is opened (so this runs on machines without one).
#![cfg(feature = "cuda")]

mod common;

use common::*;
use runtime::backend::BackendError;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{Error, Precision};

#[test]
fn plans_the_kernels_cannot_run_are_refused_by_name() {
    for (name, reason) in CUDA_REFUSED {
        let options = BuildOptions {
            precision: Precision::Fp32,
            max_seq_len: MAX_SEQ,
            max_batch: 1,
            device: DeviceChoice::Cuda { ordinal: 0 },
            quant: runtime::format::QuantFormat::None,
        };
        let source = WeightSource::HfDir(root().join("models").join(name));
        let e = match Engine::build(spec(name), &source, options, &NoProgress) {
            Ok(_) => panic!("{name}: a CUDA engine was built"),
            // The kind `run_llm` falls back to the CPU on when it chose the device itself.
            Err(e @ Error::Backend(BackendError::Unsupported(_))) => e.to_string(),
            Err(e) => panic!("{name}: refused as another kind of error: {e}"),
        };
        assert!(
            e.contains(name) && e.contains(reason) && e.contains("CUDA"),
            "{name}: {e}"
        );
    }
}

/// A window at least as long as the cache sees every earlier key: over a cache of 8 positions,
/// tiny-mistral-window's plan is tiny-mistral's, and the build goes past the plan check (to the GPU,
/// which a machine without one then lacks).
#[test]
fn a_window_as_long_as_the_cache_is_not_refused() {
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: 8,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant: runtime::format::QuantFormat::None,
    };
    let name = "tiny-mistral-window";
    let source = WeightSource::HfDir(root().join("models").join(name));
    if let Err(e) = Engine::build(spec(name), &source, options, &NoProgress) {
        let e = e.to_string();
        assert!(!e.contains("window"), "{name}: {e}");
    }
}
