//! The normalised description of a decoder-only model: everything the runtime and the generator need to
//! know about an architecture, resolved once from a Hugging Face `config.json` (see `config`).
//!
//! Nothing here depends on which layout (transformers 4 or 5) the config came in.

use serde::{Deserialize, Serialize};

/// Architecture family. Each family's config reader (`config/<family>.rs`) fills the spec, from which
/// the layer plan (`plan.rs`) describes what every layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gpt2,
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Gpt2 => "gpt2",
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `x / sqrt(mean(x^2) + eps) * weight` (Llama, Qwen2).
    RmsNorm,
    /// `(x - mean) / sqrt(var + eps) * weight + bias` (GPT-2).
    LayerNorm,
}

/// Feed-forward shape and activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mlp {
    /// `down(silu(gate(x)) * up(x))` (Llama, Qwen2).
    SwiGlu,
    /// `proj(gelu_new(fc(x)))` with biases (GPT-2), gelu_new being the tanh approximation.
    GeluNew,
    /// `down(gelu_tanh(gate(x)) * up(x))` (Gemma 3's `gelu_pytorch_tanh`, the same tanh approximation).
    GeGlu,
}

/// Llama 3 frequency-dependent RoPE scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// YaRN rotary scaling (`rope_type: "yarn"`), its fields resolved as transformers'
/// `_compute_yarn_parameters` resolves them: frequencies blended between interpolation (divided by
/// `factor`) and extrapolation over a ramp of dimensions set by `beta_fast` / `beta_slow` rotations
/// in `original_max_position_embeddings`, and cos/sin multiplied by `attention_factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct YarnScaling {
    pub factor: f64,
    pub original_max_position_embeddings: usize,
    pub attention_factor: f64,
    pub beta_fast: f64,
    pub beta_slow: f64,
    /// Round the ramp's ends to whole dimensions (transformers' `truncate`, default true).
    pub truncate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Positions {
    /// Rotary embeddings, HF "rotate_half" convention (non-interleaved), applied to the full head dim.
    Rope {
        theta: f64,
        llama3: Option<Llama3Scaling>,
        /// Linear position interpolation (`rope_type: "linear"`): every frequency divided by this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        linear: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        yarn: Option<YarnScaling>,
    },
    /// Learned absolute position embeddings (GPT-2's `wpe`).
    Learned,
}

/// The normalised model. Heads and widths are the same in every layer; a layer's cache holds the
/// positions it can attend to ([`ModelSpec::kv_shape`]: a sliding-window layer keeps only its window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The `models.toml` name (or the directory/file name for ad-hoc models).
    pub name: String,
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub mlp: Mlp,
    pub positions: Positions,
    /// Bias on the q, k and v projections (Qwen2, GPT-2).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (GPT-2).
    pub o_bias: bool,
    /// Biases on the MLP projections (GPT-2).
    pub mlp_bias: bool,
    /// Per-head RMSNorm of q and k before the rotary embedding (Qwen3), with the layer's epsilon.
    #[serde(default)]
    pub qk_norm: bool,
    /// The window of the sliding-window layers: a query at position `p` sees the keys `j` with
    /// `p - w < j <= p` (HF's `sliding_window`); `None` when every layer attends to every earlier key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// Which layers use `sliding_window`, one entry per layer when it is set, empty otherwise (HF's
    /// `layer_types`: Mistral and Phi-3 slide in every layer, Gemma 3 in five of every six).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sliding_layers: Vec<bool>,
    /// The rotary base of the sliding layers, without scaling, where it differs from the other
    /// layers' (Gemma 3's `rope_local_base_freq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rope_theta: Option<f64>,
    /// Softmax scale of the attention scores; `None` is `1 / sqrt(head_dim)` (Gemma 3:
    /// `query_pre_attn_scalar^-1/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_scale: Option<f64>,
    /// Token embeddings are multiplied by this (Gemma 3: `sqrt(hidden_size)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_scale: Option<f64>,
    /// The final logits are soft-capped, `cap * tanh(l / cap)` (Gemma's `final_logit_softcapping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_softcap: Option<f64>,
    /// Each half of a layer also normalises its output before adding it to the residual stream
    /// (Gemma 3's `post_attention_layernorm` and `post_feedforward_layernorm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandwich_norms: bool,
    /// The checkpoint stores each norm's gain minus one (Gemma computes `x * (1 + w)`); the loader
    /// adds the one, so the engines apply an ordinary gain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub norm_gain_offset: bool,
    /// `lm_head.weight` is the token embedding.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Every token id that ends generation (config's `eos_token_id`, scalar or list).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The checkpoint's own dtype (`torch_dtype` / `dtype`), e.g. "bfloat16".
    pub source_dtype: Option<String>,
    /// Hex SHA-256 of the `config.json` bytes this spec was parsed from.
    pub config_hash: String,
}

/// An order of magnitude more layers than any published decoder-only model has. Per-layer structures
/// (weight names, cache tensors, generated fields) are made up front, so a spec claiming more is refused
/// rather than exhausting memory before its weights are even looked at.
pub const MAX_LAYERS: usize = 4096;

impl ModelSpec {
    /// Why this spec's sizes cannot be run, if they cannot: more than [`MAX_LAYERS`] layers, or size
    /// products (weight shapes, the parameter count) that overflow `usize`.
    pub fn size_problem(&self) -> Option<String> {
        if self.num_layers > MAX_LAYERS {
            return Some(format!(
                "{} layers is more than the {MAX_LAYERS} this runtime accepts",
                self.num_layers
            ));
        }
        let mul = |a: usize, b: usize| a.checked_mul(b);
        let add = |a: usize, b: usize| a.checked_add(b);
        let h = self.hidden_size;
        // An upper bound of `num_parameters` for every family: three MLP matrices, every bias and norm.
        let total = (|| {
            let q = mul(self.num_heads, self.head_dim)?;
            let kv = mul(self.num_kv_heads, self.head_dim)?;
            let i = self.intermediate_size;
            let mut layer = add(mul(2, mul(h, q)?)?, mul(2, mul(h, kv)?)?)?;
            layer = add(layer, mul(3, mul(h, i)?)?)?;
            layer = add(
                layer,
                add(add(q, mul(2, kv)?)?, add(mul(2, i)?, mul(5, h)?)?)?,
            )?;
            layer = add(layer, mul(2, self.head_dim)?)?;
            let embeddings = mul(
                add(mul(2, self.vocab_size)?, self.max_position_embeddings)?,
                h,
            )?;
            add(mul(self.num_layers, layer)?, add(embeddings, mul(2, h)?)?)
        })();
        total.is_none().then(|| {
            format!(
                "hidden size {h} with {} layers, {} heads of {} dims, intermediate size {} and vocabulary {}: \
                 the parameter count overflows",
                self.num_layers,
                self.num_heads,
                self.head_dim,
                self.intermediate_size,
                self.vocab_size
            )
        })
    }

    /// The window of layer `layer`'s attention, `None` where it sees every earlier key.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        let slides = self.sliding_layers.get(layer).copied().unwrap_or(false);
        self.sliding_window.filter(|_| slides)
    }

    /// Width of the query projection output (`num_heads * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of each of the key and value projection outputs (`num_kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Shape of one layer's key (or value) cache: `[batch, num_kv_heads, positions, head_dim]`, where
    /// `positions` is `max_seq_len`, or for a sliding-window layer the window when it is shorter: a
    /// ring buffer in which position `p` sits in slot `p % window`.
    pub fn kv_shape(&self, layer: usize, batch: usize, max_seq_len: usize) -> [usize; 4] {
        let positions = match self.layer_window(layer) {
            Some(w) => w.min(max_seq_len),
            None => max_seq_len,
        };
        [batch, self.num_kv_heads, positions, self.head_dim]
    }

    /// Number of parameters (including the untied lm_head once, tied embeddings once).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let i = self.intermediate_size;
        let mut layer = h * self.q_dim() + 2 * h * self.kv_dim() + self.q_dim() * h;
        layer += match self.mlp {
            Mlp::SwiGlu | Mlp::GeGlu => 3 * h * i,
            Mlp::GeluNew => 2 * h * i,
        };
        if self.qkv_bias {
            layer += self.q_dim() + 2 * self.kv_dim();
        }
        if self.o_bias {
            layer += h;
        }
        if self.qk_norm {
            layer += 2 * self.head_dim;
        }
        if self.mlp_bias {
            layer += match self.mlp {
                Mlp::SwiGlu | Mlp::GeGlu => 2 * i + h,
                Mlp::GeluNew => i + h,
            };
        }
        let norm_params = match self.norm {
            NormKind::RmsNorm => h,
            NormKind::LayerNorm => 2 * h,
        };
        layer += norm_params * if self.sandwich_norms { 4 } else { 2 };
        let mut total = self.num_layers * layer + norm_params + self.vocab_size * h;
        if !self.tie_word_embeddings {
            total += self.vocab_size * h;
        }
        if self.positions == Positions::Learned {
            total += self.max_position_embeddings * h;
        }
        total
    }
}
