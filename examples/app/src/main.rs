//! An application on the generated, typed engine crates: build a model's engine on the CPU from the
//! weights `models.toml` names, generate greedily through its static KV cache, print the text as it
//! comes. SmolLM2-135M-Instruct (the default model) when its weights are installed
//! (`scripts/install-smollm2.sh`), else the committed tiny-llama test model (random weights).
//!
//! `cargo run --release -p app -- "What is the capital of France?"`

use anyhow::{Context, Result};
// One dependency per model crate: each re-exports the runtime and the generic engine.
use smollm2_135m_instruct::runtime::chat::{ChatTemplate, Message};
use smollm2_135m_instruct::runtime::codegen::{DynModel, entry_weights};
use smollm2_135m_instruct::runtime::tokenize::Tokenizer;
use smollm2_135m_instruct::runtime::weights::gguf::GgufFile;
use smollm2_135m_instruct::{GenerateOptions, NoProgress, TypedEngine, TypedModel, WeightSource};
use std::io::Write;

/// Generate from `prompt` with model `M`'s typed engine (its `models.toml` precision
/// and defaults), stream the decoded text to stdout. Generic over the generated crates' `Model`.
fn run<M: TypedModel>(tokenizer: &Tokenizer, prompt: Vec<u32>) -> Result<()> {
    let options = M::default_options();
    let mut engine = TypedEngine::<M, M::DefaultPrecision, M::DefaultQuant>::build_from_manifest(
        options,
        &NoProgress,
    )?;
    let mut cache = engine.new_cache(1)?;
    let s = M::spec();
    println!(
        "{}: {} layers, cache key_cache_0 … value_cache_{} of [1, {}, {}, {}], {} prompt tokens",
        M::NAME,
        s.num_layers,
        s.num_layers - 1,
        s.num_kv_heads,
        options.max_seq_len,
        s.head_dim,
        prompt.len()
    );
    let generate = GenerateOptions {
        max_new_tokens: 48,
        ..GenerateOptions::default()
    };
    let mut stream = tokenizer.stream();
    let mut failed = None;
    let out = engine.generate_with_static_cache(
        &mut cache,
        std::slice::from_ref(&prompt),
        &generate,
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
    Ok(())
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
            run::<smollm2_135m_instruct::Model>(&tokenizer, tokenizer.encode(&text, false)?)?;
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
            run::<tiny_llama::Model>(&tokenizer, tokenizer.encode(&question, true)?)?;
        }
    }
    Ok(())
}
