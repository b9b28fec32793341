//! What a run reports, as one serialisable structure per mode (`--json` prints it as is) and as text.
//! Time figures are milliseconds, rates per second.

use crate::engine_setup::Origin;
use crate::pytorch::Baseline;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;

/// Write `text` to stdout and flush (errors, such as a closed pipe, are returned, not panicked on).
pub fn write(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Write one line to stdout.
pub fn say(line: impl std::fmt::Display) -> std::io::Result<()> {
    write(&format!("{line}\n"))
}

/// Write one line to stderr (the header, notes and figures of generation mode, so that stdout holds
/// the answer alone).
pub fn say_err(line: impl std::fmt::Display) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "{line}")?;
    err.flush()
}

/// Where a report's text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTo {
    Stdout,
    Stderr,
}

/// The report as pretty JSON on stdout with `--json`; else its `text`, then the baseline's lines when
/// `--enable_pytorch_run` gave one, on `to`.
pub fn emit(
    json: bool,
    report: &impl Serialize,
    text: String,
    baseline: Option<String>,
    to: TextTo,
) -> anyhow::Result<()> {
    if json {
        say(serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    let put = |t: &str| match to {
        TextTo::Stdout => say(t),
        TextTo::Stderr => say_err(t),
    };
    put(&text)?;
    if let Some(b) = baseline {
        put(&b)?;
    }
    Ok(())
}

/// What was run, on what.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub model: String,
    pub weights: String,
    pub synthetic_weights: bool,
    /// The weights are a test model's random ones (models.toml `random_weights`).
    pub random_weights: bool,
    pub device: String,
    pub precision: String,
    /// Where the precision came from: `--precision`, the models.toml default, the config's dtype,
    /// the engine file, or the default (FP16).
    pub precision_from: String,
    pub cache: String,
    pub engine: EngineInfo,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct EngineInfo {
    pub origin: Origin,
    pub path: Option<String>,
    /// Weight loading (or generation) time; 0 for a loaded engine file.
    pub weights_s: f64,
    /// Engine build time, or engine file load time.
    pub build_s: f64,
    pub max_seq_len: usize,
    pub max_batch: usize,
    /// Weight bytes read per decode step.
    pub weight_bytes: usize,
}

/// Generation mode.
#[derive(Debug, Serialize)]
pub struct GenerateReport {
    pub mode: &'static str,
    pub run: RunInfo,
    pub prompt_tokens: usize,
    /// The prompt as token ids (after the chat template, when `--chat`).
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: Option<String>,
    /// Time to first token (prefill and the first token's selection).
    pub ttft_ms: f64,
    pub decode_ms_per_token: f64,
    /// Generated tokens over the whole generation time (prefill included).
    pub tokens_per_s: f64,
    /// Peak resident set of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    pub pytorch: Option<Baseline>,
}

/// Median, mean and sample standard deviation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub median: f64,
    pub mean: f64,
    pub std: f64,
}

impl Summary {
    pub fn of(xs: &[f64]) -> Summary {
        let n = xs.len();
        if n == 0 {
            return Summary {
                median: f64::NAN,
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Summary {
            median: median(xs),
            mean,
            std: var.sqrt(),
        }
    }
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Decode speed against the memory-bandwidth roofline: every decode step reads all weights once.
#[derive(Debug, Clone, Serialize)]
pub struct Roofline {
    pub weight_bytes_per_token: usize,
    /// Weight bytes per decode step over the median decode step time.
    pub achieved_gb_s: f64,
    pub measured_gb_s: f64,
    /// How `measured_gb_s` was measured.
    pub probe: String,
    pub fraction: f64,
}

/// Benchmark mode.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub mode: &'static str,
    pub run: RunInfo,
    pub isl: usize,
    pub batch_size: usize,
    pub num_tokens: usize,
    pub iterations: usize,
    /// End-to-end latency of one generation (prefill + all decode steps).
    pub latency_ms: Summary,
    pub ttft_ms_median: f64,
    pub decode_ms_per_token_median: f64,
    /// Generated tokens (all sequences) per second at the median latency.
    pub tokens_per_s: f64,
    pub sequences_per_s: f64,
    pub roofline: Roofline,
    /// Resident set of the process after the warm-up generation and after the timed iterations,
    /// bytes: equal within noise when nothing accumulates per generation.
    pub rss_after_warm_up_bytes: Option<u64>,
    pub rss_after_iterations_bytes: Option<u64>,
    /// Peak resident set of the process up to the end of the timed iterations (before the
    /// bandwidth probe), bytes.
    pub peak_rss_bytes: Option<u64>,
    pub pytorch: Option<Baseline>,
}

pub fn engine_line(run: &RunInfo) -> String {
    let e = &run.engine;
    match e.origin {
        Origin::Loaded => format!("engine loaded in {:.2} s", e.build_s),
        Origin::Built | Origin::BuiltAndSaved => format!(
            "engine built in {:.2} s (+ weights {:.2} s)",
            e.build_s, e.weights_s
        ),
    }
}

pub fn header_text(run: &RunInfo) -> String {
    let mut s = format!(
        "model {} · {} · {} ({}) · cache {} · weights: {}",
        run.model, run.device, run.precision, run.precision_from, run.cache, run.weights
    );
    for n in &run.notes {
        let _ = write!(s, "\nnote: {n}");
    }
    s
}

pub fn generate_figures(r: &GenerateReport) -> String {
    format!(
        "TTFT {:.1} ms · decode {:.2} ms/token · {:.1} tokens/s · {}",
        r.ttft_ms,
        r.decode_ms_per_token,
        r.tokens_per_s,
        engine_line(&r.run)
    )
}

pub fn bench_text(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", header_text(&r.run));
    let _ = writeln!(
        s,
        "benchmark: batch {} × isl {} → {} new tokens, {} timed iterations after 1 warm-up; {}",
        r.batch_size,
        r.isl,
        r.num_tokens,
        r.iterations,
        engine_line(&r.run)
    );
    let l = r.latency_ms;
    let _ = writeln!(
        s,
        "  end-to-end latency   median {:.2} ms · mean {:.2} ms · std dev {:.2} ms",
        l.median, l.mean, l.std
    );
    let _ = writeln!(
        s,
        "  time to first token  median {:.2} ms",
        r.ttft_ms_median
    );
    let _ = writeln!(
        s,
        "  decode               median {:.3} ms/token",
        r.decode_ms_per_token_median
    );
    let _ = writeln!(
        s,
        "  throughput           {:.1} tokens/s · {:.3} sequences/s",
        r.tokens_per_s, r.sequences_per_s
    );
    let f = &r.roofline;
    let _ = write!(
        s,
        "  roofline             {:.1} MB of weights per decode step at {:.2} GB/s = {:.1}% of {:.2} GB/s \
         measured ({})",
        f.weight_bytes_per_token as f64 / 1e6,
        f.achieved_gb_s,
        100.0 * f.fraction,
        f.measured_gb_s,
        f.probe
    );
    s
}
