//! Weight packing for the GPU (host side, no GPU needed): every 2-D weight converted to the storage
//! precision and fused (`[q | k | v]`, `[gate | up]`) into one matrix buffer, every 1-D parameter
//! (norms, biases) into one f32 buffer. The [`Layout`] (byte offsets of each piece) is a pure function
//! of the spec and precision, so the engine file stores only the two buffers and re-derives it.

use crate::precision::Precision;
use crate::spec::{Mlp, ModelSpec, NormKind, Positions};
use crate::weights::{HostTensor, TensorData, WeightMap};
use crate::{Error, Result};
use half::{bf16, f16};

/// Matrices start on 256-byte boundaries (16-byte vector loads, cuBLASLt alignment).
const ALIGN: usize = 256;

/// A `[rows, cols]` matrix at byte `off` of the matrix buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mat {
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
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
    pub o: Mat,
    pub o_bias: Option<Vf>,
    pub mlp_norm: (Vf, Option<Vf>),
    /// `[gate | up]` (SwiGLU) or `fc` (GELU).
    pub up: Mat,
    pub up_bias: Option<Vf>,
    /// `down` or `proj`.
    pub down: Mat,
    pub down_bias: Option<Vf>,
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
    elem: usize,
    mat_bytes: usize,
    vec_bytes: usize,
    /// (matrix, its parts, cols) in order.
    mats: Vec<(Mat, Parts)>,
    vecs: Vec<(Vf, Vec<(String, usize)>)>,
}

impl Builder {
    fn mat(&mut self, parts: &[(&str, usize)], cols: usize) -> Mat {
        let rows = parts.iter().map(|p| p.1).sum();
        let m = Mat {
            off: self.mat_bytes,
            rows,
            cols,
        };
        self.mat_bytes += (rows * cols * self.elem).div_ceil(ALIGN) * ALIGN;
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
    fn norm(&mut self, prefix: &str, h: usize, layer_norm: bool) -> (Vf, Option<Vf>) {
        let w = self.vec(&[(&format!("{prefix}.weight"), h)]);
        let b = layer_norm.then(|| self.vec(&[(&format!("{prefix}.bias"), h)]));
        (w, b)
    }
    fn bias(&mut self, on: bool, parts: &[(&str, usize)]) -> Option<Vf> {
        on.then(|| {
            let names: Vec<(String, usize)> = parts
                .iter()
                .map(|&(n, r)| (format!("{n}.bias"), r))
                .collect();
            let refs: Vec<(&str, usize)> = names.iter().map(|(n, r)| (n.as_str(), *r)).collect();
            self.vec(&refs)
        })
    }
}

fn build(spec: &ModelSpec, precision: Precision) -> (Layout, Builder) {
    let mut b = Builder {
        elem: precision.bytes_per_element(),
        mat_bytes: 0,
        vec_bytes: 0,
        mats: Vec::new(),
        vecs: Vec::new(),
    };
    let (h, q, kv, i) = (
        spec.hidden_size,
        spec.q_dim(),
        spec.kv_dim(),
        spec.intermediate_size,
    );
    let ln = spec.norm == NormKind::LayerNorm;
    let embed = b.mat(&[("embed.weight", spec.vocab_size)], h);
    let pos_embed = (spec.positions == Positions::Learned)
        .then(|| b.mat(&[("pos_embed.weight", spec.max_position_embeddings)], h));
    let mut layers = Vec::with_capacity(spec.num_layers);
    for l in 0..spec.num_layers {
        let p = |n: &str| format!("layers.{l}.{n}");
        let (qn, kn, vn, on) = (p("q"), p("k"), p("v"), p("o"));
        let attn_norm = b.norm(&p("attn_norm"), h, ln);
        let qkv = b.mat(
            &[
                (&format!("{qn}.weight"), q),
                (&format!("{kn}.weight"), kv),
                (&format!("{vn}.weight"), kv),
            ],
            h,
        );
        let qkv_bias = b.bias(spec.qkv_bias, &[(&qn, q), (&kn, kv), (&vn, kv)]);
        let o = b.mat(&[(&format!("{on}.weight"), h)], q);
        let o_bias = b.bias(spec.o_bias, &[(&on, h)]);
        let mlp_norm = b.norm(&p("mlp_norm"), h, ln);
        let (up, up_bias, down, down_bias) = match spec.mlp {
            Mlp::SwiGlu => {
                let (g, u, d) = (p("gate"), p("up"), p("down"));
                let up = b.mat(
                    &[(&format!("{g}.weight"), i), (&format!("{u}.weight"), i)],
                    h,
                );
                let up_bias = b.bias(spec.mlp_bias, &[(&g, i), (&u, i)]);
                let down = b.mat(&[(&format!("{d}.weight"), h)], i);
                (up, up_bias, down, b.bias(spec.mlp_bias, &[(&d, h)]))
            }
            Mlp::GeluNew => {
                let (f, pr) = (p("fc"), p("proj"));
                let up = b.mat(&[(&format!("{f}.weight"), i)], h);
                let up_bias = b.bias(spec.mlp_bias, &[(&f, i)]);
                let down = b.mat(&[(&format!("{pr}.weight"), h)], i);
                (up, up_bias, down, b.bias(spec.mlp_bias, &[(&pr, h)]))
            }
        };
        layers.push(LayerLayout {
            attn_norm,
            qkv,
            qkv_bias,
            o,
            o_bias,
            mlp_norm,
            up,
            up_bias,
            down,
            down_bias,
        });
    }
    let final_norm = b.norm("final_norm", h, ln);
    let lm_head = if spec.tie_word_embeddings {
        embed
    } else {
        b.mat(&[("lm_head.weight", spec.vocab_size)], h)
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

    /// Bytes of weights a decode step streams (every matrix except the embedding tables, which are
    /// only gathered from; a tied lm_head counts once).
    pub fn streamed_bytes(&self) -> usize {
        let m = |m: &Mat| m.rows * m.cols * self.elem;
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

fn append(out: &mut Vec<u8>, t: &HostTensor, precision: Precision) {
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
            append(&mut mats, weights.get(name, &[*rows, m.cols])?, precision);
        }
        mats.resize(
            m.off + (m.rows * m.cols * b.elem).div_ceil(ALIGN) * ALIGN,
            0,
        );
    }
    let mut vecs = Vec::with_capacity(layout.vec_bytes);
    for (v, parts) in &b.vecs {
        debug_assert_eq!(vecs.len(), v.off);
        for (name, len) in parts {
            append(&mut vecs, weights.get(name, &[*len])?, Precision::Fp32);
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
}
