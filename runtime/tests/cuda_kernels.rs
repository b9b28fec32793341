//! Every CUDA kernel template renders and compiles to PTX with NVRTC, for every architecture family
//! and precision, without a GPU. The compile tests need NVRTC, so they are `#[ignore]`d in a plain
//! `cargo test` (reported as ignored, not passed); CI sources `.ci/nvrtc-setup.sh`, which puts NVRTC
//! from the CUDA 13.0 PyPI wheel on `LD_LIBRARY_PATH`, and runs them with `--include-ignored`, where a
//! missing NVRTC fails them. Each compiled kernel's `.entry` parameter list is checked against its
//! launcher's (`runtime::backend::cuda::launchers`: count, sizes, float or not), so a launcher that
//! disagrees with its kernel fails here, without a GPU. Also: building a CUDA engine on a machine without the CUDA driver is a
//! `CudaUnavailable` error, not a panic.
#![cfg(feature = "cuda")]

use runtime::Precision;
use runtime::backend::BackendError;
use runtime::backend::cuda::launch::Signature;
use runtime::backend::cuda::{device, kernels, launchers};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::{Error, ModelSpec};
use std::path::PathBuf;

/// The cache length the kernels are compiled for here (longer than every window of these models, so
/// their windowed layers keep rings).
const CACHE: usize = 8192;

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
    compile_spec(&spec, precisions, sm);
}

fn compile_spec(spec: &ModelSpec, precisions: &[Precision], sm: u32) {
    compile_spec_as(spec, precisions, QuantFormat::None, sm);
}

fn compile_spec_as(spec: &ModelSpec, precisions: &[Precision], quant: QuantFormat, sm: u32) {
    let model = &format!("{} {quant}", spec.name);
    for &p in precisions {
        let compiled = kernels::compile(spec, p, quant, CACHE, sm)
            .unwrap_or_else(|e| panic!("{model} {p} sm_{sm}: {e}"));
        // Exactly the modules an engine of this format runs, in order.
        let modules: Vec<_> = kernels::MODULES
            .iter()
            .filter(|(m, _)| kernels::modules_for(quant).any(|n| n == *m))
            .collect();
        assert_eq!(compiled.ptx.len(), modules.len(), "{model}");
        for ((module, functions), (name, ptx)) in modules.into_iter().zip(&compiled.ptx) {
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
                check_launcher(ptx, f, &format!("{model} {p} sm_{sm}"));
            }
        }
    }
}

/// The launcher whose parameter list kernel `f` takes.
fn launcher_of(f: &str) -> &'static Signature {
    let found: Vec<&Signature> = launchers::SIGNATURES
        .iter()
        .filter(|s| s.entries.contains(&f))
        .collect();
    match found[..] {
        [one] => one,
        [] => panic!("kernel {f} has no launcher in runtime::backend::cuda::launchers"),
        _ => panic!("kernel {f} has {} launchers", found.len()),
    }
}

/// The parameters of `.entry name(` in a PTX module: (PTX type, bytes) each, in order.
fn entry_params(ptx: &str, name: &str) -> Vec<(String, usize)> {
    let head = format!(".entry {name}(");
    let start = ptx.find(&head).unwrap_or_else(|| panic!("no entry {name}")) + head.len();
    let end = ptx[start..]
        .find(')')
        .unwrap_or_else(|| panic!("entry {name}: no end of its parameter list"));
    ptx[start..start + end]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let words: Vec<&str> = p.split_whitespace().collect();
            assert_eq!(words.first(), Some(&".param"), "entry {name}: `{p}`");
            // The type is the first word that names one (after `.align N` where there is one).
            let (ty, bytes) = words
                .iter()
                .find_map(|&w| match w {
                    ".u64" | ".s64" | ".b64" | ".f64" => Some((w, 8)),
                    ".u32" | ".s32" | ".b32" | ".f32" => Some((w, 4)),
                    ".u16" | ".s16" | ".b16" | ".f16" => Some((w, 2)),
                    ".u8" | ".s8" | ".b8" => Some((w, 1)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("entry {name}: no parameter type in `{p}`"));
            // A by-value array (`.b8 name[N]`) counts its N bytes.
            let bytes = match words.last().and_then(|w| w.split_once('[')) {
                Some((_, n)) => n
                    .trim_end_matches(']')
                    .parse::<usize>()
                    .expect("array size"),
                None => bytes,
            };
            (ty.to_string(), bytes)
        })
        .collect()
}

/// Kernel `f`'s `.entry` in `ptx` takes exactly its launcher's parameters: as many, each of the same
/// size, floats where the launcher has floats.
fn check_launcher(ptx: &str, f: &str, build: &str) {
    let sig = launcher_of(f);
    let ptx_params = entry_params(ptx, f);
    let want: Vec<String> = sig
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {t:?} ({} bytes)", t.bytes()))
        .collect();
    assert_eq!(
        ptx_params.len(),
        sig.params.len(),
        "{build}: kernel {f} takes {} parameters {ptx_params:?}, its launcher {} has {} {want:?}",
        ptx_params.len(),
        sig.launcher,
        sig.params.len()
    );
    for (i, ((ty, bytes), (name, param))) in ptx_params.iter().zip(sig.params).enumerate() {
        assert!(
            *bytes == param.bytes() && ty.starts_with(".f") == param.is_float(),
            "{build}: parameter {i} of kernel {f} is `{ty}` ({bytes} bytes), its launcher {} \
             has {name}: {param:?} ({} bytes)",
            sig.launcher,
            param.bytes()
        );
    }
}

/// Every kernel of every module has exactly one launcher, and every launcher's kernels exist.
#[test]
fn every_kernel_has_a_launcher() {
    let all: Vec<&str> = kernels::MODULES
        .iter()
        .flat_map(|(_, functions)| functions.iter().copied())
        .collect();
    for f in &all {
        launcher_of(f);
    }
    for sig in launchers::SIGNATURES {
        for e in sig.entries {
            assert!(
                all.contains(e),
                "launcher {} names kernel {e}, which no module defines",
                sig.launcher
            );
        }
    }
}

#[test]
fn ptx_parameter_lists_are_read_with_their_sizes() {
    let ptx = ".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .f32 k_param_1,\n\t\
               .param .u32 k_param_2,\n\t.param .align 4 .b8 k_param_3[12]\n)\n{\n}\n\
               .visible .entry k2(\n)\n{\n}";
    let params = entry_params(ptx, "k");
    let sizes: Vec<(&str, usize)> = params.iter().map(|(t, b)| (t.as_str(), *b)).collect();
    assert_eq!(sizes, [(".u64", 8), (".f32", 4), (".u32", 4), (".b8", 12)]);
    assert!(entry_params(ptx, "k2").is_empty());
}

#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn tiny_models_compile_in_every_precision() {
    require_nvrtc();
    for model in [
        "tiny-llama",
        "tiny-llama-bias",
        "tiny-qwen2",
        "tiny-qwen3",
        "tiny-mistral",
        "tiny-gpt2",
        "tiny-mistral-window",
        "tiny-gemma3",
        "tiny-phi3",
    ] {
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
        "gpt2",
        "SmolLM2-135M-Instruct",
        "Qwen3-0.6B",
        "Qwen3-8B",
        "Mistral-7B-Instruct-v0.3",
        "Phi-3-mini-4k-instruct",
    ] {
        compile_all(model, &[Precision::Fp16], 90);
    }
    // Head size 256 with windows of 512 (Gemma 3): every precision, the f32 prefill attention's
    // narrower key tiles and the tensor-core one's.
    compile_all("gemma-3-1b-it", &Precision::ALL, 90);
    // Head size 128 in both 16-bit types (the tensor-core prefill attention's largest tile).
    compile_all(
        "Llama-3.1-8B-Instruct",
        &[Precision::Fp16, Precision::Bf16],
        90,
    );
    // An Ampere target too: nothing in the kernels needs Hopper.
    compile_all("Llama-3.2-1B-Instruct", &[Precision::Bf16], 80);
    // A head size whose rows do not divide the decode attention's 128-key split (96: 12 vectors of
    // 16-bit values, 24 of f32).
    let mut spec = ModelSpec::from_dir(&models_dir().join("tiny-llama")).expect("config parses");
    spec.name = "tiny-llama-head-96".into();
    (
        spec.hidden_size,
        spec.num_heads,
        spec.num_kv_heads,
        spec.head_dim,
    ) = (192, 2, 1, 96);
    compile_spec(&spec, &Precision::ALL, 90);
}

/// Every layer-linear format quantized at build (int8, int4, fp8; `quant.cuh`) compiles into the
/// decode GEMVs and the dequantisation kernel, in every precision, on Hopper (where fp8 converts in
/// one instruction) and Ampere (where it decodes in bits): a model whose every linear takes the
/// format (Llama-3.1-8B), and one where int4 leaves its 64-wide linears dense beside a quantized
/// `down` (tiny-llama).
#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn quantized_weight_formats_compile() {
    require_nvrtc();
    let spec = |model: &str| ModelSpec::from_dir(&models_dir().join(model)).expect("config parses");
    for quant in [QuantFormat::Int8, QuantFormat::Int4, QuantFormat::Fp8] {
        compile_spec_as(&spec("Llama-3.1-8B-Instruct"), &Precision::ALL, quant, 90);
        compile_spec_as(&spec("tiny-llama"), &[Precision::Bf16], quant, 80);
    }
    // A GGUF engine runs the block kernels instead of the dequantisation of `quant.cu`.
    compile_spec_as(
        &spec("tiny-llama"),
        &[Precision::Fp16],
        QuantFormat::Gguf,
        90,
    );
}

/// The tensor-core prefill attention is compiled for real (mma.sync, ldmatrix) for both 16-bit types at
/// head sizes 64 (Llama-3.2-1B) and 128 (Llama-3.1-8B), on Hopper and Ampere; FP32 gets the stub.
#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn tensor_core_prefill_attention_compiles_for_16_bit_head_dims_64_and_128() {
    require_nvrtc();
    for (model, head_dim) in [
        ("Llama-3.2-1B-Instruct", 64),
        ("Llama-3.1-8B-Instruct", 128),
    ] {
        let spec = ModelSpec::from_dir(&models_dir().join(model)).expect("config parses");
        assert_eq!(spec.head_dim, head_dim, "{model}");
        for (p, kind) in [(Precision::Fp16, "f16"), (Precision::Bf16, "bf16")] {
            assert!(kernels::tc_prefill_supported(&spec, p), "{model} {p}");
            for sm in [90, 80] {
                let compiled = kernels::compile(&spec, p, QuantFormat::None, CACHE, sm)
                    .unwrap_or_else(|e| panic!("{model} {p} sm_{sm}: {e}"));
                let ptx = compiled
                    .module("attn_prefill_tc")
                    .expect("attn_prefill_tc module");
                let mma = format!("mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32");
                assert!(ptx.contains(&mma), "{model} {p} sm_{sm}: no {mma}");
                assert!(
                    ptx.contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"),
                    "{model} {p} sm_{sm}: no ldmatrix"
                );
            }
        }
        assert!(!kernels::tc_prefill_supported(&spec, Precision::Fp32));
        let compiled = kernels::compile(&spec, Precision::Fp32, QuantFormat::None, CACHE, 90)
            .expect("fp32 compiles");
        let ptx = compiled
            .module("attn_prefill_tc")
            .expect("attn_prefill_tc module");
        assert!(
            !ptx.contains("mma.sync"),
            "{model} fp32: the stub has no mma"
        );
    }
}

#[test]
fn template_constants_are_the_models() {
    let spec = ModelSpec::from_dir(&models_dir().join("Llama-3.2-1B-Instruct")).expect("config");
    let sources =
        kernels::render(&spec, Precision::Bf16, QuantFormat::None, CACHE).expect("render");
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
        quant: runtime::format::QuantFormat::None,
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

/// The GGUF block kernels (blocks.cu) on Ampere and Hopper, in every precision: `dequant_blocks`
/// equals the CPU's values bit for bit only if no multiply and add of a dequantisation is fused, so
/// its PTX has no fused multiply-add at all (the steps are explicitly rounded `mul.rn`, `add.rn`,
/// `sub.rn`); and neither kernel keeps anything in local memory (a unit's bytes and values stay in
/// registers).
#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn block_kernels_round_every_dequantisation_step_and_stay_in_registers() {
    require_nvrtc();
    let spec = ModelSpec::from_dir(&models_dir().join("tiny-llama")).expect("config parses");
    for sm in [80, 90] {
        for p in Precision::ALL {
            let compiled =
                kernels::compile(&spec, p, QuantFormat::Gguf, CACHE, sm).expect("compiles");
            let ptx = compiled.module("blocks").expect("blocks module");
            let dequant = entry(ptx, "dequant_blocks");
            assert!(
                !dequant.contains("fma."),
                "{p} sm_{sm}: a fused multiply-add"
            );
            for op in ["mul.rn.f32", "add.rn.f32", "sub.rn.f32"] {
                assert!(dequant.contains(op), "{p} sm_{sm}: no {op}");
            }
            for f in ["dequant_blocks", "gemv_blocks"] {
                assert!(
                    !entry(ptx, f).contains(".local"),
                    "{p} sm_{sm}: {f} uses local memory"
                );
            }
        }
    }
}

/// The body of `.entry name(` in a PTX module, up to the next entry.
fn entry<'a>(ptx: &'a str, name: &str) -> &'a str {
    let start = ptx
        .find(&format!(".entry {name}("))
        .unwrap_or_else(|| panic!("no entry {name}"));
    let rest = &ptx[start..];
    let end = rest[1..].find(".entry ").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn decode_kernels_stream_weights_before_waiting_for_their_predecessor() {
    require_nvrtc();
    let spec =
        ModelSpec::from_dir(&models_dir().join("Llama-3.2-1B-Instruct")).expect("config parses");
    let compiled =
        kernels::compile(&spec, Precision::Fp16, QuantFormat::None, CACHE, 90).expect("compiles");
    let ptx = compiled.module("decode").expect("decode module");
    for f in [
        "dec_qkv_1",
        "dec_o_1",
        "dec_up_1",
        "dec_down_1",
        "dec_lm_1",
        "dec_qkv_n",
    ] {
        let body = entry(ptx, f);
        let at = |needle: &str| {
            body.find(needle)
                .unwrap_or_else(|| panic!("{f}: no `{needle}` in its PTX"))
        };
        // Programmatic dependent launch: let the successor launch first, then issue the first weight
        // loads (16-byte, read-only, not kept in L1), and only then wait for the predecessor.
        let trigger = at("griddepcontrol.launch_dependents");
        let load = at("ld.global.nc.L1::no_allocate.v4.u32");
        let wait = at("griddepcontrol.wait");
        assert!(
            trigger < load && load < wait,
            "{f}: trigger {trigger}, first weight load {load}, wait {wait}"
        );
    }
    // Before sm_90 there is no programmatic dependent launch: the same kernels carry no such
    // instruction (and run as plain launches).
    let ampere = kernels::compile(&spec, Precision::Fp16, QuantFormat::None, CACHE, 80)
        .expect("compiles for sm_80");
    let ptx = ampere.module("decode").expect("decode");
    assert!(!ptx.contains("griddepcontrol"));
}
