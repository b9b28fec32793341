//! Tokenizer loading (`tokenizer.json`, GGUF metadata) and streaming-safe decoding.
//!
//! CONTRACT (owned by the `text` work package; signatures are fixed, bodies are filled there).

use crate::weights::gguf::GgufFile;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{0}")]
    Other(String),
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
        Err(TokenizerError::Other(format!(
            "tokenizer loading is not implemented yet ({})",
            path.display()
        )))
    }

    /// The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let _ = file;
        Err(TokenizerError::Other(
            "GGUF tokenizers are not implemented yet".into(),
        ))
    }

    /// Text → ids; `add_special_tokens` adds BOS etc. as the tokenizer's post-processor says.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let _ = (text, add_special_tokens, &self.inner);
        Err(TokenizerError::Other("not implemented yet".into()))
    }

    /// Ids → text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let _ = ids;
        Err(TokenizerError::Other("not implemented yet".into()))
    }

    pub fn vocab_size(&self) -> usize {
        0
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// A decoder that turns ids into text as they arrive, never splitting a multi-byte character.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            ids: Vec::new(),
            emitted: 0,
        }
    }
}

/// Incremental decoding for streaming output.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder<'_> {
    /// Add one id; returns the new text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let _ = (id, &self.tokenizer, &self.ids, self.emitted);
        Err(TokenizerError::Other("not implemented yet".into()))
    }

    /// Whatever text remains (e.g. an incomplete character at the end, as U+FFFD).
    pub fn finish(self) -> Result<String, TokenizerError> {
        Err(TokenizerError::Other("not implemented yet".into()))
    }
}
