//! Tokenizer loading (`tokenizer.json`, GGUF metadata) and streaming-safe decoding.
//!
//! A `tokenizer.json` is read by the `tokenizers` crate as is; its special ids come from the sibling
//! files transformers reads them from (`special`). A GGUF tokenizer is rebuilt from its
//! `tokenizer.ggml.*` metadata as a `tokenizers` pipeline that gives llama.cpp's ids (`gguf`): byte-level
//! BPE (GPT-2's, SmolLM's, Llama 3's or Qwen2's split) or SentencePiece BPE (Llama 2's).
//! [`StreamDecoder`] (`stream`) turns ids into text as they arrive without ever splitting a character.

mod gguf;
mod special;
mod stream;

use crate::weights::WeightsError;
use crate::weights::gguf::GgufFile;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{0}")]
    Other(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tokenizer (or a sibling config file) that cannot be read.
    #[error("cannot load the tokenizer from {}: {detail}", path.display())]
    Load { path: PathBuf, detail: String },
    /// The GGUF metadata describing the tokenizer is missing, malformed or unsupported.
    #[error(transparent)]
    Gguf(#[from] WeightsError),
    #[error("cannot encode the text: {0}")]
    Encode(String),
    #[error("cannot decode the ids: {0}")]
    Decode(String),
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId { id: u32, vocab_size: usize },
}

/// A loaded tokenizer plus the model's special ids.
pub struct Tokenizer {
    inner: Option<tokenizers::Tokenizer>,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
}

impl Tokenizer {
    /// `tokenizer.json` (a HF fast tokenizer file). EOS/BOS come from the sibling
    /// `generation_config.json` / `tokenizer_config.json` / `config.json` where present.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let inner = load_json(path, &bytes)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let ids = special::from_siblings(dir, &inner)?;
        Ok(Tokenizer {
            inner: Some(inner),
            eos_ids: ids.eos,
            bos_id: ids.bos,
        })
    }

    /// A `tokenizer.json` already in memory (`path` only names it in errors), with explicit special
    /// ids.
    pub fn from_json_bytes(
        path: &Path,
        bytes: &[u8],
        eos_ids: Vec<u32>,
        bos_id: Option<u32>,
    ) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            inner: Some(load_json(path, bytes)?),
            eos_ids,
            bos_id,
        })
    }

    /// The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let built = gguf::build(file)?;
        Ok(Tokenizer {
            inner: Some(built.tokenizer),
            eos_ids: built.eos_ids,
            bos_id: built.bos_id,
        })
    }

    fn inner(&self) -> Result<&tokenizers::Tokenizer, TokenizerError> {
        self.inner
            .as_ref()
            .ok_or_else(|| TokenizerError::Other("the tokenizer is not loaded".into()))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizers(&self) -> Option<&tokenizers::Tokenizer> {
        self.inner.as_ref()
    }

    /// Text → ids; `add_special_tokens` adds BOS etc. as the tokenizer's post-processor says.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner()?
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids → text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let inner = self.inner()?;
        let vocab_size = inner.get_vocab_size(true);
        if let Some(&id) = ids.iter().find(|&&id| inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::UnknownId { id, vocab_size });
        }
        inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.as_ref().map_or(0, |t| t.get_vocab_size(true))
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.as_ref()?.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.as_ref()?.id_to_token(id)
    }

    /// A decoder that turns ids into text as they arrive, never splitting a multi-byte character.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            ids: Vec::new(),
            prefix: 0,
            emitted: 0,
        }
    }
}

fn load_json(path: &Path, bytes: &[u8]) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let load = |detail: String| TokenizerError::Load {
        path: path.to_path_buf(),
        detail,
    };
    // The JSON syntax first: `tokenizers` 0.23 panics on some syntax errors (a truncated `decoder`).
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|e| load(format!("not valid JSON: {e}")))?;
    // Valid JSON that `tokenizers` cannot rebuild can still reach one of its `expect`s (a bad
    // `Precompiled` normaliser); a panic there is a refusal of this file, not a crash of ours.
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(result) => result.map_err(|e| load(e.to_string())),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            Err(load(format!("the tokenizers library failed on it: {why}")))
        }
    }
}

/// Incremental decoding for streaming output: `ids[prefix..emitted]` is the context whose text has
/// already been returned; the ids after it are decoded together with that context, so that decoders
/// which depend on neighbours (leading-space stripping, byte fallback) see what a full decode sees.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    prefix: usize,
    emitted: usize,
}
