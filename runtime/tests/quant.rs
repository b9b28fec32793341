//! Build-time weight-only quantization (`--quant_format int8|int4|fp8`) on the CPU, against the
//! committed references of `scripts/make_quant_fixtures.py` (`tests/fixtures/quant/`):
//!
//! * the quantization itself equals torchao's (`choose_qparams_affine` / `quantize_affine`) and
//!   torch's float8 cast bit for bit: codes, scales and dequantised values;
//! * an engine of each format, in every cache mode, gives transformers' fp32 logits of the same
//!   model with its layer linears replaced by their torchao-quantized-then-dequantised weights —
//!   exactly the function the quantized engine computes — within the FP32 parity bound
//!   ([`BOUND`]), and its 24 greedy tokens; the embedding and lm_head stay dense, and int4 leaves a
//!   linear whose input is not whole groups of 128 dense (both as the fixture's model does);
//! * the engine's weight bytes are admission's estimate, and an engine file round trip keeps the
//!   logits bit for bit and refuses another quant format by name.

mod common;

use common::quant_fixture::{f32s, json, model_dir, u32s};
use common::{prefill_logits, rel_err};
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::{QuantFormat, WeightQuant};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::WeightSource;
use runtime::weights::quantize::{dequantize_rows, quantize};
use runtime::{ModelSpec, Precision};

/// `max |ours - transformers| / max |transformers|` over a prompt's prefill logits: the FP32 parity
/// bound of these models (`common::fp32_tol`); the engine and transformers compute from the same f32
/// weights. Measured: see `bench/RESULTS.md` (weight-only quantization).
const BOUND: f32 = 1.5e-5;

const MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen3", "tiny-llama-w128"];

const FORMATS: [(QuantFormat, &str); 3] = [
    (QuantFormat::Int8, "int8"),
    (QuantFormat::Int4, "int4"),
    (QuantFormat::Fp8, "fp8"),
];

const MAX_SEQ: usize = 64;

fn spec(name: &str) -> ModelSpec {
    ModelSpec::from_dir(&model_dir(name)).expect("config parses")
}

fn options(quant: QuantFormat) -> BuildOptions {
    BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device: DeviceChoice::Cpu { threads: Some(2) },
        quant,
    }
}

fn engine(name: &str, quant: QuantFormat) -> Engine {
    let source = WeightSource::HfDir(model_dir(name));
    Engine::build(spec(name), &source, options(quant), &NoProgress).expect("engine builds")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn quantization_equals_torchao_bit_for_bit() {
    let p = json("primitives.json");
    let rows = p["rows"].as_u64().unwrap() as usize;
    let cols = p["cols"].as_u64().unwrap() as usize;
    let w = f32s(&p["w"]);
    for (_, name) in FORMATS {
        let q = WeightQuant::ALL
            .into_iter()
            .find(|q| q.name() == name)
            .unwrap();
        let r = &p[name];
        let m = quantize(q, &w, rows, cols).expect("quantizes");
        assert_eq!(bits(&m.scales), bits(&f32s(&r["scales"])), "{name} scales");
        // The reference's codes, one integer per weight (int4 unpacked), as our layout stores them.
        let codes: Vec<i64> = r["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap())
            .collect();
        let ours: Vec<i64> = match q {
            WeightQuant::Int8 => m.codes.iter().map(|&c| c as i8 as i64).collect(),
            WeightQuant::Fp8 => m.codes.iter().map(|&c| c as i64).collect(),
            WeightQuant::Int4 => m
                .codes
                .iter()
                .flat_map(|&b| [b & 0xF, b >> 4])
                .map(|n| runtime::weights::quantize::int4_value(n) as i64)
                .collect(),
        };
        let differ = ours.iter().zip(&codes).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "{name}: {differ} codes differ from the reference"
        );
        assert_eq!(ours.len(), codes.len());
        let mut deq = vec![0.0; rows * cols];
        dequantize_rows(q, cols, &m.codes, &m.scales, &mut deq);
        assert_eq!(bits(&deq), bits(&f32s(&r["dequantised"])), "{name} values");
    }
}

#[test]
fn quantized_engines_match_transformers_on_the_dequantised_weights() {
    let opts = GenerateOptions {
        max_new_tokens: 24,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    for name in MODELS {
        let f = json(&format!("{name}.json"));
        let prompt = u32s(&f["prompt"]);
        for (quant, fmt) in FORMATS {
            let r = &f["formats"][fmt];
            let want = f32s(&r["logits"]);
            let mut e = engine(name, quant);
            let expect =
                runtime::admission::weight_bytes_kept(e.spec(), Precision::Fp32, quant, &|_| None);
            assert_eq!(e.backend().weight_bytes() as u64 + norms(e.spec()), expect);
            for mode in CacheMode::ALL {
                let got = prefill_logits(&mut e, &prompt, mode);
                let err = rel_err(&got, &want);
                println!("{name} {fmt} {mode:?}: max |Δ| / max |logit| = {err:.2e}");
                assert!(
                    err <= BOUND,
                    "{name} {fmt} {mode:?}: {err:.2e} > {BOUND:.1e}"
                );
                let mut o = opts.clone();
                o.mode = mode;
                let mut cache = e.new_cache(1).expect("cache");
                let out = generate_with_static_cache(
                    &mut e,
                    &mut cache,
                    std::slice::from_ref(&prompt),
                    &o,
                    &mut |_, _| {},
                )
                .expect("generates");
                assert_eq!(out.tokens[0], u32s(&r["greedy"]), "{name} {fmt} {mode:?}");
            }
        }
    }
}

/// The bytes of the norms' weights and biases, which admission counts and the backend's
/// `weight_bytes` (the streamed matrices and biases) does not; no embedding table is streamed.
fn norms(spec: &ModelSpec) -> u64 {
    let plan = runtime::plan::ModelPlan::new(spec);
    let vectors: usize = plan
        .tensors()
        .iter()
        .filter(|(n, s)| s.len() == 1 && !n.ends_with(".bias"))
        .map(|(_, s)| s[0])
        .sum();
    let embed = match plan.tied {
        true => 0,
        false => plan.vocab_size * plan.hidden_size,
    };
    4 * (vectors + embed) as u64
}

/// Which linears each format quantizes: every layer linear for int8 and fp8; for int4, those whose
/// input is whole groups of 128 (the fixture's model left the others dense, and the logits agree).
/// A quantized engine's weights are smaller than the FP32 engine's by the matrices it quantized.
#[test]
fn int4_keeps_narrow_linears_dense() {
    let s = spec("tiny-llama");
    let plan = runtime::plan::ModelPlan::new(&s);
    for l in &plan.layers {
        for lin in l.linears() {
            let f = runtime::format::WeightFormat::of_linear_as(
                lin,
                Precision::Fp32,
                QuantFormat::Int4,
            );
            assert_eq!(
                f.dense().is_none(),
                lin.in_features % 128 == 0,
                "{}",
                lin.parts[0].name
            );
        }
    }
    let dense = json("tiny-llama.json")["formats"]["int4"]["dense"].clone();
    // q, k, v, o, gate and up of both layers (hidden 64) stay dense; down (intermediate 128) not.
    assert_eq!(dense.as_array().map(Vec::len), Some(12), "{dense}");
    let f32_bytes = engine("tiny-llama", QuantFormat::None)
        .backend()
        .weight_bytes();
    for (quant, _) in FORMATS {
        let b = engine("tiny-llama", quant).backend().weight_bytes();
        assert!(b < f32_bytes, "{quant}: {b} >= {f32_bytes}");
    }
}

#[test]
fn an_engine_file_keeps_quantized_weights_and_its_quant_format() {
    let ids: Vec<u32> = (0..12).map(|i| (i * 53 + 7) % 256).collect();
    for (quant, fmt) in FORMATS {
        let name = "tiny-llama-w128";
        let mut built = engine(name, quant);
        let path = std::env::temp_dir().join(format!(
            "llmforge-quant-{fmt}-{}.engine",
            std::process::id()
        ));
        built.save(&path).expect("saves");
        let mut loaded = Engine::load(&path, &spec(name), &options(quant)).expect("loads");
        for mode in CacheMode::ALL {
            let want = prefill_logits(&mut built, &ids, mode);
            let got = prefill_logits(&mut loaded, &ids, mode);
            assert!(
                bits(&got) == bits(&want),
                "{fmt} {mode:?}: loaded logits differ"
            );
        }
        assert_eq!(
            loaded.backend().weight_bytes(),
            built.backend().weight_bytes()
        );
        let other = if quant == QuantFormat::Int8 {
            QuantFormat::Fp8
        } else {
            QuantFormat::Int8
        };
        let err = match Engine::load(&path, &spec(name), &options(other)) {
            Ok(_) => panic!("a {fmt} engine file loaded as {other}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("quant format") && err.contains(fmt), "{err}");
        std::fs::remove_file(&path).ok();
    }
}
