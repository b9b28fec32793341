//! Chat templates (`tokenizer_config.json`, `chat_template.jinja` or GGUF metadata) rendered with minijinja.
//!
//! CONTRACT (owned by the `text` work package; signatures are fixed, bodies are filled there).

use crate::weights::gguf::GgufFile;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A model's chat template with the special tokens it refers to.
pub struct ChatTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate, ChatError> {
        Ok(ChatTemplate {
            source,
            bos_token,
            eos_token,
        })
    }

    /// The template of a HF model directory (`chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template`); `Ok(None)` when it has none.
    pub fn from_model_dir(dir: &Path) -> Result<Option<ChatTemplate>, ChatError> {
        let _ = dir;
        Err(ChatError::Other("not implemented yet".into()))
    }

    /// `tokenizer.chat_template` of a GGUF file; `Ok(None)` when it has none.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<ChatTemplate>, ChatError> {
        let _ = file;
        Err(ChatError::Other("not implemented yet".into()))
    }

    /// Render `messages` as the prompt text (the template adds BOS where it wants it).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let _ = (
            messages,
            add_generation_prompt,
            &self.source,
            &self.bos_token,
            &self.eos_token,
        );
        Err(ChatError::Other("not implemented yet".into()))
    }
}
