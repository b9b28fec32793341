//! The engine file: header (magic, format version, model, config hash, precision, max sequence length,
//! batch, backend, target SM, GEMM choices) followed by the backend's payload.

#[derive(Debug, thiserror::Error)]
pub enum EngineFileError {
    #[error("{0}")]
    Other(String),
}
