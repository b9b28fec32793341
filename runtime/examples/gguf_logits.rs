//! The logits and greedy tokens of a GGUF model on the CPU, for comparisons with other engines
//! (`bench/gguf_vs_llamacpp.sh`): builds an FP32 engine from the GGUF with `--quant_format` none or
//! gguf, writes the last prompt position's logits as raw little-endian f32 (one row of `vocab`) and a
//! JSON line with the greedy continuation (a fixed number of tokens, not stopping at EOS).
//!
//! `cargo run --release -p runtime --example gguf_logits -- FILE.gguf none|gguf THREADS 1,2,3 32 OUT`
//! (GGUF file, quant format, threads, prompt ids, tokens to generate, output stem: writes
//! `OUT.logits.f32` and `OUT.json`).

use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::step::{LogitRows, StepInputs};
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        return Err(
            "usage: gguf_logits FILE.gguf none|gguf THREADS IDS NUM_TOKENS OUT_STEM".into(),
        );
    }
    let file = PathBuf::from(&args[0]);
    let quant = match args[1].as_str() {
        "none" => QuantFormat::None,
        "gguf" => QuantFormat::Gguf,
        q => return Err(format!("quant format {q}: none or gguf").into()),
    };
    let threads: usize = args[2].parse()?;
    let ids: Vec<u32> = args[3]
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let num_tokens: usize = args[4].parse()?;
    let out = PathBuf::from(&args[5]);

    let name = file
        .file_stem()
        .map_or("gguf-model".into(), |s| s.to_string_lossy().into_owned());
    let spec = GgufFile::open(&file)?.spec(&name)?;
    let options = BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: ids.len() + num_tokens + 1,
        max_batch: 1,
        device: DeviceChoice::Cpu {
            threads: Some(threads),
        },
        quant,
    };
    let mut engine = Engine::build(
        spec,
        &WeightSource::Gguf(file.clone()),
        options,
        &NoProgress,
    )?;

    // The last prompt position's logits, from one prefill.
    let logits = {
        let mut cache = engine.new_cache(1)?;
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        let step = StepInputs {
            input_ids: &ids,
            position_ids: &positions,
            batch: 1,
            seq_len: ids.len(),
            start_idx: 0,
            end_idx: ids.len(),
        };
        let mut layers = cache.layers_mut();
        engine
            .forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::Last)?
            .data
    };
    let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(out.with_extension("logits.f32"), bytes)?;

    let mut cache = engine.new_cache(1)?;
    let opts = GenerateOptions {
        max_new_tokens: num_tokens,
        mode: CacheMode::StaticV1,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let prompts = std::slice::from_ref(&ids);
    let got = generate_with_static_cache(&mut engine, &mut cache, prompts, &opts, &mut |_, _| {})?;
    let tokens = got.tokens.into_iter().next().unwrap_or_default();
    let record = format!(
        "{{\"gguf\": {:?}, \"quant_format\": {:?}, \"threads\": {threads}, \"prompt_ids\": {:?}, \
         \"vocab\": {}, \"tokens\": {:?}, \"logits\": {:?}}}\n",
        file.display().to_string(),
        args[1],
        ids,
        logits.len(),
        tokens,
        out.with_extension("logits.f32").display().to_string(),
    );
    std::fs::write(out.with_extension("json"), record)?;
    Ok(())
}
