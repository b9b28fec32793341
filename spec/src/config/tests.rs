//! Every vendored `config.json` parsed and compared with the values of the published JSON, and every
//! refusal checked to name the model, the field and the value.

use super::*;
use crate::spec::{Llama3Scaling, Mlp, NormKind, Positions};

fn vendored(name: &str) -> ModelSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .join("config.json");
    match load_config_file(name, &path) {
        Ok(spec) => spec,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The geometry fields, in the order: vocab, hidden, layers, heads, kv heads, head dim, intermediate,
/// max positions.
fn geometry(s: &ModelSpec) -> [usize; 8] {
    [
        s.vocab_size,
        s.hidden_size,
        s.num_layers,
        s.num_heads,
        s.num_kv_heads,
        s.head_dim,
        s.intermediate_size,
        s.max_position_embeddings,
    ]
}

fn rope(theta: f64, llama3: Option<(f64, usize)>) -> Positions {
    Positions::Rope {
        theta,
        llama3: llama3.map(|(factor, original)| Llama3Scaling {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: original,
        }),
        linear: None,
        yarn: None,
    }
}

#[test]
fn gpt2() {
    let s = vendored("gpt2");
    assert_eq!(s.arch, Arch::Gpt2);
    assert_eq!(geometry(&s), [50257, 768, 12, 12, 12, 64, 3072, 1024]);
    assert_eq!(
        (s.norm, s.norm_eps, s.mlp),
        (NormKind::LayerNorm, 1e-5, Mlp::GeluNew)
    );
    assert_eq!(s.positions, Positions::Learned);
    assert!(s.qkv_bias && s.o_bias && s.mlp_bias && s.tie_word_embeddings);
    assert_eq!(
        (s.bos_token_id, s.eos_token_ids.clone()),
        (Some(50256), vec![50256])
    );
    assert_eq!(s.source_dtype, None);
}

#[test]
fn llama2_7b_chat() {
    let s = vendored("Llama-2-7b-chat-hf");
    assert_eq!(s.arch, Arch::Llama);
    assert_eq!(geometry(&s), [32000, 4096, 32, 32, 32, 128, 11008, 4096]);
    assert_eq!(
        (s.norm, s.norm_eps, s.mlp),
        (NormKind::RmsNorm, 1e-5, Mlp::SwiGlu)
    );
    // `rope_scaling: null` and no `rope_theta`: the Llama default 10000.
    assert_eq!(s.positions, rope(10000.0, None));
    assert!(!s.qkv_bias && !s.o_bias && !s.mlp_bias && !s.tie_word_embeddings);
    assert_eq!(
        (s.bos_token_id, s.eos_token_ids.clone()),
        (Some(1), vec![2])
    );
    assert_eq!(s.source_dtype.as_deref(), Some("float16"));
}

#[test]
fn llama31_8b_instruct() {
    let s = vendored("Llama-3.1-8B-Instruct");
    assert_eq!(geometry(&s), [128256, 4096, 32, 32, 8, 128, 14336, 131072]);
    assert_eq!(s.positions, rope(500000.0, Some((8.0, 8192))));
    assert!(!s.tie_word_embeddings && !s.qkv_bias);
    assert_eq!(s.eos_token_ids, vec![128001, 128008, 128009]);
    assert_eq!(s.bos_token_id, Some(128000));
    assert_eq!(s.source_dtype.as_deref(), Some("bfloat16"));
}

#[test]
fn llama32_1b_and_3b_instruct() {
    let s = vendored("Llama-3.2-1B-Instruct");
    assert_eq!(geometry(&s), [128256, 2048, 16, 32, 8, 64, 8192, 131072]);
    assert_eq!(s.positions, rope(500000.0, Some((32.0, 8192))));
    assert!(s.tie_word_embeddings);
    assert_eq!(s.eos_token_ids, vec![128001, 128008, 128009]);

    let s = vendored("Llama-3.2-3B-Instruct");
    assert_eq!(geometry(&s), [128256, 3072, 28, 24, 8, 128, 8192, 131072]);
    assert_eq!(s.positions, rope(500000.0, Some((32.0, 8192))));
    assert!(s.tie_word_embeddings);
}

#[test]
fn qwen25_family() {
    let cases = [
        (
            "Qwen2.5-0.5B-Instruct",
            [151936, 896, 24, 14, 2, 64, 4864, 32768],
            true,
        ),
        (
            "Qwen2.5-1.5B-Instruct",
            [151936, 1536, 28, 12, 2, 128, 8960, 32768],
            true,
        ),
        (
            "Qwen2.5-3B-Instruct",
            [151936, 2048, 36, 16, 2, 128, 11008, 32768],
            true,
        ),
        (
            "Qwen2.5-7B-Instruct",
            [152064, 3584, 28, 28, 4, 128, 18944, 32768],
            false,
        ),
    ];
    for (name, geom, tied) in cases {
        let s = vendored(name);
        assert_eq!(s.arch, Arch::Qwen2, "{name}");
        assert_eq!(geometry(&s), geom, "{name}");
        assert_eq!(s.norm_eps, 1e-6, "{name}");
        assert_eq!(s.positions, rope(1_000_000.0, None), "{name}");
        assert!(s.qkv_bias && !s.o_bias && !s.mlp_bias, "{name}");
        assert_eq!(s.tie_word_embeddings, tied, "{name}");
        assert_eq!(
            (s.bos_token_id, s.eos_token_ids.clone()),
            (Some(151643), vec![151645])
        );
    }
}

#[test]
fn smollm2_135m_instruct() {
    let s = vendored("SmolLM2-135M-Instruct");
    assert_eq!(s.arch, Arch::Llama);
    assert_eq!(geometry(&s), [49152, 576, 30, 9, 3, 64, 1536, 8192]);
    // `rope_theta` is the integer 100000 in the published JSON.
    assert_eq!(s.positions, rope(100000.0, None));
    assert!(s.tie_word_embeddings);
    assert_eq!((s.bos_token_id, s.pad_token_id), (Some(1), Some(2)));
    assert_eq!(s.eos_token_ids, vec![2]);
}

#[test]
fn tiny_models() {
    let s = vendored("tiny-llama");
    assert_eq!(geometry(&s), [256, 64, 2, 4, 2, 16, 128, 256]);
    assert_eq!(s.positions, rope(10000.0, Some((8.0, 32))));
    assert!(!s.tie_word_embeddings);

    // transformers-5 layout: `rope_parameters` and `dtype`.
    let s = vendored("tiny-qwen2");
    assert_eq!(geometry(&s), [256, 64, 2, 4, 1, 16, 96, 256]);
    assert_eq!(s.positions, rope(1_000_000.0, None));
    assert_eq!(s.source_dtype.as_deref(), Some("float32"));
    assert!(s.tie_word_embeddings && s.qkv_bias);

    // `n_inner: null` means 4 * n_embd.
    let s = vendored("tiny-gpt2");
    assert_eq!(geometry(&s), [256, 64, 2, 4, 4, 16, 256, 128]);
}

#[test]
fn hash_is_sha256_of_the_bytes() {
    // FIPS 180-2 test vector for "abc".
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/gpt2/config.json");
    let bytes = std::fs::read(&path).unwrap_or_default();
    assert_eq!(vendored("gpt2").config_hash, sha256_hex(&bytes));
}

#[test]
fn from_dir_names_the_model_after_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama");
    let s = ModelSpec::from_dir(&dir).map_err(|e| e.to_string());
    assert_eq!(s.map(|s| s.name), Ok("tiny-llama".to_string()));
}

/// A Llama config to break one field at a time.
fn llama_json() -> serde_json::Map<String, Value> {
    let text = r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 256,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}"#;
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => panic!("test JSON"),
    }
}

fn parse_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Result<ModelSpec, String> {
    let mut obj = llama_json();
    edit(&mut obj);
    let bytes = Value::Object(obj).to_string();
    parse_config("broken", bytes.as_bytes()).map_err(|e| e.to_string())
}

/// The error message names the model, the field and the value.
fn assert_refused(result: Result<ModelSpec, String>, field: &str, value: &str) {
    let msg = match result {
        Ok(_) => panic!("expected `{field}` = {value} to be refused"),
        Err(m) => m,
    };
    assert!(msg.contains("model broken"), "{msg}");
    assert!(msg.contains(&format!("`{field}`")), "{msg}");
    assert!(msg.contains(value), "{msg}");
}

#[test]
fn the_base_test_config_parses() {
    assert!(parse_with(|_| {}).is_ok());
}

#[test]
fn refuses_unknown_model_type() {
    let r = parse_with(|o| {
        o.insert("model_type".into(), "falcon".into());
    });
    let msg = r.err().unwrap_or_default();
    assert!(
        msg.contains("model broken") && msg.contains("\"falcon\""),
        "{msg}"
    );
}

/// Qwen2's rule (transformers' `Qwen2Config`): with `use_sliding_window`, the layers from
/// `max_window_layers` on slide; a written `layer_types` takes precedence.
#[test]
fn qwen_sliding_layers_follow_transformers() {
    let s = parse_with(|o| {
        o.insert("model_type".into(), "qwen2".into());
        o.insert("use_sliding_window".into(), true.into());
        o.insert("sliding_window".into(), 4096.into());
        o.insert("max_window_layers".into(), 1.into());
    })
    .unwrap();
    assert_eq!(s.sliding_window, Some(4096));
    assert_eq!(s.sliding_layers, vec![false, true]);
    assert_eq!((s.layer_window(0), s.layer_window(1)), (None, Some(4096)));
    let s = parse_with(|o| {
        o.insert("model_type".into(), "qwen3".into());
        o.insert("use_sliding_window".into(), true.into());
        o.insert("sliding_window".into(), 16.into());
        let types = serde_json::json!(["sliding_attention", "full_attention"]);
        o.insert("layer_types".into(), types);
    })
    .unwrap();
    assert_eq!(
        (s.sliding_window, s.sliding_layers),
        (Some(16), vec![true, false])
    );
    // Without `use_sliding_window` transformers has no window for the sliding layers.
    let r = parse_with(|o| {
        o.insert("model_type".into(), "qwen3".into());
        o.insert("sliding_window".into(), 16.into());
        let types = serde_json::json!(["sliding_attention", "full_attention"]);
        o.insert("layer_types".into(), types);
    });
    assert_refused(r, "layer_types", "sliding_attention");
}

#[test]
fn refuses_windows_a_family_does_not_have_or_cannot_be() {
    // Llama has no sliding layers.
    let r = parse_with(|o| {
        let types = serde_json::json!(["full_attention", "sliding_attention"]);
        o.insert("layer_types".into(), types);
        o.insert("sliding_window".into(), 16.into());
    });
    assert_refused(r, "layer_types", "sliding_attention");
    let r = parse_with(|o| {
        o.insert("model_type".into(), "qwen2".into());
        let types = serde_json::json!(["full_attention", "chunked_attention"]);
        o.insert("layer_types".into(), types);
    });
    assert_refused(r, "layer_types[1]", "\"chunked_attention\"");
    let r = parse_with(|o| {
        o.insert("model_type".into(), "qwen2".into());
        o.insert(
            "layer_types".into(),
            serde_json::json!(["sliding_attention"]),
        );
        o.insert("sliding_window".into(), 16.into());
    });
    assert_refused(r, "layer_types", "1");
    let r = parse_with(|o| {
        o.insert("model_type".into(), "qwen2".into());
        let types = serde_json::json!(["sliding_attention", "full_attention"]);
        o.insert("layer_types".into(), types);
        o.insert("sliding_window".into(), Value::Null);
    });
    assert_refused(r, "sliding_window", "null");
    let r = parse_with(|o| {
        o.insert("model_type".into(), "mistral".into());
        o.insert("sliding_window".into(), 0.into());
    });
    assert_refused(r, "sliding_window", "0");
}

#[test]
fn accepts_sliding_window_fields_not_in_use() {
    let r = parse_with(|o| {
        o.insert("model_type".into(), "qwen2".into());
        o.insert("use_sliding_window".into(), false.into());
        o.insert("sliding_window".into(), 4096.into());
        o.insert(
            "layer_types".into(),
            serde_json::json!(["full_attention", "full_attention"]),
        );
    });
    let s = r.unwrap();
    assert_eq!((s.sliding_window, s.sliding_layers.len()), (None, 0));
}

/// Linear interpolation (transformers' `_compute_linear_scaling_rope_parameters`), in either
/// layout and under either key.
#[test]
fn reads_linear_rope_scaling() {
    let linear = |s: ModelSpec| match s.positions {
        Positions::Rope { linear, .. } => linear,
        Positions::Learned => None,
    };
    let s = parse_with(|o| {
        let s = serde_json::json!({"type": "linear", "factor": 2.0});
        o.insert("rope_scaling".into(), s);
    });
    assert_eq!(linear(s.unwrap()), Some(2.0));
    let s = parse_with(|o| {
        let p = serde_json::json!({"rope_type": "linear", "rope_theta": 1e6, "factor": 4.0});
        o.insert("rope_parameters".into(), p);
    });
    assert_eq!(linear(s.unwrap()), Some(4.0));
    let r = parse_with(|o| {
        let s = serde_json::json!({"rope_type": "linear"});
        o.insert("rope_scaling".into(), s);
    });
    assert_refused(r, "rope_scaling.factor", "");
}

#[test]
fn refuses_unsupported_rope_types() {
    for kind in ["dynamic", "longrope"] {
        let r = parse_with(|o| {
            let s = serde_json::json!({"rope_type": kind, "factor": 4.0});
            o.insert("rope_scaling".into(), s);
        });
        assert_refused(r, "rope_scaling.rope_type", &format!("\"{kind}\""));
    }
    // transformers-5 layout, and the older `type` key.
    let r = parse_with(|o| {
        let p = serde_json::json!({"rope_type": "dynamic", "rope_theta": 1e6, "factor": 4.0});
        o.insert("rope_parameters".into(), p);
    });
    assert_refused(r, "rope_parameters.rope_type", "\"dynamic\"");
    let r = parse_with(|o| {
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"type": "longrope", "factor": 2.0}),
        );
    });
    assert_refused(r, "rope_scaling.type", "\"longrope\"");
}

/// YaRN, resolved as transformers' `_compute_yarn_parameters` and `standardize_rope_params`
/// resolve it: the original length from the scaling object, else the config's top-level
/// `original_max_position_embeddings`, else `max_position_embeddings`; a null factor from the two
/// lengths; the attention factor from `mscale` / `mscale_all_dim` when both are non-zero, else from
/// the factor; betas 32 and 1 when absent or zero; truncation unless turned off.
#[test]
fn reads_yarn_rope_scaling() {
    let yarn = |r: Result<ModelSpec, String>| match r.unwrap().positions {
        Positions::Rope { yarn, .. } => yarn.expect("yarn"),
        Positions::Learned => panic!("rotary"),
    };
    // transformers 5 layout; max_position_embeddings is 256 in the base config.
    let y = yarn(parse_with(|o| {
        let p = serde_json::json!({"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
            "original_max_position_embeddings": 64});
        o.insert("rope_parameters".into(), p);
    }));
    assert_eq!(
        (
            y.factor,
            y.original_max_position_embeddings,
            y.beta_fast,
            y.beta_slow,
            y.truncate
        ),
        (4.0, 64, 32.0, 1.0, true)
    );
    assert_eq!(y.attention_factor, 0.1 * 4f64.ln() + 1.0);
    // transformers 4 layout: the original length at the top level, a null factor, mscales, zero betas.
    let y = yarn(parse_with(|o| {
        o.insert("original_max_position_embeddings".into(), 32.into());
        let s = serde_json::json!({"type": "yarn", "factor": null, "mscale": 1.0,
            "mscale_all_dim": 0.5, "beta_fast": 0, "beta_slow": 0, "truncate": false});
        o.insert("rope_scaling".into(), s);
    }));
    assert_eq!((y.factor, y.original_max_position_embeddings), (8.0, 32));
    assert_eq!((y.beta_fast, y.beta_slow, y.truncate), (32.0, 1.0, false));
    let ln8 = 8f64.ln();
    assert_eq!(y.attention_factor, (0.1 * ln8 + 1.0) / (0.05 * ln8 + 1.0));
    // Neither: max_position_embeddings; an explicit attention factor wins.
    let y = yarn(parse_with(|o| {
        let s = serde_json::json!({"rope_type": "yarn", "factor": 2.0, "attention_factor": 1.5});
        o.insert("rope_scaling".into(), s);
    }));
    assert_eq!(
        (y.original_max_position_embeddings, y.attention_factor),
        (256, 1.5)
    );
    // A factor is required (or null), and must be positive.
    let r = parse_with(|o| {
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "yarn"}),
        );
    });
    assert_refused(r, "rope_scaling.factor", "");
    let r = parse_with(|o| {
        let s = serde_json::json!({"rope_type": "yarn", "factor": -2.0});
        o.insert("rope_scaling".into(), s);
    });
    assert_refused(r, "rope_scaling.factor", "-2");
}

#[test]
fn refuses_indivisible_heads() {
    let r = parse_with(|o| {
        o.insert("hidden_size".into(), 66.into());
    });
    assert_refused(r, "hidden_size", "66");
    // An explicit head_dim makes hidden_size's divisibility irrelevant.
    let r = parse_with(|o| {
        o.insert("hidden_size".into(), 66.into());
        o.insert("head_dim".into(), 16.into());
    });
    assert_eq!(r.map(|s| s.head_dim), Ok(16));
    let r = parse_with(|o| {
        o.insert("num_key_value_heads".into(), 3.into());
    });
    assert_refused(r, "num_attention_heads", "4");
}

#[test]
fn refuses_unsupported_activation() {
    let r = parse_with(|o| {
        o.insert("hidden_act".into(), "gelu".into());
    });
    assert_refused(r, "hidden_act", "\"gelu\"");
    let gpt2 = r#"{"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 64,
        "vocab_size": 10, "activation_function": "relu"}"#;
    let msg = parse_config("broken", gpt2.as_bytes())
        .err()
        .map(|e| e.to_string());
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("`activation_function`") && msg.contains("\"relu\""),
        "{msg}"
    );
}

#[test]
fn refuses_missing_required_fields() {
    for field in [
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "model_type",
    ] {
        let r = parse_with(|o| {
            o.remove(field);
        });
        let msg = r.err().unwrap_or_default();
        assert!(
            msg.contains("model broken") && msg.contains(&format!("`{field}` is missing")),
            "{msg}"
        );
    }
}

#[test]
fn refuses_wrong_types_and_zero_sizes() {
    let r = parse_with(|o| {
        o.insert("hidden_size".into(), "64".into());
    });
    assert_refused(r, "hidden_size", "\"64\"");
    let r = parse_with(|o| {
        o.insert("num_attention_heads".into(), 0.into());
    });
    assert_refused(r, "num_attention_heads", "0");
    let r = parse_with(|o| {
        o.insert("rms_norm_eps".into(), (-1.0).into());
    });
    assert_refused(r, "rms_norm_eps", "-1");
}

#[test]
fn refuses_interleaved_rope() {
    let r = parse_with(|o| {
        o.insert("rope_interleaved".into(), true.into());
    });
    assert_refused(r, "rope_interleaved", "true");
}

#[test]
fn refuses_text_that_is_not_json() {
    let msg = parse_config("broken", b"{ not json")
        .err()
        .map(|e| e.to_string());
    assert!(
        msg.unwrap_or_default()
            .contains("model broken: config.json is not valid JSON")
    );
    let msg = parse_config("broken", b"[1, 2]")
        .err()
        .map(|e| e.to_string());
    assert!(msg.unwrap_or_default().contains("must be a JSON object"));
}

#[test]
fn llama_attention_bias_and_mlp_bias() {
    let s = parse_with(|o| {
        o.insert("attention_bias".into(), true.into());
        o.insert("mlp_bias".into(), true.into());
    });
    let flags = s.map(|s| (s.qkv_bias, s.o_bias, s.mlp_bias));
    assert_eq!(flags, Ok((true, true, true)));
}

#[test]
fn qwen3() {
    let s = vendored("Qwen3-0.6B");
    assert_eq!(s.arch, Arch::Qwen3);
    // head_dim is explicit: 16 heads of 128 over a hidden size of 1024.
    assert_eq!(geometry(&s), [151936, 1024, 28, 16, 8, 128, 3072, 40960]);
    assert!(s.qk_norm && s.tie_word_embeddings);
    assert!(!s.qkv_bias && !s.o_bias && !s.mlp_bias);
    assert_eq!(s.positions, rope(1_000_000.0, None));
    assert_eq!(s.eos_token_ids, vec![151645]);
    let s = vendored("Qwen3-8B");
    assert_eq!(geometry(&s), [151936, 4096, 36, 32, 8, 128, 12288, 40960]);
    assert!(s.qk_norm && !s.tie_word_embeddings);
}

#[test]
fn mistral() {
    let s = vendored("Mistral-7B-Instruct-v0.3");
    assert_eq!(s.arch, Arch::Mistral);
    assert_eq!(geometry(&s), [32768, 4096, 32, 32, 8, 128, 14336, 32768]);
    assert!(!s.qk_norm && !s.qkv_bias && !s.tie_word_embeddings);
    assert_eq!(s.norm_eps, 1e-5);
    assert_eq!(s.positions, rope(1_000_000.0, None));
}

/// Mistral slides in every layer unless `sliding_window` is `null`; a config without the key has
/// transformers' default window of 4096; `layer_types` is ignored, as transformers ignores it.
#[test]
fn mistral_windows_follow_transformers() {
    let window = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let s = parse_with(|o| {
            o.insert("model_type".into(), "mistral".into());
            edit(o);
        })
        .unwrap();
        (s.sliding_window, s.sliding_layers)
    };
    let every = |w| (Some(w), vec![true, true]);
    assert_eq!(
        window(&|o| {
            o.insert("sliding_window".into(), 4096.into());
        }),
        every(4096)
    );
    assert_eq!(
        window(&|o| {
            o.insert("sliding_window".into(), Value::Null);
        }),
        (None, vec![])
    );
    assert_eq!(
        window(&|o| {
            o.remove("sliding_window");
        }),
        every(4096)
    );
    let with_types = |o: &mut serde_json::Map<String, Value>| {
        o.insert("sliding_window".into(), 8.into());
        let types = serde_json::json!(["full_attention", "full_attention"]);
        o.insert("layer_types".into(), types);
    };
    assert_eq!(window(&with_types), every(8));
    let s = vendored("tiny-mistral-window");
    assert_eq!((s.sliding_window, s.sliding_layers.len()), (Some(8), 2));
    assert!(s.sliding_layers.iter().all(|&l| l));
}

#[test]
fn family_bias_switches_follow_transformers() {
    let flags = |model_type: &str| {
        let s = parse_with(|o| {
            o.insert("model_type".into(), model_type.into());
            o.insert("attention_bias".into(), true.into());
            o.insert("mlp_bias".into(), true.into());
            o.insert("sliding_window".into(), Value::Null);
        })
        .unwrap_or_else(|e| panic!("{model_type}: {e}"));
        (s.qkv_bias, s.o_bias, s.mlp_bias)
    };
    assert_eq!(flags("llama"), (true, true, true));
    assert_eq!(flags("qwen3"), (true, true, false));
    assert_eq!(flags("mistral"), (false, false, false));
    assert_eq!(flags("qwen2"), (true, false, false));
}

#[test]
fn a_qwen3_config_without_head_dim_has_transformers_default() {
    let s = parse_with(|o| {
        o.insert("model_type".into(), "qwen3".into());
        o.remove("head_dim");
    })
    .unwrap();
    assert_eq!(s.head_dim, 128);
    assert!(s.qk_norm);
}

#[test]
fn sizes_the_size_check_accepts_never_overflow_the_parameter_count() {
    // For each size field, the largest value `size_problem` accepts (it is monotonic in each field),
    // found by bisection on a one-wide model of 4096 layers: the parameter count must fit there.
    let mut base = parse_with(|_| {}).unwrap();
    (
        base.hidden_size,
        base.num_heads,
        base.num_kv_heads,
        base.head_dim,
    ) = (1, 1, 1, 1);
    (
        base.num_layers,
        base.vocab_size,
        base.max_position_embeddings,
    ) = (4096, 1, 1);
    (base.intermediate_size, base.tie_word_embeddings) = (1, false);
    for mlp_bias in [false, true] {
        for qk_norm in [false, true] {
            for field in 0..4 {
                let with = |v: usize| {
                    let mut s = base.clone();
                    (s.mlp_bias, s.qk_norm) = (mlp_bias, qk_norm);
                    match field {
                        0 => s.intermediate_size = v,
                        1 => s.hidden_size = v,
                        2 => s.head_dim = v,
                        _ => s.vocab_size = v,
                    }
                    s
                };
                let (mut ok, mut bad) = (1usize, usize::MAX);
                assert!(with(ok).size_problem().is_none());
                while bad - ok > 1 {
                    let mid = ok + (bad - ok) / 2;
                    match with(mid).size_problem() {
                        None => ok = mid,
                        Some(_) => bad = mid,
                    }
                }
                let s = with(ok);
                // Independently of `num_parameters` (whose unchecked arithmetic wraps silently in a
                // release build): the plan's tensors, multiplied and added without overflow, fit.
                let total = crate::plan::ModelPlan::new(&s)
                    .tensors()
                    .iter()
                    .map(|(_, shape)| shape.iter().map(|&d| d as u128).product::<u128>())
                    .try_fold(0u128, |a, n| a.checked_add(n));
                let fits = total.is_some_and(|t| t <= usize::MAX as u128);
                assert!(
                    fits,
                    "field {field}: {ok} accepted, its {total:?} parameters overflow"
                );
                assert_eq!(
                    s.num_parameters() as u128,
                    total.unwrap_or(0),
                    "field {field}"
                );
            }
        }
    }
}

/// gemma-3-1b-it's published config (transformers-4 layout): layers 5, 11, 17 and 23 attend globally
/// (`sliding_window_pattern` 6), the others over 512 keys with base 10000.
#[test]
fn gemma3() {
    let s = vendored("gemma-3-1b-it");
    assert_eq!(s.arch, Arch::Gemma3);
    assert_eq!(geometry(&s), [262144, 1152, 26, 4, 1, 256, 6912, 32768]);
    assert_eq!(s.mlp, Mlp::GeGlu);
    assert!(s.qk_norm && s.sandwich_norms && s.norm_gain_offset && s.tie_word_embeddings);
    assert!(!s.qkv_bias && !s.o_bias && !s.mlp_bias);
    assert_eq!(s.norm_eps, 1e-6);
    assert_eq!(s.positions, rope(1_000_000.0, None));
    assert_eq!(s.local_rope_theta, Some(10_000.0));
    assert_eq!(s.sliding_window, Some(512));
    let global: Vec<usize> = (0..26).filter(|&i| s.layer_window(i).is_none()).collect();
    assert_eq!(global, [5, 11, 17, 23]);
    // A local layer's cache is a ring of the window, when the window is the shorter.
    assert_eq!(s.kv_shape(0, 1, 2048), [1, 1, 512, 256]);
    assert_eq!(s.kv_shape(5, 1, 2048), [1, 1, 2048, 256]);
    assert_eq!(s.kv_shape(0, 2, 100), [2, 1, 100, 256]);
    assert_eq!(s.attention_scale, Some(1.0 / 16.0));
    assert_eq!(s.embed_scale, Some(1152f64.sqrt()));
    assert_eq!(s.eos_token_ids, vec![1, 106]);
    assert_eq!((s.bos_token_id, s.pad_token_id), (Some(2), Some(0)));
}

fn gemma_json() -> serde_json::Map<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-gemma3/config.json");
    match serde_json::from_slice(&std::fs::read(path).unwrap()) {
        Ok(Value::Object(m)) => m,
        _ => panic!("tiny-gemma3 config"),
    }
}

fn parse_gemma(
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<ModelSpec, String> {
    let mut obj = gemma_json();
    edit(&mut obj);
    let bytes = Value::Object(obj).to_string();
    parse_config("broken", bytes.as_bytes()).map_err(|e| e.to_string())
}

/// The same model in transformers 5's layout (what `save_pretrained` writes for tiny-gemma3 today:
/// `rope_parameters` keyed by layer type, `layer_types` spelled out) parses to the same spec.
#[test]
fn gemma3_transformers5_layout_parses_the_same() {
    let old = parse_gemma(|_| {}).unwrap();
    let new = parse_gemma(|o| {
        for k in [
            "rope_theta",
            "rope_scaling",
            "rope_local_base_freq",
            "sliding_window_pattern",
        ] {
            o.remove(k);
        }
        let p = serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        });
        o.insert("rope_parameters".into(), p);
        let types = ["sliding_attention", "sliding_attention", "full_attention"].repeat(2);
        o.insert("layer_types".into(), serde_json::json!(types));
    })
    .unwrap();
    assert_eq!(
        new,
        ModelSpec {
            config_hash: new.config_hash.clone(),
            ..old.clone()
        }
    );
    match old.positions {
        Positions::Rope { theta, linear, .. } => assert_eq!((theta, linear), (1e6, Some(8.0))),
        Positions::Learned => panic!("rotary"),
    }
    assert_eq!(old.sliding_layers, [true, true, false, true, true, false]);
}

/// The final logits' soft cap is read where set (null: none), a cap that is not positive is refused,
/// and the attention cap is accepted without effect (transformers' Gemma 3 never applies it).
#[test]
fn gemma3_soft_capping_is_read() {
    let s = parse_gemma(|o| {
        o.insert("final_logit_softcapping".into(), 30.0.into());
        o.insert("attn_logit_softcapping".into(), 50.0.into());
    })
    .expect("parses");
    assert_eq!(s.final_softcap, Some(30.0));
    let plain = parse_gemma(|_| {}).expect("parses");
    let same = ModelSpec {
        final_softcap: None,
        config_hash: plain.config_hash.clone(),
        ..s
    };
    assert_eq!(same, plain, "only the final cap differs");
    let s = parse_gemma(|o| {
        o.insert("final_logit_softcapping".into(), serde_json::Value::Null);
    })
    .expect("parses");
    assert_eq!(s.final_softcap, None);
    let r = parse_gemma(|o| {
        o.insert("final_logit_softcapping".into(), 0.0.into());
    });
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("final_logit_softcapping"),
        "a zero cap is refused by name"
    );
}

#[test]
fn refuses_what_gemma3_needs_and_we_do_not_implement() {
    let r = parse_gemma(|o| {
        o.insert("hidden_activation".into(), "gelu".into());
    });
    assert_refused(r, "hidden_activation", "\"gelu\"");
    let r = parse_gemma(|o| {
        o.insert("use_bidirectional_attention".into(), true.into());
    });
    assert_refused(r, "use_bidirectional_attention", "true");
    let r = parse_gemma(|o| {
        o.insert("model_type".into(), "gemma3".into());
    });
    assert_refused(r, "model_type", "\"gemma3\"");
    let r = parse_gemma(|o| {
        let p = serde_json::json!({
            "full_attention": {"rope_type": "default"},
            "sliding_attention": {"rope_type": "linear", "factor": 2.0},
        });
        o.insert("rope_parameters".into(), p);
    });
    assert_refused(
        r,
        "rope_parameters.sliding_attention.rope_type",
        "\"linear\"",
    );
}

/// Phi-3-mini-4k-instruct's published config (transformers-4 layout): Llama's geometry with a window
/// of 2047 keys in every layer, so each layer's cache is a ring of 2047 positions at 4096.
#[test]
fn phi3() {
    let s = vendored("Phi-3-mini-4k-instruct");
    assert_eq!(s.arch, Arch::Phi3);
    assert_eq!(geometry(&s), [32064, 3072, 32, 32, 32, 96, 8192, 4096]);
    assert_eq!(
        (s.norm, s.norm_eps, s.mlp),
        (NormKind::RmsNorm, 1e-5, Mlp::SwiGlu)
    );
    assert_eq!(s.positions, rope(10_000.0, None));
    assert!(!s.qkv_bias && !s.o_bias && !s.mlp_bias && !s.qk_norm);
    assert!(!s.tie_word_embeddings && !s.sandwich_norms && !s.norm_gain_offset);
    assert_eq!(
        (s.attention_scale, s.embed_scale, s.local_rope_theta),
        (None, None, None)
    );
    assert_eq!(s.sliding_window, Some(2047));
    assert_eq!(s.sliding_layers, vec![true; 32]);
    assert!((0..32).all(|i| s.layer_window(i) == Some(2047)));
    assert_eq!(s.kv_shape(0, 1, 4096), [1, 32, 2047, 96]);
    assert_eq!(s.kv_shape(31, 1, 4096), [1, 32, 2047, 96]);
    assert_eq!(s.kv_shape(0, 1, 1024), [1, 32, 1024, 96]);
    let plan = crate::plan::ModelPlan::new(&s);
    let windows: Vec<_> = plan.layers.iter().map(|l| l.attention.window).collect();
    assert_eq!(windows, vec![crate::plan::Window::Sliding(2047); 32]);
    assert_eq!(s.num_parameters(), 3_821_079_552);
    assert_eq!(
        (s.bos_token_id, s.eos_token_ids.clone(), s.pad_token_id),
        (Some(1), vec![32000], Some(32000))
    );
    assert_eq!(s.source_dtype.as_deref(), Some("bfloat16"));
}

fn phi3_json() -> serde_json::Map<String, Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/Phi-3-mini-4k-instruct/config.json");
    match serde_json::from_slice(&std::fs::read(path).unwrap()) {
        Ok(Value::Object(m)) => m,
        _ => panic!("Phi-3 config"),
    }
}

fn parse_phi3(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Result<ModelSpec, String> {
    let mut obj = phi3_json();
    edit(&mut obj);
    let bytes = Value::Object(obj).to_string();
    parse_config("broken", bytes.as_bytes()).map_err(|e| e.to_string())
}

/// What transformers' Phi3Config and Phi3Model make of the window, the biases and the layouts: the
/// window is in every layer unless `null` or absent (its default), `layer_types` does not change it,
/// `attention_bias` builds nothing, and the transformers-5 layout reads the same.
#[test]
fn phi3_follows_transformers() {
    let window = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let s = parse_phi3(|o| edit(o)).unwrap();
        (s.sliding_window, s.sliding_layers)
    };
    assert_eq!(
        window(&|o| {
            o.insert("sliding_window".into(), Value::Null);
        }),
        (None, vec![])
    );
    assert_eq!(
        window(&|o| {
            o.remove("sliding_window");
        }),
        (None, vec![])
    );
    assert_eq!(
        window(&|o| {
            let types = serde_json::json!(vec!["full_attention"; 32]);
            o.insert("layer_types".into(), types);
        }),
        (Some(2047), vec![true; 32])
    );
    let s = parse_phi3(|o| {
        o.insert("attention_bias".into(), true.into());
        o.insert("mlp_bias".into(), true.into());
    })
    .unwrap();
    assert!(!s.qkv_bias && !s.o_bias && !s.mlp_bias);
    let old = parse_phi3(|_| {}).unwrap();
    let new = parse_phi3(|o| {
        o.remove("rope_scaling");
        o.remove("rope_theta");
        o.remove("torch_dtype");
        o.insert("dtype".into(), "bfloat16".into());
        let p = serde_json::json!({"rope_type": "default", "rope_theta": 10000.0,
            "partial_rotary_factor": 1.0});
        o.insert("rope_parameters".into(), p);
    })
    .unwrap();
    assert_eq!(
        new,
        ModelSpec {
            config_hash: new.config_hash.clone(),
            ..old
        }
    );
    // A config without the optional keys has Phi3Config's defaults.
    let s = parse_phi3(|o| {
        for k in [
            "rms_norm_eps",
            "num_key_value_heads",
            "tie_word_embeddings",
            "rope_theta",
        ] {
            o.remove(k);
        }
    })
    .unwrap();
    assert_eq!((s.norm_eps, s.num_kv_heads), (1e-5, 32));
    assert!(!s.tie_word_embeddings);
    assert_eq!(s.positions, rope(10_000.0, None));
}

/// The 128k-context models' `longrope` (also written `su` and `yarn`), a partial rotary embedding
/// (top level or in `rope_parameters`), scalings Phi3Config refuses and other activations.
#[test]
fn refuses_what_phi3_needs_and_we_do_not_implement() {
    for (kind, key) in [
        ("su", "type"),
        ("longrope", "type"),
        ("longrope", "rope_type"),
    ] {
        let r = parse_phi3(|o| {
            let mut s = serde_json::json!({"short_factor": [1.0], "long_factor": [1.0]});
            s[key] = kind.into();
            o.insert("rope_scaling".into(), s);
        });
        let msg = r.clone().err().unwrap_or_default();
        assert!(msg.contains("longrope"), "{msg}");
        assert_refused(r, &format!("rope_scaling.{key}"), &format!("\"{kind}\""));
    }
    let r = parse_phi3(|o| {
        let p = serde_json::json!({"rope_type": "longrope", "rope_theta": 1e4, "factor": 32.0});
        o.insert("rope_parameters".into(), p);
    });
    assert_refused(r, "rope_parameters.rope_type", "\"longrope\"");
    let r = parse_phi3(|o| {
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "linear", "factor": 2.0}),
        );
    });
    assert_refused(r, "rope_scaling.rope_type", "\"linear\"");
    let r = parse_phi3(|o| {
        o.insert("partial_rotary_factor".into(), 0.75.into());
    });
    assert_refused(r, "partial_rotary_factor", "0.75");
    let r = parse_phi3(|o| {
        let p = serde_json::json!({"rope_type": "default", "rope_theta": 1e4,
            "partial_rotary_factor": 0.5});
        o.insert("rope_parameters".into(), p);
    });
    assert_refused(r, "rope_parameters.partial_rotary_factor", "0.5");
    let r = parse_phi3(|o| {
        o.insert("hidden_act".into(), "gelu".into());
    });
    assert_refused(r, "hidden_act", "\"gelu\"");
    let r = parse_phi3(|o| {
        o.insert("sliding_window".into(), 0.into());
    });
    assert_refused(r, "sliding_window", "0");
}
