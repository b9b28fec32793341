//! Chat templates (`tokenizer_config.json`, `chat_template.jinja`, GGUF metadata) rendered with minijinja.

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Other(String),
}
