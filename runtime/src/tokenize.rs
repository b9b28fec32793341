//! Tokenizer loading (`tokenizer.json`, GGUF metadata) and streaming-safe decoding.

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{0}")]
    Other(String),
}
