//! What build-time weight-only quantization (`--quant_format int8|int4|fp8`) costs and gains on the
//! CPU: for a model and a few prompts, each format's engine against the FP32 engine of the same
//! weights — `max |Δ| / max |logit|` over the prompts' prefill logits, how many of 64 greedy tokens
//! agree (up to the first that differs, and in all), the matrices each format leaves dense — and
//! decode tokens/s of each engine at the given thread count.
//!
//! `cargo run --release -p runtime --example quant_accuracy -- MODEL_DIR|GGUF [THREADS] [STEPS]`

use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::{QuantFormat, WeightFormat};
use runtime::generate::{GenerateOptions, GenerateOutput, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::step::{LogitRows, StepInputs};
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;

const PROMPTS: [&str; 3] = [
    "What is parallel programming?",
    "The capital of France is",
    "def fibonacci(n):\n    ",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = PathBuf::from(
        args.first()
            .ok_or("usage: MODEL_DIR|GGUF [THREADS] [STEPS]")?,
    );
    let threads: usize = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let (spec, source) = if path.extension().is_some_and(|e| e == "gguf") {
        let spec = GgufFile::open(&path)?.spec("model")?;
        (spec, WeightSource::Gguf(path.clone()))
    } else {
        (
            ModelSpec::from_dir(&path)?,
            WeightSource::HfDir(path.clone()),
        )
    };
    // The model's tokenizer (a GGUF file's, or the directory's tokenizer.json).
    let tokenizer = match &source {
        WeightSource::Gguf(p) => runtime::tokenize::Tokenizer::from_gguf(&GgufFile::open(p)?)?,
        _ => runtime::tokenize::Tokenizer::from_file(&path.join("tokenizer.json"))?,
    };
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| tokenizer.encode(p, true))
        .collect::<Result<_, _>>()?;
    let build = |quant: QuantFormat| -> Result<Engine, Box<dyn std::error::Error>> {
        let options = BuildOptions {
            precision: Precision::Fp32,
            max_seq_len: 128.max(32 + steps + 1),
            max_batch: 1,
            device: DeviceChoice::Cpu {
                threads: Some(threads),
            },
            quant,
        };
        Ok(Engine::build(spec.clone(), &source, options, &NoProgress)?)
    };
    let plan = runtime::plan::ModelPlan::new(&spec);
    matrix_errors(&spec, &source)?;
    let mut reference = build(QuantFormat::None)?;
    let want: Vec<(Vec<f32>, Vec<u32>)> = prompts
        .iter()
        .map(|p| run(&mut reference, p, steps))
        .collect::<Result<_, _>>()?;
    println!(
        "{} ({}): {threads} threads, {steps} greedy tokens, {} prompts",
        spec.name,
        path.display(),
        prompts.len()
    );
    for quant in [
        QuantFormat::None,
        QuantFormat::Int8,
        QuantFormat::Int4,
        QuantFormat::Fp8,
    ] {
        let mut e = build(quant)?;
        let dense: Vec<String> = plan.layers[0]
            .linears()
            .iter()
            .filter(|l| {
                WeightFormat::of_linear_as(l, Precision::Fp32, quant)
                    .dense()
                    .is_some()
            })
            .map(|l| {
                let names: Vec<&str> = l
                    .parts
                    .iter()
                    .map(|p| p.name.rsplit('.').next().unwrap_or(""))
                    .collect();
                format!("{}[in {}]", names.join("|"), l.in_features)
            })
            .collect();
        let (mut err, mut prefix, mut same) = (0.0f32, Vec::new(), 0);
        for (p, (logits, tokens)) in prompts.iter().zip(&want) {
            let (got, toks) = run(&mut e, p, steps)?;
            let scale = logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let diff = got
                .iter()
                .zip(logits)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            err = err.max(diff / scale);
            prefix.push(toks.iter().zip(tokens).take_while(|(a, b)| a == b).count());
            same += toks.iter().zip(tokens).filter(|(a, b)| a == b).count();
        }
        let tps = decode_speed(&mut e, &prompts[0], steps)?;
        println!(
            "{quant:>5}: max|Δ|/max|logit| {err:.3e} · greedy prefix agreement {prefix:?} of {steps} \
             · {same}/{} tokens equal · decode {tps:.2} tok/s · linear weights {:.1} MB · dense under \
             this format: {}",
            steps * prompts.len(),
            e.backend().weight_bytes() as f64 / 1e6,
            if dense.is_empty() {
                "none".to_string()
            } else {
                dense.join(", ")
            }
        );
    }
    Ok(())
}

/// Prefill logits of `prompt` and its greedy continuation of `steps` tokens.
fn run(
    e: &mut Engine,
    prompt: &[u32],
    steps: usize,
) -> Result<(Vec<f32>, Vec<u32>), Box<dyn std::error::Error>> {
    let mut cache = e.new_cache(1)?;
    let positions: Vec<u32> = (0..prompt.len() as u32).collect();
    let step = StepInputs {
        input_ids: prompt,
        position_ids: &positions,
        batch: 1,
        seq_len: prompt.len(),
        start_idx: 0,
        end_idx: prompt.len(),
    };
    let logits = {
        let mut layers = cache.layers_mut();
        e.forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::All)?
            .data
    };
    let out = greedy(e, prompt, steps)?;
    Ok((logits, out.tokens[0].clone()))
}

/// A greedy run of `steps` new tokens after `prompt`, through a fresh static cache.
fn greedy(
    e: &mut Engine,
    prompt: &[u32],
    steps: usize,
) -> Result<GenerateOutput, Box<dyn std::error::Error>> {
    let mut cache = e.new_cache(1)?;
    let opts = GenerateOptions {
        max_new_tokens: steps,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let out = generate_with_static_cache(
        e,
        &mut cache,
        std::slice::from_ref(&prompt.to_vec()),
        &opts,
        &mut |_, _| {},
    )?;
    Ok(out)
}

/// Decode tokens/s of a greedy run (the best of three).
fn decode_speed(
    e: &mut Engine,
    prompt: &[u32],
    steps: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let out = greedy(e, prompt, steps + 1)?;
        best = best.max(out.timings.decode_steps_per_second());
    }
    Ok(best)
}

/// Each format's relative reconstruction error `‖w − deq(q(w))‖ / ‖w‖` of the first layer's
/// linears, and the largest `|w| / rms(w)` of a row (how far outliers stretch a row's scale).
fn matrix_errors(
    spec: &ModelSpec,
    source: &WeightSource,
) -> Result<(), Box<dyn std::error::Error>> {
    use runtime::format::WeightQuant;
    use runtime::weights::quantize::{dequantize_rows, quantize};
    let map = runtime::weights::load(spec, source)?;
    for name in ["q", "k", "v", "o", "gate", "up", "down"] {
        let Some(t) = map.tensors.get(&format!("layers.0.{name}.weight")) else {
            continue;
        };
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let w = t.to_f32();
        let norm = w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let stretch = w
            .chunks_exact(cols)
            .map(|r| {
                let rms = (r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / cols as f64).sqrt();
                r.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64)) / rms
            })
            .fold(0.0f64, f64::max);
        let mut line = format!("layers.0.{name} [{rows}x{cols}] max row amax/rms {stretch:.1}:");
        for q in WeightQuant::ALL {
            if !q.fits(cols) {
                line += &format!(" {} dense,", q.name());
                continue;
            }
            let m = quantize(q, &w, rows, cols)?;
            let mut d = vec![0.0; w.len()];
            dequantize_rows(q, cols, &m.codes, &m.scales, &mut d);
            let e = w
                .iter()
                .zip(&d)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            line += &format!(" {} {:.2e},", q.name(), e / norm);
        }
        println!("{}", line.trim_end_matches(','));
    }
    Ok(())
}
