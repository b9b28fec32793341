//! Llama (2, 3.x, SmolLM2): pre-RMSNorm blocks, rotary positions (optionally llama3-scaled, applied by
//! the backend's `rope` op from tables it built for the spec), GQA attention, SwiGLU MLP, no biases
//! unless the spec says so (`attention_bias`), untied or tied lm_head.
//!
//! ```text
//! h   = x + o(attn(rope(q(n)), rope(k(n)), v(n)))      n = rms_norm(x)
//! out = h + down(silu(gate(m)) * up(m))                m = rms_norm(h)
//! ```

use super::{
    LayerWeights, MlpWeights, Scratch, apply, attend_then_norm, geometry, linear, norm_qkv,
};
use crate::Result;
use crate::backend::ops::Ops;
use crate::cache::LayerKvMut;
use crate::spec::ModelSpec;
use crate::step::{CacheMode, StepInputs};

/// Layer `i`'s weights: the shared attention half, gate/up fused.
pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &dyn super::Tensors<O>,
    ops: &mut O,
    i: usize,
) -> Result<LayerWeights<O>> {
    let (h, inter) = (spec.hidden_size, spec.intermediate_size);
    super::load_layer(spec, w, ops, i, |ops, p| {
        let (gate, up, down) = (format!("{p}.gate"), format!("{p}.up"), format!("{p}.down"));
        Ok(MlpWeights::SwiGlu {
            gate_up: linear(ops, w, &[(&gate, inter), (&up, inter)], h, spec.mlp_bias)?,
            down: linear(ops, w, &[(&down, h)], inter, spec.mlp_bias)?,
        })
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
    let g = geometry(spec);
    norm_qkv(ops, spec, layer, s)?;
    ops.rope(&mut s.qkv, 0, g.num_heads, g.head_dim, step.position_ids)?;
    ops.rope(
        &mut s.qkv,
        g.q_dim(),
        g.num_kv_heads,
        g.head_dim,
        step.position_ids,
    )?;
    attend_then_norm(ops, spec, layer, s, step, cache, mode)?;
    let MlpWeights::SwiGlu { gate_up, down } = &layer.mlp else {
        return Err(crate::Error::invalid(format!(
            "{} block expects a SwiGLU MLP",
            spec.arch.as_str()
        )));
    };
    apply(ops, gate_up, &s.normed, &mut s.mlp_in)?;
    ops.swiglu(&s.mlp_in, &mut s.mlp_mid)?;
    apply(ops, down, &s.mlp_mid, &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)
}
