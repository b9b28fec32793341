//! Flags. Each flag of the seed (`run_llm.py`) is passed to the real binary with a valid value on the
//! tiny models, which must succeed and show the flag's effect in the `--json` output or on stderr (the
//! greedy tokens against transformers' references where the flag must not change them); each is also
//! given an invalid value, which must fail naming the flag. Flags with a fixed set of values list them
//! when given another; `--help` documents every flag.

mod common;
#[path = "../../runtime/tests/smollm2_common/mod.rs"]
mod smollm2_common;
use common::*;
use serde_json::Value;

/// Every flag of the seed.
const SEED_FLAGS: [&str; 14] = [
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
    "--cudagraph",
    "--min_block_size",
    "--debug",
];

/// Whether `text` names `flag` as a whole flag: `--prompt` in "--prompt_ids" or "--prompts" does not
/// count.
fn names_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        !text[i + flag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// `run_llm --device cpu --json` with `args`, required to succeed; its JSON report.
fn report(args: &[&str]) -> Value {
    json(&mut command(
        &[args, &["--device", "cpu", "--json"]].concat(),
    ))
}

/// A greedy FP32 run of `model` on its first reference prompt for `n` tokens, with `extra` flags.
fn generate(model: &str, n: usize, extra: &[&str]) -> Value {
    let ids = csv(&reference(model)[0].ids);
    let n = n.to_string();
    let base = ["--model", model, "--prompt_ids", &ids, "--num_tokens", &n];
    report(&[&base[..], extra].concat())
}

/// The first `n` tokens of transformers' greedy continuation of `model`'s first reference prompt.
fn hf_greedy(model: &str, n: usize) -> Vec<u32> {
    let greedy = &reference(model)[0].greedy;
    assert!(
        greedy.len() >= n,
        "{model}: reference has {} tokens",
        greedy.len()
    );
    greedy[..n].to_vec()
}

#[test]
fn names_flag_needs_the_whole_flag() {
    assert!(names_flag("give a non-empty --prompt", "--prompt"));
    assert!(names_flag("'--prompt <PROMPT>'", "--prompt"));
    assert!(!names_flag("--prompt_ids must list a token", "--prompt"));
    assert!(!names_flag("--prompts", "--prompt"));
    assert!(!names_flag("--prompt-file", "--prompt"));
}

#[test]
fn model_flag_picks_the_model() {
    for model in ["tiny-llama", "tiny-qwen2", "tiny-gpt2"] {
        let v = generate(model, 6, &["--precision", "FP32"]);
        assert_eq!(v["run"]["model"], model);
        assert_eq!(ids(&v["tokens"]), hf_greedy(model, 6), "{model}");
    }
}

#[test]
fn prompt_flag_is_the_text_that_is_tokenized() {
    // The tiny tokenizer adds no BOS (scripts/make_fixtures.py prepends it to the reference prompts).
    let p = &reference("tiny-llama")[0];
    let v = report(&[
        "--model",
        "tiny-llama",
        "--prompt",
        &p.text,
        "--num_tokens",
        "2",
    ]);
    assert_eq!(ids(&v["prompt_ids"]), p.ids[1..]);
    assert_eq!(v["prompt_tokens"], p.ids.len() - 1);
}

#[test]
fn tokenizer_flag_tokenizes_the_prompt() {
    // Another tiny model's tokenizer.json, against Hugging Face's ids for the same text.
    let text_ref: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/text/reference.json")).unwrap(),
    )
    .unwrap();
    let case = &text_ref["tiny_tokenizer"][1];
    let tokenizer = root().join("models/tiny-gpt2/tokenizer.json");
    let v = report(&[
        "--model",
        "tiny-llama",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--prompt",
        case["text"].as_str().unwrap(),
        "--num_tokens",
        "1",
    ]);
    assert_eq!(v["prompt_ids"], case["ids_with_special"]);
    // SmolLM2's tokenizer (from its GGUF) gives ids past the tiny model's vocabulary of 256: the run
    // fails on the first one, which is Hugging Face's first id for the same text.
    let case = &text_ref["smollm2_tokenizer"][1];
    let gguf = smollm2_common::installed_gguf();
    let err = failure(&[
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--tokenizer",
        gguf.to_str().unwrap(),
        "--prompt",
        case["text"].as_str().unwrap(),
        "--num_tokens",
        "1",
    ]);
    let first = case["ids_with_special"][0].as_u64().unwrap();
    assert!(first >= 256, "{case}");
    assert!(err.contains(&format!("token id {first} ")), "{err}");
}

#[test]
fn precision_flag_sets_the_weight_precision() {
    let mut bytes = Vec::new();
    for p in ["FP32", "FP16", "BF16"] {
        let v = generate("tiny-llama", 4, &["--precision", p]);
        assert_eq!(v["run"]["precision"], p);
        assert_eq!(ids(&v["tokens"]).len(), 4, "{p}");
        if p == "FP32" {
            assert_eq!(ids(&v["tokens"]), hf_greedy("tiny-llama", 4));
        }
        bytes.push(v["run"]["engine"]["weight_bytes"].as_u64().unwrap());
    }
    assert_eq!(
        bytes,
        [bytes[0], bytes[0] / 2, bytes[0] / 2],
        "FP32, FP16, BF16 weight bytes"
    );
}

#[test]
fn num_tokens_flag_sets_how_many_tokens_are_generated() {
    for n in [1, 5, 9] {
        let v = generate("tiny-llama", n, &["--precision", "FP32"]);
        assert_eq!(
            ids(&v["tokens"]),
            hf_greedy("tiny-llama", n),
            "--num_tokens {n}"
        );
    }
}

#[test]
fn cache_flag_selects_the_cache_and_keeps_the_tokens() {
    // The seed's empty value is its no-cache loop.
    for (cache, mode) in [
        ("static_v1", "static_v1"),
        ("static_v2", "static_v2"),
        ("none", "none"),
        ("", "none"),
    ] {
        let v = generate("tiny-qwen2", 8, &["--precision", "FP32", "--cache", cache]);
        assert_eq!(v["run"]["cache"], mode, "--cache {cache:?}");
        assert_eq!(
            ids(&v["tokens"]),
            hf_greedy("tiny-qwen2", 8),
            "--cache {cache:?}"
        );
    }
}

#[test]
fn tensorrt_flags_are_accepted_with_a_note_and_change_no_token() {
    let notes = |v: &Value| -> Vec<String> {
        v["run"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let plain = generate("tiny-llama", 6, &["--precision", "FP32"]);
    assert!(
        !notes(&plain).iter().any(|n| n.starts_with("--")),
        "{:?}",
        notes(&plain)
    );
    let v = generate(
        "tiny-llama",
        6,
        &[
            "--precision",
            "FP32",
            "--cudagraph",
            "--min_block_size",
            "3",
        ],
    );
    assert_eq!(ids(&v["tokens"]), hf_greedy("tiny-llama", 6));
    let notes = notes(&v);
    for flag in ["--cudagraph", "--min_block_size 3"] {
        assert!(
            notes.iter().any(|n| n.starts_with(flag)),
            "no note on {flag}: {notes:?}"
        );
    }
}

#[test]
fn debug_flag_prints_diagnostics_on_stderr() {
    let ids_list = csv(&reference("tiny-llama")[0].ids);
    let run_with = |extra: &[&str]| {
        let base = [
            "--model",
            "tiny-llama",
            "--prompt_ids",
            &ids_list,
            "--num_tokens",
            "3",
            "--device",
            "cpu",
            "--json",
        ];
        let out = run(&[&base[..], extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        (v, stderr(&out))
    };
    let (quiet, quiet_err) = run_with(&[]);
    let (debug, debug_err) = run_with(&["--debug"]);
    assert!(!quiet_err.contains("[debug]"), "{quiet_err}");
    for what in ["[debug] model tiny-llama", "[debug] engine built"] {
        assert!(debug_err.contains(what), "no {what:?} in {debug_err}");
    }
    assert_eq!(debug["tokens"], quiet["tokens"]);
}

#[test]
fn benchmark_flags_shape_the_benchmark() {
    let generate_mode = generate("tiny-llama", 2, &[]);
    assert_eq!(generate_mode["mode"], "generate");

    // 150 + 4 positions exceed the model's default cache length (128 in models.toml), so the engine's
    // length follows --isl and --num_tokens; its batch follows --batch_size.
    let v = report(&[
        "--model",
        "tiny-llama",
        "--benchmark",
        "--isl",
        "150",
        "--num_tokens",
        "4",
        "--batch_size",
        "2",
        "--iterations",
        "3",
    ]);
    assert_eq!(v["mode"], "benchmark");
    assert_eq!(v["isl"], 150);
    assert_eq!(v["num_tokens"], 4);
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["iterations"], 3);
    assert_eq!(v["run"]["engine"]["max_seq_len"], 154);
    assert_eq!(v["run"]["engine"]["max_batch"], 2);
    let latency_s = v["latency_ms"]["median"].as_f64().unwrap() / 1e3;
    let tokens = v["tokens_per_s"].as_f64().unwrap() * latency_s;
    let sequences = v["sequences_per_s"].as_f64().unwrap() * latency_s;
    assert!(
        (tokens - 8.0).abs() < 1e-6,
        "2 sequences x 4 tokens: {tokens}"
    );
    assert!((sequences - 2.0).abs() < 1e-6, "2 sequences: {sequences}");
    // Three timed runs have a spread; one has none (the sample deviation of one value is 0 here).
    assert!(
        v["latency_ms"]["std"].as_f64().unwrap() > 0.0,
        "{}",
        v["latency_ms"]
    );
    let one = report(&[
        "--model",
        "tiny-llama",
        "--benchmark",
        "--isl",
        "8",
        "--num_tokens",
        "2",
        "--iterations",
        "1",
    ]);
    assert_eq!(one["iterations"], 1);
    assert_eq!(one["latency_ms"]["std"], 0.0);
    assert_eq!(one["run"]["engine"]["max_batch"], 1);
}

#[test]
fn enable_pytorch_run_flag_runs_the_baseline() {
    assert_eq!(generate("tiny-llama", 2, &[])["pytorch"], Value::Null);
    // With an interpreter that does not exist the baseline is attempted and reported as failed; our
    // own run still succeeds (transformers itself: tests/pytorch.rs).
    let ids_list = csv(&reference("tiny-llama")[0].ids);
    let mut cmd = command(&[
        "--model",
        "tiny-llama",
        "--prompt_ids",
        &ids_list,
        "--num_tokens",
        "2",
        "--device",
        "cpu",
        "--json",
        "--enable_pytorch_run",
    ]);
    let v = json(cmd.env("LLMFORGE_PYTHON", "/nonexistent/python3"));
    assert_eq!(v["pytorch"]["status"], "failed", "{}", v["pytorch"]);
    let msg = v["pytorch"]["message"].as_str().unwrap();
    assert!(msg.contains("/nonexistent/python3"), "{msg}");
}

#[test]
fn invalid_values_of_the_seed_flags_are_refused_by_name() {
    let tiny = ["--model", "tiny-llama", "--device", "cpu"];
    let cases: [(&str, &[&str]); 19] = [
        ("--tokenizer", &["--tokenizer", "/no/such/tokenizer.json"]),
        ("--prompt", &["--prompt", ""]),
        ("--precision", &["--precision", "FP8"]),
        ("--num_tokens", &["--num_tokens", "0"]),
        ("--num_tokens", &["--num_tokens", "many"]),
        ("--cache", &["--cache", "dynamic"]),
        ("--benchmark", &["--benchmark=yes"]),
        ("--enable_pytorch_run", &["--enable_pytorch_run=1"]),
        ("--isl", &["--isl", "0"]),
        ("--isl", &["--isl", "1.5"]),
        ("--batch_size", &["--batch_size", "0"]),
        ("--batch_size", &["--batch_size", "-2"]),
        ("--iterations", &["--iterations", "0"]),
        ("--iterations", &["--iterations", "x"]),
        ("--cudagraph", &["--cudagraph=yes"]),
        ("--min_block_size", &["--min_block_size", "x"]),
        ("--debug", &["--debug=1"]),
        ("--prompt_ids", &["--prompt_ids", "1,x"]),
        ("--threads", &["--threads", "0"]),
    ];
    for (flag, args) in cases {
        let err = failure(&[&tiny[..], args].concat());
        assert!(
            names_flag(&err, flag),
            "{args:?}: {flag} not named in {err}"
        );
    }
    // An unknown model is named with the known ones (the error does not repeat the flag).
    let err = failure(&["--model", "no-such-model"]);
    assert!(
        err.contains("\"no-such-model\"") && err.contains("tiny-llama"),
        "{err}"
    );
    let refused: Vec<&str> = cases.iter().map(|c| c.0).chain(["--model"]).collect();
    for flag in SEED_FLAGS {
        assert!(refused.contains(&flag), "no invalid value tried for {flag}");
    }
}

#[test]
fn help_documents_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    let own = [
        "--prompt_ids",
        "--extend_context",
        "--device",
        "--threads",
        "--engine",
        "--chat",
        "--temperature",
        "--top_k",
        "--top_p",
        "--seed",
        "--json",
    ];
    for flag in SEED_FLAGS.iter().chain(&own) {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(flag) && names_flag(l, flag)),
            "--help has no entry for {flag}"
        );
    }
}

#[test]
fn unknown_precision_lists_the_valid_ones() {
    let err = failure(&["--precision", "FP8"]);
    assert!(
        err.contains("'FP8'") && names_flag(&err, "--precision"),
        "{err}"
    );
    assert!(
        err.contains("FP16") && err.contains("BF16") && err.contains("FP32"),
        "{err}"
    );
}

#[test]
fn precision_is_case_insensitive() {
    let v = generate("tiny-llama", 2, &["--precision", "bf16"]);
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
            names_flag(&err, flag) && err.contains("at least 1"),
            "{flag}: {err}"
        );
    }
    let err = failure(&["--num_tokens", "-3"]);
    assert!(names_flag(&err, "--num_tokens"), "{err}");
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
