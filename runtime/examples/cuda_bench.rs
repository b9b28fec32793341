//! GPU benchmark and reference dump for the CUDA engine (used by `bench/gpu_bench.sh` and
//! `bench/gpu_verify.sh`; needs a GPU).
//!
//! ```text
//! cuda_bench DIR [--weights hf|random] [--precision FP16] [--prompt-len 16] [--new-tokens 128]
//!            [--reps 3] [--ids prompt.json] [--dump out.json] [--label name]
//!            [--quant none|int8|int4|fp8]
//! ```
//! `DIR` holds `config.json` (and `model.safetensors` for `--weights hf`). `--weights random` uses
//! seeded uniform weights (speed does not depend on values). `--ids` reads `{"input_ids": [...]}`,
//! otherwise the prompt is a fixed id sequence. `--dump` writes the prompt's last-position logits and
//! the greedy continuation as JSON (compared with transformers by `bench/gpu_hf.py compare`).
//! Prints one JSON line of timings: TTFT and decode ms/token (median over `--reps` after a warm-up
//! generation), weight bytes streamed per decode step, build seconds.

use half::{bf16, f16};
use rayon::prelude::*;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::{HostTensor, TensorData, WeightMap, WeightSource, expected_tensors};
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().ok_or("usage: cuda_bench DIR [options]")?);
    let precision: Precision = arg(&args, "--precision").unwrap_or("FP16".into()).parse()?;
    let prompt_len: usize = arg(&args, "--prompt-len").unwrap_or("16".into()).parse()?;
    let new_tokens: usize = arg(&args, "--new-tokens").unwrap_or("128".into()).parse()?;
    let reps: usize = arg(&args, "--reps").unwrap_or("3".into()).parse()?;
    let random = arg(&args, "--weights").as_deref() == Some("random");
    let quant: runtime::format::QuantFormat =
        arg(&args, "--quant").unwrap_or("none".into()).parse()?;
    let spec = ModelSpec::from_dir(&dir)?;
    let prompt: Vec<u32> = match arg(&args, "--ids") {
        Some(p) => {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p)?)?;
            v["input_ids"]
                .as_array()
                .ok_or("--ids: no input_ids array")?
                .iter()
                .map(|x| x.as_u64().map(|x| x as u32).ok_or("--ids: not an id"))
                .collect::<Result<_, _>>()?
        }
        None => (0..prompt_len)
            .map(|i| ((i * 1009 + 17) % spec.vocab_size) as u32)
            .collect(),
    };
    let options = BuildOptions {
        precision,
        max_seq_len: prompt.len() + new_tokens,
        max_batch: 1,
        device: DeviceChoice::Cuda { ordinal: 0 },
        quant,
    };
    let t0 = Instant::now();
    let mut engine = if random {
        Engine::build_from_weights(
            spec.clone(),
            &random_weights(&spec, precision),
            options,
            &NoProgress,
        )?
    } else {
        Engine::build(
            spec.clone(),
            &WeightSource::HfDir(dir.clone()),
            options,
            &NoProgress,
        )?
    };
    let build_s = t0.elapsed().as_secs_f64();
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        mode: CacheMode::StaticV1,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let prompts = vec![prompt.clone()];
    let mut cache = engine.new_cache(1)?;
    let first =
        generate_with_static_cache(&mut engine, &mut cache, &prompts, &opts, &mut |_, _| {})?;
    if let Some(out) = arg(&args, "--dump") {
        let positions: Vec<u32> = (0..prompt.len() as u32).collect();
        let step = StepInputs {
            input_ids: &prompt,
            position_ids: &positions,
            batch: 1,
            seq_len: prompt.len(),
            start_idx: 0,
            end_idx: prompt.len(),
        };
        let logits = engine.forward(
            &step,
            &mut cache.layers_mut(),
            CacheMode::StaticV1,
            LogitRows::Last,
        )?;
        let dump = serde_json::json!({
            "input_ids": prompt,
            "last_logits": logits.data,
            "greedy": first.tokens[0],
        });
        std::fs::write(out, serde_json::to_vec(&dump)?)?;
    }
    let mut ttft = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..reps {
        let out =
            generate_with_static_cache(&mut engine, &mut cache, &prompts, &opts, &mut |_, _| {})?;
        let t = out.timings;
        ttft.push(t.time_to_first_token.as_secs_f64() * 1e3);
        decode.push(t.decode_time.as_secs_f64() * 1e3 / t.decode_steps.max(1) as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let line = serde_json::json!({
        "impl": arg(&args, "--label").unwrap_or("ours".into()),
        "gpu": engine.backend().device_name(),
        "model": spec.name,
        "precision": precision.as_str(),
        "quant": quant.as_str(),
        "prompt_len": prompt.len(),
        "new_tokens": new_tokens,
        "ttft_ms": median(&mut ttft),
        "decode_ms_per_token": median(&mut decode),
        "weight_bytes_per_step": engine.backend().weight_bytes(),
        "build_s": build_s,
    });
    println!("{line}");
    Ok(())
}

/// Seeded uniform(-0.05, 0.05) weights in the engine's precision, generated in parallel per tensor.
fn random_weights(spec: &ModelSpec, precision: Precision) -> WeightMap {
    let tensors: Vec<(String, HostTensor)> = expected_tensors(spec)
        .into_par_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let mut state = 0x2545_f491_4f6c_dd1du64 ^ ((i as u64 + 1) * 0x9E37_79B9_7F4A_7C15);
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            };
            let data = if shape.len() == 1 {
                // Norm weights near 1, biases small.
                let base = if name.ends_with("norm.weight") {
                    1.0
                } else {
                    0.0
                };
                TensorData::F32((0..n).map(|_| base + next()).collect())
            } else {
                match precision {
                    Precision::Fp32 => TensorData::F32((0..n).map(|_| next()).collect()),
                    Precision::Fp16 => {
                        TensorData::F16((0..n).map(|_| f16::from_f32(next())).collect())
                    }
                    Precision::Bf16 => {
                        TensorData::BF16((0..n).map(|_| bf16::from_f32(next())).collect())
                    }
                }
            };
            (name, HostTensor { shape, data })
        })
        .collect();
    let mut map = WeightMap::default();
    map.tensors.extend(tensors);
    map
}
