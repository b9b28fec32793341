//! `--enable_pytorch_run`: Hugging Face transformers on the same weights and inputs, through
//! `bench/pytorch_baseline.py`. Weights that are not already a HF directory (GGUF, synthetic) are written
//! as one (`weights::synthetic::write_hf_dir`) under the system temp directory, reused when present.
//! The Python interpreter is `$LLMFORGE_PYTHON`, else `python3`.
//!
//! The baseline never fails the run: a missing module or a failed script is reported in its place.

use crate::args::Args;
use crate::engine_setup::Need;
use crate::report::{Summary, median};
use crate::resolve::Model;
use anyhow::{Context, Result, bail};
use runtime::tokenize::Tokenizer;
use runtime::weights::{WeightMap, WeightSource};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// Exit status of the script when modules are missing.
const EXIT_MISSING: i32 = 3;

#[derive(Debug, Serialize)]
struct Request {
    model_dir: PathBuf,
    precision: String,
    device: String,
    prompts: Vec<Vec<u32>>,
    num_tokens: usize,
    eos: Vec<u32>,
    stop_at_eos: bool,
    warmup: usize,
    iterations: usize,
}

/// Which of run_llm's modes the baseline mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One generation of `--num_tokens` for the prompt, stopping at EOS.
    Generate,
    /// The benchmark's prompts, one warm-up and `--iterations`, never stopping at EOS.
    Benchmark,
}

/// With `--enable_pytorch_run`, transformers on the same weights and `prompts`, compared with our
/// tokens `ours`; `None` without the flag.
pub fn compare(
    args: &Args,
    model: &Model,
    need: &Need,
    weights: Option<&WeightMap>,
    prompts: &[Vec<u32>],
    ours: &[Vec<u32>],
    mode: Mode,
) -> Result<Option<Baseline>> {
    if !args.enable_pytorch_run {
        return Ok(None);
    }
    let (stop_at_eos, warmup, iterations) = match mode {
        Mode::Generate => (true, 0, 1),
        Mode::Benchmark => (false, 1, args.iterations),
    };
    // The interpreter and its modules are checked before any weights are written for it.
    match run_script(&Check { check_only: true }) {
        Ok(out) if !out.missing.is_empty() => return Ok(Some(unavailable(out))),
        Ok(_) => {}
        Err(e) => return Ok(Some(failed(e))),
    }
    let req = Request {
        model_dir: hf_dir(model, weights)?,
        precision: need.precision.to_string(),
        device: match need.device {
            runtime::engine::DeviceChoice::Cpu { .. } => "cpu".into(),
            runtime::engine::DeviceChoice::Cuda { .. } => "cuda".into(),
        },
        prompts: prompts.to_vec(),
        num_tokens: args.num_tokens,
        eos: model.spec.eos_token_ids.clone(),
        stop_at_eos,
        warmup,
        iterations,
    };
    Ok(Some(run(&req, ours, args.sampling().is_greedy())))
}

/// A HF directory holding exactly the weights the engine was built from.
fn hf_dir(model: &Model, weights: Option<&WeightMap>) -> Result<PathBuf> {
    let key = match &model.source {
        WeightSource::HfDir(dir) => return Ok(dir.clone()),
        WeightSource::Synthetic { seed } => format!("synthetic-{seed}"),
        WeightSource::Gguf(file) => {
            let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            format!("gguf-{len}")
        }
    };
    let hash: String = model.spec.config_hash.chars().take(12).collect();
    let dir = std::env::temp_dir().join("llmforge-hf").join(format!(
        "{}-{hash}-{key}",
        runtime::manifest::slug(&model.spec.name)
    ));
    let marker = dir.join("llmforge-complete");
    if marker.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A GGUF file's model gets a config.json written from its spec.
    let (spec, config) = match &model.config_json {
        Some(c) => (model.spec.clone(), c.clone()),
        None => {
            let path = dir.join("llmforge-source-config.json");
            std::fs::write(&path, crate::hf_config::config_json(&model.spec)?)
                .with_context(|| format!("writing {}", path.display()))?;
            (
                runtime::config::load_config_file(&model.spec.name, &path)?,
                path,
            )
        }
    };
    let loaded;
    let weights = match weights {
        Some(w) => w,
        None => {
            loaded = runtime::weights::load(&model.spec, &model.source)?;
            &loaded
        }
    };
    runtime::weights::synthetic::write_hf_dir(&spec, &config, weights, &dir)
        .with_context(|| format!("writing the baseline's weights to {}", dir.display()))?;
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    Ok(dir)
}

/// The baseline's result as reported.
#[derive(Debug, Serialize)]
pub struct Baseline {
    /// `ok`, `unavailable` (modules missing) or `failed`.
    pub status: &'static str,
    pub message: Option<String>,
    pub versions: Option<serde_json::Value>,
    pub notes: Vec<String>,
    pub runs: Vec<BaselineRun>,
}

#[derive(Debug, Serialize)]
pub struct BaselineRun {
    pub name: String,
    pub compiled: bool,
    pub note: Option<String>,
    pub latency_ms: Summary,
    pub ttft_ms_median: f64,
    pub decode_ms_per_token_median: f64,
    pub tokens_per_s: f64,
    /// Whether transformers generated exactly our tokens (`None` when we sampled).
    pub tokens_match: Option<bool>,
    pub tokens: Vec<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
struct ScriptOutput {
    #[serde(default)]
    missing: Vec<String>,
    python: Option<String>,
    versions: Option<serde_json::Value>,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    runs: Vec<ScriptRun>,
}

#[derive(Debug, Deserialize)]
struct ScriptRun {
    name: String,
    compiled: bool,
    note: Option<String>,
    tokens: Vec<Vec<u32>>,
    e2e_ms: Vec<f64>,
    ttft_ms: Vec<f64>,
    decode_ms_per_token: Vec<f64>,
}

/// The baseline script, compiled in so that an installed binary needs no source tree; written to a
/// temporary directory for each run.
const SCRIPT: &str = include_str!("../../bench/pytorch_baseline.py");

/// The request that only checks the interpreter and its modules.
#[derive(Serialize)]
struct Check {
    check_only: bool,
}

fn python() -> String {
    std::env::var("LLMFORGE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

fn unavailable(out: ScriptOutput) -> Baseline {
    Baseline {
        status: "unavailable",
        message: Some(format!(
            "{} lacks the Python module(s) {}; install them (e.g. `pip install torch transformers \
             safetensors`) or point LLMFORGE_PYTHON at an interpreter that has them",
            out.python.unwrap_or_else(python),
            out.missing.join(", ")
        )),
        versions: None,
        notes: Vec::new(),
        runs: Vec::new(),
    }
}

fn failed(e: anyhow::Error) -> Baseline {
    Baseline {
        status: "failed",
        message: Some(format!("{e:#}")),
        versions: None,
        notes: Vec::new(),
        runs: Vec::new(),
    }
}

/// Run the script; `ours` are our generated tokens per sequence, compared when `greedy`.
fn run(req: &Request, ours: &[Vec<u32>], greedy: bool) -> Baseline {
    match run_script(req) {
        Ok(out) if !out.missing.is_empty() => unavailable(out),
        Ok(out) => Baseline {
            status: "ok",
            message: None,
            versions: out.versions,
            notes: out.notes,
            runs: out
                .runs
                .into_iter()
                .map(|r| summarise(r, ours, greedy))
                .collect(),
        },
        Err(e) => failed(e),
    }
}

fn run_script(req: &impl Serialize) -> Result<ScriptOutput> {
    let work = std::env::temp_dir().join(format!("llmforge-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let script = work.join("pytorch_baseline.py");
    let request = work.join("request.json");
    let output = work.join("result.json");
    std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    std::fs::write(&request, serde_json::to_vec(req)?)?;
    let python = python();
    let status = Command::new(&python)
        .arg(&script)
        .arg("--request")
        .arg(&request)
        .arg("--output")
        .arg(&output)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("could not start {python} (set LLMFORGE_PYTHON to a Python 3)"));
    let text = std::fs::read_to_string(&output);
    let _ = std::fs::remove_dir_all(&work);
    match (status?.code(), text) {
        (Some(0 | EXIT_MISSING), Ok(text)) => Ok(serde_json::from_str(&text)?),
        (code, _) => bail!(
            "the PyTorch baseline script (bench/pytorch_baseline.py) exited with {code:?}; its errors are above"
        ),
    }
}

fn summarise(r: ScriptRun, ours: &[Vec<u32>], greedy: bool) -> BaselineRun {
    let latency = Summary::of(&r.e2e_ms);
    let generated: usize = r.tokens.iter().map(Vec::len).sum();
    BaselineRun {
        name: r.name,
        compiled: r.compiled,
        note: r.note,
        latency_ms: latency,
        ttft_ms_median: median(&r.ttft_ms),
        decode_ms_per_token_median: median(&r.decode_ms_per_token),
        tokens_per_s: generated as f64 / (latency.median / 1e3),
        tokens_match: greedy.then(|| r.tokens == ours),
        tokens: r.tokens,
    }
}

/// The baseline as text, with its generated text when a tokenizer is at hand.
pub fn text(b: &Baseline, tokenizer: Option<&Tokenizer>) -> String {
    let mut s =
        String::from("PyTorch baseline (Hugging Face transformers, same weights and inputs)");
    if let Some(m) = &b.message {
        let _ = write!(s, ": {} — {m}", b.status);
        return s;
    }
    if let Some(v) = &b.versions {
        let _ = write!(s, " {v}");
    }
    for n in &b.notes {
        let _ = write!(s, "\n  note: {n}");
    }
    for r in &b.runs {
        let matched = match r.tokens_match {
            Some(true) => "tokens match ours: yes",
            Some(false) => "tokens match ours: NO",
            None => "tokens not compared (sampling)",
        };
        let _ = write!(
            s,
            "\n  {}{}: latency median {:.2} ms (mean {:.2}, std {:.2}) · TTFT {:.2} ms · decode {:.3} \
             ms/token · {:.1} tokens/s · {matched}",
            r.name,
            if r.compiled { " + torch.compile" } else { "" },
            r.latency_ms.median,
            r.latency_ms.mean,
            r.latency_ms.std,
            r.ttft_ms_median,
            r.decode_ms_per_token_median,
            r.tokens_per_s
        );
        if let Some(n) = &r.note {
            let _ = write!(s, " ({n})");
        }
        if let (Some(t), Some(first)) = (tokenizer, r.tokens.first())
            && let Ok(text) = t.decode(first)
        {
            let _ = write!(s, "\n    text: {text}");
        }
    }
    s
}
