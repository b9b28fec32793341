//! `run_llm`: build (or load) an llmforge engine for a model and generate from a prompt, or benchmark it.
//! The Rust counterpart of Torch-TensorRT's `tools/llm/run_llm.py`; see `--help` and the README.

mod args;
mod bandwidth;
mod bench_mode;
mod device;
mod engine_setup;
mod generate_mode;
mod hf_config;
mod limits;
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
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<()> {
    args.validate()?;
    let model = resolve::resolve(&args.model)?;
    let threads = args
        .threads
        .map(|n| n.min(runtime::backend::cpu::max_threads()));
    let (device, chosen) = device::choose(args.device, threads);
    let mode = if args.benchmark {
        limits::Mode::Benchmark
    } else {
        limits::Mode::Generate
    };
    let need = Need {
        precision: precision(args, &model),
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
    };
    let result = if args.benchmark {
        bench_mode::run(args, &model, need)
    } else {
        generate_mode::run(args, &model, need)
    };
    result.map_err(|e| limits::explain(e, mode))
}

/// A note when `--threads` asks for more threads than the machine runs at once.
fn threads_note(args: &Args) -> Option<String> {
    let max = runtime::backend::cpu::max_threads();
    args.threads.filter(|&n| n > max).map(|n| {
        format!("--threads {n} is more than this machine's {max} hardware threads; using {max}")
    })
}

/// `--precision`, else the model's default in models.toml, else the seed's FP16.
fn precision(args: &Args, model: &Model) -> Precision {
    match args.precision {
        Some(p) => p.into(),
        None => model.default_precision.unwrap_or(Precision::Fp16),
    }
}

/// What the output says about the run.
pub(crate) fn run_info(args: &Args, model: &Model, got: &Obtained) -> RunInfo {
    let opts = got.engine.options();
    let mut notes = Vec::new();
    if let Some(seed) = model.synthetic() {
        notes.push(format!(
            "no local weights for {}: running seeded synthetic weights (seed {seed})",
            model.spec.name
        ));
    }
    notes.extend(got.fallback_note.clone());
    if matches!(opts.device, runtime::engine::DeviceChoice::Cpu { .. }) {
        notes.extend(threads_note(args));
    }
    RunInfo {
        model: model.spec.name.clone(),
        weights: model.weights_label(),
        synthetic_weights: model.synthetic().is_some(),
        device: device::label(opts.device),
        precision: opts.precision.to_string(),
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
