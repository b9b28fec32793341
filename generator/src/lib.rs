//! The llmforge generator as a library: `models.toml` → one [`ModelInput`] per model (its entry and the
//! [`ModelSpec`] parsed from its `config.json` by `runtime::config`) → a [`Plan`] of every file under
//! `generated/` → written to disk ([`write`]) or compared with it ([`check`]).
//!
//! Nothing here reads the clock or iterates a hash map: the same inputs give byte-identical output.

pub mod check;
pub mod emit;
pub mod write;

use runtime::ModelSpec;
use runtime::config::{ConfigError, load_config_file};
use runtime::manifest::{Manifest, ModelEntry, slug};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The directory name of the generated registry crate.
pub const REGISTRY: &str = "registry";

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("models.toml has no model named {0:?}")]
    UnknownModel(String),
    #[error("model {model}: {message}")]
    Model { model: String, message: String },
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

/// One `[[model]]` of `models.toml` with its parsed config.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub entry: ModelEntry,
    pub spec: ModelSpec,
    /// The crate (package and directory) name: `slug(name)`.
    pub package: String,
    /// The library name: the package name with `_` for `-`.
    pub lib: String,
}

impl ModelInput {
    /// Parse the entry's `config.json` (relative to the manifest's directory).
    pub fn load(manifest: &Manifest, entry: &ModelEntry) -> Result<ModelInput, GenError> {
        let (package, lib) = crate_names(&entry.name)?;
        let spec = load_config_file(&entry.name, &manifest.config_path(entry))?;
        if spec.num_layers == 0 {
            return Err(GenError::Model {
                model: entry.name.clone(),
                message: "the config has no layers".to_string(),
            });
        }
        Ok(ModelInput {
            entry: entry.clone(),
            spec,
            package,
            lib,
        })
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
pub fn crate_names(name: &str) -> Result<(String, String), GenError> {
    let package = slug(name);
    let lib = package.replace('-', "_");
    let refuse = |why: String| {
        Err(GenError::Model {
            model: name.to_string(),
            message: format!("crate name {package:?} {why} (rename the model in models.toml)"),
        })
    };
    if !package.starts_with(|c: char| c.is_ascii_lowercase()) {
        return refuse("must start with a letter".to_string());
    }
    if RESERVED.contains(&lib.as_str()) || syn::parse_str::<syn::Ident>(&lib).is_err() {
        return refuse("is a Rust keyword or a name the workspace already uses".to_string());
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

/// The files the generator owns, relative to `generated/`, with their full contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub files: BTreeMap<PathBuf, String>,
    /// The top-level directories of `generated/` this plan covers (one model's, or all of them).
    pub dirs: Vec<String>,
    /// The plan covers all of `generated/` (anything else there is extra), not one model.
    pub whole: bool,
}

impl Plan {
    fn add(&mut self, dir: &str, files: Vec<(String, String)>) {
        self.dirs.push(dir.to_string());
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
        plan.add(&m.package, emit::model_crate(m)?);
        return Ok(plan);
    }
    for m in &models {
        plan.add(&m.package, emit::model_crate(m)?);
    }
    plan.add(REGISTRY, emit::registry_crate(manifest, &models)?);
    plan.whole = true;
    Ok(plan)
}
