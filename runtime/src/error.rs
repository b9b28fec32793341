//! The runtime's error type: one variant per module error, plus invalid caller input.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenize::TokenizerError),
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatError),
    #[error(transparent)]
    EngineFile(#[from] crate::engine_file::EngineFileError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// A size from the caller does not fit in the memory the machine can give (`admission`).
    #[error(transparent)]
    TooLarge(#[from] crate::admission::TooLarge),
    /// A caller asked for something the engine cannot do: a prompt longer than the cache, a token id out
    /// of the vocabulary, a batch larger than the engine was built for, invalid sampling values…
    #[error("{0}")]
    InvalidInput(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
