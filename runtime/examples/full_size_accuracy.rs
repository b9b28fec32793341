//! The Rust side of `bench/full_size_accuracy.sh`: a full-size model config with seeded synthetic
//! weights, its engine in one weight format, and the logits of every position of a fixed prompt.
//!
//! The weights: every matrix (the embedding, tied to the lm_head when the config ties them, and every
//! projection) drawn from N(0, 0.02²) in f32 (Box–Muller on a ChaCha8 stream per tensor and chunk of
//! 2^16 elements, so the values depend on the seed and the tensor's name only), norm gains 1, biases
//! 0. Unlike `weights::synthetic` (whose values are bf16, so BF16 storage would change nothing), the
//! values carry all of f32's bits, so FP16 and BF16 storage round them as they would a checkpoint.
//!
//! ```text
//! full_size_accuracy weights CONFIG_DIR HF_DIR [--seed S]
//!     HF_DIR/config.json (CONFIG_DIR's) and HF_DIR/model.safetensors: the weights in f32 under
//!     transformers' names (a tied lm_head left out), for bench/full_size_accuracy.py to write as GGUF
//! full_size_accuracy logits CONFIG_DIR FORMAT OUT.f32 --ids 1,2,3 [--seed S] [--threads N]
//!     FORMAT: fp32 | fp16 | bf16 (dense, that storage precision) | int8 | int4 | fp8 (quantized at
//!     build from the f32 weights, FP32 engine) | gguf:FILE | gguf-none:FILE (the file's spec and
//!     tensors with `--quant_format gguf` or `none`, FP32 engine; its spec must be CONFIG_DIR's).
//!     Writes the prefill logits of every prompt position, `[n, vocab]` little-endian f32, and prints
//!     one JSON line (format, engine build and forward seconds, weight bytes per decode step).
//! ```
//!
//! `cargo run --release -p runtime --no-default-features --example full_size_accuracy -- …`

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::progress::NoProgress;
use runtime::step::{LogitRows, StepInputs};
use runtime::weights::gguf::GgufFile;
use runtime::weights::{self, HostTensor, TensorData, WeightMap, WeightSource};
use runtime::{ModelSpec, Precision};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Standard deviation of every matrix (transformers' default `initializer_range`).
const STD: f64 = 0.02;

/// Elements per independently seeded chunk.
const CHUNK: usize = 1 << 16;

const USAGE: &str = "usage: full_size_accuracy weights CONFIG_DIR HF_DIR [--seed S]\n       \
                     full_size_accuracy logits CONFIG_DIR FORMAT OUT.f32 --ids 1,2,3 [--seed S] \
                     [--threads N]";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let (mut seed, mut threads, mut ids) = (0u64, 2usize, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" => seed = it.next().ok_or(USAGE)?.parse()?,
            "--threads" => threads = it.next().ok_or(USAGE)?.parse()?,
            "--ids" => {
                ids = Some(
                    it.next()
                        .ok_or(USAGE)?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<u32>, _>>()?,
                )
            }
            _ => positional.push(a.as_str()),
        }
    }
    match positional.as_slice() {
        ["weights", config, hf] => write_weights(Path::new(config), Path::new(hf), seed),
        ["logits", config, format, out] => logits(
            Path::new(config),
            format,
            Path::new(out),
            &ids.ok_or("logits needs --ids")?,
            seed,
            threads,
        ),
        _ => Err(USAGE.into()),
    }
}

/// The seeded weights of `spec`, checked and with a tied lm_head filled (`weights::finish`).
fn generate(spec: &ModelSpec, seed: u64) -> Res<WeightMap> {
    let mut map = WeightMap::default();
    for (name, shape) in weights::expected_tensors(spec) {
        if name == "lm_head.weight" && spec.tie_word_embeddings {
            continue;
        }
        let n: usize = shape.iter().product();
        let data = if shape.len() == 2 {
            normal(n, stream_key(seed, &name))
        } else {
            vec![
                if name.ends_with("norm.weight") {
                    1.0
                } else {
                    0.0
                };
                n
            ]
        };
        map.tensors.insert(
            name,
            HostTensor {
                shape,
                data: TensorData::F32(data),
            },
        );
    }
    Ok(weights::finish(spec, map)?)
}

/// A 64-bit key for one tensor's streams: splitmix64 over the seed and an FNV-1a hash of the name.
fn stream_key(seed: u64, name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h.rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` draws of N(0, STD²) rounded to f32: Box–Muller in f64, a pair of 53-bit uniforms per pair of
/// values, one ChaCha8 stream per chunk.
fn normal(n: usize, key: u64) -> Vec<f32> {
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut rng = ChaCha8Rng::seed_from_u64(key);
            rng.set_stream(i as u64);
            let mut uniform = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            for pair in chunk.chunks_mut(2) {
                let r = (-2.0 * uniform().ln()).sqrt() * STD;
                let t = std::f64::consts::TAU * uniform();
                pair[0] = (r * t.cos()) as f32;
                if let Some(x) = pair.get_mut(1) {
                    *x = (r * t.sin()) as f32;
                }
            }
        });
    out
}

fn write_weights(config: &Path, hf: &Path, seed: u64) -> Res<()> {
    let spec = ModelSpec::from_dir(config)?;
    let map = generate(&spec, seed)?;
    let (mut sum, mut sq, mut count) = (0f64, 0f64, 0usize);
    for t in map.tensors.values().filter(|t| t.shape.len() == 2) {
        let TensorData::F32(v) = &t.data else {
            unreachable!("generated matrices are f32")
        };
        sum += v.iter().map(|&x| x as f64).sum::<f64>();
        sq += v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
        count += v.len();
    }
    let mean = sum / count as f64;
    weights::synthetic::write_hf_dir(&spec, &config.join("config.json"), &map, hf)?;
    println!(
        "{}: {count} matrix elements (a tied lm_head counted twice), mean {mean:.3e}, std {:.5}, \
         seed {seed}, written to {}",
        spec.name,
        (sq / count as f64 - mean * mean).sqrt(),
        hf.display()
    );
    Ok(())
}

fn logits(
    config: &Path,
    format: &str,
    out: &Path,
    ids: &[u32],
    seed: u64,
    threads: usize,
) -> Res<()> {
    let spec = ModelSpec::from_dir(config)?;
    let options = |precision: Precision, quant: QuantFormat| BuildOptions {
        precision,
        max_seq_len: ids.len().next_multiple_of(64),
        max_batch: 1,
        device: DeviceChoice::Cpu {
            threads: Some(threads),
        },
        quant,
    };
    let t0 = Instant::now();
    let (mut engine, generate_s) = if let Some((quant, file)) = format
        .strip_prefix("gguf:")
        .map(|f| (QuantFormat::Gguf, f))
        .or_else(|| {
            format
                .strip_prefix("gguf-none:")
                .map(|f| (QuantFormat::None, f))
        }) {
        let file = PathBuf::from(file);
        let gspec = same_model(&spec, GgufFile::open(&file)?.spec(&spec.name)?)?;
        let source = WeightSource::Gguf(file);
        let e = Engine::build(gspec, &source, options(Precision::Fp32, quant), &NoProgress)?;
        (e, 0.0)
    } else {
        let (precision, quant) = match format {
            "fp32" => (Precision::Fp32, QuantFormat::None),
            "fp16" => (Precision::Fp16, QuantFormat::None),
            "bf16" => (Precision::Bf16, QuantFormat::None),
            q => (Precision::Fp32, q.parse::<QuantFormat>()?),
        };
        let map = generate(&spec, seed)?;
        let generate_s = t0.elapsed().as_secs_f64();
        let e = Engine::build_from_weights(spec, &map, options(precision, quant), &NoProgress)?;
        (e, generate_s)
    };
    let build_s = t0.elapsed().as_secs_f64() - generate_s;
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let step = StepInputs {
        input_ids: ids,
        position_ids: &positions,
        batch: 1,
        seq_len: ids.len(),
        start_idx: 0,
        end_idx: ids.len(),
    };
    let mut cache = engine.new_cache(1)?;
    let t1 = Instant::now();
    let logits = {
        let mut layers = cache.layers_mut();
        engine.forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::All)?
    };
    let forward_s = t1.elapsed().as_secs_f64();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    for x in &logits.data {
        f.write_all(&x.to_le_bytes())?;
    }
    f.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "format": format,
            "positions": logits.rows,
            "vocab": logits.vocab,
            "seed": seed,
            "threads": threads,
            "generate_s": generate_s,
            "build_s": build_s,
            "forward_s": forward_s,
            "weight_bytes": engine.backend().weight_bytes(),
            "logits": out.display().to_string(),
        })
    );
    Ok(())
}

/// `gguf`, the spec a GGUF file's metadata gives, if it is `hf`'s model: equal but for what only the
/// source tells (the model's name, the hash of its config text, the checkpoint's dtype) and the
/// special token ids (the file keeps one EOS id; the logits do not depend on them).
fn same_model(hf: &ModelSpec, mut gguf: ModelSpec) -> Res<ModelSpec> {
    let mut check = gguf.clone();
    check.name.clone_from(&hf.name);
    check.config_hash.clone_from(&hf.config_hash);
    check.source_dtype.clone_from(&hf.source_dtype);
    check.bos_token_id = hf.bos_token_id;
    check.eos_token_ids.clone_from(&hf.eos_token_ids);
    check.pad_token_id = hf.pad_token_id;
    if check != *hf {
        return Err(format!(
            "the GGUF file's spec is not the config's:\n{check:#?}\nagainst\n{hf:#?}"
        )
        .into());
    }
    gguf.name.clone_from(&hf.name);
    Ok(gguf)
}
