//! What a new user coming from Torch-TensorRT's `run_llm.py` meets first: the seed's flags, one
//! default precision per model however it is named, where the output goes, and a binary that runs
//! without the source tree it was built in.

mod common;

use common::{command, failure, json, reference, root, stderr, stdout};
use serde_json::Value;
use std::process::Command;

fn tiny_llama(extra: &[&str]) -> Vec<String> {
    let p = &reference("tiny-llama")[0];
    let ids = common::csv(&p.ids);
    let mut args: Vec<String> = [
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--prompt_ids",
        &ids,
        "--num_tokens",
        "24",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn report(args: &[String]) -> (Value, String) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = command(&refs).output().expect("run_llm starts");
    assert!(o.status.success(), "run_llm {args:?}: {}", stderr(&o));
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(&o)));
    (v, stderr(&o))
}

fn notes(v: &Value) -> String {
    v["run"]["notes"].to_string()
}

#[test]
fn the_seeds_tensorrt_flags_are_accepted_and_say_what_they_do() {
    let greedy = &reference("tiny-llama")[0].greedy;
    let (v, _) = report(&tiny_llama(&["--cudagraph", "--min_block_size", "5"]));
    assert_eq!(&common::ids(&v["tokens"]), greedy);
    let n = notes(&v);
    assert!(
        n.contains("--cudagraph") && n.contains("CPU engine has none"),
        "{n}"
    );
    assert!(
        n.contains("--min_block_size 5") && n.contains("no effect"),
        "{n}"
    );
    // Without them, no such notes.
    let (plain, _) = report(&tiny_llama(&[]));
    assert!(!notes(&plain).contains("--cudagraph"), "{}", notes(&plain));
}

#[test]
fn the_seeds_empty_cache_value_means_no_cache() {
    let greedy = &reference("tiny-llama")[0].greedy;
    for spelling in ["", "empty", "none"] {
        let (v, _) = report(&tiny_llama(&["--cache", spelling]));
        assert_eq!(v["run"]["cache"], "none", "--cache {spelling:?}");
        assert_eq!(&common::ids(&v["tokens"]), greedy, "--cache {spelling:?}");
    }
}

#[test]
fn debug_writes_diagnostics_to_stderr_only() {
    let (v, err) = report(&tiny_llama(&["--debug"]));
    assert_eq!(
        &common::ids(&v["tokens"]),
        &reference("tiny-llama")[0].greedy
    );
    for part in [
        "[debug] model tiny-llama resolved",
        "[debug] precision FP32 (from models.toml default)",
        "[debug] memory:",
        "[debug] weights:",
        "[debug] engine built in",
        "[debug] prefill of",
    ] {
        assert!(err.contains(part), "{part:?} missing from stderr:\n{err}");
    }
    let (_, quiet) = report(&tiny_llama(&[]));
    assert!(!quiet.contains("[debug]"), "{quiet}");
}

#[test]
fn a_model_has_one_default_precision_however_it_is_named() {
    let by_name = report(&tiny_llama(&[])).0;
    let dir = root().join("models/tiny-llama");
    let mut by_path = tiny_llama(&[]);
    by_path[1] = dir.display().to_string();
    let by_path = report(&by_path).0;
    for v in [&by_name, &by_path] {
        assert_eq!(v["run"]["precision"], "FP32");
        assert_eq!(v["run"]["precision_from"], "models.toml default");
        assert_eq!(v["run"]["model"], "tiny-llama");
    }
    // The same weights outside models.toml, with a config whose dtype is bfloat16: BF16, said so.
    let tmp = tempdir("outside");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join(f), tmp.join(f)).expect("copy the tiny model");
    }
    let config = std::fs::read_to_string(tmp.join("config.json")).unwrap();
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"float32\"", "\"bfloat16\""),
    )
    .unwrap();
    let mut outside = tiny_llama(&[]);
    outside[1] = tmp.display().to_string();
    let (v, _) = report(&outside);
    assert_eq!(v["run"]["precision"], "BF16");
    assert_eq!(v["run"]["precision_from"], "the config's dtype");
    // An explicit flag wins, and says so.
    let (v, _) = report(&tiny_llama(&["--precision", "FP16"]));
    assert_eq!(v["run"]["precision"], "FP16");
    assert_eq!(v["run"]["precision_from"], "--precision");
    // The text header says it too.
    let mut text = tiny_llama(&[]);
    text.retain(|a| a != "--json");
    let refs: Vec<&str> = text.iter().map(String::as_str).collect();
    let o = command(&refs).output().unwrap();
    assert!(
        stderr(&o).contains("FP32 (models.toml default)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn prompt_ids_are_documented_and_suggested_where_there_is_no_tokenizer() {
    let help = stdout(&command(&["--help"]).output().unwrap());
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("--prompt_ids ")),
        "--prompt_ids missing from --help:\n{help}"
    );
    // A full-size model with synthetic weights has no tokenizer in a plain checkout.
    let err = failure(&["--model", "Qwen2.5-0.5B-Instruct", "--device", "cpu"]);
    for part in ["no tokenizer", "--prompt_ids", "--benchmark", "--tokenizer"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

#[test]
fn an_error_names_its_cause_once() {
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--prompt_ids",
        "5,6",
        "--num_tokens",
        "2",
        "--engine",
        "/nonexistent-llmforge-dir/x.engine",
    ]);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is printed more than once: {err}"
    );
    assert!(
        err.contains("saving the engine to /nonexistent-llmforge-dir/x.engine"),
        "{err}"
    );
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("llmforge-newcomer-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The binary copied elsewhere and run with the source tree it was built in hidden (a tmpfs mounted
/// over it in a private mount namespace): a synthetic-weight model benchmarks, and
/// `--enable_pytorch_run` without torch says so before writing any weights for it.
#[test]
fn an_installed_binary_runs_without_the_source_tree() {
    let tmp = tempdir("installed");
    let bin = tmp.join("run_llm");
    std::fs::copy(env!("CARGO_BIN_EXE_run_llm"), &bin).expect("copy the binary");
    let scratch = tmp.join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let source_tree = root().canonicalize().expect("source tree");
    assert!(
        !tmp.starts_with(&source_tree),
        "the temporary directory must lie outside the source tree"
    );
    let script = format!(
        "mount -t tmpfs none '{}' && test ! -e '{}' && exec '{}' \"$@\"",
        source_tree.display(),
        source_tree.join("models").display(),
        bin.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script, "run_llm"])
        .args([
            "--model",
            "Qwen2.5-0.5B-Instruct",
            "--device",
            "cpu",
            "--benchmark",
            "--isl",
            "4",
            "--num_tokens",
            "2",
            "--iterations",
            "1",
            "--enable_pytorch_run",
            "--json",
        ])
        .current_dir(&tmp)
        .env("TMPDIR", &scratch)
        .env("LLMFORGE_PYTHON", "python3")
        .env_remove("LLMFORGE_MODELS")
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONPATH", "")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("unshare starts (util-linux; the test runs as root, as CI does)");
    assert!(
        out.status.success(),
        "the relocated binary failed:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["run"]["synthetic_weights"], true);
    assert!(v["decode_ms_per_token_median"].as_f64() > Some(0.0));
    let baseline = &v["pytorch"];
    match baseline["status"].as_str() {
        // No torch for this interpreter: refused before the 1 GB of weights were written out.
        Some("unavailable") => assert!(
            !scratch.join("llmforge-hf").exists(),
            "weights were written for a baseline that could not run"
        ),
        // An interpreter with torch and transformers ran the baseline from the embedded script.
        Some("ok") => assert_eq!(baseline["runs"][0]["tokens_match"], true),
        other => panic!("baseline status {other:?}: {baseline}"),
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_default_models_gguf_by_path_keeps_its_models_toml_defaults() {
    // Where the named model's weights are, as its own report says ("GGUF /path/…gguf").
    let named = json(&mut command(&[
        "--device",
        "cpu",
        "--num_tokens",
        "1",
        "--json",
    ]));
    let label = named["run"]["weights"].as_str().expect("weights label");
    let gguf = label
        .strip_prefix("GGUF ")
        .unwrap_or_else(|| panic!("the default model's weights are not a GGUF: {label}"));
    // By path it is the same models.toml model (FP32), not a bare GGUF file (FP16).
    let v = json(&mut command(&[
        "--model",
        gguf,
        "--device",
        "cpu",
        "--num_tokens",
        "1",
        "--json",
    ]));
    assert_eq!(v["run"]["model"], "SmolLM2-135M-Instruct");
    assert_eq!(v["run"]["precision"], "FP32");
    assert_eq!(v["run"]["precision_from"], "models.toml default");
    assert_eq!(v["tokens"], named["tokens"]);
}

#[test]
fn test_models_say_their_weights_are_random() {
    let (v, _) = report(&tiny_llama(&[]));
    assert_eq!(v["run"]["random_weights"], true);
    assert!(
        v["run"]["weights"]
            .as_str()
            .is_some_and(|w| w.starts_with("RANDOM")),
        "{}",
        v["run"]["weights"]
    );
    assert!(notes(&v).contains("random weights"), "{}", notes(&v));
    // A real model does not.
    let real = json(&mut command(&[
        "--device",
        "cpu",
        "--num_tokens",
        "1",
        "--json",
    ]));
    assert_eq!(real["run"]["random_weights"], false);
    assert!(!notes(&real).contains("random weights"), "{}", notes(&real));
}

#[test]
fn a_run_past_the_trained_context_says_so() {
    let (v, _) = report(
        &[
            "--model",
            "tiny-llama",
            "--device",
            "cpu",
            "--benchmark",
            "--isl",
            "250",
            "--num_tokens",
            "10",
            "--iterations",
            "1",
            "--extend_context",
            "--json",
        ]
        .map(String::from),
    );
    let n = notes(&v);
    assert!(
        n.contains("positions up to 260") && n.contains("256"),
        "{n}"
    );
    let (v, _) = report(&tiny_llama(&[]));
    assert!(!notes(&v).contains("--extend_context"), "{}", notes(&v));
}
