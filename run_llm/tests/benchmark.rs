//! `--benchmark` on tiny models: every figure is present and consistent; synthetic weights are said so.

mod common;
use common::*;
use serde_json::Value;

fn bench(model: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--model",
        model,
        "--benchmark",
        "--isl",
        "12",
        "--num_tokens",
        "6",
        "--iterations",
        "3",
        "--batch_size",
        "2",
        "--device",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&mut command(&args))
}

/// A short benchmark of `model` on the CPU (8-token prompt, 4 new tokens, 2 iterations) and `extra`.
fn short_bench(model: &str, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "--model",
        model,
        "--benchmark",
        "--isl",
        "8",
        "--num_tokens",
        "4",
        "--iterations",
        "2",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    command(&args)
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"));
    assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    x
}

#[test]
fn benchmark_reports_every_figure() {
    let v = bench("tiny-llama", &[]);
    assert_eq!(v["mode"], "benchmark");
    assert_eq!(v["isl"], 12);
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["num_tokens"], 6);
    assert_eq!(v["iterations"], 3);
    let lat = &v["latency_ms"];
    let (median, mean) = (positive(lat, "median"), positive(lat, "mean"));
    assert!(lat["std"].as_f64().unwrap() >= 0.0);
    let ttft = positive(&v, "ttft_ms_median");
    assert!(
        ttft <= median,
        "TTFT {ttft} beyond the whole latency {median}"
    );
    positive(&v, "decode_ms_per_token_median");
    let tps = positive(&v, "tokens_per_s");
    let sps = positive(&v, "sequences_per_s");
    // 2 sequences of 6 tokens per generation, at the median latency.
    assert!((tps - 12.0 / (median / 1e3)).abs() < 1e-6 * tps);
    assert!((sps - 2.0 / (median / 1e3)).abs() < 1e-6 * sps);
    assert!(mean > 0.0);
    let r = &v["roofline"];
    assert_eq!(
        r["weight_bytes_per_token"],
        v["run"]["engine"]["weight_bytes"]
    );
    positive(r, "achieved_gb_s");
    let measured = positive(r, "measured_gb_s");
    let fraction = positive(r, "fraction");
    assert!((fraction - r["achieved_gb_s"].as_f64().unwrap() / measured).abs() < 1e-9);
    assert!(
        r["probe"]
            .as_str()
            .unwrap()
            .contains("CPU memory copy probe")
    );
    assert_eq!(v["run"]["synthetic_weights"], false);
}

#[test]
fn benchmark_text_names_every_figure() {
    let out = short_bench("tiny-qwen2", &[])
        .output()
        .expect("run_llm starts");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for part in [
        "median",
        "mean",
        "std dev",
        "time to first token",
        "ms/token",
        "tokens/s",
        "sequences/s",
        "roofline",
        "measured",
        "CPU memory copy probe",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
}

#[test]
fn models_without_weights_run_on_synthetic_ones_and_say_so() {
    let dir = scratch("synthetic-manifest");
    let config = root().join("models/tiny-llama/config.json");
    let manifest = format!(
        "default_model = \"tiny-synthetic\"\n\n[[model]]\nname = \"tiny-synthetic\"\n\
         hf_id = \"nobody/tiny-synthetic\"\nconfig = {config:?}\nprecision = \"BF16\"\n\
         max_seq_len = 64\nbatch_size = 1\nweights = [{{ kind = \"hf_dir\", path = \"missing\" }}, \
         {{ kind = \"synthetic\", seed = 42 }}]\n"
    );
    let path = dir.join("models.toml");
    std::fs::write(&path, manifest).unwrap();
    let mut cmd = short_bench("tiny-synthetic", &["--json"]);
    let v = json(cmd.env("LLMFORGE_MODELS", &path));
    assert_eq!(v["run"]["synthetic_weights"], true);
    assert!(v["run"]["weights"].as_str().unwrap().contains("SYNTHETIC"));
    assert!(
        v["run"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("seeded synthetic weights (seed 42)")
    );
    // The models.toml precision is the default.
    assert_eq!(v["run"]["precision"], "BF16");
    std::fs::remove_dir_all(&dir).unwrap();
}
