//! Hostile `config.json` files beyond the per-field refusals of `runtime/src/config/tests.rs`: files
//! that are absent, empty, half-downloaded or not text; sizes whose products overflow; scaling objects
//! of the wrong shape. Every case is an error naming the model and the problem.

mod hostile_common;

use hostile_common::{Scratch, assert_names, err_msg, root};
use runtime::config::{load_config_file, parse_config};
use serde_json::{Value, json};

fn parse(v: &Value) -> Result<runtime::ModelSpec, String> {
    parse_config("hostile", v.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn llama() -> Value {
    json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128,
        "vocab_size": 256, "max_position_embeddings": 256})
}

fn with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = llama();
    if let Value::Object(m) = &mut v {
        edit(m);
    }
    v
}

#[test]
fn the_base_config_parses() {
    assert!(parse(&llama()).is_ok());
}

#[test]
fn every_prefix_of_a_real_config_is_refused_as_not_json() {
    // A half-downloaded config.json: each cut of the published Llama 3.1 config names the model and
    // says the JSON is not valid, never parses to a wrong model.
    let bytes =
        std::fs::read(root().join("models/Llama-3.1-8B-Instruct/config.json")).expect("config");
    let end = bytes
        .iter()
        .rposition(|&b| b == b'}')
        .expect("closing brace");
    for len in 0..end {
        let msg = err_msg(
            "prefix",
            parse_config("Llama-3.1-8B-Instruct", &bytes[..len]),
        );
        assert_names(
            &format!("prefix {len}"),
            &msg,
            &["model Llama-3.1-8B-Instruct", "not valid JSON"],
        );
    }
    assert!(parse_config("Llama-3.1-8B-Instruct", &bytes).is_ok());
}

#[test]
fn files_that_are_not_configs() {
    let dir = Scratch::new("cfg-files");
    let msg = err_msg("absent", load_config_file("m", &dir.join("config.json")));
    assert_names("absent", &msg, &["config.json", "No such file"]);
    let msg = err_msg("a directory", load_config_file("m", dir.path()));
    assert_names("a directory", &msg, &[&dir.path().display().to_string()]);
    for (what, bytes) in [
        ("empty", &b""[..]),
        ("binary", b"\x00\x01\x02\xff\xfe"),
        ("utf-8 BOM", b"\xef\xbb\xbf{\"model_type\": \"llama\"}"),
        ("tokenizer-like text", b"<s> hello </s>"),
    ] {
        let path = dir.join("config.json");
        std::fs::write(&path, bytes).expect("write");
        let msg = err_msg(what, load_config_file("m", &path));
        assert_names(what, &msg, &["model m", "not valid JSON"]);
    }
    for (what, text) in [
        ("a list", "[]"),
        ("a string", "\"llama\""),
        ("null", "null"),
    ] {
        let msg = err_msg(what, parse_config("m", text.as_bytes()));
        assert_names(what, &msg, &["model m", "must be a JSON object"]);
    }
}

#[test]
fn sizes_whose_products_overflow() {
    for (field, value) in [
        ("hidden_size", json!(1u64 << 60)),
        ("vocab_size", json!(u64::MAX)),
        ("intermediate_size", json!(1u64 << 62)),
    ] {
        let v = with(|m| {
            m.insert(field.into(), value.clone());
            // Keep the heads dividing the hidden size so that only the overflow is wrong.
            m.insert("head_dim".into(), json!(16));
        });
        let msg = err_msg(field, parse(&v));
        assert_names(field, &msg, &["model hostile", "overflows"]);
    }
    // Absurd layer counts (found by fuzzing: 26 666 666 GPT-2 layers exhausted memory listing the
    // weights the config needs): refused before any per-layer structure is made.
    for layers in [4097u64, 26_666_666, u64::MAX] {
        let v = with(|m| {
            m.insert("num_hidden_layers".into(), json!(layers));
        });
        let msg = err_msg("layers", parse(&v));
        assert_names(
            "layers",
            &msg,
            &["`num_hidden_layers`", "more than the 4096"],
        );
    }
    let v = json!({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 26_666_666,
        "n_positions": 128, "vocab_size": 256});
    assert_names(
        "gpt2 layers",
        &err_msg("gpt2 layers", parse(&v)),
        &["`n_layer`", "26666666"],
    );
    // Wider than usize altogether.
    let msg = err_msg(
        "u128",
        parse_config(
            "hostile",
            br#"{"model_type": "llama", "hidden_size": 1e30}"#,
        ),
    );
    assert_names("u128", &msg, &["`hidden_size`", "non-negative integer"]);
}

#[test]
fn inconsistent_head_geometry() {
    // More key/value heads than query heads.
    let v = with(|m| {
        m.insert("num_key_value_heads".into(), json!(8));
    });
    assert_names(
        "kv > q",
        &err_msg("kv > q", parse(&v)),
        &["`num_attention_heads`", "divisible"],
    );
    let v = with(|m| {
        m.insert("num_key_value_heads".into(), json!(0));
    });
    assert_names(
        "kv 0",
        &err_msg("kv 0", parse(&v)),
        &["`num_key_value_heads`", "at least 1"],
    );
    let v = json!({"model_type": "gpt2", "n_embd": 64, "n_head": 5, "n_layer": 2,
        "n_positions": 64, "vocab_size": 10});
    assert_names(
        "gpt2 heads",
        &err_msg("gpt2 heads", parse(&v)),
        &["`n_embd`", "`n_head` = 5"],
    );
}

#[test]
fn rope_scaling_of_the_wrong_shape() {
    let cases = [
        (json!("llama3"), "`rope_scaling`", "expected an object"),
        (
            json!({"rope_type": 3}),
            "`rope_scaling.rope_type`",
            "expected a string",
        ),
        (
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
            "`rope_scaling.original_max_position_embeddings`",
            "missing",
        ),
        (
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}),
            "`rope_scaling.high_freq_factor`",
            "greater than `low_freq_factor`",
        ),
        (
            json!({"rope_type": "llama3", "factor": -8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}),
            "`rope_scaling.factor`",
            "greater than 0",
        ),
        (
            json!({"rope_type": "longrope", "factor": 4.0}),
            "`rope_scaling.rope_type`",
            "\"longrope\"",
        ),
    ];
    for (scaling, field, want) in cases {
        let v = with(|m| {
            m.insert("rope_scaling".into(), scaling.clone());
        });
        let msg = err_msg(field, parse(&v));
        assert_names(field, &msg, &["model hostile", field, want]);
    }
    let v = with(|m| {
        m.insert("rope_theta".into(), json!(0));
    });
    assert_names(
        "theta 0",
        &err_msg("theta 0", parse(&v)),
        &["`rope_theta`", "greater than 0"],
    );
}

#[test]
fn special_token_ids_of_the_wrong_type() {
    for (field, value) in [
        ("eos_token_id", json!("</s>")),
        ("eos_token_id", json!([2, "x"])),
        ("bos_token_id", json!(-1)),
        ("pad_token_id", json!(1u64 << 40)),
    ] {
        let v = with(|m| {
            m.insert(field.into(), value.clone());
        });
        let msg = err_msg(field, parse(&v));
        assert_names(field, &msg, &["model hostile", &format!("`{field}`")]);
    }
}
