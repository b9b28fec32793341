//! Hostile CUDA engine files, on the GPU: a file built for another GPU (compute capability) or with no
//! GPU recorded, a truncated one, and a CUDA file asked for as a CPU engine. `#[ignore]`d (they need a
//! CUDA GPU): run them with `--include-ignored` on a GPU machine, where a missing CUDA is a failure.
#![cfg(feature = "cuda")]

mod common;
mod hostile_common;

use common::{MAX_SEQ, options, root, spec};
use hostile_common::{Scratch, assert_names, err_msg};
use runtime::Precision;
use runtime::backend::cuda::device;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::engine_file::{EngineFileError, FORMAT_VERSION, MAGIC};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use serde_json::Value;

/// Fails the test, naming what is missing, where CUDA cannot be used.
fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("this test needs a CUDA GPU: {e}");
    }
}

fn gpu() -> BuildOptions {
    BuildOptions {
        precision: Precision::Fp16,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant: runtime::format::QuantFormat::None,
    }
}

/// A saved tiny-llama FP16 CUDA engine, as bytes.
fn saved(dir: &Scratch) -> Vec<u8> {
    let source = WeightSource::HfDir(root().join("models/tiny-llama"));
    let e = Engine::build(spec("tiny-llama"), &source, gpu(), &NoProgress).expect("CUDA build");
    let path = dir.join("gpu.engine");
    e.save(&path).expect("save");
    std::fs::read(&path).expect("read")
}

/// The file with its header JSON edited (the header length follows the edit).
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[16..16 + len]).expect("header");
    edit(&mut header);
    let json = serde_json::to_vec(&header).expect("json");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[16 + len..]);
    out
}

fn load(dir: &Scratch, bytes: &[u8], expect: &BuildOptions) -> runtime::Result<Engine> {
    let path = dir.join("test.engine");
    std::fs::write(&path, bytes).expect("write");
    Engine::load(&path, &spec("tiny-llama"), expect)
}

#[test]
#[ignore = "needs a CUDA GPU; run with --include-ignored on a GPU machine"]
fn an_engine_built_for_another_gpu() {
    require_cuda();
    let dir = Scratch::new("cuda-sm");
    let bytes = saved(&dir);
    assert!(
        load(&dir, &bytes, &gpu()).is_ok(),
        "the file as saved loads"
    );
    let sm = runtime::engine_file::parse_header(&bytes)
        .expect("header")
        .0
        .target_sm
        .expect("a CUDA engine records its GPU");
    let other = if sm == 80 { 90 } else { 80 };
    let moved = with_header(&bytes, |h| h["target_sm"] = Value::from(other));
    let msg = err_msg("other sm", load(&dir, &moved, &gpu()));
    assert_names(
        "other sm",
        &msg,
        &[
            "GPU compute capability",
            &format!("sm_{other}"),
            &format!("sm_{sm}"),
        ],
    );
    let none = with_header(&bytes, |h| h["target_sm"] = Value::Null);
    let msg = err_msg("no sm", load(&dir, &none, &gpu()));
    assert_names("no sm", &msg, &["GPU compute capability", "none"]);
}

#[test]
#[ignore = "needs a CUDA GPU; run with --include-ignored on a GPU machine"]
fn a_truncated_cuda_engine() {
    require_cuda();
    let dir = Scratch::new("cuda-cut");
    let bytes = saved(&dir);
    let (_, header_end) = runtime::engine_file::parse_header(&bytes).expect("header");
    for len in [
        header_end + 3,
        header_end + 100,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        match load(&dir, &bytes[..len], &gpu()) {
            Err(runtime::Error::EngineFile(EngineFileError::Truncated { .. })) => {}
            Err(other) => panic!("prefix {len}: expected Truncated, got {other}"),
            Ok(_) => panic!("prefix {len} of {} loaded", bytes.len()),
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU; run with --include-ignored on a GPU machine"]
fn a_cuda_engine_asked_for_as_a_cpu_engine() {
    require_cuda();
    let dir = Scratch::new("cuda-cpu");
    let bytes = saved(&dir);
    let msg = err_msg("cpu", load(&dir, &bytes, &options(Precision::Fp16, 1)));
    assert_names("cpu", &msg, &["backend", "cuda", "cpu"]);
    // A forged header claiming the CPU over a CUDA payload is corrupt, not a crash.
    let forged = with_header(&bytes, |h| {
        h["backend"] = Value::from("Cpu");
        h["target_sm"] = Value::Null;
    });
    let msg = err_msg("forged", load(&dir, &forged, &options(Precision::Fp16, 1)));
    assert_names("forged", &msg, &["engine file"]);
}
