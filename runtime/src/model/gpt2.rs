//! GPT-2: learned absolute positions (added to the token embedding by the shared forward), pre-LayerNorm
//! blocks with biases everywhere, multi-head attention (no rotary), `gelu_new` MLP, tied lm_head.
//!
//! ```text
//! h   = x + c_proj(attn(split(c_attn(n))))        n = layer_norm(x)
//! out = h + mlp.c_proj(gelu_new(mlp.c_fc(m)))     m = layer_norm(h)
//! ```
//! (HF's Conv1D `[in, out]` weights arrive transposed to canonical `[out, in]` from the loader.)

use super::{LayerWeights, MlpWeights, Scratch, geometry, linear, norm};
use crate::Result;
use crate::backend::ops::Ops;
use crate::backend::{CacheMode, StepInputs};
use crate::cache::LayerKvMut;
use crate::spec::ModelSpec;
use crate::weights::WeightMap;

pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &WeightMap,
    ops: &mut O,
    i: usize,
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
        mlp: MlpWeights::Gelu {
            fc: linear(
                ops,
                w,
                &[(&format!("{p}.fc"), spec.intermediate_size)],
                h,
                spec.mlp_bias,
            )?,
            proj: linear(
                ops,
                w,
                &[(&format!("{p}.proj"), h)],
                spec.intermediate_size,
                spec.mlp_bias,
            )?,
        },
    })
}

/// One GPT-2 block, in place on `s.x`.
pub fn block<O: Ops>(
    ops: &mut O,
    spec: &ModelSpec,
    layer: &LayerWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: Option<&mut LayerKvMut<'_>>,
    mode: CacheMode,
) -> Result<()> {
    let eps = spec.norm_eps as f32;
    ops.norm(spec.norm, eps, &s.x, &layer.attn_norm, &mut s.normed)?;
    ops.linear(
        &s.normed,
        &layer.qkv.weight,
        layer.qkv.bias.as_ref(),
        &mut s.qkv,
    )?;
    ops.attention(&s.qkv, geometry(spec), step, cache, mode, &mut s.attn)?;
    ops.linear(&s.attn, &layer.o.weight, layer.o.bias.as_ref(), &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)?;

    ops.norm(spec.norm, eps, &s.x, &layer.mlp_norm, &mut s.normed)?;
    let MlpWeights::Gelu { fc, proj } = &layer.mlp else {
        return Err(crate::Error::invalid("gpt2 block expects a GELU MLP"));
    };
    ops.linear(&s.normed, &fc.weight, fc.bias.as_ref(), &mut s.mlp_mid)?;
    ops.gelu_new(&mut s.mlp_mid)?;
    ops.linear(&s.mlp_mid, &proj.weight, proj.bias.as_ref(), &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)
}
