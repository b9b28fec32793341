//! The llmforge generator as a library: `models.toml` → one [`ModelInput`] per model (its entry and the
//! [`ModelSpec`] parsed from its `config.json` by `llmforge_spec::config`) → a [`Plan`] of every file under
//! `generated/` → written to disk ([`write`]) or compared with it ([`check`]).
//!
//! Nothing here reads the clock or iterates a hash map: the same inputs give byte-identical output.

pub mod check;
pub mod emit;
pub mod paths;
pub mod write;

use llmforge_spec::ModelSpec;
use llmforge_spec::config::{ConfigError, load_config_file};
use llmforge_spec::manifest::{Manifest, ManifestError, ModelEntry, slug};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory name of the generated registry crate.
pub const REGISTRY: &str = "registry";

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// `models.toml` cannot be read or is invalid.
    #[error("{}", manifest_message(path, source))]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    /// Something wrong with one `[[model]]` of `models.toml`: its name, its position (from 1) and
    /// what is wrong.
    #[error("model {name:?} (models.toml entry {entry}): {problem}")]
    Entry {
        name: String,
        entry: usize,
        #[source]
        problem: Problem,
    },
    #[error("models.toml has no model named {0:?}")]
    UnknownModel(String),
    #[error("template {template}: {source}")]
    Template {
        template: &'static str,
        #[source]
        source: askama::Error,
    },
    #[error("emitted Rust for {file} does not parse: {source}")]
    Syntax {
        file: String,
        #[source]
        source: syn::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a `[[model]]` entry ([`GenError::Entry`] names the entry).
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("config.json: cannot read {}: {source}", path.display())]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config does not parse or describes a model the runtime cannot run.
    #[error("{0}")]
    Config(String),
    #[error("crate name {package:?} {why} (rename the model in models.toml)")]
    CrateName { package: String, why: &'static str },
    #[error("the config has no layers")]
    NoLayers,
    #[error("{field} = {value} is not a finite number")]
    NotFinite { field: String, value: f64 },
    /// Emitting the crate failed (a template or the emitted Rust).
    #[error(transparent)]
    Emit(Box<GenError>),
}

/// `models.toml` errors name the file when the manifest's own message does not.
fn manifest_message(path: &Path, e: &ManifestError) -> String {
    let shown = path.display().to_string();
    let message = e.to_string();
    if message.contains(&shown) {
        message
    } else {
        format!("{shown}: {message}")
    }
}

/// Read `models.toml` at `path`.
pub fn load_manifest(path: &Path) -> Result<Manifest, GenError> {
    Manifest::load(path).map_err(|source| GenError::Manifest {
        path: path.to_path_buf(),
        source,
    })
}

/// A config error as a [`Problem`] of the entry that names the model already: the message without
/// the model's name, and starting with `config.json` so that the file is named.
fn config_problem(model: &str, e: ConfigError) -> Problem {
    match e {
        ConfigError::Io { path, source } => Problem::ConfigUnreadable {
            path: paths::display(&path),
            source,
        },
        other => {
            let message = other.to_string();
            let message = message
                .strip_prefix(&format!("model {model}: "))
                .unwrap_or(&message);
            match message.starts_with("config.json") {
                true => Problem::Config(message.to_string()),
                false => Problem::Config(format!("config.json: {message}")),
            }
        }
    }
}

/// One `[[model]]` of `models.toml` with its parsed config.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub entry: ModelEntry,
    /// Its position in `models.toml`, from 1.
    pub index: usize,
    pub spec: ModelSpec,
    /// The crate (package and directory) name: `slug(name)`.
    pub package: String,
    /// The library name: the package name with `_` for `-`.
    pub lib: String,
}

impl ModelInput {
    /// Parse the entry's `config.json` (relative to the manifest's directory).
    pub fn load(manifest: &Manifest, entry: &ModelEntry) -> Result<ModelInput, GenError> {
        let index = manifest
            .models
            .iter()
            .position(|m| m.name == entry.name)
            .map_or(0, |i| i + 1);
        let error = |problem| GenError::Entry {
            name: entry.name.clone(),
            entry: index,
            problem,
        };
        let (package, lib) = crate_names(&entry.name).map_err(error)?;
        let spec = load_config_file(&entry.name, &manifest.config_path(entry))
            .map_err(|e| error(config_problem(&entry.name, e)))?;
        if spec.num_layers == 0 {
            return Err(error(Problem::NoLayers));
        }
        Ok(ModelInput {
            entry: entry.clone(),
            index,
            spec,
            package,
            lib,
        })
    }

    /// `problem`, naming this model's entry.
    pub fn error(&self, problem: Problem) -> GenError {
        GenError::Entry {
            name: self.entry.name.clone(),
            entry: self.index,
            problem,
        }
    }

    /// How messages name this model: `model "tiny-llama" (models.toml entry 11)`.
    pub fn label(&self) -> String {
        format!(
            "model {:?} (models.toml entry {})",
            self.entry.name, self.index
        )
    }
}

/// Crate names that the workspace or Rust already uses.
const RESERVED: [&str; 11] = [
    "runtime",
    "generator",
    "registry",
    "app",
    "run_llm",
    "llmforge_tests",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
];

/// The package name (`slug(name)`) and library name of a model's crate, or why there can be none.
pub fn crate_names(name: &str) -> Result<(String, String), Problem> {
    let package = slug(name);
    let lib = package.replace('-', "_");
    let refuse = |why| {
        Err(Problem::CrateName {
            package: package.clone(),
            why,
        })
    };
    if !package.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("must start with a letter");
    }
    if RESERVED.contains(&lib.as_str()) || syn::parse_str::<syn::Ident>(&lib).is_err() {
        return refuse("is a Rust keyword or a name the workspace already uses");
    }
    Ok((package, lib))
}

/// Every model of the manifest, in `models.toml` order.
pub fn load_models(manifest: &Manifest) -> Result<Vec<ModelInput>, GenError> {
    manifest
        .models
        .iter()
        .map(|e| ModelInput::load(manifest, e))
        .collect()
}

/// The model crate of `m`, its errors naming `m`'s entry.
fn model_crate(m: &ModelInput) -> Result<Vec<(String, String)>, GenError> {
    emit::model_crate(m).map_err(|e| match e {
        GenError::Entry { .. } => e,
        other => m.error(Problem::Emit(Box::new(other))),
    })
}

/// One crate of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCrate {
    /// Its directory under `generated/`, which is also its package name.
    pub dir: String,
    /// What it is generated from, e.g. `model "tiny-llama" (models.toml entry 11)`.
    pub source: String,
}

/// The files the generator owns, relative to `generated/`, with their full contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub files: BTreeMap<PathBuf, String>,
    /// The crates (top-level directories of `generated/`) this plan covers: one model's, or all of
    /// them, in `models.toml` order, then the registry.
    pub crates: Vec<PlannedCrate>,
    /// The plan covers all of `generated/` (anything else there is extra), not one model.
    pub whole: bool,
}

impl Plan {
    fn add(&mut self, dir: &str, source: String, files: Vec<(String, String)>) {
        self.crates.push(PlannedCrate {
            dir: dir.to_string(),
            source,
        });
        for (rel, text) in files {
            self.files.insert(PathBuf::from(dir).join(rel), text);
        }
    }
}

/// What the generator writes for `manifest`: every model crate and the registry, or with `only` one
/// model's crate (the registry lists every model, so it is left alone then).
pub fn plan(manifest: &Manifest, only: Option<&str>) -> Result<Plan, GenError> {
    let models = load_models(manifest)?;
    let mut plan = Plan::default();
    if let Some(name) = only {
        let m = models
            .iter()
            .find(|m| m.entry.name == name)
            .ok_or_else(|| GenError::UnknownModel(name.to_string()))?;
        plan.add(&m.package, m.label(), model_crate(m)?);
        return Ok(plan);
    }
    for m in &models {
        plan.add(&m.package, m.label(), model_crate(m)?);
    }
    let source = format!("the registry of the {} models", models.len());
    plan.add(REGISTRY, source, emit::registry_crate(manifest, &models)?);
    plan.whole = true;
    Ok(plan)
}
