//! Llama (2, 3.x, SmolLM2): pre-RMSNorm blocks, rotary positions (optionally llama3-scaled, applied by
//! the backend's `rope` op from tables it built for the spec), GQA attention, SwiGLU MLP, no biases
//! unless the spec says so (`attention_bias`), untied or tied lm_head.
//!
//! ```text
//! h   = x + o(attn(rope(q(n)), rope(k(n)), v(n)))      n = rms_norm(x)
//! out = h + down(silu(gate(m)) * up(m))                m = rms_norm(h)
//! ```

use super::{LayerWeights, MlpWeights, Scratch, geometry, linear, norm};
use crate::Result;
use crate::backend::ops::Ops;
use crate::backend::{CacheMode, StepInputs};
use crate::cache::LayerKvMut;
use crate::spec::ModelSpec;
use crate::weights::WeightMap;

/// Layer `i`'s weights: q/k/v fused (biases when `spec.qkv_bias`), gate/up fused.
pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &WeightMap,
    ops: &mut O,
    i: usize,
) -> Result<LayerWeights<O>> {
    let h = spec.hidden_size;
    let p = format!("layers.{i}");
    let (q, k, v) = (format!("{p}.q"), format!("{p}.k"), format!("{p}.v"));
    let (gate, up, down) = (format!("{p}.gate"), format!("{p}.up"), format!("{p}.down"));
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
        mlp: MlpWeights::SwiGlu {
            gate_up: linear(
                ops,
                w,
                &[
                    (&gate, spec.intermediate_size),
                    (&up, spec.intermediate_size),
                ],
                h,
                spec.mlp_bias,
            )?,
            down: linear(ops, w, &[(&down, h)], spec.intermediate_size, spec.mlp_bias)?,
        },
    })
}

/// One decoder block, in place on `s.x`.
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
    let g = geometry(spec);
    ops.norm(spec.norm, eps, &s.x, &layer.attn_norm, &mut s.normed)?;
    ops.linear(
        &s.normed,
        &layer.qkv.weight,
        layer.qkv.bias.as_ref(),
        &mut s.qkv,
    )?;
    ops.rope(&mut s.qkv, 0, g.num_heads, g.head_dim, step.position_ids)?;
    ops.rope(
        &mut s.qkv,
        g.q_dim(),
        g.num_kv_heads,
        g.head_dim,
        step.position_ids,
    )?;
    ops.attention(&s.qkv, g, step, cache, mode, &mut s.attn)?;
    ops.linear(&s.attn, &layer.o.weight, layer.o.bias.as_ref(), &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)?;

    ops.norm(spec.norm, eps, &s.x, &layer.mlp_norm, &mut s.normed)?;
    let MlpWeights::SwiGlu { gate_up, down } = &layer.mlp else {
        return Err(crate::Error::invalid(format!(
            "{} block expects a SwiGLU MLP",
            spec.arch.as_str()
        )));
    };
    ops.linear(
        &s.normed,
        &gate_up.weight,
        gate_up.bias.as_ref(),
        &mut s.mlp_in,
    )?;
    ops.swiglu(&s.mlp_in, &mut s.mlp_mid)?;
    ops.linear(&s.mlp_mid, &down.weight, down.bias.as_ref(), &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)
}
