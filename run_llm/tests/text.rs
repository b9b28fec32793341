//! Text prompts: the tokenizer, chat template and streaming decoder on the path from `--prompt` to
//! stdout. Ids are checked against Hugging Face's tokenizer and `apply_chat_template`
//! (tests/fixtures/text/reference.json, made by scripts/make_text_fixtures.py) and generations against
//! transformers' greedy output (tests/fixtures/tiny-*/reference.json).

mod common;
#[path = "../../runtime/tests/smollm2_common/mod.rs"]
mod smollm2_common;
use common::*;
use serde_json::Value;

fn text_reference() -> Value {
    let path = root().join("tests/fixtures/text/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn text_prompts_are_tokenized_as_transformers_does() {
    let r = text_reference();
    for case in r["tiny_tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        if case["ids_with_special"].as_array().unwrap().is_empty() {
            let err = failure(&["--model", "tiny-llama", "--prompt", text, "--device", "cpu"]);
            assert!(err.contains("encodes to no tokens"), "{err}");
            continue;
        }
        let v = json(&mut command(&[
            "--model",
            "tiny-llama",
            "--prompt",
            text,
            "--num_tokens",
            "1",
            "--device",
            "cpu",
            "--json",
        ]));
        assert_eq!(v["prompt_ids"], case["ids_with_special"], "{text:?}");
    }
}

#[test]
fn a_text_prompt_generates_what_its_ids_generate() {
    // The tiny tokenizer adds no BOS (scripts/make_fixtures.py prepends it to the reference prompts), so
    // the text prompt is the reference prompt without its first id.
    for model in ["tiny-llama", "tiny-qwen2", "tiny-gpt2"] {
        let p = &reference(model)[0];
        let common = [
            "--model",
            model,
            "--num_tokens",
            "24",
            "--precision",
            "FP32",
            "--device",
            "cpu",
            "--json",
        ];
        let from_text = json(&mut command(
            &[&common[..], &["--prompt", &p.text]].concat(),
        ));
        assert_eq!(ids(&from_text["prompt_ids"]), p.ids[1..], "{model}");
        let id_list = csv(&p.ids[1..]);
        let from_ids = json(&mut command(
            &[&common[..], &["--prompt_ids", &id_list]].concat(),
        ));
        assert_eq!(from_text["tokens"], from_ids["tokens"], "{model}");
        assert_eq!(from_text["text"], from_ids["text"], "{model}");
    }
}

#[test]
fn streamed_text_is_the_decoded_answer() {
    let p = &reference("tiny-qwen2")[1];
    let args = [
        "--model",
        "tiny-qwen2",
        "--prompt",
        &p.text,
        "--num_tokens",
        "24",
        "--precision",
        "FP32",
        "--device",
        "cpu",
    ];
    let v = json(&mut command(&[&args[..], &["--json"]].concat()));
    let decoded = v["text"].as_str().expect("text in the JSON output");
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // The streamed answer alone and a newline on stdout; the header and figures on stderr.
    assert_eq!(stdout(&out), format!("{decoded}\n"));
    assert!(stderr(&out).contains("TTFT"), "{}", stderr(&out));
}

#[test]
fn tokenizer_flag_takes_a_file_or_a_directory() {
    // The tiny models share one byte-level tokenizer, so another model's file gives the same ids.
    let other = root().join("models/tiny-gpt2");
    let file = other.join("tokenizer.json");
    let base = [
        "--model",
        "tiny-llama",
        "--prompt",
        "Hi there",
        "--num_tokens",
        "1",
        "--device",
        "cpu",
        "--json",
    ];
    let own = json(&mut command(&base));
    for t in [&other, &file] {
        let v = json(&mut command(
            &[&base[..], &["--tokenizer", t.to_str().unwrap()]].concat(),
        ));
        assert_eq!(
            v["prompt_ids"],
            own["prompt_ids"],
            "--tokenizer {}",
            t.display()
        );
    }
    let err = failure(&[&base[..], &["--tokenizer", "/no/such/tokenizer.json"]].concat());
    assert!(err.contains("/no/such/tokenizer.json"), "{err}");
}

#[test]
fn chat_without_a_template_is_refused() {
    let err = failure(&["--model", "tiny-llama", "--chat", "--device", "cpu"]);
    assert!(
        err.contains("chat template") && err.contains("--chat"),
        "{err}"
    );
}

/// The real default model, through the whole command line (GGUF weights and tokenizer, chat template,
/// streaming), against transformers' greedy answer on the same dequantised weights
/// (tests/fixtures/smollm2/reference.json, made by scripts/smollm2_reference.py from the GGUF whose
/// SHA-256 `smollm2_common` checks).
#[test]
fn smollm2_answers_the_default_prompt_as_transformers_does() {
    smollm2_common::installed_gguf();
    let path = root().join("tests/fixtures/smollm2/reference.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let n = r["new_tokens"].as_u64().unwrap().to_string();
    for case in r["cases"].as_array().unwrap() {
        let chat = case["name"] == "chat";
        let mut args = vec![
            "--num_tokens",
            &n,
            "--precision",
            "FP32",
            "--device",
            "cpu",
            "--json",
        ];
        if chat {
            args.push("--chat");
        }
        let v = json(&mut command(&args));
        assert_eq!(v["run"]["model"], "SmolLM2-135M-Instruct");
        assert_eq!(
            v["prompt_ids"], case["prompt_ids"],
            "{}: prompt",
            case["name"]
        );
        assert_eq!(
            v["tokens"], case["greedy"],
            "{}: greedy tokens",
            case["name"]
        );
        assert_eq!(v["text"], case["decoded"], "{}: text", case["name"]);
    }
}
