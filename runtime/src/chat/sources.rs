//! Where a chat template and its special tokens are found.
//!
//! - A HF model directory: `chat_template.jinja` (transformers 5 writes it there), else
//!   `tokenizer_config.json`'s `chat_template` — a string, or a list of `{name, template}` from which
//!   the one named `default` is used. `bos_token` / `eos_token` come from `tokenizer_config.json`
//!   (a string or `{"content": …}`).
//! - A GGUF file: `tokenizer.chat_template`; the special tokens are
//!   `tokens[tokenizer.ggml.bos_token_id]` and `tokens[tokenizer.ggml.eos_token_id]`.

use super::ChatError;
use crate::weights::gguf::GgufFile;
use serde_json::Value;
use std::path::Path;

pub struct Found {
    pub source: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

fn read(path: &Path) -> Result<String, ChatError> {
    std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn token(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

pub fn from_model_dir(dir: &Path) -> Result<Option<Found>, ChatError> {
    let config_path = dir.join("tokenizer_config.json");
    let config = if config_path.is_file() {
        let text = read(&config_path)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ChatError::Load {
            path: config_path.clone(),
            detail: e.to_string(),
        })?;
        Some(v)
    } else {
        None
    };
    let jinja = dir.join("chat_template.jinja");
    let source = if jinja.is_file() {
        Some(read(&jinja)?)
    } else {
        match config.as_ref().map(|c| &c["chat_template"]) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            Some(other) => {
                return Err(ChatError::Load {
                    path: config_path,
                    detail: format!("`chat_template` must be a string or a list, found {other}"),
                });
            }
        }
    };
    Ok(source.map(|source| Found {
        source,
        bos_token: config.as_ref().and_then(|c| token(c, "bos_token")),
        eos_token: config.as_ref().and_then(|c| token(c, "eos_token")),
    }))
}

pub fn from_gguf(file: &GgufFile) -> Result<Option<Found>, ChatError> {
    let Some(source) = file.get_str("tokenizer.chat_template")? else {
        return Ok(None);
    };
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")?
        .unwrap_or_default();
    let token = |key: &str| -> Result<Option<String>, ChatError> {
        Ok(file
            .get_u64(key)?
            .and_then(|id| tokens.get(id as usize))
            .map(|t| t.to_string()))
    };
    Ok(Some(Found {
        source: source.to_string(),
        bos_token: token("tokenizer.ggml.bos_token_id")?,
        eos_token: token("tokenizer.ggml.eos_token_id")?,
    }))
}
