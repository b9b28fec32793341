//! `cargo run -p generator [-- --model NAME] [--check]`: emit (or check) `generated/` from `models.toml`.

use anyhow::{Context, Result, bail};
use clap::Parser;
use runtime::manifest::Manifest;
use std::path::PathBuf;

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

fn main() -> Result<()> {
    let args = Args::parse();
    let manifest_path = args.manifest.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("models.toml")
    });
    let manifest = Manifest::load(&manifest_path)?;
    let out = args.out.unwrap_or_else(|| manifest.dir.join("generated"));
    let plan = generator::plan(&manifest, args.model.as_deref())?;
    if args.check {
        let report = generator::check::check(&out, &plan)?;
        if !report.is_clean() {
            for line in report.lines() {
                eprintln!("{line}");
            }
            bail!(
                "{} differs from what the generator writes: run `cargo run -p generator` and commit the result",
                out.display()
            );
        }
        println!("{}: {} files up to date", out.display(), plan.files.len());
        return Ok(());
    }
    let done = generator::write::write(&out, &plan)
        .with_context(|| format!("writing {}", out.display()))?;
    for p in &done.written {
        println!("wrote {}", p.display());
    }
    for p in &done.removed {
        println!("removed {}", p.display());
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
