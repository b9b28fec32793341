//! The layer plan: a declarative description of what one decoder layer computes and which canonical
//! tensors it reads, derived once from a [`ModelSpec`]. Both backends consume it: the CPU executes it op
//! by op (`runtime/src/model/`), CUDA maps it onto its fused kernels (`runtime/src/backend/cuda/`), and
//! the weight loaders, the engine-file writer and the synthetic weights take their tensor lists from it.
//!
//! Every layer of the supported families is the pre-norm block
//!
//! ```text
//! h   = x + o(attention(positions(qkv(norm(x)))))
//! out = h + down(activation(up(norm(h))))
//! ```
//!
//! or its sandwich form (Gemma 3), where each half's output is normalised once more before the add
//! (`h = x + norm(o(…))`, `out = h + norm(down(…))`),
//! and the plan says, per layer, which norm, which fused projections with or without biases, which
//! positional treatment, which attention window and which activation. A field an architecture does not
//! need is absent (`None`) rather than a flag the backends have to remember to check; an enum an
//! architecture will extend (the attention window, the residual pattern) is matched exhaustively by
//! both backends, so a new variant names every place that must learn it.

use crate::spec::{Llama3Scaling, Mlp, ModelSpec, NormKind, Positions, YarnScaling};

/// One norm: its kind, epsilon, width and canonical name prefix (`{name}.weight`, `{name}.bias` for
/// LayerNorm).
#[derive(Debug, Clone, PartialEq)]
pub struct NormPlan {
    pub name: String,
    pub kind: NormKind,
    pub eps: f64,
    pub width: usize,
}

impl NormPlan {
    pub fn has_bias(&self) -> bool {
        self.kind == NormKind::LayerNorm
    }
}

/// One canonical `[rows, in_features]` tensor inside a (possibly fused) linear layer, named by its
/// canonical prefix (`layers.0.q`: weight `layers.0.q.weight`, bias `layers.0.q.bias`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPlan {
    pub name: String,
    pub rows: usize,
}

/// A linear layer `y = x · Wᵀ (+ b)`: its parts fused along the output dimension (`[q | k | v]`,
/// `[gate | up]`), its input width, and whether every part has a bias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearPlan {
    pub parts: Vec<PartPlan>,
    pub in_features: usize,
    pub bias: bool,
}

impl LinearPlan {
    fn new(parts: &[(String, usize)], in_features: usize, bias: bool) -> LinearPlan {
        LinearPlan {
            parts: parts
                .iter()
                .map(|(name, rows)| PartPlan {
                    name: name.clone(),
                    rows: *rows,
                })
                .collect(),
            in_features,
            bias,
        }
    }

    pub fn out_features(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// The weight tensors `(name, [rows, in_features])`, in fused order.
    pub fn weights(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        self.parts
            .iter()
            .map(|p| (format!("{}.weight", p.name), vec![p.rows, self.in_features]))
    }

    /// The weight tensors as `(name, rows)`, in fused order (what a loader fuses along rows).
    pub fn weight_rows(&self) -> Vec<(String, usize)> {
        self.weights()
            .map(|(name, shape)| (name, shape[0]))
            .collect()
    }

    /// The bias tensors as `(name, rows)`, in fused order (empty without a bias).
    pub fn bias_rows(&self) -> Vec<(String, usize)> {
        self.biases()
            .map(|(name, shape)| (name, shape[0]))
            .collect()
    }

    /// The bias tensors `(name, [rows])`, in fused order (none without a bias).
    pub fn biases(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        self.parts
            .iter()
            .filter(|_| self.bias)
            .map(|p| (format!("{}.bias", p.name), vec![p.rows]))
    }
}

/// Rotary position embedding of q and k (HF `rotate_half` convention, over the whole head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotary {
    pub theta: f64,
    pub llama3: Option<Llama3Scaling>,
    /// Linear position interpolation: every frequency divided by this factor.
    pub linear: Option<f64>,
    pub yarn: Option<YarnScaling>,
}

/// Which keys a query attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every earlier position (causal).
    Full,
    /// The last `w` positions, its own included: a query at `p` sees keys `j` with `p - w < j <= p`.
    Sliding(usize),
}

impl Window {
    /// The first key position a query at `pos` sees.
    pub fn first_key(self, pos: usize) -> usize {
        match self {
            Window::Full => 0,
            Window::Sliding(w) => (pos + 1).saturating_sub(w),
        }
    }
}

/// Per-head norms of q and k (each `head_dim` wide, shared by every head), applied after the
/// projection and before the rotary embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct QkNorm {
    pub q: NormPlan,
    pub k: NormPlan,
}

/// The attention of one layer: GQA geometry, per-head q/k norms, positional treatment of q and k,
/// window.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionPlan {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Per-head norms of q and k (Qwen3); `None` when the projections feed the rotary directly.
    pub qk_norm: Option<QkNorm>,
    /// Rotary embedding of q and k; `None` when positions are learned (added to the embedding).
    pub rotary: Option<Rotary>,
    pub window: Window,
    /// The softmax scale of the scores `q·k` (`1 / sqrt(head_dim)` unless the family says otherwise).
    pub scale: f64,
}

impl AttentionPlan {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}

/// The MLP's activation between its two projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` over the fused `[gate | up]` output (SwiGLU): half as wide as its input.
    SiluGated,
    /// The tanh approximation of GELU (`gelu_new`), elementwise.
    GeluTanh,
    /// `gelu_tanh(gate) * up` over the fused `[gate | up]` output (GeGLU): half as wide as its input.
    GeluTanhGated,
}

impl Activation {
    /// Whether the activation halves its input (`[gate | up]` → `gate ⊙ up`).
    pub fn gated(self) -> bool {
        match self {
            Activation::SiluGated | Activation::GeluTanhGated => true,
            Activation::GeluTanh => false,
        }
    }
}

/// How a layer's two halves join the residual stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Residual {
    /// `x += f(norm(x))` for the attention half, then for the MLP half.
    PreNorm,
    /// `x += post(f(norm(x)))`: each half's output normalised again before the add (Gemma 3).
    Sandwich {
        post_attn_norm: NormPlan,
        post_mlp_norm: NormPlan,
    },
}

/// One decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub residual: Residual,
    pub attn_norm: NormPlan,
    /// `[q | k | v]`.
    pub qkv: LinearPlan,
    pub attention: AttentionPlan,
    pub o: LinearPlan,
    pub mlp_norm: NormPlan,
    /// `[gate | up]` (gated activations) or `fc`.
    pub up: LinearPlan,
    pub activation: Activation,
    /// `down` or `proj`.
    pub down: LinearPlan,
}

impl LayerPlan {
    /// The layer's linear layers, in order: `qkv`, `o`, `up`, `down`.
    pub fn linears(&self) -> [&LinearPlan; 4] {
        [&self.qkv, &self.o, &self.up, &self.down]
    }

    /// Width of the activation's output (the down projection's input).
    pub fn mlp_width(&self) -> usize {
        self.down.in_features
    }

    /// The layer's canonical tensors with their shapes, in the stable order the weight checks and the
    /// synthetic weights use: attention norm, q/k/v weights then biases, the q and k norms, o, the
    /// post-attention norm (sandwich), MLP norm, the MLP's weights then its biases, the post-MLP norm.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = norm_tensors(&self.attn_norm);
        out.extend(self.qkv.weights().chain(self.qkv.biases()));
        if let Some(n) = &self.attention.qk_norm {
            out.extend(norm_tensors(&n.q).into_iter().chain(norm_tensors(&n.k)));
        }
        out.extend(self.o.weights().chain(self.o.biases()));
        let post = match &self.residual {
            Residual::PreNorm => None,
            Residual::Sandwich {
                post_attn_norm,
                post_mlp_norm,
            } => Some((post_attn_norm, post_mlp_norm)),
        };
        if let Some((attn, _)) = post {
            out.extend(norm_tensors(attn));
        }
        out.extend(norm_tensors(&self.mlp_norm));
        out.extend(self.up.weights().chain(self.down.weights()));
        out.extend(self.up.biases().chain(self.down.biases()));
        if let Some((_, mlp)) = post {
            out.extend(norm_tensors(mlp));
        }
        out
    }
}

fn norm_tensors(n: &NormPlan) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![(format!("{}.weight", n.name), vec![n.width])];
    if n.has_bias() {
        out.push((format!("{}.bias", n.name), vec![n.width]));
    }
    out
}

/// The whole model: embeddings, layers, final norm, lm_head.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPlan {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Rows of the learned position table `pos_embed.weight`, when positions are learned.
    pub learned_positions: Option<usize>,
    pub layers: Vec<LayerPlan>,
    pub final_norm: NormPlan,
    /// The output projection `lm_head` (`[vocab, hidden]`, no bias).
    pub lm_head: LinearPlan,
    /// `lm_head` is the token embedding (one tensor serves both).
    pub tied: bool,
    /// Token embeddings are multiplied by this before the first layer.
    pub embed_scale: Option<f64>,
    /// Soft-capping of the logits, `cap * tanh(l / cap)`.
    pub final_softcap: Option<f64>,
}

impl ModelPlan {
    pub fn new(spec: &ModelSpec) -> ModelPlan {
        let h = spec.hidden_size;
        let norm = |name: String| NormPlan {
            name,
            kind: spec.norm,
            eps: spec.norm_eps,
            width: h,
        };
        let layers = (0..spec.num_layers)
            .map(|i| layer(spec, i, &norm))
            .collect();
        ModelPlan {
            vocab_size: spec.vocab_size,
            hidden_size: h,
            learned_positions: match spec.positions {
                Positions::Learned => Some(spec.max_position_embeddings),
                Positions::Rope { .. } => None,
            },
            layers,
            final_norm: norm("final_norm".into()),
            lm_head: LinearPlan::new(&[("lm_head".into(), spec.vocab_size)], h, false),
            tied: spec.tie_word_embeddings,
            embed_scale: spec.embed_scale,
            final_softcap: spec.final_softcap,
        }
    }

    /// Every canonical tensor the model reads, with its shape, in a stable order (embeddings, layers,
    /// final norm, `lm_head.weight` — listed even when tied, where the loader fills it from the
    /// embedding).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let mut out = vec![("embed.weight".to_string(), vec![self.vocab_size, h])];
        if let Some(rows) = self.learned_positions {
            out.push(("pos_embed.weight".into(), vec![rows, h]));
        }
        for l in &self.layers {
            out.extend(l.tensors());
        }
        out.extend(norm_tensors(&self.final_norm));
        out.extend(self.lm_head.weights());
        out
    }

    /// This plan over a cache of `max_seq_len` positions: a sliding window at least that long sees
    /// every earlier key there, so it becomes [`Window::Full`] (the same function on that cache).
    pub fn within(mut self, max_seq_len: usize) -> ModelPlan {
        for l in &mut self.layers {
            if let Window::Sliding(w) = l.attention.window
                && w >= max_seq_len
            {
                l.attention.window = Window::Full;
            }
        }
        self
    }

    /// The distinct rotary embeddings of the layers, in order of first use.
    pub fn rotaries(&self) -> Vec<Rotary> {
        let mut out: Vec<Rotary> = Vec::new();
        for r in self.layers.iter().filter_map(|l| l.attention.rotary) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// The layers' common plan, where every layer computes the same thing on its own weights (the
    /// fused CUDA kernels are compiled once per model); `None` for a model whose layers differ.
    pub fn uniform_layer(&self) -> Option<&LayerPlan> {
        let first = self.layers.first()?;
        self.layers
            .iter()
            .all(|l| same_computation(l, first))
            .then_some(first)
    }

    /// The layers' common plan where they differ at most in which keys they see (their window) and
    /// how they rotate (their rotary base and scaling), as Gemma 3's local and global layers do: one
    /// set of kernels takes the window and the rotary tables per layer at run time. The returned
    /// layer is the first; `None` where layers differ in anything else, or where some rotate and
    /// others do not.
    pub fn uniform_layer_but_positions(&self) -> Option<&LayerPlan> {
        let first = self.layers.first()?;
        let positions_of_first = |l: &LayerPlan| {
            let mut l = l.clone();
            l.attention.window = first.attention.window;
            if l.attention.rotary.is_some() {
                l.attention.rotary = first.attention.rotary;
            }
            l
        };
        self.layers
            .iter()
            .all(|l| same_computation(&positions_of_first(l), first))
            .then_some(first)
    }
}

/// Whether two layers compute the same function of their own weights (names aside).
fn same_computation(a: &LayerPlan, b: &LayerPlan) -> bool {
    let shape = |l: &LinearPlan| {
        (
            l.in_features,
            l.bias,
            l.parts.iter().map(|p| p.rows).collect::<Vec<_>>(),
        )
    };
    let norm = |n: &NormPlan| (n.kind, n.eps.to_bits(), n.width);
    let attention = |t: &AttentionPlan| {
        let qk = t.qk_norm.as_ref().map(|n| (norm(&n.q), norm(&n.k)));
        let scale = t.scale.to_bits();
        (t.num_heads, t.num_kv_heads, t.head_dim, qk, t.window, scale)
    };
    let residual = |r: &Residual| match r {
        Residual::PreNorm => None,
        Residual::Sandwich {
            post_attn_norm,
            post_mlp_norm,
        } => Some((norm(post_attn_norm), norm(post_mlp_norm))),
    };
    residual(&a.residual) == residual(&b.residual)
        && norm(&a.attn_norm) == norm(&b.attn_norm)
        && norm(&a.mlp_norm) == norm(&b.mlp_norm)
        && [&a.qkv, &a.o, &a.up, &a.down]
            .iter()
            .zip([&b.qkv, &b.o, &b.up, &b.down])
            .all(|(x, y)| shape(x) == shape(y))
        && attention(&a.attention) == attention(&b.attention)
        && a.attention.rotary == b.attention.rotary
        && a.activation == b.activation
}

/// Layer `i` of `spec`: the family's choices come from the spec the family's config reader filled
/// (`config/<family>.rs`).
fn layer(spec: &ModelSpec, i: usize, norm: &dyn Fn(String) -> NormPlan) -> LayerPlan {
    let (h, inter) = (spec.hidden_size, spec.intermediate_size);
    let (q, kv) = (spec.q_dim(), spec.kv_dim());
    let p = |n: &str| format!("layers.{i}.{n}");
    let gated = |activation| {
        let parts = [(p("gate"), inter), (p("up"), inter)];
        (LinearPlan::new(&parts, h, spec.mlp_bias), activation)
    };
    let (up, activation) = match spec.mlp {
        Mlp::SwiGlu => gated(Activation::SiluGated),
        Mlp::GeGlu => gated(Activation::GeluTanhGated),
        Mlp::GeluNew => (
            LinearPlan::new(&[(p("fc"), inter)], h, spec.mlp_bias),
            Activation::GeluTanh,
        ),
    };
    let down_name = match spec.mlp {
        Mlp::SwiGlu | Mlp::GeGlu => p("down"),
        Mlp::GeluNew => p("proj"),
    };
    let window = match spec.layer_window(i) {
        Some(w) => Window::Sliding(w),
        None => Window::Full,
    };
    let rotary = match spec.positions {
        Positions::Rope { .. } if window != Window::Full && spec.local_rope_theta.is_some() => {
            spec.local_rope_theta.map(|theta| Rotary {
                theta,
                llama3: None,
                linear: None,
                yarn: None,
            })
        }
        Positions::Rope {
            theta,
            llama3,
            linear,
            yarn,
        } => Some(Rotary {
            theta,
            llama3,
            linear,
            yarn,
        }),
        Positions::Learned => None,
    };
    let residual = match spec.sandwich_norms {
        false => Residual::PreNorm,
        true => Residual::Sandwich {
            post_attn_norm: norm(p("post_attn_norm")),
            post_mlp_norm: norm(p("post_mlp_norm")),
        },
    };
    LayerPlan {
        residual,
        attn_norm: norm(p("attn_norm")),
        qkv: LinearPlan::new(&[(p("q"), q), (p("k"), kv), (p("v"), kv)], h, spec.qkv_bias),
        attention: AttentionPlan {
            num_heads: spec.num_heads,
            num_kv_heads: spec.num_kv_heads,
            head_dim: spec.head_dim,
            qk_norm: spec.qk_norm.then(|| {
                let head = |name: String| NormPlan {
                    width: spec.head_dim,
                    ..norm(name)
                };
                QkNorm {
                    q: head(p("q_norm")),
                    k: head(p("k_norm")),
                }
            }),
            rotary,
            window,
            scale: spec
                .attention_scale
                .unwrap_or(1.0 / (spec.head_dim as f64).sqrt()),
        },
        o: LinearPlan::new(&[(p("o"), h)], q, spec.o_bias),
        mlp_norm: norm(p("mlp_norm")),
        up,
        activation,
        down: LinearPlan::new(&[(down_name, h)], inter, spec.mlp_bias),
    }
}

#[cfg(test)]
mod tests;
