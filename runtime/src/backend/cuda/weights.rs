//! Weight packing for the GPU (host side, no GPU needed): every 2-D weight converted to the storage
//! precision and fused (`[q | k | v]`, `[gate | up]`) into one matrix buffer, every 1-D parameter
//! (norms, biases) into one f32 buffer. The [`Layout`] (byte offsets of each piece) is a pure function
//! of the spec and precision, so the engine file stores only the two buffers and re-derives it.

use crate::format::WeightFormat;
use crate::plan::{LinearPlan, ModelPlan, NormPlan, Residual};
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::weights::{HostTensor, TensorData, WeightMap};
use crate::{Error, Result};
use half::{bf16, f16};

/// Matrices start on 256-byte boundaries (16-byte vector loads, cuBLASLt alignment).
const ALIGN: usize = 256;

/// A `[rows, cols]` matrix at byte `off` of the matrix buffer, stored in `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mat {
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
    pub format: WeightFormat,
}

/// `len` f32 values at byte `off` of the vector buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vf {
    pub off: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerLayout {
    pub attn_norm: (Vf, Option<Vf>),
    pub qkv: Mat,
    pub qkv_bias: Option<Vf>,
    /// The per-head q and k norm gains (`[head_dim]` each), when planned.
    pub qk_norm: Option<(Vf, Vf)>,
    pub o: Mat,
    pub o_bias: Option<Vf>,
    pub mlp_norm: (Vf, Option<Vf>),
    /// `[gate | up]` (SwiGLU) or `fc` (GELU).
    pub up: Mat,
    pub up_bias: Option<Vf>,
    /// `down` or `proj`.
    pub down: Mat,
    pub down_bias: Option<Vf>,
    /// The sandwich norms' gains (after attention, after the MLP), when planned.
    pub post_norms: Option<(Vf, Vf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub elem: usize,
    /// Token embedding (the lm_head matrix itself when tied).
    pub embed: Mat,
    pub pos_embed: Option<Mat>,
    pub layers: Vec<LayerLayout>,
    pub final_norm: (Vf, Option<Vf>),
    pub lm_head: Mat,
    pub mat_bytes: usize,
    pub vec_bytes: usize,
}

/// The canonical tensors (name, rows) making up each fused matrix, in layout order.
type Parts = Vec<(String, usize)>;

struct Builder {
    precision: Precision,
    elem: usize,
    mat_bytes: usize,
    vec_bytes: usize,
    /// (matrix, its parts, cols) in order.
    mats: Vec<(Mat, Parts)>,
    vecs: Vec<(Vf, Vec<(String, usize)>)>,
}

impl Builder {
    fn mat(&mut self, parts: &[(&str, usize)], cols: usize, format: WeightFormat) -> Mat {
        let rows = parts.iter().map(|p| p.1).sum();
        let m = Mat {
            off: self.mat_bytes,
            rows,
            cols,
            format,
        };
        self.mat_bytes += format.matrix_bytes(rows, cols).div_ceil(ALIGN) * ALIGN;
        self.mats
            .push((m, parts.iter().map(|&(n, r)| (n.to_string(), r)).collect()));
        m
    }
    fn vec(&mut self, parts: &[(&str, usize)]) -> Vf {
        let len = parts.iter().map(|p| p.1).sum();
        let v = Vf {
            off: self.vec_bytes,
            len,
        };
        self.vec_bytes += (len * 4).div_ceil(ALIGN) * ALIGN;
        self.vecs
            .push((v, parts.iter().map(|&(n, r)| (n.to_string(), r)).collect()));
        v
    }
    fn norm(&mut self, plan: &NormPlan) -> (Vf, Option<Vf>) {
        let w = self.vec(&[(&format!("{}.weight", plan.name), plan.width)]);
        let b = plan
            .has_bias()
            .then(|| self.vec(&[(&format!("{}.bias", plan.name), plan.width)]));
        (w, b)
    }
    /// A planned linear layer: its fused matrix, then its fused bias when it has one.
    fn linear(&mut self, plan: &LinearPlan) -> (Mat, Option<Vf>) {
        let weights = plan.weight_rows();
        let w: Vec<(&str, usize)> = weights.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        let format = WeightFormat::of_linear(plan, self.precision);
        let mat = self.mat(&w, plan.in_features, format);
        let bias = plan.bias.then(|| {
            let biases = plan.bias_rows();
            let b: Vec<(&str, usize)> = biases.iter().map(|(n, r)| (n.as_str(), *r)).collect();
            self.vec(&b)
        });
        (mat, bias)
    }
}

fn build(spec: &ModelSpec, precision: Precision) -> (Layout, Builder) {
    let plan = ModelPlan::new(spec);
    let mut b = Builder {
        precision,
        elem: precision.bytes_per_element(),
        mat_bytes: 0,
        vec_bytes: 0,
        mats: Vec::new(),
        vecs: Vec::new(),
    };
    let h = plan.hidden_size;
    let table = WeightFormat::of_table(precision);
    let embed = b.mat(&[("embed.weight", plan.vocab_size)], h, table);
    let pos_embed = plan
        .learned_positions
        .map(|rows| b.mat(&[("pos_embed.weight", rows)], h, table));
    let mut layers = Vec::with_capacity(plan.layers.len());
    for l in &plan.layers {
        let attn_norm = b.norm(&l.attn_norm);
        let (qkv, qkv_bias) = b.linear(&l.qkv);
        let qk_norm = l
            .attention
            .qk_norm
            .as_ref()
            .map(|n| (b.norm(&n.q).0, b.norm(&n.k).0));
        let (o, o_bias) = b.linear(&l.o);
        let post_attn = match &l.residual {
            Residual::PreNorm => None,
            Residual::Sandwich { post_attn_norm, .. } => Some(b.norm(post_attn_norm).0),
        };
        let mlp_norm = b.norm(&l.mlp_norm);
        let (up, up_bias) = b.linear(&l.up);
        let (down, down_bias) = b.linear(&l.down);
        let post_mlp = match &l.residual {
            Residual::PreNorm => None,
            Residual::Sandwich { post_mlp_norm, .. } => Some(b.norm(post_mlp_norm).0),
        };
        layers.push(LayerLayout {
            attn_norm,
            qkv,
            qkv_bias,
            qk_norm,
            o,
            o_bias,
            mlp_norm,
            up,
            up_bias,
            down,
            down_bias,
            post_norms: post_attn.zip(post_mlp),
        });
    }
    let final_norm = b.norm(&plan.final_norm);
    let lm_head = match plan.tied {
        true => embed,
        false => b.linear(&plan.lm_head).0,
    };
    let layout = Layout {
        elem: b.elem,
        embed,
        pos_embed,
        layers,
        final_norm,
        lm_head,
        mat_bytes: b.mat_bytes,
        vec_bytes: b.vec_bytes,
    };
    (layout, b)
}

impl Layout {
    pub fn new(spec: &ModelSpec, precision: Precision) -> Layout {
        build(spec, precision).0
    }

    /// Every matrix, embeddings first, in layout order (a tied `lm_head` is the embedding, listed
    /// again).
    pub fn matrices(&self) -> impl Iterator<Item = &Mat> {
        let layers = self
            .layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.o, &l.up, &l.down]);
        [&self.embed]
            .into_iter()
            .chain(&self.pos_embed)
            .chain(layers)
            .chain([&self.lm_head])
    }

    /// Why the kernels cannot multiply this layout's matrices, if they cannot: the GEMM and the
    /// decode GEMVs read dense matrices of the engine's storage precision `T`.
    pub fn format_problem(&self, precision: Precision) -> Option<String> {
        let dense = WeightFormat::Dense(precision);
        self.matrices().find(|m| m.format != dense).map(|m| {
            format!(
                "a {}x{} matrix is stored as {}, and the CUDA kernels of a {precision} engine take {dense}",
                m.rows, m.cols, m.format
            )
        })
    }

    /// Bytes of weights a decode step streams (every matrix except the embedding tables, which are
    /// only gathered from; a tied lm_head counts once).
    pub fn streamed_bytes(&self) -> usize {
        let m = |m: &Mat| m.format.matrix_bytes(m.rows, m.cols);
        let mut total = m(&self.lm_head);
        for l in &self.layers {
            total += m(&l.qkv) + m(&l.o) + m(&l.up) + m(&l.down);
        }
        total
    }
}

/// The packed host buffers of an engine.
pub struct Packed {
    pub layout: Layout,
    pub mats: Vec<u8>,
    pub vecs: Vec<u8>,
}

/// Append `t` to a matrix buffer in `format` (the CUDA kernels multiply dense formats only).
fn append(out: &mut Vec<u8>, t: &HostTensor, format: WeightFormat) -> Result<()> {
    match format {
        WeightFormat::Dense(p) => {
            append_dense(out, t, p);
            Ok(())
        }
        WeightFormat::Blocks(_) | WeightFormat::Quantized(_) => Err(Error::invalid(format!(
            "the CUDA backend cannot store a matrix as {format}"
        ))),
    }
}

/// Append `t`'s elements converted to `precision`, little-endian.
fn append_dense(out: &mut Vec<u8>, t: &HostTensor, precision: Precision) {
    match (precision, &t.data) {
        (Precision::Fp32, TensorData::F32(v)) => out.extend_from_slice(bytemuck::cast_slice(v)),
        (Precision::Fp16, TensorData::F16(v)) => out.extend_from_slice(bytemuck::cast_slice(v)),
        (Precision::Bf16, TensorData::BF16(v)) => out.extend_from_slice(bytemuck::cast_slice(v)),
        (Precision::Fp32, _) => {
            for x in t.to_f32() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        (Precision::Fp16, _) => {
            for x in t.to_f32() {
                out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
            }
        }
        (Precision::Bf16, _) => {
            for x in t.to_f32() {
                out.extend_from_slice(&bf16::from_f32(x).to_le_bytes());
            }
        }
    }
}

/// Convert and fuse `weights` (canonical names, shapes checked) into the GPU layout.
pub fn pack(spec: &ModelSpec, precision: Precision, weights: &WeightMap) -> Result<Packed> {
    let (layout, b) = build(spec, precision);
    let mut mats = Vec::with_capacity(layout.mat_bytes);
    for (m, parts) in &b.mats {
        debug_assert_eq!(mats.len(), m.off);
        for (name, rows) in parts {
            append(&mut mats, weights.get(name, &[*rows, m.cols])?, m.format)?;
        }
        mats.resize(
            m.off + m.format.matrix_bytes(m.rows, m.cols).div_ceil(ALIGN) * ALIGN,
            0,
        );
    }
    let mut vecs = Vec::with_capacity(layout.vec_bytes);
    for (v, parts) in &b.vecs {
        debug_assert_eq!(vecs.len(), v.off);
        for (name, len) in parts {
            append_dense(&mut vecs, weights.get(name, &[*len])?, Precision::Fp32);
        }
        vecs.resize(v.off + (v.len * 4).div_ceil(ALIGN) * ALIGN, 0);
    }
    if mats.len() != layout.mat_bytes || vecs.len() != layout.vec_bytes {
        return Err(Error::invalid(format!(
            "packing {}: {} + {} bytes written, layout needs {} + {}",
            spec.name,
            mats.len(),
            vecs.len(),
            layout.mat_bytes,
            layout.vec_bytes
        )));
    }
    Ok(Packed { layout, mats, vecs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelSpec {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama");
        ModelSpec::from_dir(&dir).expect("tiny-llama config")
    }

    #[test]
    fn fused_matrices_hold_their_parts_in_order() {
        let spec = tiny();
        let map = crate::weights::load(
            &spec,
            &crate::weights::WeightSource::HfDir(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama"),
            ),
        )
        .expect("tiny weights");
        let p = pack(&spec, Precision::Fp32, &map).expect("pack");
        let l = &p.layout.layers[1];
        let h = spec.hidden_size;
        let row = |m: &Mat, r: usize| -> Vec<f32> {
            let at = m.off + r * m.cols * 4;
            bytemuck::cast_slice::<u8, f32>(&p.mats[at..at + m.cols * 4]).to_vec()
        };
        let k = map
            .get("layers.1.k.weight", &[spec.kv_dim(), h])
            .expect("k")
            .to_f32();
        assert_eq!(row(&l.qkv, spec.q_dim()), k[..h].to_vec());
        let up = map
            .get("layers.1.up.weight", &[spec.intermediate_size, h])
            .expect("up")
            .to_f32();
        assert_eq!(
            row(&l.up, spec.intermediate_size + 2),
            up[2 * h..3 * h].to_vec()
        );
        assert_eq!(p.layout.mat_bytes % ALIGN, 0);
        assert!(l.qkv.off.is_multiple_of(ALIGN) && l.down.off.is_multiple_of(ALIGN));
    }

    #[test]
    fn layout_is_a_function_of_spec_and_precision() {
        let spec = tiny();
        let a = Layout::new(&spec, Precision::Fp16);
        assert_eq!(a, Layout::new(&spec, Precision::Fp16));
        let f = Layout::new(&spec, Precision::Fp32);
        assert_eq!(f.streamed_bytes(), 2 * a.streamed_bytes());
        assert_eq!(a.lm_head == a.embed, spec.tie_word_embeddings);
    }

    #[test]
    fn every_matrix_is_dense_in_the_engine_precision() {
        let spec = tiny();
        let mut a = Layout::new(&spec, Precision::Bf16);
        // embed, pos_embed when learned, four per layer, lm_head (the embedding again when tied).
        let n = 2 + 4 * spec.num_layers + usize::from(a.pos_embed.is_some());
        assert_eq!(a.matrices().count(), n);
        assert!(
            a.matrices()
                .all(|m| m.format == WeightFormat::Dense(Precision::Bf16))
        );
        assert_eq!(a.format_problem(Precision::Bf16), None);
        a.layers[1].up.format = WeightFormat::Dense(Precision::Fp32);
        let problem = a.format_problem(Precision::Bf16).expect("refused");
        assert!(
            problem.contains("dense FP32") && problem.contains("dense BF16"),
            "{problem}"
        );
        // A matrix quantized at build (`--quant_format int4`) is refused by its format's name.
        a.layers[1].up.format = WeightFormat::Dense(Precision::Bf16);
        a.layers[0].o.format = WeightFormat::Quantized(crate::format::WeightQuant::Int4);
        let problem = a.format_problem(Precision::Bf16).expect("refused");
        assert!(problem.contains("int4 (groups of 128)"), "{problem}");
    }
}
