//! Engine save → load gives the same logits; loading refuses another model, precision, format
//! version, backend or shape, and a truncated or corrupt file is an error (never a panic).

mod common;

use common::*;
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::engine_file::EngineFileError;
use runtime::{Error, Precision};
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmforge-engine-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn load_err(path: &Path, name: &str, opts: &BuildOptions) -> String {
    match Engine::load(path, &spec(name), opts) {
        Ok(_) => panic!("loading {} with {opts:?} should fail", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn save_load_roundtrip_gives_identical_logits() {
    let dir = tmpdir("roundtrip");
    for precision in Precision::ALL {
        for name in MODELS {
            let r = reference(name);
            let mut built = engine(name, precision, 1);
            let path = dir.join(format!("{name}-{precision}.engine"));
            built.save(&path).expect("save");
            let mut loaded =
                Engine::load(&path, &spec(name), &options(precision, 1)).expect("load");
            let ids = &r.prompts[0].ids;
            let a = prefill_logits(&mut built, ids, CacheMode::StaticV1);
            let b = prefill_logits(&mut loaded, ids, CacheMode::StaticV1);
            assert_eq!(a, b, "{name} {precision}");
            assert_eq!(
                built.backend().weight_bytes(),
                loaded.backend().weight_bytes()
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "atomic save left temporary files");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn load_refuses_mismatches_naming_both_values() {
    let dir = tmpdir("refuse");
    let path = dir.join("llama.engine");
    engine("tiny-llama", Precision::Fp16, 1)
        .save(&path)
        .expect("save");
    let ok = options(Precision::Fp16, 1);

    let e = load_err(&path, "tiny-qwen2", &ok);
    assert!(
        e.contains("model") && e.contains("tiny-llama") && e.contains("tiny-qwen2"),
        "{e}"
    );

    let e = load_err(&path, "tiny-llama", &options(Precision::Bf16, 1));
    assert!(
        e.contains("precision") && e.contains("FP16") && e.contains("BF16"),
        "{e}"
    );

    let cuda = BuildOptions {
        device: DeviceChoice::Cuda { ordinal: 0 },
        ..ok
    };
    let e = load_err(&path, "tiny-llama", &cuda);
    assert!(
        e.contains("backend") && e.contains("cpu") && e.contains("cuda"),
        "{e}"
    );

    let e = load_err(
        &path,
        "tiny-llama",
        &BuildOptions {
            max_seq_len: 32,
            ..ok
        },
    );
    assert!(
        e.contains("max sequence length") && e.contains("64") && e.contains("32"),
        "{e}"
    );

    let mut other = spec("tiny-llama");
    other.config_hash = "0".repeat(64);
    let e = Engine::load(&path, &other, &ok)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("config hash"), "{e}");

    // Another format version: patch the version word after the magic.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let v = dir.join("version.engine");
    std::fs::write(&v, &bytes).expect("write");
    match Engine::load(&v, &spec("tiny-llama"), &ok) {
        Err(Error::EngineFile(EngineFileError::Version {
            found: 99,
            expected: 1,
            ..
        })) => {}
        other => panic!("expected a version refusal, got {:?}", other.err()),
    }

    let m = dir.join("magic.engine");
    std::fs::write(&m, b"GGUF\x03\x00\x00\x00 not an engine").expect("write");
    assert!(matches!(
        Engine::load(&m, &spec("tiny-llama"), &ok),
        Err(Error::EngineFile(EngineFileError::BadMagic { .. }))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let dir = tmpdir("trunc");
    let path = dir.join("gpt2.engine");
    engine("tiny-gpt2", Precision::Fp32, 1)
        .save(&path)
        .expect("save");
    let bytes = std::fs::read(&path).expect("read");
    let ok = options(Precision::Fp32, 1);
    let cut = dir.join("cut.engine");
    // Every prefix length class: inside magic, version, header length, header, payload, last byte.
    for len in [0, 5, 10, 14, 40, 300, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        match Engine::load(&cut, &spec("tiny-gpt2"), &ok) {
            Err(Error::EngineFile(EngineFileError::Truncated { .. })) => {}
            other => panic!("prefix {len}: expected Truncated, got {:?}", other.err()),
        }
    }
    // Trailing garbage and a flipped dtype code are corruption, not a crash.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    std::fs::write(&cut, &longer).expect("write");
    assert!(matches!(
        Engine::load(&cut, &spec("tiny-gpt2"), &ok),
        Err(Error::EngineFile(EngineFileError::Corrupt { .. }))
    ));
    let _ = std::fs::remove_dir_all(dir);
}
