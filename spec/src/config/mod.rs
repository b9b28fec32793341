//! Hugging Face `config.json` → [`ModelSpec`]: one parser per architecture family (`gpt2`, `llama`
//! (also `mistral`, `qwen2`, `qwen3`), `gemma3`, `phi3`), both the transformers-4 layout (`rope_theta`,
//! `rope_scaling`, `torch_dtype`) and the transformers-5 layout (`rope_parameters`, `dtype`). Anything
//! the runtime does not implement is refused with a [`ConfigError`] naming the model, the field and the
//! value.

mod fields;
mod gemma3;
mod gpt2;
mod llama;
mod phi3;
mod rope;
#[cfg(test)]
mod tests;
mod windows;

use crate::spec::{Arch, ModelSpec};
use fields::Fields;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model {model}: config.json is not valid JSON: {source}")]
    NotJson {
        model: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("model {model}: config.json must be a JSON object")]
    NotObject { model: String },
    #[error(
        "model {model}: unsupported model_type {value:?} (supported: gemma3_text, gpt2, llama, mistral, phi3, qwen2, qwen3)"
    )]
    UnknownModelType { model: String, value: String },
    #[error("model {model}: required field `{field}` is missing")]
    Missing { model: String, field: String },
    #[error("model {model}: field `{field}` = {value} is not supported: {reason}")]
    Unsupported {
        model: String,
        field: String,
        value: String,
        reason: String,
    },
    #[error("model {model}: field `{field}` = {value} is invalid: {reason}")]
    Invalid {
        model: String,
        field: String,
        value: String,
        reason: String,
    },
}

/// Hex SHA-256 of `bytes` (the `config_hash` of a spec).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parse the bytes of a `config.json` for the model called `name`.
pub fn parse_config(name: &str, bytes: &[u8]) -> Result<ModelSpec, ConfigError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|source| ConfigError::NotJson {
        model: name.to_string(),
        source,
    })?;
    let Value::Object(obj) = &value else {
        return Err(ConfigError::NotObject {
            model: name.to_string(),
        });
    };
    let f = Fields::new(name, obj);
    let model_type = f
        .opt_str("model_type")?
        .ok_or_else(|| ConfigError::Missing {
            model: name.to_string(),
            field: "model_type".to_string(),
        })?;
    let mut spec = match model_type {
        "gpt2" => gpt2::parse(&f)?,
        "llama" => llama::parse(&f, Arch::Llama)?,
        "qwen2" => llama::parse(&f, Arch::Qwen2)?,
        "qwen3" => llama::parse(&f, Arch::Qwen3)?,
        "mistral" => llama::parse(&f, Arch::Mistral)?,
        "gemma3_text" => gemma3::parse(&f)?,
        "phi3" => phi3::parse(&f)?,
        "gemma3" => {
            return Err(f.unsupported(
                "model_type",
                &Value::from("gemma3"),
                "the multimodal Gemma 3 (`Gemma3ForConditionalGeneration`) is not supported; the \
                 text-only `gemma3_text` models (Gemma3ForCausalLM, e.g. gemma-3-1b) are",
            ));
        }
        other => {
            return Err(ConfigError::UnknownModelType {
                model: name.to_string(),
                value: other.to_string(),
            });
        }
    };
    check_sizes(&spec)?;
    spec.config_hash = sha256_hex(bytes);
    Ok(spec)
}

/// A spec the runtime cannot hold (see [`ModelSpec::size_problem`]) is refused naming the field.
fn check_sizes(spec: &ModelSpec) -> Result<(), ConfigError> {
    let Some(reason) = spec.size_problem() else {
        return Ok(());
    };
    let (field, value) = if spec.num_layers > crate::spec::MAX_LAYERS {
        let field = match spec.arch {
            Arch::Gpt2 => "n_layer",
            _ => "num_hidden_layers",
        };
        (field, spec.num_layers)
    } else {
        let field = match spec.arch {
            Arch::Gpt2 => "n_embd",
            _ => "hidden_size",
        };
        (field, spec.hidden_size)
    };
    Err(ConfigError::Invalid {
        model: spec.name.clone(),
        field: field.into(),
        value: value.to_string(),
        reason,
    })
}

/// Read and parse a `config.json` file for the model called `name`.
pub fn load_config_file(name: &str, path: &Path) -> Result<ModelSpec, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config(name, &bytes)
}

impl ModelSpec {
    /// The spec of the model in directory `dir` (its `config.json`), named after the directory.
    pub fn from_dir(dir: &Path) -> Result<ModelSpec, ConfigError> {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        load_config_file(&name, &dir.join("config.json"))
    }
}

/// Checkpoint dtype: transformers 5 writes `dtype`, transformers 4 `torch_dtype`.
fn source_dtype(f: &Fields<'_>) -> Result<Option<String>, ConfigError> {
    Ok(match f.opt_str("dtype")? {
        Some(d) => Some(d.to_string()),
        None => f.opt_str("torch_dtype")?.map(str::to_string),
    })
}

/// `(hidden_size, num_heads, num_kv_heads, head_dim)` of a rotary decoder's config: KV heads default
/// to the heads and divide them; `head_dim` is the config's, else the family's `default_head_dim`,
/// else hidden / heads.
fn geometry(
    f: &Fields<'_>,
    default_head_dim: Option<usize>,
) -> Result<(usize, usize, usize, usize), ConfigError> {
    let hidden_size = f.positive("hidden_size")?;
    let num_heads = f.positive("num_attention_heads")?;
    let num_kv_heads = match f.opt_usize("num_key_value_heads")? {
        Some(n) => f.check_positive("num_key_value_heads", n)?,
        None => num_heads,
    };
    divide(
        f,
        ("num_attention_heads", num_heads),
        ("num_key_value_heads", num_kv_heads),
    )?;
    let head_dim = match (f.opt_usize("head_dim")?, default_head_dim) {
        (Some(d), _) => f.check_positive("head_dim", d)?,
        (None, Some(d)) => d,
        (None, None) => divide(
            f,
            ("hidden_size", hidden_size),
            ("num_attention_heads", num_heads),
        )?,
    };
    Ok((hidden_size, num_heads, num_kv_heads, head_dim))
}

/// `head_dim` divides into `what` exactly, or an error naming both fields.
fn divide(
    f: &Fields<'_>,
    (num_field, num): (&str, usize),
    (den_field, den): (&str, usize),
) -> Result<usize, ConfigError> {
    if num % den != 0 {
        return Err(f.invalid(
            num_field,
            &Value::from(num),
            &format!("must be divisible by `{}` = {den}", f.path(den_field)),
        ));
    }
    Ok(num / den)
}
