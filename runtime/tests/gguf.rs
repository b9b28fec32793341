//! The GGUF reader against gguf-py and transformers (fixtures from `scripts/make_gguf_fixtures.py`):
//! metadata of every type, every supported tensor type (Q5_0/Q5_1 and the K-quants from random-byte
//! blocks) dequantised bit for bit as `gguf.quants.dequantize` does, versions 2 and 3, tiny quantised
//! Llama and Qwen2 models whose logits and greedy tokens must equal what transformers computes after
//! loading the same files, and the tiny Qwen3 of `models/` converted to GGUF, which must be the
//! safetensors model.

mod common;

use common::greedy::{ALL_TOKENS, check_greedy};
use common::{MAX_SEQ, fp32_tol, prefill_logits, reference, rel_err, root};
use half::f16;
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::gguf::{GgufFile, GgufValue};
use runtime::weights::{self, HostTensor, TensorData, WeightSource};
use runtime::{ModelSpec, Precision};
use serde_json::Value;
use std::path::PathBuf;

/// About 8x the largest error measured on the CPU engine (1.2e-6, tiny-llama's GGUF; tiny-qwen2's
/// 1.1e-6), printed by the test.
const FP32_TOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/gguf").join(name)
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name))
        .expect("GGUF reference (run scripts/make_gguf_fixtures.py)");
    serde_json::from_str(&text).expect("reference JSON")
}

fn check_quants(file: &GgufFile, reference: &Value) {
    for (name, t) in reference["tensors"].as_object().expect("tensors") {
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let want: Vec<f32> = t["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = file.tensor(name).expect("tensor reads");
        assert_eq!(got.shape, shape, "{name}");
        let TensorData::F32(got) = got.data else {
            panic!("{name}: not f32")
        };
        assert_eq!(got.len(), want.len(), "{name}");
        let first_diff = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        if let Some(i) = first_diff {
            panic!(
                "{name} ({}) differs from gguf-py first at element {i}: {:e} vs {:e}",
                t["type"], got[i], want[i]
            );
        }
    }
}

#[test]
fn every_tensor_type_dequantises_like_gguf_py() {
    let reference = json("quants.json");
    let file = GgufFile::open(&fixture("quants.gguf")).expect("opens");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.tensor_infos().len(), 6);
    check_quants(&file, &reference);
}

/// Q5_0, Q5_1 and the K-quants Q2_K..Q6_K: random-byte blocks (finite random f16 scales of either sign),
/// three rows of two blocks (two 256-element super-blocks for the K-quants), each element bit for bit
/// what `gguf.quants.dequantize` computes — `-0.0` included.
#[test]
fn every_k_quant_dequantises_like_gguf_py() {
    let reference = json("kquants.json");
    let file = GgufFile::open(&fixture("kquants.gguf")).expect("opens");
    let types: Vec<&str> = file
        .tensor_infos()
        .iter()
        .map(|t| t.ty.as_ref().expect("supported").name())
        .collect();
    assert_eq!(
        types,
        ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
    );
    assert_eq!(reference["tensors"].as_object().unwrap().len(), 7);
    assert_eq!(file.tensor_info("t.q6_k").unwrap().shape, vec![3, 512]);
    check_quants(&file, &reference);
    // The model loader's read (`--quant_format gguf` keeps the block types it packs, dequantises the
    // rest at load): the same values either way.
    for info in file.tensor_infos() {
        let kept = file.tensor_as(&info.name, true).expect("loads");
        let f32s = file.tensor(&info.name).unwrap().to_f32();
        assert_eq!(kept.shape, info.shape, "{}", info.name);
        let same = kept
            .to_f32()
            .iter()
            .map(|x| x.to_bits())
            .eq(f32s.iter().map(|x| x.to_bits()));
        assert!(same, "{}: the loader's read differs", info.name);
    }
}

#[test]
fn version_2_files_read_the_same() {
    let mut bytes = std::fs::read(fixture("quants.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let dir = tempdir();
    let path = dir.join("v2.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).expect("v2 opens");
    assert_eq!(file.version(), 2);
    check_quants(&file, &json("quants.json"));
}

#[test]
fn metadata_of_every_type() {
    let reference = json("quants.json");
    let file = GgufFile::open(&fixture("quants.gguf")).expect("opens");
    for (key, want) in reference["metadata"].as_object().unwrap() {
        let got = file
            .metadata(key)
            .unwrap_or_else(|| panic!("{key} missing"));
        let ok = match (got, want) {
            (GgufValue::U64(g), w) => w.as_u64() == Some(*g),
            (GgufValue::I64(g), w) => w.as_i64() == Some(*g),
            // FLOAT32 values read back as their shortest decimal: 1e-5, as written.
            (GgufValue::F64(g), w) if key == "test.f32" => {
                *g == 1e-5 && (*g as f32) == w.as_f64().unwrap() as f32
            }
            (GgufValue::F64(g), w) => w.as_f64() == Some(*g),
            (GgufValue::Bool(g), w) => w.as_bool() == Some(*g),
            (GgufValue::Str(g), w) => w.as_str() == Some(g.as_str()),
            _ => false,
        };
        assert!(ok, "{key}: {got:?} vs {want}");
    }
    assert_eq!(
        file.metadata("test.array"),
        Some(&GgufValue::Array(vec![
            GgufValue::I64(1),
            GgufValue::I64(2),
            GgufValue::I64(3)
        ]))
    );
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("test"));
    assert!(
        file.get_u64("test.str").is_err(),
        "type mismatch is an error"
    );
}

/// Random 2-layer models written as llama.cpp would: a Llama (untied, Q/K permuted) and a Qwen2 (q/k/v
/// biases, tied embeddings, nothing permuted).
const TINY: [&str; 2] = ["tiny-llama", "tiny-qwen2"];

fn tiny_spec(name: &str) -> ModelSpec {
    GgufFile::open(&fixture(&format!("{name}.gguf")))
        .expect("opens")
        .spec(name)
        .expect("spec")
}

#[test]
fn spec_agrees_with_transformers_config() {
    for name in TINY {
        spec_agrees(name);
    }
}

fn spec_agrees(name: &str) {
    let c = &json(&format!("{name}.json"))["config"];
    let s = tiny_spec(name);
    assert_eq!(s.qkv_bias, name == "tiny-qwen2");
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    assert_eq!(s.vocab_size, u("vocab_size"));
    assert_eq!(s.hidden_size, u("hidden_size"));
    assert_eq!(s.intermediate_size, u("intermediate_size"));
    assert_eq!(s.num_layers, u("num_hidden_layers"));
    assert_eq!(s.num_heads, u("num_attention_heads"));
    assert_eq!(s.num_kv_heads, u("num_key_value_heads"));
    assert_eq!(s.max_position_embeddings, u("max_position_embeddings"));
    assert_eq!(
        s.tie_word_embeddings,
        c["tie_word_embeddings"].as_bool().unwrap()
    );
    // transformers keeps the f32 epsilon widened to f64; we keep its shortest decimal. Same f32.
    assert_eq!(
        s.norm_eps as f32,
        c["rms_norm_eps"].as_f64().unwrap() as f32
    );
    let runtime::spec::Positions::Rope { theta, llama3, .. } = s.positions else {
        panic!("rope expected")
    };
    assert_eq!(theta, c["rope_theta"].as_f64().unwrap());
    assert!(llama3.is_none());
}

fn tiny_engine(name: &str) -> Engine {
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device: DeviceChoice::Cpu { threads: Some(2) },
        quant: runtime::format::QuantFormat::None,
    };
    let source = WeightSource::Gguf(fixture(&format!("{name}.gguf")));
    Engine::build(tiny_spec(name), &source, options, &NoProgress).expect("engine builds")
}

#[test]
fn quantised_tiny_models_match_transformers() {
    for name in TINY {
        matches_transformers(name);
    }
}

fn matches_transformers(name: &str) {
    let r = json(&format!("{name}.json"));
    let ids: Vec<u32> = r["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let want: Vec<f32> = r["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    let greedy: Vec<u32> = r["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let mut e = tiny_engine(name);
    let got = prefill_logits(&mut e, &ids, CacheMode::StaticV1);
    let err = rel_err(&got, &want);
    eprintln!("{name}: relative logits error {err:.2e} (bound {FP32_TOL:.0e})");
    assert!(err <= FP32_TOL, "{name}: relative logits error {err}");

    let opts = GenerateOptions {
        max_new_tokens: greedy.len(),
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let mut cache = e.new_cache(1).unwrap();
    let out = generate_with_static_cache(&mut e, &mut cache, &[ids], &opts, &mut |_, _| {})
        .expect("generates");
    assert_eq!(out.tokens[0], greedy, "{name}");
}

#[test]
fn untied_output_and_unpermuted_shapes() {
    let spec = tiny_spec("tiny-llama");
    let map = weights::load(&spec, &WeightSource::Gguf(fixture("tiny-llama.gguf"))).unwrap();
    let lm = &map.tensors["lm_head.weight"];
    let embed = &map.tensors["embed.weight"];
    assert_eq!(lm.shape, vec![256, 64]);
    assert_ne!(
        lm.data, embed.data,
        "output.weight is used, not the embedding"
    );
    assert_eq!(map.tensors["layers.1.k.weight"].shape, vec![32, 64]);

    let spec = tiny_spec("tiny-qwen2");
    assert!(spec.tie_word_embeddings, "no output.weight in the file");
    let map = weights::load(&spec, &WeightSource::Gguf(fixture("tiny-qwen2.gguf"))).unwrap();
    assert_eq!(map.tensors["lm_head.weight"], map.tensors["embed.weight"]);
    assert_eq!(map.tensors["layers.0.k.bias"].shape, vec![32]);
}

/// `models/tiny-qwen3` as llama.cpp writes a Qwen3 (`qwen3.*` metadata with head_dim as
/// `attention.key_length`, the per-head q/k norms as `blk.N.attn_q_norm.weight` /
/// `blk.N.attn_k_norm.weight`, matrices in F16, norms in F32): the spec its metadata gives is the one its
/// config.json gives, every tensor is the safetensors one rounded to f16 (the norms exact), and the engine
/// built from it computes what transformers computes on the safetensors model with its matrices rounded
/// to fp16 (`tests/fixtures/tiny-qwen3/reference.json`, `rounded.FP16`), as the safetensors engine
/// storing FP16 does.
#[test]
fn qwen3_gguf_is_the_safetensors_model() {
    let name = "tiny-qwen3";
    let hf_spec = common::spec(name);
    let mut spec = tiny_spec(name);
    assert!(spec.qk_norm && spec.head_dim == 32, "{spec:?}");
    assert_eq!(spec.source_dtype.as_deref(), Some("float16"));
    // What only the source tells: the hash of its config text and the checkpoint's dtype.
    spec.config_hash.clone_from(&hf_spec.config_hash);
    spec.source_dtype.clone_from(&hf_spec.source_dtype);
    assert_eq!(spec, hf_spec);

    let gguf =
        weights::load(&spec, &WeightSource::Gguf(fixture("tiny-qwen3.gguf"))).expect("loads");
    let dir = WeightSource::HfDir(root().join("models").join(name));
    let hf = weights::load(&hf_spec, &dir).expect("safetensors load");
    assert!(hf.tensors.contains_key("layers.1.k_norm.weight"));
    assert_eq!(
        gguf.tensors.keys().collect::<Vec<_>>(),
        hf.tensors.keys().collect::<Vec<_>>()
    );
    for (n, t) in &hf.tensors {
        let g = &gguf.tensors[n];
        assert_eq!(g.shape, t.shape, "{n}");
        let mut want = f32s(t);
        if t.shape.len() == 2 {
            want.iter_mut()
                .for_each(|x| *x = f16::from_f32(*x).to_f32());
        }
        let same = f32s(g)
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{n}: the GGUF tensor is not the safetensors one in f16"
        );
    }

    let r = reference(name);
    let (want, want_greedy) = r.rounded(Precision::Fp16);
    let p = &r.prompts[0];
    let tol = fp32_tol(name);
    let mut e = tiny_engine(name);
    let got = prefill_logits(&mut e, &p.ids, CacheMode::StaticV1);
    let err = rel_err(&got, &want);
    eprintln!(
        "{name} GGUF: relative logits error {err:.2e} against transformers (bound {tol:.1e})"
    );
    assert!(err <= tol, "{name} GGUF: relative logits error {err:.2e}");
    let mut stored = common::engine(name, Precision::Fp16, 1);
    let theirs = prefill_logits(&mut stored, &p.ids, CacheMode::StaticV1);
    let err = rel_err(&got, &theirs);
    eprintln!(
        "{name} GGUF: relative logits error {err:.2e} against the safetensors engine at FP16"
    );
    assert!(err <= tol, "{name} GGUF against safetensors: {err:.2e}");

    let opts = GenerateOptions {
        max_new_tokens: 24,
        ..GenerateOptions::default()
    };
    let mut cache = e.new_cache(1).unwrap();
    let ids = std::slice::from_ref(&p.ids);
    let out = generate_with_static_cache(&mut e, &mut cache, ids, &opts, &mut |_, _| {})
        .expect("generates");
    let top2 = r.rounded_top2(Precision::Fp16);
    check_greedy(
        &format!("{name} GGUF"),
        &out.tokens[0],
        &want_greedy,
        &top2,
        ALL_TOKENS,
        0.0,
    );
}

fn f32s(t: &HostTensor) -> Vec<f32> {
    match &t.data {
        TensorData::F32(v) => v.clone(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        TensorData::Blocks { .. } | TensorData::Quantized { .. } => t.to_f32(),
    }
}

/// A fresh directory under the target dir for files a test writes.
pub fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "llmforge-gguf-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
