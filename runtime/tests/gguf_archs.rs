//! GGUF files of the newer families: the tiny Gemma 3, Phi-3, Qwen3 and sliding-window Mistral of
//! `models/` written as llama.cpp's converter writes them with `--outtype f32`
//! (`scripts/make_gguf_arch_fixtures.py`: Gemma 3's norms stored as `w + 1`, Phi-3's q/k/v and
//! gate/up kept fused, Mistral as `llama` with its Q/K rows permuted) and quantised to Q8_0 by
//! llama.cpp's own quantizer. Each F32 file must be the safetensors model: the spec its metadata gives
//! is the one its config.json gives, every canonical tensor is the safetensors loader's bit for bit
//! (so Gemma's one is added once), and the engine built from the file alone gives the safetensors
//! engine's logits bit for bit and transformers' greedy tokens. Each Q8_0 file loads dequantised and
//! with its blocks kept, the two giving the same logits.
//!
//! llama.cpp's own logits on the same files, against transformers', are in
//! `tests/fixtures/gguf/llamacpp.json` (made by the same script).

mod common;

use common::greedy::{ALL_TOKENS, check_greedy};
use common::{MAX_SEQ, fp32_tol, prefill_logits, reference, rel_err, root};
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::gguf::GgufFile;
use runtime::weights::{self, TensorData, WeightSource};
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;

const MODELS: [&str; 4] = [
    "tiny-gemma3",
    "tiny-phi3",
    "tiny-qwen3",
    "tiny-mistral-window",
];

fn fixture(name: &str, kind: &str) -> PathBuf {
    root()
        .join("tests/fixtures/gguf")
        .join(format!("{name}-{kind}.gguf"))
}

fn gguf_spec(name: &str, kind: &str) -> ModelSpec {
    GgufFile::open(&fixture(name, kind))
        .expect("opens (run scripts/make_gguf_arch_fixtures.py)")
        .spec(name)
        .expect("spec")
}

fn build(spec: ModelSpec, source: &WeightSource, quant: QuantFormat) -> Engine {
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device: DeviceChoice::Cpu { threads: Some(2) },
        quant,
    };
    Engine::build(spec, source, options, &NoProgress).expect("engine builds")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn the_metadata_gives_the_config_json_spec() {
    for name in MODELS {
        let hf = common::spec(name);
        let mut s = gguf_spec(name, "f32");
        assert_eq!(s.source_dtype.as_deref(), Some("float32"), "{name}");
        // What only the source tells: the hash of its config text and the checkpoint's dtype.
        s.config_hash.clone_from(&hf.config_hash);
        s.source_dtype.clone_from(&hf.source_dtype);
        // GGUF keeps the score scale as an f32, the engines use it as one.
        assert_eq!(
            s.attention_scale.map(|x| x as f32),
            hf.attention_scale.map(|x| x as f32),
            "{name}"
        );
        s.attention_scale = hf.attention_scale;
        assert_eq!(s, hf, "{name}");
    }
}

#[test]
fn the_tensors_are_the_safetensors_ones() {
    for name in MODELS {
        let spec = common::spec(name);
        let gguf = weights::load(&spec, &WeightSource::Gguf(fixture(name, "f32"))).expect("loads");
        let dir = WeightSource::HfDir(root().join("models").join(name));
        let hf = weights::load(&spec, &dir).expect("safetensors load");
        assert_eq!(
            gguf.tensors.keys().collect::<Vec<_>>(),
            hf.tensors.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (n, t) in &hf.tensors {
            let g = &gguf.tensors[n];
            assert_eq!(g.shape, t.shape, "{name} {n}");
            assert!(
                bits(&g.to_f32()) == bits(&t.to_f32()),
                "{name} {n}: the GGUF tensor is not the safetensors one"
            );
        }
    }
}

#[test]
fn the_file_alone_runs_as_the_safetensors_model() {
    for name in MODELS {
        let r = reference(name);
        let source = WeightSource::Gguf(fixture(name, "f32"));
        let mut e = build(gguf_spec(name, "f32"), &source, QuantFormat::None);
        let mut hf = common::engine(name, Precision::Fp32, 1);
        let tol = fp32_tol(name);
        for (i, p) in r.prompts.iter().enumerate() {
            let got = prefill_logits(&mut e, &p.ids, CacheMode::StaticV1);
            let theirs = prefill_logits(&mut hf, &p.ids, CacheMode::StaticV1);
            assert!(
                bits(&got) == bits(&theirs),
                "{name} prompt {i}: logits differ from the safetensors engine's"
            );
            let want: Vec<f32> = p.logits.iter().flatten().copied().collect();
            let err = rel_err(&got, &want);
            eprintln!(
                "{name} GGUF prompt {i}: relative logits error {err:.2e} against transformers"
            );
            assert!(err <= tol, "{name} prompt {i}: {err:.2e} > {tol:.1e}");

            let opts = GenerateOptions {
                max_new_tokens: p.greedy.len(),
                ..GenerateOptions::default()
            };
            let mut cache = e.new_cache(1).unwrap();
            let ids = std::slice::from_ref(&p.ids);
            let out = generate_with_static_cache(&mut e, &mut cache, ids, &opts, &mut |_, _| {})
                .expect("generates");
            let label = format!("{name} GGUF prompt {i}");
            check_greedy(&label, &out.tokens[0], &p.greedy, &p.top2, ALL_TOKENS, 0.0);
        }
    }
}

#[test]
fn llama_cpp_q8_0_files_load_dequantised_and_as_blocks() {
    let ids: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % 256).collect();
    for name in MODELS {
        let spec = gguf_spec(name, "q8_0");
        assert_eq!(spec.source_dtype.as_deref(), Some("Q8_0"), "{name}");
        let source = WeightSource::Gguf(fixture(name, "q8_0"));
        let kept = weights::load_as(&spec, &source, QuantFormat::Gguf).expect("loads");
        let blocks = kept
            .tensors
            .values()
            .filter(|t| matches!(t.data, TensorData::Blocks { .. }))
            .count();
        // Every projection of every layer (Phi-3's fused ones split into their parts).
        let per_layer = 7;
        assert!(
            blocks >= per_layer * spec.num_layers,
            "{name}: only {blocks} tensors kept as blocks"
        );
        let mut dense = build(spec.clone(), &source, QuantFormat::None);
        let mut packed = build(spec, &source, QuantFormat::Gguf);
        let want = prefill_logits(&mut dense, &ids, CacheMode::StaticV1);
        let got = prefill_logits(&mut packed, &ids, CacheMode::StaticV1);
        assert!(bits(&got) == bits(&want), "{name}: kept blocks differ");

        let f32_source = WeightSource::Gguf(fixture(name, "f32"));
        let mut full = build(gguf_spec(name, "f32"), &f32_source, QuantFormat::None);
        let exact = prefill_logits(&mut full, &ids, CacheMode::StaticV1);
        let err = rel_err(&got, &exact);
        eprintln!("{name} Q8_0: relative logits error {err:.2e} against the F32 file");
        assert!(err < 0.1, "{name} Q8_0: {err:.2e} from the F32 file");
    }
}

/// Byte offset just after the length-prefixed string `s` (a metadata key) in `bytes`.
fn after_key(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("key in fixture");
    at + needle.len()
}

/// The spec or weights error of `name`'s F32 file patched by `patch`.
fn error_of(name: &str, tag: &str, patch: impl Fn(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(fixture(name, "f32")).unwrap();
    patch(&mut bytes);
    let dir = std::env::temp_dir().join(format!("llmforge-gguf-archs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.gguf"));
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).expect("header still valid");
    let err = match file.spec(name) {
        Err(e) => e,
        Ok(spec) => match weights::load(&spec, &WeightSource::Gguf(path.clone())) {
            Err(e) => e,
            Ok(_) => panic!("{tag}: accepted"),
        },
    };
    err.to_string()
}

#[test]
fn missing_or_bad_metadata_is_refused_by_name() {
    // A u32 value follows its key's 4-byte type.
    let set_u32 = |key: &'static str, v: u32| {
        move |b: &mut Vec<u8>| {
            let at = after_key(b, key) + 4;
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    };
    let rename = |key: &'static str| {
        move |b: &mut Vec<u8>| {
            let at = after_key(b, key);
            b[at - 1] = b'#';
        }
    };
    let eps = "gemma3.attention.layer_norm_rms_epsilon";
    let msg = error_of("tiny-gemma3", "eps", rename(eps));
    assert!(msg.contains(eps) && msg.contains("missing"), "{msg}");
    let pattern = "gemma3.attention.sliding_window_pattern";
    let msg = error_of("tiny-gemma3", "pattern", set_u32(pattern, 0));
    assert!(msg.contains(pattern), "{msg}");
    let layers = "phi3.block_count";
    let msg = error_of("tiny-phi3", "layers", rename(layers));
    assert!(msg.contains(layers) && msg.contains("missing"), "{msg}");
    // Two KV heads more than the fused q/k/v rows hold.
    let kv = "phi3.attention.head_count_kv";
    let msg = error_of("tiny-phi3", "kv", set_u32(kv, 4));
    assert!(msg.contains("blk.0.attn_qkv.weight"), "{msg}");
    let scaling = "gemma3.rope.scaling.type";
    let msg = error_of("tiny-gemma3", "scaling", |b: &mut Vec<u8>| {
        // The value "linear" (a length-prefixed string after the 4-byte type) becomes "lineaR".
        let at = after_key(b, scaling) + 4 + 8;
        b[at + 5] = b'R';
    });
    assert!(msg.contains(scaling) && msg.contains("lineaR"), "{msg}");
}
