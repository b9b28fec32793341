//! Micro benchmark of the CPU decode step (no criterion, no network): builds an engine for a model
//! directory's `config.json` with seeded random weights, prefills a prompt, times greedy decode and
//! prints tokens/s next to the weight bytes streamed per token.
//!
//! `cargo run --release -p runtime --example decode_bench -- models/SmolLM2-135M-Instruct FP32 2 64`
//! (model dir, precision, threads, decode steps).

use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::{HostTensor, TensorData, WeightMap, expected_tensors};
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .map_or("models/SmolLM2-135M-Instruct", String::as_str),
    );
    let precision: Precision = args.get(1).map_or("FP32", String::as_str).parse()?;
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let spec = ModelSpec::from_dir(&dir)?;
    let options = BuildOptions {
        precision,
        max_seq_len: 16 + steps + 1,
        max_batch: 1,
        device: DeviceChoice::Cpu {
            threads: Some(threads),
        },
        quant: runtime::format::QuantFormat::None,
    };
    let weights = random_weights(&spec);
    let mut engine = Engine::build_from_weights(spec, &weights, options, &NoProgress)?;
    let mut cache = engine.new_cache(1)?;
    let prompt = vec![(1..=16u32).collect::<Vec<_>>()];
    let opts = GenerateOptions {
        max_new_tokens: steps + 1,
        mode: CacheMode::StaticV1,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let out = generate_with_static_cache(&mut engine, &mut cache, &prompt, &opts, &mut |_, _| {})?;
    let t = out.timings;
    let tps = t.decode_steps_per_second();
    let bytes = engine.backend().weight_bytes() as f64;
    println!(
        "{} {precision} threads={threads}: ttft {:.1} ms, decode {} steps {:.2} tok/s, {:.1} MB weights/token, {:.2} GB/s effective",
        engine.spec().name,
        t.time_to_first_token.as_secs_f64() * 1e3,
        t.decode_steps,
        tps,
        bytes / 1e6,
        bytes * tps / 1e9
    );
    Ok(())
}

/// Seeded uniform(-0.05, 0.05) weights for every tensor the spec needs (speed does not depend on values).
fn random_weights(spec: &ModelSpec) -> WeightMap {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut map = WeightMap::default();
    for (name, shape) in expected_tensors(spec) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        map.tensors.insert(
            name,
            HostTensor {
                shape,
                data: TensorData::F32(data),
            },
        );
    }
    map
}
