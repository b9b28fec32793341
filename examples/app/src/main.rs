//! An application on a generated, typed engine crate: build the tiny-llama engine on the CPU from the
//! weights `models.toml` names, generate greedily through its static KV cache, print the result.
//!
//! `cargo run --release -p app -- "Once upon a time"` (or `-- --ids 1,5,9` to skip the tokenizer).
//! Another model is one line away: `use smollm2_135m_instruct as model;` (and the dependency).

use anyhow::{Context, Result};
use runtime::codegen::{DynModel, GenerateOptions, NoProgress};
use runtime::tokenize::Tokenizer;
use tiny_llama as model;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The vendored model directory (beside its config.json) holds the tokenizer.
    let model_dir = model::MODEL
        .manifest_dir()
        .join(model::CONFIG_PATH)
        .parent()
        .context("config path has a directory")?
        .to_path_buf();
    let tokenizer = || Tokenizer::from_file(&model_dir.join("tokenizer.json"));
    let prompt = match args.as_slice() {
        [flag, ids] if flag == "--ids" => ids
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .with_context(|| format!("token id {s:?}"))
            })
            .collect::<Result<Vec<u32>>>()?,
        [] => tokenizer()?.encode("Once upon a time", true)?,
        [text] => tokenizer()?.encode(text, true)?,
        _ => anyhow::bail!("usage: app [PROMPT | --ids 1,2,3]"),
    };

    let mut engine = model::Engine::<model::DefaultPrecision>::build_from_manifest(
        model::default_options(),
        &NoProgress,
    )?;
    let mut cache = engine.new_cache(1)?;
    let options = GenerateOptions {
        max_new_tokens: 16,
        ..GenerateOptions::default()
    };
    let out = engine.generate_with_static_cache(
        &mut cache,
        &[prompt.clone()],
        &options,
        &mut |_, _| {},
    )?;

    println!(
        "model:  {} ({} layers, KV cache key_cache_0..value_cache_{})",
        model::NAME,
        model::NUM_LAYERS,
        model::NUM_LAYERS - 1
    );
    println!("prompt: {prompt:?}");
    println!("tokens: {:?}", out.tokens[0]);
    if let Ok(tokenizer) = tokenizer() {
        println!("text:   {:?}", tokenizer.decode(&out.tokens[0])?);
    }
    Ok(())
}
