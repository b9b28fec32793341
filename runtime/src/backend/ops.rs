//! The op-level interface every backend implements. The per-architecture files under `crate::model`
//! compose a forward pass out of these ops only, so a new backend provides the ops and inherits every
//! model family.
//!
//! Activations are 2-D `[rows, cols]` (rows = `batch * seq_len`, row-major, sequence-major within a
//! batch entry). Weights are `[out_features, in_features]` matrices (nn.Linear layout), possibly several
//! canonical tensors fused along the output dimension (QKV, gate/up).

use crate::Result;
use crate::cache::LayerKvMut;
use crate::format::WeightFormat;
use crate::plan::{Rotary, Window};
use crate::precision::Precision;
use crate::spec::NormKind;
use crate::step::{CacheMode, StepInputs};
use crate::weights::HostTensor;

/// Attention geometry of one layer: heads, the softmax scale of the scores, the keys a query sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnGeometry {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Window,
}

impl AttnGeometry {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}

/// A norm's parameters (`bias` only for LayerNorm).
pub struct Norm<V> {
    pub weight: V,
    pub bias: Option<V>,
}

/// One canonical tensor inside a (possibly fused) linear layer: its canonical name prefix (e.g.
/// `layers.0.q`) and how many output rows it contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub rows: usize,
}

/// A linear layer: `[out, in]` weight (parts concatenated along `out`) and optional bias.
pub struct Linear<W, V> {
    pub weight: W,
    pub bias: Option<V>,
    pub parts: Vec<Part>,
    pub in_features: usize,
}

impl<W, V> Linear<W, V> {
    pub fn out_features(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }
}

/// The ops a backend provides. Build-time methods upload weights in the backend's storage precision;
/// run-time methods compute in f32 (or better) and write into caller-provided activations.
pub trait Ops {
    /// A `[rows, cols]` activation buffer.
    type Act: Send;
    /// A packed `[out, in]` weight matrix in the engine's storage precision.
    type Weight: Send + Sync;
    /// A 1-D f32 parameter (norm weight, bias).
    type Vector: Send + Sync;

    // ---- build time ----
    /// The engine's storage precision (of activations' inputs to the linear layers, and of the
    /// weight formats chosen for it).
    fn precision(&self) -> Precision;
    /// How the engine stores its layers' linears (`--quant_format`): a backend that quantizes at
    /// build says so here, and `model::load` asks it for those linears in the quantized format.
    fn quant(&self) -> crate::format::QuantFormat {
        crate::format::QuantFormat::None
    }
    /// Pack `parts` (each `[rows_i, cols]`) concatenated along rows into one matrix stored in `format`.
    fn weight(
        &mut self,
        parts: &[&HostTensor],
        cols: usize,
        format: WeightFormat,
    ) -> Result<Self::Weight>;
    /// Concatenate 1-D tensors into one f32 vector.
    fn vector(&mut self, parts: &[&HostTensor]) -> Result<Self::Vector>;
    /// Matrices of the same width stacked along rows into one, each kept as it is stored (the parts
    /// of a fused linear in different formats).
    fn stack(&mut self, parts: Vec<Self::Weight>) -> Result<Self::Weight>;
    /// Rows `[start, start + rows)` of a packed weight, in its storage dtype (engine-file payload).
    fn weight_rows(&self, w: &Self::Weight, start: usize, rows: usize) -> Result<HostTensor>;
    /// Elements `[start, start + len)` of a vector as an f32 tensor.
    fn vector_range(&self, v: &Self::Vector, start: usize, len: usize) -> Result<HostTensor>;
    /// A zeroed activation buffer.
    fn act(&mut self, rows: usize, cols: usize) -> Result<Self::Act>;
    /// `(rows, cols)` of an activation buffer.
    fn act_shape(&self, a: &Self::Act) -> (usize, usize);

    // ---- run time ----
    /// `out[r] = table[ids[r]]`.
    fn embed(&mut self, table: &Self::Weight, ids: &[u32], out: &mut Self::Act) -> Result<()>;
    /// `x[r] += table[ids[r]]` (learned position embeddings).
    fn add_embed(&mut self, table: &Self::Weight, ids: &[u32], x: &mut Self::Act) -> Result<()>;
    /// RMSNorm or LayerNorm of every row.
    fn norm(
        &mut self,
        kind: NormKind,
        eps: f32,
        x: &Self::Act,
        w: &Norm<Self::Vector>,
        out: &mut Self::Act,
    ) -> Result<()>;
    /// `out = x · wᵀ (+ bias)`.
    fn linear(
        &mut self,
        x: &Self::Act,
        w: &Self::Weight,
        bias: Option<&Self::Vector>,
        out: &mut Self::Act,
    ) -> Result<()>;
    /// The norm of each of `heads` heads of `head_dim` starting at column `col` of every row, in
    /// place, all heads with the same `[head_dim]` weights (Qwen3's `q_norm` and `k_norm`).
    #[allow(clippy::too_many_arguments)]
    fn head_norm(
        &mut self,
        kind: NormKind,
        eps: f32,
        x: &mut Self::Act,
        col: usize,
        heads: usize,
        head_dim: usize,
        w: &Norm<Self::Vector>,
    ) -> Result<()>;
    /// Rotate `heads` heads of `head_dim` starting at column `col` of every row by `rotary`, HF
    /// `rotate_half` convention, row `r` at position `positions[r]`.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &mut self,
        rotary: &Rotary,
        x: &mut Self::Act,
        col: usize,
        heads: usize,
        head_dim: usize,
        positions: &[u32],
    ) -> Result<()>;
    /// Causal GQA attention for fused `qkv` rows (`[q | k | v]`), against the static cache per `mode`
    /// (ARCHITECTURE.md, "Static cache semantics"); writes `[rows, q_dim]` into `out`.
    fn attention(
        &mut self,
        qkv: &Self::Act,
        geom: AttnGeometry,
        step: &StepInputs<'_>,
        cache: Option<&mut LayerKvMut<'_>>,
        mode: CacheMode,
        out: &mut Self::Act,
    ) -> Result<()>;
    /// `out = silu(gate) * up` where `gate_up` rows are `[gate | up]`.
    fn swiglu(&mut self, gate_up: &Self::Act, out: &mut Self::Act) -> Result<()>;
    /// `out = gelu_tanh(gate) * up` where `gate_up` rows are `[gate | up]` (GeGLU).
    fn geglu(&mut self, gate_up: &Self::Act, out: &mut Self::Act) -> Result<()>;
    /// In-place tanh-approximated GELU (`gelu_new`).
    fn gelu_new(&mut self, x: &mut Self::Act) -> Result<()>;
    /// `x *= factor`, every element.
    fn scale(&mut self, x: &mut Self::Act, factor: f32) -> Result<()>;
    /// `x += y`.
    fn add(&mut self, x: &mut Self::Act, y: &Self::Act) -> Result<()>;
    /// `out[i] = x[rows[i]]`.
    fn gather_rows(&mut self, x: &Self::Act, rows: &[usize], out: &mut Self::Act) -> Result<()>;
    /// Copy an activation to the host as f32, row-major.
    fn to_host(&mut self, x: &Self::Act) -> Result<Vec<f32>>;
}
