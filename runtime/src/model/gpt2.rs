//! GPT-2: learned absolute positions (added to the token embedding by the shared forward), pre-LayerNorm
//! blocks with biases everywhere, multi-head attention (no rotary), `gelu_new` MLP, tied lm_head.
//!
//! ```text
//! h   = x + c_proj(attn(split(c_attn(n))))        n = layer_norm(x)
//! out = h + mlp.c_proj(gelu_new(mlp.c_fc(m)))     m = layer_norm(h)
//! ```
//! (HF's Conv1D `[in, out]` weights arrive transposed to canonical `[out, in]` from the loader.)

use super::{LayerWeights, MlpWeights, Scratch, apply, attend_then_norm, linear, norm_qkv};
use crate::Result;
use crate::backend::ops::Ops;
use crate::cache::LayerKvMut;
use crate::spec::ModelSpec;
use crate::step::{CacheMode, StepInputs};

/// Layer `i`'s weights: the shared attention half, then `fc` and `proj`.
pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &dyn super::Tensors<O>,
    ops: &mut O,
    i: usize,
) -> Result<LayerWeights<O>> {
    let (h, inter) = (spec.hidden_size, spec.intermediate_size);
    super::load_layer(spec, w, ops, i, |ops, p| {
        Ok(MlpWeights::Gelu {
            fc: linear(ops, w, &[(&format!("{p}.fc"), inter)], h, spec.mlp_bias)?,
            proj: linear(ops, w, &[(&format!("{p}.proj"), h)], inter, spec.mlp_bias)?,
        })
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
    norm_qkv(ops, spec, layer, s)?;
    attend_then_norm(ops, spec, layer, s, step, cache, mode)?;
    let MlpWeights::Gelu { fc, proj } = &layer.mlp else {
        return Err(crate::Error::invalid("gpt2 block expects a GELU MLP"));
    };
    apply(ops, fc, &s.normed, &mut s.mlp_mid)?;
    ops.gelu_new(&mut s.mlp_mid)?;
    apply(ops, proj, &s.mlp_mid, &mut s.proj)?;
    ops.add(&mut s.x, &s.proj)
}
