//! `models.toml`: the list of models the generator emits crates for. (Owned by the generator work.)

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Other(String),
}
