//! Flag parsing: every flag with a fixed set of values lists them when given another; bad numbers and
//! unknown models are refused with a message naming the problem.

mod common;
use common::*;

#[test]
fn unknown_precision_lists_the_valid_ones() {
    let err = failure(&["--precision", "FP8"]);
    assert!(
        err.contains("'FP8'") && err.contains("--precision"),
        "{err}"
    );
    assert!(
        err.contains("FP16") && err.contains("BF16") && err.contains("FP32"),
        "{err}"
    );
}

#[test]
fn precision_is_case_insensitive() {
    let prompt = csv(&reference("tiny-llama")[0].ids);
    let v = json(&mut common::command(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        &prompt,
        "--num_tokens",
        "2",
        "--precision",
        "bf16",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(v["run"]["precision"], "BF16");
}

#[test]
fn unknown_cache_lists_the_valid_ones() {
    let err = failure(&["--cache", "dynamic"]);
    for v in ["static_v1", "static_v2", "none"] {
        assert!(err.contains(v), "{err}");
    }
}

#[test]
fn unknown_device_lists_the_valid_ones() {
    let err = failure(&["--device", "tpu"]);
    assert!(err.contains("cpu") && err.contains("cuda"), "{err}");
}

#[test]
fn counts_must_be_positive() {
    for flag in [
        "--num_tokens",
        "--isl",
        "--batch_size",
        "--iterations",
        "--threads",
    ] {
        let err = failure(&["--model", "tiny-llama", flag, "0"]);
        assert!(
            err.contains(flag) && err.contains("at least 1"),
            "{flag}: {err}"
        );
    }
    let err = failure(&["--num_tokens", "-3"]);
    assert!(err.contains("--num_tokens"), "{err}");
}

#[test]
fn bad_sampling_values_are_named() {
    let err = failure(&["--model", "tiny-llama", "--temperature", "-1"]);
    assert!(err.contains("temperature"), "{err}");
    let err = failure(&["--model", "tiny-llama", "--top_p", "1.5"]);
    assert!(err.contains("top_p"), "{err}");
    let err = failure(&["--model", "tiny-llama", "--top_k", "0"]);
    assert!(err.contains("top_k"), "{err}");
}

#[test]
fn unknown_model_lists_the_known_ones() {
    let err = failure(&["--model", "no-such-model"]);
    assert!(err.contains("no-such-model"), "{err}");
    assert!(
        err.contains("SmolLM2-135M-Instruct") && err.contains("tiny-llama"),
        "{err}"
    );
}

#[test]
fn a_non_gguf_file_is_refused() {
    let path = root().join("models/tiny-llama/config.json");
    let err = failure(&["--model", path.to_str().unwrap()]);
    assert!(err.contains("not a .gguf file"), "{err}");
}

#[test]
fn snake_case_flags_of_the_seed_are_accepted() {
    let out = run(&["--help"]);
    let help = stdout(&out);
    for flag in [
        "--model",
        "--tokenizer",
        "--prompt",
        "--precision",
        "--num_tokens",
        "--cache",
        "--benchmark",
        "--enable_pytorch_run",
        "--isl",
        "--batch_size",
        "--iterations",
        "--device",
        "--engine",
        "--chat",
        "--temperature",
        "--top_k",
        "--top_p",
        "--seed",
        "--json",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
