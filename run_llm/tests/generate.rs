//! Generation mode on the tiny fixtures: greedy tokens equal Hugging Face transformers' greedy output on
//! the same weights (tests/fixtures/*/reference.json), through every cache mode; the JSON schema.

mod common;
use common::*;
use serde_json::Value;

fn generate(model: &str, prompt: &[u32], extra: &[&str]) -> Value {
    json(&mut greedy_fp32_cpu(
        model,
        prompt,
        &[&["--json"], extra].concat(),
    ))
}

#[test]
fn greedy_tokens_match_transformers_on_every_tiny_model() {
    for model in ["tiny-llama", "tiny-qwen2", "tiny-gpt2"] {
        for (i, p) in reference(model).iter().enumerate() {
            let v = generate(model, &p.ids, &[]);
            assert_eq!(ids(&v["tokens"]), p.greedy, "{model} prompt {i}");
            assert_eq!(v["prompt_tokens"], p.ids.len());
        }
    }
}

#[test]
fn every_cache_mode_gives_the_reference_tokens() {
    let p = &reference("tiny-llama")[0];
    for cache in ["static_v1", "static_v2", "none"] {
        let v = generate("tiny-llama", &p.ids, &["--cache", cache]);
        assert_eq!(ids(&v["tokens"]), p.greedy, "--cache {cache}");
        assert_eq!(v["run"]["cache"], cache);
    }
}

#[test]
fn a_hugging_face_directory_works_like_its_name() {
    let p = &reference("tiny-qwen2")[1];
    let dir = root().join("models/tiny-qwen2");
    let v = generate(dir.to_str().unwrap(), &p.ids, &[]);
    assert_eq!(ids(&v["tokens"]), p.greedy);
}

#[test]
fn json_output_has_every_field() {
    let p = &reference("tiny-gpt2")[0];
    let v = generate("tiny-gpt2", &p.ids, &[]);
    assert_eq!(v["mode"], "generate");
    let run = &v["run"];
    for (key, want) in [
        ("model", "tiny-gpt2"),
        ("device", "cpu"),
        ("precision", "FP32"),
        ("cache", "static_v1"),
    ] {
        assert!(
            run[key].as_str().unwrap().starts_with(want),
            "run.{key} = {}",
            run[key]
        );
    }
    assert_eq!(run["synthetic_weights"], false);
    assert!(run["weights"].as_str().unwrap().contains("tiny-gpt2"));
    let engine = &run["engine"];
    assert_eq!(engine["origin"], "built");
    assert!(engine["max_seq_len"].as_u64().unwrap() >= (p.ids.len() + 24) as u64);
    assert_eq!(engine["max_batch"], 1);
    assert!(engine["weight_bytes"].as_u64().unwrap() > 0);
    for key in ["weights_s", "build_s"] {
        assert!(engine[key].as_f64().unwrap() >= 0.0, "engine.{key}");
    }
    for key in ["ttft_ms", "decode_ms_per_token", "tokens_per_s"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // The fixture has a tokenizer.json, so the answer is decoded even for a prompt given as ids.
    assert!(v["text"].is_string(), "text = {}", v["text"]);
    assert_eq!(ids(&v["prompt_ids"]), p.ids);
    assert!(v["pytorch"].is_null());
    assert_eq!(ids(&v["tokens"]), p.greedy);
}

#[test]
fn stdout_holds_the_answer_alone_and_stderr_the_header_and_figures() {
    let p = &reference("tiny-llama")[0];
    let out = greedy_fp32_cpu("tiny-llama", &p.ids, &[])
        .output()
        .expect("run_llm starts");
    assert!(out.status.success(), "{}", stderr(&out));
    // The same run's decoded answer, from the JSON report.
    let v = generate("tiny-llama", &p.ids, &[]);
    let answer = v["text"].as_str().expect("decoded text");
    assert_eq!(
        stdout(&out),
        format!("{answer}\n"),
        "stdout is the answer alone"
    );
    // The header, its notes and the figures, nothing else (no progress bars off a terminal).
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(lines[0].starts_with("model tiny-llama"), "{err}");
    let (figures, notes) = lines[1..].split_last().expect("a figures line");
    assert!(
        notes.iter().all(|l| l.starts_with("note: ")),
        "only notes between the header and the figures: {err}"
    );
    for part in ["TTFT", "ms/token", "tokens/s", "engine built in"] {
        assert!(figures.contains(part), "{err}");
    }
}

#[test]
fn sampling_is_seeded() {
    let p = &reference("tiny-llama")[0];
    let sample = |seed: &str| {
        ids(&generate(
            "tiny-llama",
            &p.ids,
            &["--temperature", "1.0", "--top_k", "50", "--seed", seed],
        )["tokens"])
    };
    assert_eq!(sample("5"), sample("5"));
    assert_ne!(sample("5"), sample("6"));
}

#[test]
fn a_prompt_longer_than_the_positions_is_refused() {
    // tiny-gpt2 has learned positions; 24 new tokens after a 250-token prompt do not fit.
    let ids = csv(&vec![65u32; 250]);
    let err = failure(&[
        "--model",
        "tiny-gpt2",
        "--prompt_ids",
        &ids,
        "--num_tokens",
        "24",
    ]);
    assert!(err.contains("learned positions"), "{err}");
}

#[test]
fn gguf_files_of_gemma3_phi3_qwen3_and_mistral_are_models() {
    // tests/fixtures/gguf/<model>-f32.gguf and -q8_0.gguf (scripts/make_gguf_arch_fixtures.py): the
    // F32 file is the model of models/<model>, so it gives transformers' greedy tokens; the Q8_0 file,
    // made by llama.cpp's quantizer, runs with its blocks kept.
    let dir = root().join("tests/fixtures/gguf");
    for model in [
        "tiny-gemma3",
        "tiny-phi3",
        "tiny-qwen3",
        "tiny-mistral-window",
    ] {
        let f32 = dir.join(format!("{model}-f32.gguf"));
        for (i, p) in reference(model).iter().enumerate() {
            let v = generate(f32.to_str().unwrap(), &p.ids, &[]);
            assert_eq!(ids(&v["tokens"]), p.greedy, "{model} prompt {i}");
        }
        let q8 = dir.join(format!("{model}-q8_0.gguf"));
        let p = &reference(model)[0];
        let v = generate(q8.to_str().unwrap(), &p.ids, &["--quant_format", "gguf"]);
        let n = ids(&v["tokens"]).len();
        assert!((1..=24).contains(&n), "{model} Q8_0: {n} tokens");
        assert!(v["run"]["weights"].as_str().unwrap().starts_with("GGUF"));
    }
}

#[test]
fn a_gguf_file_is_a_model() {
    // tests/fixtures/gguf/tiny-llama.gguf and transformers' greedy output on the same weights.
    let dir = root().join("tests/fixtures/gguf");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiny-llama.json")).unwrap())
            .unwrap();
    let greedy = ids(&r["greedy"]);
    let file = dir.join("tiny-llama.gguf");
    let prompt = csv(&ids(&r["prompt_ids"]));
    let n = greedy.len().to_string();
    let v = json(&mut command(&[
        "--model",
        file.to_str().unwrap(),
        "--prompt_ids",
        &prompt,
        "--num_tokens",
        &n,
        "--precision",
        "FP32",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(ids(&v["tokens"]), greedy);
    assert!(v["run"]["weights"].as_str().unwrap().starts_with("GGUF"));
    // That file carries no tokenizer: a text prompt is refused with what to do instead.
    let err = failure(&[
        "--model",
        file.to_str().unwrap(),
        "--prompt",
        "hi",
        "--device",
        "cpu",
    ]);
    assert!(
        err.contains("tokenizer") && err.contains("--prompt_ids"),
        "{err}"
    );
}
