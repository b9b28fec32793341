//! Every CUDA kernel template renders and compiles to PTX with NVRTC, for every architecture family
//! and precision, without a GPU. The compile tests need NVRTC, so they are `#[ignore]`d in a plain
//! `cargo test` (reported as ignored, not passed); CI sources `.ci/nvrtc-setup.sh`, which puts NVRTC
//! from the CUDA 13.0 PyPI wheel on `LD_LIBRARY_PATH`, and runs them with `--include-ignored`, where a
//! missing NVRTC fails them. Also: building a CUDA engine on a machine without the CUDA driver is a
//! `CudaUnavailable` error, not a panic.

use runtime::Precision;
use runtime::backend::BackendError;
use runtime::backend::cuda::{device, kernels};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{Error, ModelSpec};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// NVRTC must load: these tests are only run (with `--include-ignored`) where it should.
fn require_nvrtc() {
    if let Err(e) = device::check_nvrtc() {
        panic!("{e} (source .ci/nvrtc-setup.sh)");
    }
}

fn compile_all(model: &str, precisions: &[Precision], sm: u32) {
    let spec = ModelSpec::from_dir(&models_dir().join(model)).expect("config parses");
    for &p in precisions {
        let compiled =
            kernels::compile(&spec, p, sm).unwrap_or_else(|e| panic!("{model} {p} sm_{sm}: {e}"));
        assert_eq!(compiled.ptx.len(), kernels::MODULES.len());
        for ((module, functions), (name, ptx)) in kernels::MODULES.iter().zip(&compiled.ptx) {
            assert_eq!(module, name);
            assert!(
                ptx.contains(&format!(".target sm_{sm}")),
                "{model} {name}: wrong target"
            );
            for f in *functions {
                assert!(
                    ptx.contains(&format!(".entry {f}(")),
                    "{model} {p}: module {name} lacks kernel {f}"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn tiny_models_compile_in_every_precision() {
    require_nvrtc();
    for model in ["tiny-llama", "tiny-qwen2", "tiny-gpt2"] {
        compile_all(model, &Precision::ALL, 90);
    }
}

#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn full_size_architectures_compile() {
    require_nvrtc();
    compile_all("Llama-3.2-1B-Instruct", &Precision::ALL, 90);
    for model in [
        "Qwen2.5-0.5B-Instruct",
        "Llama-3.1-8B-Instruct",
        "gpt2",
        "SmolLM2-135M-Instruct",
    ] {
        compile_all(model, &[Precision::Fp16], 90);
    }
    // An Ampere target too: nothing in the kernels needs Hopper.
    compile_all("Llama-3.2-1B-Instruct", &[Precision::Bf16], 80);
}

#[test]
fn template_constants_are_the_models() {
    let spec = ModelSpec::from_dir(&models_dir().join("Llama-3.2-1B-Instruct")).expect("config");
    let sources = kernels::render(&spec, Precision::Bf16).expect("render");
    let (_, attn) = sources
        .iter()
        .find(|(n, _)| n == "attention")
        .expect("attention");
    assert!(attn.contains("#define HEAD_DIM 64"));
    assert!(attn.contains("#define HEADS 32"));
    assert!(attn.contains("#define KV_HEADS 8"));
    assert!(attn.contains("#define HIDDEN 2048"));
    assert!(attn.contains("@generated"));
    assert!(!attn.contains("{{"), "unrendered template syntax left");
}

#[test]
fn no_driver_means_cuda_unavailable_not_a_panic() {
    let dir = models_dir().join("tiny-llama");
    let spec = ModelSpec::from_dir(&dir).expect("config");
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: 16,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
    };
    let built = Engine::build(spec, &WeightSource::HfDir(dir), options, &NoProgress);
    match device::check_libraries() {
        // Without the libraries: the build is refused with `CudaUnavailable`.
        Err(_) => {
            let err = built
                .err()
                .expect("a CUDA engine cannot be built without CUDA");
            assert!(
                matches!(err, Error::Backend(BackendError::CudaUnavailable(_))),
                "{err}"
            );
        }
        // With them (a GPU machine, where the parity tests cover the engine): it builds, or a machine
        // with the libraries but no usable device gets a backend error, never a panic.
        Ok(()) => {
            if let Err(err) = built {
                assert!(matches!(err, Error::Backend(_)), "{err}");
            }
        }
    }
}
