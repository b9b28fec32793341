//! Chat templates (`tokenizer_config.json`, `chat_template.jinja` or GGUF metadata) rendered with minijinja.
//!
//! The environment is the one transformers' `apply_chat_template` renders in: `trim_blocks` and
//! `lstrip_blocks`, loop controls, Python string/dict/list methods (`.strip()`, `.startswith()`,
//! `.items()` …, from `minijinja-contrib`'s pycompat), `raise_exception(msg)`, and a `tojson` that writes
//! what Python's `json.dumps` writes (`tojson`); booleans and none print as `True`/`False`/`None`, as
//! Python prints them. Templates get `messages`, `add_generation_prompt`,
//! `bos_token` and `eos_token`. A fuel limit bounds the work a hostile template can ask for.

mod sources;
mod tojson;

use crate::weights::WeightsError;
use crate::weights::gguf::GgufFile;
use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Value};
use std::path::{Path, PathBuf};

/// Enough for any real chat template over a long conversation; stops a template that loops over
/// `range(10**9)`.
const FUEL: u64 = 50_000_000;
const TEMPLATE_NAME: &str = "chat_template";

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Other(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file holding the template (or its special tokens) cannot be understood.
    #[error("cannot read the chat template from {}: {detail}", path.display())]
    Load { path: PathBuf, detail: String },
    #[error(transparent)]
    Gguf(#[from] WeightsError),
    /// The template does not parse.
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    /// Rendering failed, including the template's own `raise_exception(...)`.
    #[error("the chat template failed to render: {0}")]
    Render(String),
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
    env: Environment<'static>,
}

/// Every failure of minijinja with its full cause chain (the line, the template's own message).
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

fn environment(source: &str) -> Result<Environment<'static>, ChatError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_filter("tojson", tojson::tojson);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_template_owned(TEMPLATE_NAME, source.to_string())
        .map_err(|e| ChatError::Syntax(describe(&e)))?;
    Ok(env)
}

/// Print values as Jinja2 under Python prints them where minijinja differs: `True`, `False`, `None`.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    let word = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(word).map_err(Error::from)
}

/// An absent special token is undefined in the template (renders as nothing), as in transformers.
fn defined(token: &Option<String>) -> Value {
    token.as_deref().map_or(Value::UNDEFINED, Value::from)
}

impl ChatTemplate {
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate, ChatError> {
        let env = environment(&source)?;
        Ok(ChatTemplate {
            source,
            bos_token,
            eos_token,
            env,
        })
    }

    /// The template of a HF model directory (`chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template`); `Ok(None)` when it has none.
    pub fn from_model_dir(dir: &Path) -> Result<Option<ChatTemplate>, ChatError> {
        let Some(found) = sources::from_model_dir(dir)? else {
            return Ok(None);
        };
        ChatTemplate::new(found.source, found.bos_token, found.eos_token).map(Some)
    }

    /// `tokenizer.chat_template` of a GGUF file; `Ok(None)` when it has none.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<ChatTemplate>, ChatError> {
        let Some(found) = sources::from_gguf(file)? else {
            return Ok(None);
        };
        ChatTemplate::new(found.source, found.bos_token, found.eos_token).map(Some)
    }

    /// Render `messages` as the prompt text (the template adds BOS where it wants it).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with(messages, add_generation_prompt, Value::UNDEFINED)
    }

    /// [`ChatTemplate::render`] with further template variables (e.g. `tools`, `date_string`) from a
    /// map value; they cannot override `messages`, `add_generation_prompt` or the special tokens.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: Value,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => defined(&self.bos_token),
            eos_token => defined(&self.eos_token),
            ..extra
        };
        template
            .render(ctx)
            .map_err(|e| ChatError::Render(describe(&e)))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `(bos_token, eos_token)` as the template sees them.
    pub fn special_tokens(&self) -> (Option<&str>, Option<&str>) {
        (self.bos_token.as_deref(), self.eos_token.as_deref())
    }
}
