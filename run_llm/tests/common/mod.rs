//! Helpers of the run_llm tests: run the built binary, parse its JSON, read the HF reference fixtures
//! (tests/fixtures/<model>/reference.json, made by scripts/make_fixtures.py with transformers 5.17).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `run_llm args…` with a clean environment for the variables the tool reads.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_run_llm"));
    c.args(args)
        .env_remove("LLMFORGE_MODELS")
        .env_remove("LLMFORGE_PYTHON")
        .env("RAYON_NUM_THREADS", "2");
    c
}

pub fn run(args: &[&str]) -> Output {
    command(args).output().expect("run_llm starts")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run, require success, parse stdout as JSON.
pub fn json(cmd: &mut Command) -> Value {
    let o = cmd.output().expect("run_llm starts");
    assert!(
        o.status.success(),
        "run_llm failed:\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(&o)))
}

/// Fails with the message that the tool printed; returns stderr.
pub fn failure(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        !o.status.success(),
        "run_llm {args:?} should fail; stdout: {}",
        stdout(&o)
    );
    stderr(&o)
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

pub fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

pub struct RefPrompt {
    pub text: String,
    pub ids: Vec<u32>,
    /// HF greedy continuation up to and including the first EOS.
    pub greedy: Vec<u32>,
}

pub fn reference(model: &str) -> Vec<RefPrompt> {
    let path = root()
        .join("tests/fixtures")
        .join(model)
        .join("reference.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("reference.json"))
        .expect("reference json");
    // transformers writes a scalar or, for Gemma 3, a one-element list.
    let eos = match &v["eos_token_id"] {
        Value::Array(one) if one.len() == 1 => one[0].as_u64(),
        scalar => scalar.as_u64(),
    };
    let eos = eos.expect("eos") as u32;
    v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let mut greedy = ids(&p["greedy"]);
            if let Some(i) = greedy.iter().position(|&t| t == eos) {
                greedy.truncate(i + 1);
            }
            RefPrompt {
                text: p["text"].as_str().expect("text").to_string(),
                ids: ids(&p["input_ids"]),
                greedy,
            }
        })
        .collect()
}

/// `run_llm --model MODEL --prompt_ids … --num_tokens 24 --precision FP32 --device cpu` and `extra`:
/// the greedy run that the Hugging Face references (`reference(model)`) were made for.
pub fn greedy_fp32_cpu(model: &str, prompt: &[u32], extra: &[&str]) -> Command {
    let ids = csv(prompt);
    let mut args = vec![
        "--model",
        model,
        "--prompt_ids",
        &ids,
        "--num_tokens",
        "24",
        "--precision",
        "FP32",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    command(&args)
}

/// A fresh scratch directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmforge-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A Python with torch and transformers: `$LLMFORGE_PYTHON`, else the reference env at /opt/pyref.
pub fn python_with_torch() -> Option<String> {
    let candidates = [
        std::env::var("LLMFORGE_PYTHON").ok(),
        Some("/opt/pyref/bin/python".to_string()),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import torch, transformers, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
