//! Getting an engine: load `--engine PATH` when it exists and fits the run, else load the weights, build
//! and (with `--engine`) save. Weight loading and the build are timed separately.

use crate::resolve::Model;
use anyhow::{Context, Result, bail};
use runtime::backend::BackendError;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::engine_file;
use runtime::format::QuantFormat;
use runtime::progress::Progress;
use runtime::spec::Positions;
use runtime::weights::WeightMap;
use runtime::{Error, Precision};
use std::path::Path;
use std::time::Instant;

/// What this run needs from an engine.
pub struct Need {
    pub precision: Precision,
    /// Where `precision` came from, in words ("--precision", "models.toml default", …).
    pub precision_from: &'static str,
    /// `--precision` was given (else an existing engine file's precision is accepted).
    pub precision_explicit: bool,
    /// Prompt plus generated tokens.
    pub seq_len: usize,
    /// Tokens of each prompt.
    pub prompt_len: usize,
    pub batch: usize,
    pub cache: runtime::backend::CacheMode,
    /// `--extend_context`: positions past the model's `max_position_embeddings` are allowed.
    pub extend_context: bool,
    /// Which flags set the sizes (for the advice in errors).
    pub mode: crate::limits::Mode,
    pub device: DeviceChoice,
    /// The device was picked automatically (a CUDA failure falls back to the CPU).
    pub auto_device: bool,
    pub cpu_threads: Option<usize>,
    /// Keep the loaded weights (for writing them out for the PyTorch baseline).
    pub keep_weights: bool,
    /// `--quant_format`.
    pub quant: QuantFormat,
}

/// How the engine was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Built,
    BuiltAndSaved,
    Loaded,
}

pub struct Obtained {
    pub engine: Engine,
    pub origin: Origin,
    /// Seconds spent loading (or generating) weights; 0 when the engine was loaded from a file.
    pub weights_s: f64,
    /// Seconds spent building, or loading the engine file.
    pub build_s: f64,
    pub weights: Option<WeightMap>,
    /// Set when an automatically chosen GPU could not be used.
    pub fallback_note: Option<String>,
}

/// Positions past `max_position_embeddings` are refused, unless `--extend_context` asks for them on a
/// rotary model (learned positions have no embedding past their count).
fn check_context(model: &Model, need: &Need) -> Result<()> {
    let spec = &model.spec;
    let trained = spec.max_position_embeddings;
    let wanted = need.seq_len;
    let flags = need.mode.positions_flags();
    let lower = need.mode.flags(runtime::admission::Knob::MaxSeqLen);
    match spec.positions {
        Positions::Learned if wanted > trained => bail!(
            "this run needs {wanted} positions ({flags}) but {} has {trained} learned positions; \
             lower {lower}",
            spec.name
        ),
        Positions::Rope { .. } if wanted > trained && !need.extend_context => bail!(
            "this run needs {wanted} positions ({flags}) but {} was trained for {trained} \
             (max_position_embeddings); lower {lower}, or pass --extend_context to run past them \
             (rotary positions beyond the trained context give output of unknown quality)",
            spec.name
        ),
        _ => Ok(()),
    }
}

/// The default cache length: the model's `max_seq_len` in models.toml, else 2048, never beyond the
/// model's positions; grown to what this run needs (within [`check_context`]).
pub fn max_seq_len(model: &Model, need: &Need) -> Result<usize> {
    check_context(model, need)?;
    Ok(model
        .default_max_seq_len
        .unwrap_or(2048)
        .min(model.spec.max_position_embeddings)
        .max(need.seq_len))
}

pub fn obtain(
    model: &Model,
    need: &Need,
    engine_path: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Obtained> {
    if let Some(path) = engine_path.filter(|p| p.exists()) {
        return load(model, need, path);
    }
    let seq = max_seq_len(model, need)?;
    crate::limits::admit(model, need, seq)?;
    let t = Instant::now();
    progress.stage("load weights", 0);
    let weights =
        runtime::weights::load_as(&model.spec, &model.source, need.quant).with_context(|| {
            format!(
                "loading the weights of {} ({})",
                model.spec.name,
                model.weights_label()
            )
        });
    progress.finish();
    let weights = weights?;
    let weights_s = t.elapsed().as_secs_f64();
    crate::debug::debug!(
        "weights: {} tensors loaded in {:.3} s",
        weights.tensors.len(),
        weights_s
    );
    let t = Instant::now();
    let mut options = BuildOptions {
        precision: need.precision,
        max_seq_len: seq,
        max_batch: need.batch,
        device: need.device,
        quant: need.quant,
    };
    let mut fallback_note = None;
    let engine = match Engine::build_from_weights(model.spec.clone(), &weights, options, progress) {
        Err(Error::Backend(
            e @ (BackendError::CudaUnavailable(_) | BackendError::Unsupported(_)),
        )) if need.auto_device => {
            fallback_note = Some(match e {
                BackendError::CudaUnavailable(why) => {
                    format!("no usable GPU ({why}); running on the CPU")
                }
                other => format!("{other}; running on the CPU"),
            });
            options.device = DeviceChoice::Cpu {
                threads: need.cpu_threads,
            };
            Engine::build_from_weights(model.spec.clone(), &weights, options, progress)?
        }
        other => other?,
    };
    progress.finish();
    let build_s = t.elapsed().as_secs_f64();
    describe(&engine, build_s, "built");
    let origin = match engine_path {
        Some(path) => {
            engine
                .save(path)
                .with_context(|| format!("saving the engine to {}", path.display()))?;
            Origin::BuiltAndSaved
        }
        None => Origin::Built,
    };
    Ok(Obtained {
        engine,
        origin,
        weights_s,
        build_s,
        weights: need.keep_weights.then_some(weights),
        fallback_note,
    })
}

/// Load an engine file built for this model, precision and device, with room for this run.
fn load(model: &Model, need: &Need, path: &Path) -> Result<Obtained> {
    let t = Instant::now();
    let header = engine_file::open(path)
        .with_context(|| format!("opening engine file {}", path.display()))?
        .header;
    let device = match (need.auto_device, header.backend) {
        (true, runtime::backend::BackendKind::Cpu) => DeviceChoice::Cpu {
            threads: need.cpu_threads,
        },
        (true, runtime::backend::BackendKind::Cuda) => {
            let device = DeviceChoice::Cuda { ordinal: 0 };
            let what = format!("engine file {} holds a CUDA engine", path.display());
            crate::device::compiled_in(device, &what)?;
            device
        }
        (false, _) => need.device,
    };
    let expect = BuildOptions {
        precision: if need.precision_explicit {
            need.precision
        } else {
            header.precision
        },
        max_seq_len: header.max_seq_len,
        max_batch: header.max_batch,
        device,
        quant: need.quant,
    };
    header
        .check(path, &model.spec, &expect)
        .with_context(|| format!("loading engine file {}", path.display()))?;
    if header.max_seq_len < need.seq_len || header.max_batch < need.batch {
        bail!(
            "{}: engine was built for max_seq_len {} and batch {}, this run needs {} and {}; \
             pass another --engine path to build a new one",
            path.display(),
            header.max_seq_len,
            header.max_batch,
            need.seq_len,
            need.batch
        );
    }
    check_context(model, need)?;
    crate::limits::admit(model, need, header.max_seq_len)?;
    let engine = Engine::load(path, &model.spec, &expect)
        .with_context(|| format!("loading engine file {}", path.display()))?;
    describe(&engine, t.elapsed().as_secs_f64(), "loaded");
    Ok(Obtained {
        engine,
        origin: Origin::Loaded,
        weights_s: 0.0,
        build_s: t.elapsed().as_secs_f64(),
        weights: None,
        fallback_note: None,
    })
}

/// `--debug`: what the engine is and what its build chose.
fn describe(engine: &Engine, seconds: f64, how: &str) {
    if !crate::debug::on() {
        return;
    }
    let o = engine.options();
    let backend = engine.backend();
    crate::debug::debug!(
        "engine {how} in {seconds:.3} s on {}: {} · max_seq_len {} · max_batch {} · {:.1} MB of weights per decode step",
        backend.device_name(),
        o.precision,
        o.max_seq_len,
        o.max_batch,
        backend.weight_bytes() as f64 / 1e6
    );
    let (sm, gemms) = backend.header_extras();
    if let Some(sm) = sm {
        crate::debug::debug!("kernels compiled for sm_{sm}");
    }
    for g in gemms {
        crate::debug::debug!("GEMM choice: {g}");
    }
}
