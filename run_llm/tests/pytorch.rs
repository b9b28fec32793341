//! `--enable_pytorch_run`: transformers on the same weights and inputs generates the same greedy tokens
//! (checked when a Python with torch and transformers is at hand: `$LLMFORGE_PYTHON` or /opt/pyref);
//! without those modules the tool names what is missing and still reports its own figures.

mod common;
#[path = "../../runtime/tests/smollm2_common/mod.rs"]
mod smollm2_common;
use common::*;
use serde_json::Value;

/// A Python 3 that cannot import site-packages, so torch and transformers are missing.
fn python_without_site_packages(dir: &std::path::Path) -> String {
    let path = dir.join("python-no-site");
    std::fs::write(&path, "#!/bin/sh\nexec python3 -S \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn missing_modules_are_named() {
    let dir = scratch("no-torch");
    let python = python_without_site_packages(&dir);
    let p = &reference("tiny-llama")[0];
    let prompt = csv(&p.ids);
    let mut cmd = command(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        &prompt,
        "--num_tokens",
        "24",
        "--device",
        "cpu",
        "--enable_pytorch_run",
        "--json",
    ]);
    let v = json(cmd.env("LLMFORGE_PYTHON", &python));
    let b = &v["pytorch"];
    assert_eq!(b["status"], "unavailable");
    let msg = b["message"].as_str().unwrap();
    for module in ["torch", "transformers", "safetensors"] {
        assert!(msg.contains(module), "{msg}");
    }
    // Our own run is unaffected.
    assert_eq!(ids(&v["tokens"]), p.greedy);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_runs(b: &Value) {
    assert_eq!(b["status"], "ok", "{b}");
    let runs = b["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["DynamicCache", "StaticCache"]);
    for r in runs {
        assert_eq!(r["tokens_match"], true, "{}: {r}", r["name"]);
        assert!(r["latency_ms"]["median"].as_f64().unwrap() > 0.0);
        assert!(r["decode_ms_per_token_median"].as_f64().unwrap() > 0.0);
    }
}

#[test]
#[ignore = "needs a Python with torch + transformers (LLMFORGE_PYTHON or /opt/pyref); run with --include-ignored"]
fn transformers_generates_our_tokens_on_the_same_weights() {
    let python = python_with_torch()
        .expect("no Python with torch + transformers: set LLMFORGE_PYTHON or install /opt/pyref");
    for model in ["tiny-llama", "tiny-gpt2"] {
        let p = &reference(model)[1];
        let mut cmd = greedy_fp32_cpu(model, &p.ids, &["--enable_pytorch_run", "--json"]);
        let v = json(cmd.env("LLMFORGE_PYTHON", &python));
        check_runs(&v["pytorch"]);
        assert_eq!(
            ids(&v["pytorch"]["runs"][0]["tokens"][0]),
            p.greedy,
            "{model}"
        );
    }
}

#[test]
#[ignore = "needs a Python with torch + transformers (LLMFORGE_PYTHON or /opt/pyref); run with --include-ignored"]
fn synthetic_weights_reach_transformers_unchanged() {
    let python = python_with_torch()
        .expect("no Python with torch + transformers: set LLMFORGE_PYTHON or install /opt/pyref");
    let dir = scratch("synthetic-pytorch");
    let config = root().join("models/tiny-qwen2/config.json");
    let manifest = format!(
        "default_model = \"tiny-qwen2-synthetic\"\n\n[[model]]\nname = \"tiny-qwen2-synthetic\"\n\
         hf_id = \"nobody/tiny-qwen2\"\nconfig = {config:?}\nprecision = \"FP32\"\nmax_seq_len = 64\n\
         batch_size = 2\nweights = [{{ kind = \"synthetic\", seed = 9 }}]\n"
    );
    let path = dir.join("models.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut cmd = command(&[
        "--model",
        "tiny-qwen2-synthetic",
        "--benchmark",
        "--isl",
        "10",
        "--num_tokens",
        "8",
        "--iterations",
        "1",
        "--batch_size",
        "2",
        "--device",
        "cpu",
        "--enable_pytorch_run",
        "--json",
    ]);
    let v = json(
        cmd.env("LLMFORGE_MODELS", &path)
            .env("LLMFORGE_PYTHON", &python),
    );
    assert_eq!(v["run"]["synthetic_weights"], true);
    check_runs(&v["pytorch"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs a Python with torch + transformers (LLMFORGE_PYTHON or /opt/pyref); run with --include-ignored"]
fn smollm2_answers_token_for_token_like_transformers() {
    smollm2_common::installed_gguf();
    let python = python_with_torch()
        .expect("no Python with torch + transformers: set LLMFORGE_PYTHON or install /opt/pyref");
    // The default prompt through the chat template; transformers runs the same dequantised GGUF weights.
    let mut cmd = command(&[
        "--chat",
        "--num_tokens",
        "12",
        "--precision",
        "FP32",
        "--device",
        "cpu",
        "--enable_pytorch_run",
        "--json",
    ]);
    let v = json(cmd.env("LLMFORGE_PYTHON", &python));
    assert_eq!(v["run"]["model"], "SmolLM2-135M-Instruct");
    check_runs(&v["pytorch"]);
    assert_eq!(ids(&v["tokens"]).len(), 12);
}
