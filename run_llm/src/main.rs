//! `run_llm`: build (or load) an llmforge engine for a model and generate from a prompt, or benchmark it.
//! The Rust counterpart of Torch-TensorRT's `tools/llm/run_llm.py`; see `--help` and the README.

mod args;
mod bandwidth;
mod bench_mode;
mod debug;
mod device;
mod engine_setup;
mod generate_mode;
mod hf_config;
mod limits;
mod perplexity_mode;
mod progress;
mod pytorch;
mod report;
mod resolve;

use anyhow::Result;
use args::Args;
use clap::Parser;
use engine_setup::{Need, Obtained};
use report::{EngineInfo, RunInfo};
use resolve::Model;
use runtime::Precision;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        // A reader that went away (`run_llm | head`) is not an error of ours.
        let closed = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if !closed {
            eprintln!("error: {}", error_text(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes, outermost first, joined by ": ". A cause whose text the message already
/// ends with (library errors that print their source and also return it) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.ends_with(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

fn run(args: &Args) -> Result<()> {
    args.validate()?;
    if args.debug {
        debug::enable();
    }
    let t = std::time::Instant::now();
    let model = resolve::resolve(&args.model)?;
    let s = &model.spec;
    debug::debug!(
        "model {} resolved in {:.1} ms: {} · {} layers · hidden {} · {} heads ({} KV) of {} · vocab {} · \
         {} trained positions · weights: {}",
        s.name,
        t.elapsed().as_secs_f64() * 1e3,
        s.arch.as_str(),
        s.num_layers,
        s.hidden_size,
        s.num_heads,
        s.num_kv_heads,
        s.head_dim,
        s.vocab_size,
        s.max_position_embeddings,
        model.weights_label()
    );
    let threads = args
        .threads
        .map(|n| n.min(runtime::backend::cpu::max_threads()));
    let (mut device, chosen) = device::choose(args.device, threads)?;
    // `--quant_format`, else the model's default in models.toml.
    let quant = match args.quant_format {
        Some(q) => q.into(),
        None => model.default_quant.unwrap_or_default(),
    };
    // Kept GGUF blocks and weights quantized at build run on the CPU only: an automatic choice takes
    // it; `--device cuda` is refused by the engine build, naming the flag.
    if !chosen && quant != runtime::format::QuantFormat::None {
        device = runtime::engine::DeviceChoice::Cpu { threads };
    }
    let mode = if args.perplexity.is_some() {
        limits::Mode::Perplexity
    } else if args.benchmark {
        limits::Mode::Benchmark
    } else {
        limits::Mode::Generate
    };
    let (precision, precision_from) = precision(args, &model);
    let need = Need {
        precision,
        precision_from,
        precision_explicit: args.precision.is_some(),
        seq_len: 0,
        prompt_len: 0,
        batch: 1,
        cache: args.cache.into(),
        extend_context: args.extend_context,
        mode,
        device,
        auto_device: !chosen,
        cpu_threads: threads,
        keep_weights: false,
        quant,
    };
    debug::debug!(
        "precision {} (from {}), device {:?}{}",
        need.precision,
        need.precision_from,
        need.device,
        if need.auto_device {
            " (chosen automatically)"
        } else {
            ""
        }
    );
    let result = if let Some(text) = &args.perplexity {
        perplexity_mode::run(args, text, &model, need)
    } else if args.benchmark {
        bench_mode::run(args, &model, need)
    } else {
        generate_mode::run(args, &model, need)
    };
    result.map_err(|e| limits::explain(e, mode))
}

/// What the seed's TensorRT-specific flags do here.
fn seed_flag_notes(args: &Args, on_cpu: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if args.cudagraph {
        notes.push(if on_cpu {
            "--cudagraph: CUDA graphs are a GPU feature; the CPU engine has none".to_string()
        } else {
            "--cudagraph: decode always runs as CUDA graphs (one per batch size); the flag changes nothing"
                .to_string()
        });
    }
    if let Some(n) = args.min_block_size {
        notes.push(format!(
            "--min_block_size {n}: a TensorRT partitioning knob; llmforge compiles the whole model, so it has no effect"
        ));
    }
    notes
}

/// A note when `--threads` asks for more threads than the machine runs at once.
fn threads_note(args: &Args) -> Option<String> {
    let max = runtime::backend::cpu::max_threads();
    args.threads.filter(|&n| n > max).map(|n| {
        format!("--threads {n} is more than this machine's {max} hardware threads; using {max}")
    })
}

/// `--precision`, else the model's default in models.toml, else the dtype of its config.json, else
/// the seed's FP16; and where it came from, in words.
fn precision(args: &Args, model: &Model) -> (Precision, &'static str) {
    if let Some(p) = args.precision {
        return (p.into(), "--precision");
    }
    if let Some(p) = model.default_precision {
        return (p, "models.toml default");
    }
    match model
        .spec
        .source_dtype
        .as_deref()
        .and_then(Precision::from_torch_dtype)
    {
        Some(p) => (p, "the config's dtype"),
        None => (Precision::Fp16, "default"),
    }
}

/// What the output says about the run.
pub(crate) fn run_info(args: &Args, model: &Model, need: &Need, got: &Obtained) -> RunInfo {
    let opts = got.engine.options();
    let mut notes = Vec::new();
    if let Some(seed) = model.synthetic() {
        notes.push(format!(
            "no local weights for {}: running seeded synthetic weights (seed {seed})",
            model.spec.name
        ));
    }
    if model.random_weights {
        notes.push(format!(
            "{} is a test model with random weights: its text means nothing",
            model.spec.name
        ));
    }
    if need.seq_len > model.spec.max_position_embeddings {
        notes.push(format!(
            "--extend_context: positions up to {} run past the {} that {} was trained for",
            need.seq_len, model.spec.max_position_embeddings, model.spec.name
        ));
    }
    notes.extend(got.fallback_note.clone());
    let on_cpu = matches!(opts.device, runtime::engine::DeviceChoice::Cpu { .. });
    if on_cpu {
        notes.extend(threads_note(args));
    }
    notes.extend(seed_flag_notes(args, on_cpu));
    RunInfo {
        model: model.spec.name.clone(),
        weights: model.weights_label(),
        synthetic_weights: model.synthetic().is_some(),
        random_weights: model.random_weights,
        device: device::label(opts.device),
        precision: opts.precision.to_string(),
        precision_from: if got.origin == engine_setup::Origin::Loaded && args.precision.is_none() {
            "the engine file"
        } else {
            need.precision_from
        }
        .to_string(),
        cache: runtime::backend::CacheMode::from(args.cache)
            .as_str()
            .to_string(),
        engine: EngineInfo {
            origin: got.origin,
            path: args.engine.as_ref().map(|p| p.display().to_string()),
            weights_s: got.weights_s,
            build_s: got.build_s,
            max_seq_len: opts.max_seq_len,
            max_batch: opts.max_batch,
            weight_bytes: got.engine.backend().weight_bytes(),
        },
        notes,
    }
}
