//! `cargo run -p generator [-- --model NAME] [--check]`: emit (or check) `generated/` from `models.toml`.
//!
//! Prints one line per crate (what it is generated from, its package name and directory) and a
//! summary. A mistake in the input (an unreadable or invalid `models.toml`, a missing or unsupported
//! `config.json`) ends with `error: ...` naming the file or the `models.toml` entry, and exit status 1.

use anyhow::{Result, anyhow};
use clap::Parser;
use generator::check::Report;
use generator::paths;
use generator::{Plan, PlannedCrate};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Emit one typed engine crate per models.toml entry into generated/")]
struct Args {
    /// The model list (default: the workspace's models.toml).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The output directory (default: generated/ beside the manifest).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Regenerate (or check) only this model's crate.
    #[arg(long)]
    model: Option<String>,
    /// Write nothing; exit non-zero naming every file that differs from what would be written.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    // Errors are printed here, not returned from `main`: returning one would print its `Debug` form,
    // with a backtrace whenever RUST_BACKTRACE is set.
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause only where the message does not already include it.
fn message(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out = format!("{out}: {cause}");
        }
    }
    out
}

fn run(args: Args) -> Result<()> {
    let manifest_path = paths::display(&args.manifest.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("models.toml")
    }));
    let manifest = generator::load_manifest(&manifest_path)?;
    let out = paths::display(&args.out.unwrap_or_else(|| manifest.dir.join("generated")));
    let plan = generator::plan(&manifest, args.model.as_deref())?;
    if args.check {
        let report = generator::check::check(&out, &plan)?;
        print_crates(&out, &plan, |dir| check_status(&report, dir));
        if !report.is_clean() {
            for line in report.lines() {
                eprintln!("{line}");
            }
            return Err(anyhow!(
                "{} differs from what the generator writes: run `cargo run -p generator` and commit the result",
                out.display()
            ));
        }
        println!("{}: {} files up to date", out.display(), plan.files.len());
        return Ok(());
    }
    let done = generator::write::write(&out, &plan)?;
    print_crates(&out, &plan, |dir| {
        let written = done.written.iter().filter(|p| p.starts_with(dir)).count();
        match written {
            0 => "unchanged".to_string(),
            n => format!("{n} written"),
        }
    });
    for p in &done.written {
        println!("wrote {}", out.join(p).display());
    }
    for p in &done.removed {
        println!("removed {}", out.join(p).display());
    }
    println!(
        "{}: {} written, {} removed, {} unchanged",
        out.display(),
        done.written.len(),
        done.removed.len(),
        done.unchanged
    );
    Ok(())
}

/// One line per crate of `plan`: `model "tiny-llama" (models.toml entry 11): crate tiny-llama in
/// generated/tiny-llama (unchanged)`.
fn print_crates(out: &Path, plan: &Plan, status: impl Fn(&str) -> String) {
    for PlannedCrate { dir, source } in &plan.crates {
        println!(
            "{source}: crate {dir} in {} ({})",
            out.join(dir).display(),
            status(dir)
        );
    }
}

/// What `--check` found in crate directory `dir`.
fn check_status(report: &Report, dir: &str) -> String {
    let count = |paths: &[PathBuf]| paths.iter().filter(|p| p.starts_with(dir)).count();
    let found: Vec<String> = [
        ("stale", count(&report.stale)),
        ("missing", count(&report.missing)),
        ("extra", count(&report.extra)),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect();
    match found.is_empty() {
        true => "up to date".to_string(),
        false => found.join(", "),
    }
}
