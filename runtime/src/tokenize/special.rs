//! The special ids of a `tokenizer.json`, read from the files beside it the way transformers reads them:
//! `generation_config.json` first (what `generate()` stops on), then `config.json`, then the token
//! strings of `tokenizer_config.json` (`"eos_token": "</s>"` or `{"content": "</s>", …}`) looked up in
//! the vocabulary.

use super::TokenizerError;
use serde_json::Value;
use std::path::Path;

pub struct SpecialIds {
    pub eos: Vec<u32>,
    pub bos: Option<u32>,
}

/// A sibling JSON object, `None` when the file does not exist.
fn read(dir: &Path, name: &str) -> Result<Option<Value>, TokenizerError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let load = |detail: String| TokenizerError::Load {
        path: path.clone(),
        detail,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| load(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| load(e.to_string()))?;
    if !v.is_object() {
        return Err(load("not a JSON object".into()));
    }
    Ok(Some(v))
}

/// An id field: an integer or a list of integers (`null` or absent: none).
fn ids(dir: &Path, file: &str, v: &Value, key: &str) -> Result<Vec<u32>, TokenizerError> {
    let bad = || TokenizerError::Load {
        path: dir.join(file),
        detail: format!(
            "`{key}` must be a token id or a list of token ids, found {}",
            v[key]
        ),
    };
    let one = |x: &Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)
    };
    match &v[key] {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(one).collect(),
        x => Ok(vec![one(x)?]),
    }
}

/// A token string field of `tokenizer_config.json`, looked up in the vocabulary.
fn token(v: &Value, key: &str, tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    let s = match &v[key] {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("content")?.as_str()?,
        _ => return None,
    };
    tokenizer.token_to_id(s)
}

pub fn from_siblings(
    dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
) -> Result<SpecialIds, TokenizerError> {
    let mut eos = Vec::new();
    let mut bos = None;
    for file in ["generation_config.json", "config.json"] {
        if let Some(v) = read(dir, file)? {
            if eos.is_empty() {
                eos = ids(dir, file, &v, "eos_token_id")?;
            }
            if bos.is_none() {
                bos = ids(dir, file, &v, "bos_token_id")?.first().copied();
            }
        }
    }
    if let Some(v) = read(dir, "tokenizer_config.json")? {
        if eos.is_empty() {
            eos.extend(token(&v, "eos_token", tokenizer));
        }
        if bos.is_none() {
            bos = token(&v, "bos_token", tokenizer);
        }
    }
    Ok(SpecialIds { eos, bos })
}
