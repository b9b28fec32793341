//! The CPU's execution of the layer plan (`crate::plan`): the plan's tensors packed into a backend's
//! storage ([`load`]), and the forward pass (embed → blocks → final norm → lm_head) run op by op through
//! `crate::backend::ops::Ops`. Nothing here names an architecture: what a family's layer computes is
//! its plan.

use crate::Result;
use crate::backend::ops::{AttnGeometry, Linear, Norm, Ops, Part};
use crate::cache::LayerKvMut;
use crate::format::{BlockType, WeightFormat};
use crate::plan::{
    Activation, AttentionPlan, LayerPlan, LinearPlan, ModelPlan, NormPlan, Residual,
};
use crate::spec::ModelSpec;
use crate::step::{CacheMode, LogitRows, Logits, StepInputs};
use crate::weights::{HostTensor, WeightMap};

/// The per-head norms of q and k, in that order.
pub type QkNorms<V> = (Norm<V>, Norm<V>);

/// The norms a sandwich layer applies to each half's output: after attention, after the MLP.
pub type PostNorms<V> = (Norm<V>, Norm<V>);

/// One layer's packed weights, in the plan's order.
pub struct LayerWeights<O: Ops> {
    pub attn_norm: Norm<O::Vector>,
    /// The sandwich layer's post-attention and post-MLP norms, when planned.
    pub post_norms: Option<PostNorms<O::Vector>>,
    /// q, k and v fused as `[q | k | v]`.
    pub qkv: Linear<O::Weight, O::Vector>,
    /// The per-head norms of q and k, when planned.
    pub qk_norm: Option<QkNorms<O::Vector>>,
    pub o: Linear<O::Weight, O::Vector>,
    pub mlp_norm: Norm<O::Vector>,
    /// `[gate | up]` or `fc`.
    pub up: Linear<O::Weight, O::Vector>,
    /// `down` or `proj`.
    pub down: Linear<O::Weight, O::Vector>,
}

impl<O: Ops> LayerWeights<O> {
    /// The layer's linear layers, in the plan's order.
    pub fn linears(&self) -> [&Linear<O::Weight, O::Vector>; 4] {
        [&self.qkv, &self.o, &self.up, &self.down]
    }
}

pub struct ModelWeights<O: Ops> {
    pub plan: ModelPlan,
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
    /// The 2-D tensors `parts` (`(name, rows)`, each `[rows, cols]`), fused along rows, in `format`.
    fn weight(
        &self,
        ops: &mut O,
        parts: &[(&str, usize)],
        cols: usize,
        format: WeightFormat,
    ) -> Result<O::Weight>;
    /// The 1-D tensors `parts` (`(name, len)`), concatenated.
    fn vector(&self, ops: &mut O, parts: &[(&str, usize)]) -> Result<O::Vector>;
    /// The GGML block type the tensor `name` is held in (a source that keeps a GGUF file's
    /// blocks); `None` for a dense tensor.
    fn stored_block(&self, _name: &str) -> Option<BlockType> {
        None
    }
    /// The block type every one of the 2-D tensors `parts` is held in, when they share one.
    fn stored_blocks(&self, parts: &[(&str, usize)]) -> Option<BlockType> {
        let mut types = parts.iter().map(|(name, _)| self.stored_block(name));
        let first = types.next()??;
        types.all(|t| t == Some(first)).then_some(first)
    }
}

impl<O: Ops> Tensors<O> for WeightMap {
    fn weight(
        &self,
        ops: &mut O,
        parts: &[(&str, usize)],
        cols: usize,
        format: WeightFormat,
    ) -> Result<O::Weight> {
        let tensors = parts
            .iter()
            .map(|&(name, rows)| self.get(name, &[rows, cols]))
            .collect::<std::result::Result<Vec<&HostTensor>, _>>()?;
        ops.weight(&tensors, cols, format)
    }

    fn vector(&self, ops: &mut O, parts: &[(&str, usize)]) -> Result<O::Vector> {
        let tensors = parts
            .iter()
            .map(|&(name, len)| self.get(name, &[len]))
            .collect::<std::result::Result<Vec<&HostTensor>, _>>()?;
        ops.vector(&tensors)
    }

    fn stored_block(&self, name: &str) -> Option<BlockType> {
        self.tensors.get(name).and_then(HostTensor::blocks)
    }
}

/// Pack the plan's tensors into a backend's storage (the engine-build step for any backend).
pub fn load<O: Ops>(spec: &ModelSpec, w: &dyn Tensors<O>, ops: &mut O) -> Result<ModelWeights<O>> {
    let plan = ModelPlan::new(spec);
    let h = plan.hidden_size;
    let layers = plan
        .layers
        .iter()
        .map(|l| {
            Ok(LayerWeights {
                attn_norm: norm(ops, w, &l.attn_norm)?,
                post_norms: match &l.residual {
                    Residual::PreNorm => None,
                    Residual::Sandwich {
                        post_attn_norm,
                        post_mlp_norm,
                    } => Some((norm(ops, w, post_attn_norm)?, norm(ops, w, post_mlp_norm)?)),
                },
                qkv: linear(ops, w, &l.qkv)?,
                qk_norm: match &l.attention.qk_norm {
                    Some(n) => Some((norm(ops, w, &n.q)?, norm(ops, w, &n.k)?)),
                    None => None,
                },
                o: linear(ops, w, &l.o)?,
                mlp_norm: norm(ops, w, &l.mlp_norm)?,
                up: linear(ops, w, &l.up)?,
                down: linear(ops, w, &l.down)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The lm_head (and so a tied embedding) stays dense whatever `--quant_format` quantizes.
    let table = WeightFormat::of_table(ops.precision());
    let lm_head = if plan.tied {
        // A tied model's lm_head *is* the embedding: pack it once and use it for both.
        let mut embed = plan.lm_head.clone();
        embed.parts[0].name = "embed".into();
        linear_as(ops, w, &embed, table)?
    } else {
        linear_as(ops, w, &plan.lm_head, table)?
    };
    let embed = match plan.tied {
        true => None,
        false => {
            // Kept as blocks where the source keeps them (the lookup dequantises a row).
            let part = [("embed.weight", plan.vocab_size)];
            let format = w
                .stored_blocks(&part)
                .filter(|t| t.row_bytes(h).is_some())
                .map_or(table, WeightFormat::Blocks);
            Some(w.weight(ops, &part, h, format)?)
        }
    };
    let pos_embed = match plan.learned_positions {
        Some(rows) => Some(w.weight(ops, &[("pos_embed.weight", rows)], h, table)?),
        None => None,
    };
    Ok(ModelWeights {
        final_norm: norm(ops, w, &plan.final_norm)?,
        plan,
        embed,
        pos_embed,
        layers,
        lm_head,
    })
}

/// Pack a layer's planned linear: its parts' `.weight` fused along rows in the weight format chosen
/// for it (`crate::format`: quantized when the engine quantizes at build and the rows fit), and their
/// `.bias` when it has one.
pub fn linear<O: Ops>(
    ops: &mut O,
    w: &dyn Tensors<O>,
    plan: &LinearPlan,
) -> Result<Linear<O::Weight, O::Vector>> {
    let format = WeightFormat::of_linear_as(plan, ops.precision(), ops.quant());
    linear_as(ops, w, plan, format)
}

/// [`linear`] with the parts a source does not keep as GGUF blocks stored in `dense` (the
/// lm_head's: the engine precision).
fn linear_as<O: Ops>(
    ops: &mut O,
    w: &dyn Tensors<O>,
    plan: &LinearPlan,
    dense: WeightFormat,
) -> Result<Linear<O::Weight, O::Vector>> {
    let rows = plan.weight_rows();
    let parts = borrowed(&rows);
    let cols = plan.in_features;
    // A source keeping GGUF blocks keeps them: one matrix where the fused parts share a block type,
    // else a stack of the parts, each in its own format. Otherwise the linear is dense.
    let kept = |p: &[(&str, usize)]| {
        w.stored_blocks(p)
            .filter(|t| t.row_bytes(cols).is_some())
            .map(WeightFormat::Blocks)
    };
    let weight = match kept(&parts) {
        Some(format) => w.weight(ops, &parts, cols, format)?,
        None if parts.len() > 1 && parts.iter().any(|p| kept(&[*p]).is_some()) => {
            let mut each = Vec::with_capacity(parts.len());
            for p in &parts {
                let format = kept(&[*p]).unwrap_or(dense);
                each.push(w.weight(ops, &[*p], cols, format)?);
            }
            ops.stack(each)?
        }
        None => w.weight(ops, &parts, cols, dense)?,
    };
    let bias = match plan.bias {
        true => Some(w.vector(ops, &borrowed(&plan.bias_rows()))?),
        false => None,
    };
    Ok(Linear {
        weight,
        bias,
        parts: plan
            .parts
            .iter()
            .map(|p| Part {
                name: p.name.clone(),
                rows: p.rows,
            })
            .collect(),
        in_features: plan.in_features,
    })
}

fn borrowed(v: &[(String, usize)]) -> Vec<(&str, usize)> {
    v.iter().map(|(n, rows)| (n.as_str(), *rows)).collect()
}

/// Pack a planned norm: `{name}.weight`, and `{name}.bias` for LayerNorm.
pub fn norm<O: Ops>(ops: &mut O, w: &dyn Tensors<O>, plan: &NormPlan) -> Result<Norm<O::Vector>> {
    let weight = w.vector(ops, &[(&format!("{}.weight", plan.name), plan.width)])?;
    let bias = match plan.has_bias() {
        true => Some(w.vector(ops, &[(&format!("{}.bias", plan.name), plan.width)])?),
        false => None,
    };
    Ok(Norm { weight, bias })
}

/// `out = x · lin.weightᵀ (+ lin.bias)`.
fn apply<O: Ops>(
    ops: &mut O,
    lin: &Linear<O::Weight, O::Vector>,
    x: &O::Act,
    out: &mut O::Act,
) -> Result<()> {
    ops.linear(x, &lin.weight, lin.bias.as_ref(), out)
}

fn apply_norm<O: Ops>(
    ops: &mut O,
    plan: &NormPlan,
    w: &Norm<O::Vector>,
    x: &O::Act,
    out: &mut O::Act,
) -> Result<()> {
    ops.norm(plan.kind, plan.eps as f32, x, w, out)
}

/// One decoder block, in place on `s.x`, op by op as `plan` describes it.
pub fn block<O: Ops>(
    ops: &mut O,
    plan: &LayerPlan,
    layer: &LayerWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: Option<&mut LayerKvMut<'_>>,
    mode: CacheMode,
) -> Result<()> {
    let post = match (&plan.residual, &layer.post_norms) {
        (Residual::PreNorm, None) => None,
        (
            Residual::Sandwich {
                post_attn_norm,
                post_mlp_norm,
            },
            Some((attn, mlp)),
        ) => Some(((post_attn_norm, attn), (post_mlp_norm, mlp))),
        _ => {
            return Err(crate::Error::invalid(
                "post-norm weights do not match the layer plan",
            ));
        }
    };
    let a = &plan.attention;
    apply_norm(ops, &plan.attn_norm, &layer.attn_norm, &s.x, &mut s.normed)?;
    apply(ops, &layer.qkv, &s.normed, &mut s.qkv)?;
    match (&a.qk_norm, &layer.qk_norm) {
        (Some(plan), Some((q, k))) => {
            let (hd, kv_col) = (a.head_dim, a.q_dim());
            let (qp, kp) = (&plan.q, &plan.k);
            let qkv = &mut s.qkv;
            ops.head_norm(qp.kind, qp.eps as f32, qkv, 0, a.num_heads, hd, q)?;
            ops.head_norm(kp.kind, kp.eps as f32, qkv, kv_col, a.num_kv_heads, hd, k)?;
        }
        (None, None) => {}
        _ => {
            return Err(crate::Error::invalid(
                "q/k norm weights do not match the layer plan",
            ));
        }
    }
    if let Some(r) = &a.rotary {
        let positions = step.position_ids;
        ops.rope(r, &mut s.qkv, 0, a.num_heads, a.head_dim, positions)?;
        ops.rope(
            r,
            &mut s.qkv,
            a.q_dim(),
            a.num_kv_heads,
            a.head_dim,
            positions,
        )?;
    }
    ops.attention(&s.qkv, geometry(a), step, cache, mode, &mut s.attn)?;
    apply(ops, &layer.o, &s.attn, &mut s.proj)?;
    add_residual(ops, post.map(|p| p.0), s)?;
    apply_norm(ops, &plan.mlp_norm, &layer.mlp_norm, &s.x, &mut s.normed)?;
    apply(ops, &layer.up, &s.normed, &mut s.mlp_in)?;
    let mid = match plan.activation {
        Activation::SiluGated => {
            ops.swiglu(&s.mlp_in, &mut s.mlp_mid)?;
            &s.mlp_mid
        }
        Activation::GeluTanhGated => {
            ops.geglu(&s.mlp_in, &mut s.mlp_mid)?;
            &s.mlp_mid
        }
        Activation::GeluTanh => {
            ops.gelu_new(&mut s.mlp_in)?;
            &s.mlp_in
        }
    };
    apply(ops, &layer.down, mid, &mut s.proj)?;
    add_residual(ops, post.map(|p| p.1), s)
}

/// `x += proj`, or `x += norm(proj)` with a sandwich layer's post norm.
fn add_residual<O: Ops>(
    ops: &mut O,
    post: Option<(&NormPlan, &Norm<O::Vector>)>,
    s: &mut Scratch<O>,
) -> Result<()> {
    match post {
        None => ops.add(&mut s.x, &s.proj),
        Some((plan, w)) => {
            apply_norm(ops, plan, w, &s.proj, &mut s.normed)?;
            ops.add(&mut s.x, &s.normed)
        }
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
    /// The first MLP projection's output (`[gate | up]` or `fc`).
    pub mlp_in: O::Act,
    /// A gated activation's output.
    pub mlp_mid: O::Act,
    pub last: O::Act,
    pub logits: O::Act,
}

impl<O: Ops> Scratch<O> {
    pub fn new(ops: &mut O, plan: &ModelPlan, rows: usize, logit_rows: usize) -> Result<Self> {
        let h = plan.hidden_size;
        let widest = |f: &dyn Fn(&LayerPlan) -> usize| plan.layers.iter().map(f).max().unwrap_or(0);
        Ok(Scratch {
            rows,
            logit_rows,
            x: ops.act(rows, h)?,
            normed: ops.act(rows, h)?,
            qkv: ops.act(rows, widest(&|l| l.qkv.out_features()))?,
            attn: ops.act(rows, widest(&|l| l.o.in_features))?,
            proj: ops.act(rows, h)?,
            mlp_in: ops.act(rows, widest(&|l| l.up.out_features()))?,
            mlp_mid: ops.act(rows, widest(&|l| l.mlp_width()))?,
            last: ops.act(logit_rows, h)?,
            logits: ops.act(logit_rows, plan.vocab_size)?,
        })
    }
}

pub fn geometry(a: &AttentionPlan) -> AttnGeometry {
    AttnGeometry {
        num_heads: a.num_heads,
        num_kv_heads: a.num_kv_heads,
        head_dim: a.head_dim,
        scale: a.scale as f32,
        window: a.window,
    }
}

/// The embedding scale as the engine applies it: rounded to f32, then to the precision the table is
/// stored in, as transformers makes it (an f32 tensor cast to the embedding's dtype).
fn embed_scale(scale: f64, precision: crate::precision::Precision) -> f32 {
    use crate::precision::Precision;
    let s = scale as f32;
    match precision {
        Precision::Fp32 => s,
        Precision::Fp16 => half::f16::from_f32(s).to_f32(),
        Precision::Bf16 => half::bf16::from_f32(s).to_f32(),
    }
}

/// The whole forward pass. `scratch` must have been made for `step.batch * step.seq_len` rows and the
/// number of logit rows `rows` asks for. Bounds were checked by `Engine::forward`.
pub fn forward<O: Ops>(
    ops: &mut O,
    w: &ModelWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: &mut [LayerKvMut<'_>],
    mode: CacheMode,
    rows: LogitRows,
) -> Result<Logits> {
    let plan = &w.plan;
    ops.embed(w.embed_table(), step.input_ids, &mut s.x)?;
    if let Some(scale) = plan.embed_scale {
        let factor = embed_scale(scale, ops.precision());
        ops.scale(&mut s.x, factor)?;
    }
    if let Some(pos) = &w.pos_embed {
        ops.add_embed(pos, step.position_ids, &mut s.x)?;
    }
    for (i, (layer_plan, layer)) in plan.layers.iter().zip(&w.layers).enumerate() {
        let kv = match mode {
            CacheMode::None => None,
            _ => cache.get_mut(i),
        };
        block(ops, layer_plan, layer, s, step, kv, mode)?;
    }
    let picked: Vec<usize> = match rows {
        LogitRows::All => (0..step.batch * step.seq_len).collect(),
        LogitRows::Last => (0..step.batch)
            .map(|b| b * step.seq_len + step.seq_len - 1)
            .collect(),
    };
    apply_norm(ops, &plan.final_norm, &w.final_norm, &s.x, &mut s.normed)?;
    ops.gather_rows(&s.normed, &picked, &mut s.last)?;
    ops.linear(&s.last, &w.lm_head.weight, None, &mut s.logits)?;
    let mut data = ops.to_host(&s.logits)?;
    if let Some(cap) = plan.final_softcap {
        // As transformers: `tanh(logits / cap) * cap`, in f32.
        let cap = cap as f32;
        for v in &mut data {
            *v = (*v / cap).tanh() * cap;
        }
    }
    Ok(Logits {
        batch: step.batch,
        rows: picked.len() / step.batch.max(1),
        vocab: plan.vocab_size,
        data,
    })
}

#[cfg(test)]
mod tests {
    use crate::precision::Precision;

    /// `torch.tensor(h ** 0.5).to(dtype)` as transformers 5.17 / torch 2.11 print it, for Gemma 3's
    /// hidden sizes 1152 (1B), 2560 (4B) and 640.
    #[test]
    fn embedding_scales_round_as_transformers_does() {
        let torch = [
            (1152.0, 34.0, 33.9375, 33.941123962402344),
            (2560.0, 50.5, 50.59375, 50.59644317626953),
            (640.0, 25.25, 25.296875, 25.298221588134766),
        ];
        for (h, bf16, f16, f32) in torch {
            let s = f64::sqrt(h);
            assert_eq!(super::embed_scale(s, Precision::Bf16), bf16 as f32, "{h}");
            assert_eq!(super::embed_scale(s, Precision::Fp16), f16 as f32, "{h}");
            assert_eq!(super::embed_scale(s, Precision::Fp32), f32 as f32, "{h}");
        }
    }
}
