//! One file per architecture family: how a family's layers are composed from backend ops
//! (`crate::backend::ops::Ops`). This module holds what the families share: the weight structure, the
//! scratch activations and the top-level forward (embed → blocks → final norm → lm_head).

pub mod gpt2;
pub mod llama;
pub mod qwen2;
pub mod rope;

use crate::Result;
use crate::backend::ops::{AttnGeometry, Linear, Norm, Ops, Part};
use crate::cache::LayerKvMut;
use crate::spec::{Arch, Mlp, ModelSpec, NormKind};
use crate::step::{CacheMode, LogitRows, Logits, StepInputs};
use crate::weights::{HostTensor, WeightMap};

/// The feed-forward weights of one layer.
pub enum MlpWeights<O: Ops> {
    /// `down(silu(gate) * up)`, gate and up fused as `[gate | up]`.
    SwiGlu {
        gate_up: Linear<O::Weight, O::Vector>,
        down: Linear<O::Weight, O::Vector>,
    },
    /// `proj(gelu_new(fc))`.
    Gelu {
        fc: Linear<O::Weight, O::Vector>,
        proj: Linear<O::Weight, O::Vector>,
    },
}

pub struct LayerWeights<O: Ops> {
    pub attn_norm: Norm<O::Vector>,
    /// q, k and v fused as `[q | k | v]`.
    pub qkv: Linear<O::Weight, O::Vector>,
    pub o: Linear<O::Weight, O::Vector>,
    pub mlp_norm: Norm<O::Vector>,
    pub mlp: MlpWeights<O>,
}

pub struct ModelWeights<O: Ops> {
    /// The token embedding; `None` when tied, in which case `lm_head` doubles as the table.
    pub embed: Option<O::Weight>,
    pub pos_embed: Option<O::Weight>,
    pub layers: Vec<LayerWeights<O>>,
    pub final_norm: Norm<O::Vector>,
    pub lm_head: Linear<O::Weight, O::Vector>,
}

impl<O: Ops> ModelWeights<O> {
    pub fn embed_table(&self) -> &O::Weight {
        self.embed.as_ref().unwrap_or(&self.lm_head.weight)
    }
}

/// Where [`load`] takes the canonical tensors from and how they become a backend's weights: a
/// [`WeightMap`] in memory (the engine build), or a backend's own source (a mapped engine file).
pub trait Tensors<O: Ops> {
    /// The 2-D tensors `parts` (`(name, rows)`, each `[rows, cols]`), fused along rows.
    fn weight(&self, ops: &mut O, parts: &[(&str, usize)], cols: usize) -> Result<O::Weight>;
    /// The 1-D tensors `parts` (`(name, len)`), concatenated.
    fn vector(&self, ops: &mut O, parts: &[(&str, usize)]) -> Result<O::Vector>;
}

impl<O: Ops> Tensors<O> for WeightMap {
    fn weight(&self, ops: &mut O, parts: &[(&str, usize)], cols: usize) -> Result<O::Weight> {
        let tensors = parts
            .iter()
            .map(|&(name, rows)| self.get(name, &[rows, cols]))
            .collect::<std::result::Result<Vec<&HostTensor>, _>>()?;
        ops.weight(&tensors, cols)
    }

    fn vector(&self, ops: &mut O, parts: &[(&str, usize)]) -> Result<O::Vector> {
        let tensors = parts
            .iter()
            .map(|&(name, len)| self.get(name, &[len]))
            .collect::<std::result::Result<Vec<&HostTensor>, _>>()?;
        ops.vector(&tensors)
    }
}

/// Pack canonical tensors into a backend's storage (the engine-build step for any backend).
pub fn load<O: Ops>(spec: &ModelSpec, w: &dyn Tensors<O>, ops: &mut O) -> Result<ModelWeights<O>> {
    let h = spec.hidden_size;
    let mut layers = Vec::with_capacity(spec.num_layers);
    for i in 0..spec.num_layers {
        layers.push(match spec.arch {
            Arch::Llama => llama::load_layer(spec, w, ops, i)?,
            Arch::Qwen2 => qwen2::load_layer(spec, w, ops, i)?,
            Arch::Gpt2 => gpt2::load_layer(spec, w, ops, i)?,
        });
    }
    let lm_head = if spec.tie_word_embeddings {
        // A tied model's lm_head *is* the embedding: pack it once and use it for both.
        linear(ops, w, &[("embed", spec.vocab_size)], h, false)?
    } else {
        linear(ops, w, &[("lm_head", spec.vocab_size)], h, false)?
    };
    let embed = if spec.tie_word_embeddings {
        None
    } else {
        Some(w.weight(ops, &[("embed.weight", spec.vocab_size)], h)?)
    };
    let pos_embed = match spec.positions {
        crate::spec::Positions::Learned => Some(w.weight(
            ops,
            &[("pos_embed.weight", spec.max_position_embeddings)],
            h,
        )?),
        crate::spec::Positions::Rope { .. } => None,
    };
    Ok(ModelWeights {
        embed,
        pos_embed,
        layers,
        final_norm: norm(ops, w, "final_norm", spec.norm, h)?,
        lm_head,
    })
}

/// Pack the canonical linear(s) `{prefix}.weight` (and `.bias` when `bias`) fused along rows.
pub fn linear<O: Ops>(
    ops: &mut O,
    w: &dyn Tensors<O>,
    parts: &[(&str, usize)],
    cols: usize,
    bias: bool,
) -> Result<Linear<O::Weight, O::Vector>> {
    // `{name}.{suffix}` of every part, with its rows.
    let named = |suffix: &str| -> Vec<(String, usize)> {
        parts
            .iter()
            .map(|&(name, rows)| (format!("{name}.{suffix}"), rows))
            .collect()
    };
    let weight = w.weight(ops, &borrowed(&named("weight")), cols)?;
    let bias = match bias {
        true => Some(w.vector(ops, &borrowed(&named("bias")))?),
        false => None,
    };
    Ok(Linear {
        weight,
        bias,
        parts: parts
            .iter()
            .map(|&(name, rows)| Part {
                name: name.to_string(),
                rows,
            })
            .collect(),
        in_features: cols,
    })
}

fn borrowed(v: &[(String, usize)]) -> Vec<(&str, usize)> {
    v.iter().map(|(n, rows)| (n.as_str(), *rows)).collect()
}

/// The canonical norm `{prefix}.weight` (and `.bias` for LayerNorm).
pub fn norm<O: Ops>(
    ops: &mut O,
    w: &dyn Tensors<O>,
    prefix: &str,
    kind: NormKind,
    hidden: usize,
) -> Result<Norm<O::Vector>> {
    let weight = w.vector(ops, &[(&format!("{prefix}.weight"), hidden)])?;
    let bias = match kind {
        NormKind::LayerNorm => Some(w.vector(ops, &[(&format!("{prefix}.bias"), hidden)])?),
        NormKind::RmsNorm => None,
    };
    Ok(Norm { weight, bias })
}

/// Layer `i`'s weights (`layers.{i}.*`) in the shape every family shares: attention norm, q/k/v fused
/// (biases when `spec.qkv_bias`), `o`, MLP norm, then the family's MLP from `mlp(ops, "layers.{i}")`.
pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &dyn Tensors<O>,
    ops: &mut O,
    i: usize,
    mlp: impl FnOnce(&mut O, &str) -> Result<MlpWeights<O>>,
) -> Result<LayerWeights<O>> {
    let h = spec.hidden_size;
    let p = format!("layers.{i}");
    let (q, k, v) = (format!("{p}.q"), format!("{p}.k"), format!("{p}.v"));
    Ok(LayerWeights {
        attn_norm: norm(ops, w, &format!("{p}.attn_norm"), spec.norm, h)?,
        qkv: linear(
            ops,
            w,
            &[(&q, spec.q_dim()), (&k, spec.kv_dim()), (&v, spec.kv_dim())],
            h,
            spec.qkv_bias,
        )?,
        o: linear(ops, w, &[(&format!("{p}.o"), h)], spec.q_dim(), spec.o_bias)?,
        mlp_norm: norm(ops, w, &format!("{p}.mlp_norm"), spec.norm, h)?,
        mlp: mlp(ops, &p)?,
    })
}

/// `out = x · lin.weightᵀ (+ lin.bias)`.
pub fn apply<O: Ops>(
    ops: &mut O,
    lin: &Linear<O::Weight, O::Vector>,
    x: &O::Act,
    out: &mut O::Act,
) -> Result<()> {
    ops.linear(x, &lin.weight, lin.bias.as_ref(), out)
}

/// The first step of every pre-norm block: `s.qkv = qkv(attn_norm(s.x))`.
pub fn norm_qkv<O: Ops>(
    ops: &mut O,
    spec: &ModelSpec,
    layer: &LayerWeights<O>,
    s: &mut Scratch<O>,
) -> Result<()> {
    let eps = spec.norm_eps as f32;
    ops.norm(spec.norm, eps, &s.x, &layer.attn_norm, &mut s.normed)?;
    apply(ops, &layer.qkv, &s.normed, &mut s.qkv)
}

/// After the family's position handling of `s.qkv`: attention, `s.x += o(attn)`, then
/// `s.normed = mlp_norm(s.x)` for the family's MLP.
pub fn attend_then_norm<O: Ops>(
    ops: &mut O,
    spec: &ModelSpec,
    layer: &LayerWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: Option<&mut LayerKvMut<'_>>,
    mode: CacheMode,
) -> Result<()> {
    ops.attention(&s.qkv, geometry(spec), step, cache, mode, &mut s.attn)?;
    apply(ops, &layer.o, &s.attn, &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)?;
    let eps = spec.norm_eps as f32;
    ops.norm(spec.norm, eps, &s.x, &layer.mlp_norm, &mut s.normed)
}

/// The MLP width of the fused first projection and of the activation output.
fn mlp_widths(spec: &ModelSpec) -> (usize, usize) {
    match spec.mlp {
        Mlp::SwiGlu => (2 * spec.intermediate_size, spec.intermediate_size),
        Mlp::GeluNew => (spec.intermediate_size, spec.intermediate_size),
    }
}

/// Activation buffers for one forward of `rows` token rows, reused across calls of the same shape.
pub struct Scratch<O: Ops> {
    pub rows: usize,
    pub logit_rows: usize,
    pub x: O::Act,
    pub normed: O::Act,
    pub qkv: O::Act,
    pub attn: O::Act,
    pub proj: O::Act,
    pub mlp_in: O::Act,
    pub mlp_mid: O::Act,
    pub last: O::Act,
    pub logits: O::Act,
}

impl<O: Ops> Scratch<O> {
    pub fn new(ops: &mut O, spec: &ModelSpec, rows: usize, logit_rows: usize) -> Result<Self> {
        let h = spec.hidden_size;
        let (mlp_in, mlp_mid) = mlp_widths(spec);
        Ok(Scratch {
            rows,
            logit_rows,
            x: ops.act(rows, h)?,
            normed: ops.act(rows, h)?,
            qkv: ops.act(rows, spec.q_dim() + 2 * spec.kv_dim())?,
            attn: ops.act(rows, spec.q_dim())?,
            proj: ops.act(rows, h)?,
            mlp_in: ops.act(rows, mlp_in)?,
            mlp_mid: ops.act(rows, mlp_mid)?,
            last: ops.act(logit_rows, h)?,
            logits: ops.act(logit_rows, spec.vocab_size)?,
        })
    }
}

pub fn geometry(spec: &ModelSpec) -> AttnGeometry {
    AttnGeometry {
        num_heads: spec.num_heads,
        num_kv_heads: spec.num_kv_heads,
        head_dim: spec.head_dim,
    }
}

/// The whole forward pass. `scratch` must have been made for `step.batch * step.seq_len` rows and the
/// number of logit rows `rows` asks for. Bounds were checked by `Engine::forward`.
#[allow(clippy::too_many_arguments)]
pub fn forward<O: Ops>(
    ops: &mut O,
    spec: &ModelSpec,
    w: &ModelWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: &mut [LayerKvMut<'_>],
    mode: CacheMode,
    rows: LogitRows,
) -> Result<Logits> {
    ops.embed(w.embed_table(), step.input_ids, &mut s.x)?;
    if let Some(pos) = &w.pos_embed {
        ops.add_embed(pos, step.position_ids, &mut s.x)?;
    }
    for (i, layer) in w.layers.iter().enumerate() {
        let kv = match mode {
            CacheMode::None => None,
            _ => cache.get_mut(i),
        };
        match spec.arch {
            Arch::Llama => llama::block(ops, spec, layer, s, step, kv, mode)?,
            Arch::Qwen2 => qwen2::block(ops, spec, layer, s, step, kv, mode)?,
            Arch::Gpt2 => gpt2::block(ops, spec, layer, s, step, kv, mode)?,
        }
    }
    let eps = spec.norm_eps as f32;
    let picked: Vec<usize> = match rows {
        LogitRows::All => (0..step.batch * step.seq_len).collect(),
        LogitRows::Last => (0..step.batch)
            .map(|b| b * step.seq_len + step.seq_len - 1)
            .collect(),
    };
    ops.norm(spec.norm, eps, &s.x, &w.final_norm, &mut s.normed)?;
    ops.gather_rows(&s.normed, &picked, &mut s.last)?;
    ops.linear(&s.last, &w.lm_head.weight, None, &mut s.logits)?;
    let data = ops.to_host(&s.logits)?;
    Ok(Logits {
        batch: step.batch,
        rows: picked.len() / step.batch.max(1),
        vocab: spec.vocab_size,
        data,
    })
}
