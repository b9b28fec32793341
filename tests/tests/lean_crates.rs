//! What each crate compiles, read from `cargo tree` (offline, normal dependencies, this platform): the
//! model description and the generator compile none of the runtime's heavy dependencies; the runtime,
//! the command line, the registry and every generated model crate compile cudarc (and askama, for the
//! kernel templates) with their default `cuda` feature and neither without it; the registry and the
//! command line forward the feature to every model crate; the example application, which runs on the
//! CPU, compiles no cudarc.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(&cargo)
        .current_dir(workspace())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "cargo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo's output is UTF-8")
}

/// Every package in the normal dependency trees of `packages` built together with `flags`, themselves
/// included: `(name, enabled features)`, the features comma-separated.
fn tree_with_features(packages: &[&str], flags: &[&str]) -> BTreeSet<(String, String)> {
    let mut args = vec![
        "tree",
        "--offline",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}|{f}",
    ];
    for package in packages {
        args.extend(["-p", package]);
    }
    args.extend(flags);
    let text = cargo(&args);
    let deps: BTreeSet<(String, String)> = text
        .lines()
        // One tree per package, an empty line between two.
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (p, rest) = line.split_once('|').expect("`{p}|{f}` lines");
            let name = p.split_whitespace().next().expect("a package name");
            // `cargo tree` marks a package already shown with ` (*)` after its features.
            let features = rest.trim_end_matches(" (*)").trim();
            (name.to_string(), features.to_string())
        })
        .collect();
    for package in packages {
        assert!(
            deps.iter().any(|(name, _)| name == package),
            "`cargo {}` does not list {package}:\n{text}",
            args.join(" ")
        );
    }
    deps
}

/// The names in the normal dependency trees of `packages` built together with `flags`, themselves
/// included.
fn tree(packages: &[&str], flags: &[&str]) -> BTreeSet<String> {
    tree_with_features(packages, flags)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn assert_without(packages: &[&str], flags: &[&str], absent: &[&str]) {
    let deps = tree(packages, flags);
    let found: Vec<&str> = absent
        .iter()
        .copied()
        .filter(|a| deps.contains(*a))
        .collect();
    if let Some(first) = found.first() {
        // Who pulls it in: the inverted tree from it up to the packages.
        let mut args = vec![
            "tree",
            "--offline",
            "-e",
            "normal",
            "-e",
            "features",
            "-i",
            first,
        ];
        for package in packages {
            args.extend(["-p", package]);
        }
        args.extend(flags);
        panic!(
            "{packages:?} {flags:?} compile {found:?}; `cargo {}`:\n{}",
            args.join(" "),
            cargo(&args)
        );
    }
}

/// `present` are each in `package`'s own tree (built alone: no other package's features unify
/// with its own).
fn assert_with(package: &str, flags: &[&str], present: &[&str]) {
    let deps = tree(&[package], flags);
    let missing: Vec<&str> = present
        .iter()
        .copied()
        .filter(|p| !deps.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "{package} {flags:?} lacks {missing:?}; its tree: {deps:?}"
    );
}

/// The workspace's crates under `generated/`: every model crate and the registry, by package name.
fn generated_crates() -> Vec<String> {
    let text = cargo(&[
        "metadata",
        "--offline",
        "--no-deps",
        "--format-version",
        "1",
    ]);
    let v: Value = serde_json::from_str(&text).expect("cargo metadata JSON");
    let generated = workspace()
        .join("generated")
        .canonicalize()
        .expect("generated/");
    let crates: Vec<String> = v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            Path::new(p["manifest_path"].as_str().expect("manifest_path")).starts_with(&generated)
        })
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    assert!(
        crates.iter().any(|c| c == "registry") && crates.iter().any(|c| c == "tiny-llama"),
        "{crates:?}"
    );
    crates
}

const NO_DEFAULT: &[&str] = &["--no-default-features"];
const CUDA: &[&str] = &["cudarc", "askama"];

#[test]
fn the_model_description_and_the_generator_compile_no_engine_dependency() {
    let heavy = [
        "runtime",
        "cudarc",
        "tokenizers",
        "minijinja",
        "safetensors",
        "rayon",
    ];
    assert_without(&["llmforge-spec"], &[], &heavy);
    assert_without(&["generator"], &[], &heavy);
    assert_with("generator", &[], &["llmforge-spec", "askama"]);
}

#[test]
fn the_runtime_compiles_cudarc_only_with_its_cuda_feature() {
    assert_with("runtime", &[], CUDA);
    assert_without(&["runtime"], NO_DEFAULT, CUDA);
    assert_with(
        "runtime",
        NO_DEFAULT,
        &["tokenizers", "safetensors", "rayon"],
    );
}

#[test]
fn the_command_line_compiles_cudarc_only_with_its_cuda_feature() {
    assert_with("run_llm", &[], CUDA);
    assert_without(&["run_llm"], NO_DEFAULT, CUDA);
    assert_with(
        "run_llm",
        NO_DEFAULT,
        &["runtime", "registry", "tiny-llama"],
    );
}

#[test]
fn every_generated_crate_compiles_cudarc_only_with_its_cuda_feature() {
    let crates = generated_crates();
    let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
    assert_without(&crates, NO_DEFAULT, CUDA);
    std::thread::scope(|s| {
        for package in &crates {
            s.spawn(|| assert_with(package, &[], CUDA));
        }
    });
}

/// A feature of a model crate is on only if the registry turns it on (it depends on them without
/// their default features), so this shows what the registry's `cuda` feature forwards.
#[test]
fn the_registry_forwards_its_cuda_feature_to_every_model_crate() {
    let models: Vec<String> = generated_crates()
        .into_iter()
        .filter(|c| c != "registry")
        .collect();
    for (flags, want) in [(&[][..], "cuda"), (NO_DEFAULT, "")] {
        let deps = tree_with_features(&["registry"], flags);
        for model in &models {
            let features: BTreeSet<&str> = deps
                .iter()
                .filter(|(name, _)| name == model)
                .map(|(_, f)| f.as_str())
                .collect();
            assert_eq!(
                features,
                BTreeSet::from([want]),
                "registry {flags:?}: the features of {model}"
            );
        }
    }
}

#[test]
fn the_cpu_only_example_application_compiles_no_cudarc() {
    assert_without(&["app"], &[], CUDA);
    assert_with("app", &[], &["runtime", "tiny-llama"]);
}
