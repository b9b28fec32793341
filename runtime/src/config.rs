//! Hugging Face `config.json` → [`ModelSpec`](crate::spec::ModelSpec). (Owned by the generator work.)

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Other(String),
}
