//! Qwen2 / Qwen2.5: the Llama block with biases on the q, k and v projections (and usually tied
//! embeddings). Sliding-window attention is refused at config time, so every layer is full attention.

use super::{LayerWeights, Scratch, llama};
use crate::backend::ops::Ops;
use crate::cache::LayerKvMut;
use crate::spec::ModelSpec;
use crate::step::{CacheMode, StepInputs};
use crate::{Error, Result};

/// Layer `i`'s weights: Llama's, with the qkv bias Qwen2 always has.
pub fn load_layer<O: Ops>(
    spec: &ModelSpec,
    w: &dyn super::Tensors<O>,
    ops: &mut O,
    i: usize,
) -> Result<LayerWeights<O>> {
    if !spec.qkv_bias {
        return Err(Error::invalid(
            "qwen2 spec without qkv bias: Qwen2 checkpoints always carry q/k/v biases",
        ));
    }
    llama::load_layer(spec, w, ops, i)
}

/// One decoder block: exactly Llama's (the biases are part of the fused qkv linear).
pub fn block<O: Ops>(
    ops: &mut O,
    spec: &ModelSpec,
    layer: &LayerWeights<O>,
    s: &mut Scratch<O>,
    step: &StepInputs<'_>,
    cache: Option<&mut LayerKvMut<'_>>,
    mode: CacheMode,
) -> Result<()> {
    llama::block(ops, spec, layer, s, step, cache, mode)
}
