//! What run_llm's `cuda` feature changes. The default build has it: `--device cuda` reaches the CUDA
//! backend (on a machine without a GPU, the runtime's "not available on this machine" error). The
//! CPU-only build (`cargo test --release -p run_llm --no-default-features --test cuda_feature`, which
//! `scripts/test.sh` runs) generates on the CPU like the default build, picks the CPU by itself, and
//! refuses `--device cuda` and CUDA engine files as not compiled in, before loading any weights.

mod common;
use common::*;

#[test]
fn cpu_generation_matches_transformers() {
    let p = &reference("tiny-llama")[0];
    let v = json(&mut greedy_fp32_cpu("tiny-llama", &p.ids, &["--json"]));
    assert_eq!(ids(&v["tokens"]), p.greedy);
}

/// The text of a run_llm refusal that says CUDA was left out of this build.
const NOT_COMPILED_IN: &str =
    "this run_llm was built without CUDA support (its `cuda` feature is off)";

#[cfg(feature = "cuda")]
#[test]
fn device_cuda_reaches_the_cuda_backend() {
    let o = run(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "1,2,3",
        "--num_tokens",
        "2",
        "--device",
        "cuda",
    ]);
    if !o.status.success() {
        let err = stderr(&o);
        assert!(
            err.contains("CUDA")
                && !err.contains(NOT_COMPILED_IN)
                && !err.contains("feature is off"),
            "the default build has the CUDA backend, so only the machine can lack CUDA: {err}"
        );
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_is_refused_as_not_compiled_in() {
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "1,2,3",
        "--device",
        "cuda",
        "--json",
    ]);
    assert_eq!(
        err,
        format!(
            "error: --device cuda: {NOT_COMPILED_IN}; build it with its default features to run on \
             a GPU\n"
        )
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_device_flag_the_cpu_is_chosen_with_no_fallback_note() {
    let v = json(&mut command(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "1,2,3",
        "--num_tokens",
        "2",
        "--json",
    ]));
    let run = &v["run"];
    assert!(run["device"].as_str().unwrap().starts_with("cpu"), "{run}");
    let notes = run["notes"].to_string();
    assert!(!notes.contains("GPU"), "{notes}");
}

/// A CUDA engine file (a CPU one with its header's backend changed; the refusal comes before the
/// payload is read) is refused by name.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_cuda_engine_file_is_refused_as_not_compiled_in() {
    let dir = scratch("cuda-feature-engine");
    let path = dir.join("tiny-llama.engine");
    let engine = path.to_str().unwrap();
    let args = [
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "1,2,3",
        "--num_tokens",
        "2",
        "--engine",
        engine,
        "--json",
    ];
    json(&mut command(&args));
    let mut bytes = std::fs::read(&path).expect("engine file");
    // `LLMFORGE`, the format version, the header length, then the header JSON padded with spaces.
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[16..16 + len]).expect("header text");
    assert!(
        header.ends_with(' '),
        "no padding to take a byte from: {header:?}"
    );
    let mut cuda = header.replacen(r#""backend":"Cpu""#, r#""backend":"Cuda""#, 1);
    cuda.pop();
    assert_eq!(cuda.len(), len, "{header}");
    bytes[16..16 + len].copy_from_slice(cuda.as_bytes());
    std::fs::write(&path, bytes).expect("write engine file");
    let err = failure(&args);
    assert!(
        err.contains(&format!(
            "engine file {engine} holds a CUDA engine: {NOT_COMPILED_IN}"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
