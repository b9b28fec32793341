//! `run_llm --perplexity`: tiny models' perplexity on tests/fixtures/perplexity/genesis-1-11.txt against
//! transformers' on the same ids, windows and scoring (tests/fixtures/perplexity/reference.json, made
//! by scripts/make_perplexity_fixtures.py), and the errors for bad input.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn text_path() -> PathBuf {
    root().join("tests/fixtures/perplexity/genesis-1-11.txt")
}

fn reference() -> Value {
    let path = root().join("tests/fixtures/perplexity/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The FP32 bound of max |ours - transformers| / max |transformers| on tiny models' logits, from
/// `fp32_tol` in runtime/tests/common/mod.rs (5-7x the largest error measured, CPU and GPU).
fn logit_tol(model: &str) -> f64 {
    match model {
        "tiny-llama" => 1.5e-5,
        "tiny-qwen2" => 1.2e-5,
        "tiny-gpt2" => 6e-6,
        other => panic!("no FP32 bound for {other}"),
    }
}

/// A text file of this test's own, under the system temp directory.
fn scratch(name: &str, contents: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "llmforge-perplexity-{}-{name}.txt",
        std::process::id()
    ));
    std::fs::write(&p, contents).unwrap();
    p
}

/// Every window's NLL sum and the mean NLL within the bound that the logits' bound implies: a token's
/// NLL is `logsumexp(z) - z[target]`, and each term moves by at most `max |Δz|`, so
/// `|Δ NLL| <= 2 max |Δz| <= 2 tol max |z|` per token (`max |z|` over every window of the text, from
/// the reference).
#[test]
fn perplexity_equals_transformers_on_tiny_models() {
    let r = reference();
    let ctx = r["ctx"].as_u64().unwrap().to_string();
    let text = text_path();
    for (model, want) in r["models"].as_object().unwrap() {
        let got = json(&mut command(&[
            "--model",
            model,
            "--perplexity",
            text.to_str().unwrap(),
            "--ctx",
            &ctx,
            "--precision",
            "FP32",
            "--device",
            "cpu",
            "--json",
        ]));
        for key in ["text_tokens", "windows", "scored_tokens"] {
            assert_eq!(got[key], want[key], "{model}: {key}");
        }
        assert_eq!(
            got["bos"],
            Value::Null,
            "{model}: the tiny tokenizer adds no BOS"
        );
        assert_eq!(got["mode"], "perplexity");
        assert_eq!(got["run"]["cache"], "none");
        let per_token = 2.0 * logit_tol(model) * want["max_abs_logit"].as_f64().unwrap();
        let scored_per_window =
            (want["scored_tokens"].as_f64().unwrap() / want["windows"].as_f64().unwrap()).round();
        let (g, w) = (
            got["window_nll"].as_array().unwrap(),
            want["window_nll"].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{model}");
        let mut worst = 0.0f64;
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
            assert!(
                d <= per_token * scored_per_window,
                "{model} window {i}: NLL sum {a} vs transformers {b}, bound {}",
                per_token * scored_per_window
            );
            worst = worst.max(d / scored_per_window);
        }
        let d = (got["mean_nll"].as_f64().unwrap() - want["mean_nll"].as_f64().unwrap()).abs();
        assert!(
            d <= per_token,
            "{model}: mean NLL {} vs transformers {}, bound {per_token}",
            got["mean_nll"],
            want["mean_nll"]
        );
        let rel = (got["perplexity"].as_f64().unwrap() / want["perplexity"].as_f64().unwrap()
            - 1.0)
            .abs();
        eprintln!(
            "{model}: perplexity {} vs transformers {} (relative difference {rel:.2e}); \
             |Δ mean NLL| {d:.2e}, largest per-token |Δ| of a window {worst:.2e}, bound {per_token:.2e}",
            got["perplexity"], want["perplexity"]
        );
    }
}

#[test]
fn perplexity_prints_one_line_of_figures() {
    let o = run(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        text_path().to_str().unwrap(),
        "--ctx",
        "64",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("perplexity ")
            && out.contains("547 windows of 64")
            && out.contains("tokens/s"),
        "{out}"
    );
    assert!(stderr(&o).contains("model tiny-llama"), "{}", stderr(&o));
}

#[test]
fn bad_perplexity_input_is_refused_by_name() {
    let missing = root().join("tests/fixtures/perplexity/no-such-text.txt");
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        missing.to_str().unwrap(),
    ]);
    assert!(
        err.contains("reading the --perplexity text") && err.contains("no-such-text.txt"),
        "{err}"
    );

    let empty = scratch("empty", " \n\n");
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        empty.to_str().unwrap(),
    ]);
    assert!(err.contains("is empty"), "{err}");

    let short = scratch("short", "In the beginning");
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        short.to_str().unwrap(),
        "--ctx",
        "64",
    ]);
    assert!(
        err.contains("16 tokens long, shorter than one window of 64 tokens")
            && err.contains("smaller --ctx"),
        "{err}"
    );
    let _ = std::fs::remove_file(empty);
    let _ = std::fs::remove_file(short);

    let text = text_path();
    let text = text.to_str().unwrap();
    // Longer than the model's positions: learned ones cannot be extended, rotary ones only on request.
    let err = failure(&["--model", "tiny-gpt2", "--perplexity", text, "--ctx", "256"]);
    assert!(
        err.contains("128 learned positions") && err.contains("--ctx"),
        "{err}"
    );
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        text,
        "--ctx",
        "512",
    ]);
    assert!(
        err.contains("trained for 256")
            && err.contains("lower --ctx")
            && err.contains("--extend_context"),
        "{err}"
    );
    let err = failure(&["--model", "tiny-llama", "--perplexity", text, "--ctx", "2"]);
    assert!(err.contains("--ctx must be at least 3"), "{err}");
    // --ctx belongs to --perplexity; --perplexity is its own mode.
    let err = failure(&["--model", "tiny-llama", "--ctx", "64"]);
    assert!(err.contains("--perplexity"), "{err}");
    let err = failure(&["--model", "tiny-llama", "--perplexity", text, "--benchmark"]);
    assert!(err.contains("cannot be used with"), "{err}");
    // Without a tokenizer the text cannot be tokenized.
    let missing_tokenizer = root().join("tests/fixtures/perplexity/no-such-tokenizer.json");
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--perplexity",
        text,
        "--tokenizer",
        missing_tokenizer.to_str().unwrap(),
    ]);
    assert!(
        err.contains("the model's tokenizer") && err.contains("no-such-tokenizer.json"),
        "{err}"
    );
}
