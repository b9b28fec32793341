//! An application on the generated, typed engine crates: build a model's engine on the CPU from the
//! weights `models.toml` names, generate greedily through its static KV cache, print the text as it
//! comes. SmolLM2-135M-Instruct (the default model) when its weights are installed
//! (`scripts/install-smollm2.sh`), else the committed tiny-llama test model (random weights).
//!
//! `cargo run --release -p app -- "What is the capital of France?"`

use anyhow::{Context, Result};
use runtime::chat::{ChatTemplate, Message};
use runtime::codegen::{DynModel, GenerateOptions, NoProgress, WeightSource, entry_weights};
use runtime::tokenize::Tokenizer;
use runtime::weights::gguf::GgufFile;
use std::io::Write;

/// Encode `prompt`, generate with crate `$model`'s typed engine, stream the decoded text to stdout.
/// A macro because every generated crate has its own types: the code is the same for each.
macro_rules! run {
    ($model:ident, $tokenizer:expr, $prompt_ids:expr) => {{
        let tokenizer: &Tokenizer = $tokenizer;
        let prompt: Vec<u32> = $prompt_ids;
        let mut engine = $model::Engine::<$model::DefaultPrecision>::build_from_manifest(
            $model::default_options(),
            &NoProgress,
        )?;
        let mut cache = engine.new_cache(1)?;
        println!(
            "{}: {} layers, cache key_cache_0 … value_cache_{} of [1, {}, {}, {}], {} prompt tokens",
            $model::NAME,
            $model::NUM_LAYERS,
            $model::NUM_LAYERS - 1,
            $model::NUM_KV_HEADS,
            $model::DEFAULT_MAX_SEQ_LEN,
            $model::HEAD_DIM,
            prompt.len()
        );
        let options = GenerateOptions {
            max_new_tokens: 48,
            ..GenerateOptions::default()
        };
        let mut stream = tokenizer.stream();
        let mut failed = None;
        let out = engine.generate_with_static_cache(
            &mut cache,
            std::slice::from_ref(&prompt),
            &options,
            &mut |_, id| match stream.push(id) {
                Ok(text) => {
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                }
                Err(e) => failed = Some(e),
            },
        )?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        println!("{}", stream.finish()?);
        println!(
            "[{} tokens, {:.1} tokens/s after the first]",
            out.tokens[0].len(),
            out.timings.decode_steps_per_second()
        );
    }};
}

fn main() -> Result<()> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the capital of France?".to_string());
    match entry_weights(&smollm2_135m_instruct::MODEL) {
        Ok(WeightSource::Gguf(path)) => {
            let gguf = GgufFile::open(&path)?;
            let tokenizer = Tokenizer::from_gguf(&gguf)?;
            let template =
                ChatTemplate::from_gguf(&gguf)?.context("the GGUF has no chat template")?;
            let text = template.render(&[Message::user(question)], true)?;
            run!(
                smollm2_135m_instruct,
                &tokenizer,
                tokenizer.encode(&text, false)?
            );
        }
        other => {
            if let Err(e) = other {
                println!("({e}; using tiny-llama instead)");
            }
            // The vendored model directory (beside its config.json) holds the tokenizer.
            let config = tiny_llama::MODEL
                .manifest_dir()
                .join(tiny_llama::CONFIG_PATH);
            let dir = config.parent().context("config.json has a directory")?;
            let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
            run!(tiny_llama, &tokenizer, tokenizer.encode(&question, true)?);
        }
    }
    Ok(())
}
