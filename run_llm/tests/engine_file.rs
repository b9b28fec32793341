//! `--engine PATH`: the first run builds and saves, the next loads the file and generates the same
//! tokens; a file that does not fit the run is refused with the reason.

mod common;
use common::*;

#[test]
fn engine_is_saved_then_reused() {
    let dir = scratch("engine-reuse");
    let path = dir.join("tiny-llama.engine");
    let engine = path.to_str().unwrap();
    let p = &reference("tiny-llama")[0];
    let prompt = csv(&p.ids);
    let args = [
        "--model",
        "tiny-llama",
        "--prompt_ids",
        &prompt,
        "--num_tokens",
        "24",
        "--precision",
        "FP16",
        "--device",
        "cpu",
        "--engine",
        engine,
        "--json",
    ];
    let first = json(&mut command(&args));
    assert_eq!(first["run"]["engine"]["origin"], "built_and_saved");
    assert!(path.is_file());
    let second = json(&mut command(&args));
    assert_eq!(second["run"]["engine"]["origin"], "loaded");
    assert_eq!(second["run"]["engine"]["weights_s"], 0.0);
    assert_eq!(first["tokens"], second["tokens"]);
    assert_eq!(second["run"]["precision"], "FP16");

    // Without --precision the file's precision is taken.
    let mut no_precision: Vec<&str> = args.to_vec();
    no_precision.drain(6..8);
    let third = json(&mut command(&no_precision));
    assert_eq!(third["run"]["precision"], "FP16");
    assert_eq!(third["run"]["engine"]["origin"], "loaded");

    // Another precision, another model, or a run that needs more room is refused.
    let mut other = args.to_vec();
    other[7] = "BF16";
    let err = failure(&other);
    assert!(
        err.contains("precision") && err.contains("FP16") && err.contains("BF16"),
        "{err}"
    );
    let other_model = [
        "--model",
        "tiny-qwen2",
        "--prompt_ids",
        "5,6",
        "--device",
        "cpu",
        "--engine",
        engine,
    ];
    let err = failure(&other_model);
    assert!(err.contains("model") && err.contains("tiny-llama"), "{err}");
    let max = first["run"]["engine"]["max_seq_len"]
        .as_u64()
        .unwrap()
        .to_string();
    let too_long = [
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "5,6",
        "--num_tokens",
        &max,
        "--device",
        "cpu",
        "--engine",
        engine,
    ];
    let err = failure(&too_long);
    assert!(err.contains("max_seq_len"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_engine_file_is_refused() {
    let dir = scratch("engine-corrupt");
    let path = dir.join("bad.engine");
    std::fs::write(&path, b"not an engine at all").unwrap();
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        "5,6",
        "--device",
        "cpu",
        "--engine",
        path.to_str().unwrap(),
    ]);
    assert!(
        err.contains("bad.engine") && err.contains("not an llmforge engine file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
