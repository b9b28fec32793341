//! Weight packing for the GPU (host side, no GPU needed): every 2-D weight converted to its format
//! (the storage precision, or a layer linear's build-time quantization, `crate::format`) and fused
//! (`[q | k | v]`, `[gate | up]`) into one matrix buffer, every 1-D parameter (norms, biases) into
//! one f32 buffer. The [`Layout`] (byte offsets of each piece) is a pure function of the spec,
//! precision and quant format, so the engine file stores only the two buffers and re-derives it.

use super::kernels::codes_per_vector;
use crate::admission::StoredBlocks;
use crate::format::{BlockType, QuantFormat, WeightFormat};
use crate::plan::{LinearPlan, ModelPlan, NormPlan, Residual};
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::weights::quantize::quantize_parts;
use crate::weights::{HostTensor, TensorData, WeightMap};
use crate::{Error, Result};
use half::{bf16, f16};
use std::collections::BTreeMap;

/// Matrices start on 256-byte boundaries (16-byte vector loads, cuBLASLt alignment).
const ALIGN: usize = 256;

/// A `[rows, cols]` matrix at byte `off` of the matrix buffer, stored in `format`; or, where its
/// parts are stored in different formats (`mixed`), a stack of them, `format` then the first
/// part's block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mat {
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
    pub format: WeightFormat,
    pub mixed: Mixed,
}

/// Most parts a fused matrix has (`[q | k | v]`).
pub const MAX_PARTS: usize = 3;

/// The parts of a matrix whose source holds them in different formats (a GGUF file's fused
/// projection whose tensors differ in block type, kept as they are): each part's rows and format, in
/// order, the parts stored one after the other, each starting on a [`SEGMENT_ALIGN`] boundary (the
/// dense kernels' 16-byte loads). Empty when the whole matrix has one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mixed {
    parts: [Option<(usize, WeightFormat)>; MAX_PARTS],
}

/// Where each part of a mixed stack starts, relative to the matrix (bytes).
pub const SEGMENT_ALIGN: usize = 16;

/// Rows `row..row + rows` of a matrix, stored in `format` at byte `off` of the matrix buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub row: usize,
    pub rows: usize,
    pub off: usize,
    pub format: WeightFormat,
}

impl Mat {
    /// The matrix in runs of one format: itself, or each part of a mixed stack.
    pub fn segments(&self) -> Vec<Segment> {
        if self.mixed == Mixed::default() {
            return vec![Segment {
                row: 0,
                rows: self.rows,
                off: self.off,
                format: self.format,
            }];
        }
        let (mut row, mut off) = (0, self.off);
        let mut out = Vec::with_capacity(MAX_PARTS);
        for &(rows, format) in self.mixed.parts.iter().flatten() {
            out.push(Segment {
                row,
                rows,
                off,
                format,
            });
            row += rows;
            off += format.matrix_bytes(rows, self.cols).div_ceil(SEGMENT_ALIGN) * SEGMENT_ALIGN;
        }
        out
    }

    /// Bytes of the whole matrix (a mixed stack's parts padded to [`SEGMENT_ALIGN`]).
    pub fn bytes(&self) -> usize {
        self.segments().last().map_or(0, |s| {
            s.off + s.format.matrix_bytes(s.rows, self.cols) - self.off
        })
    }
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

struct Builder<'a> {
    precision: Precision,
    quant: QuantFormat,
    /// The block type the source keeps each canonical tensor in (`--quant_format gguf`).
    stored: StoredBlocks<'a>,
    elem: usize,
    mat_bytes: usize,
    vec_bytes: usize,
    /// (matrix, its parts, cols) in order.
    mats: Vec<(Mat, Parts)>,
    vecs: Vec<(Vf, Vec<(String, usize)>)>,
}

impl Builder<'_> {
    fn mat(&mut self, parts: &[(&str, usize)], cols: usize, format: WeightFormat) -> Mat {
        self.mat_mixed(parts, cols, format, Mixed::default())
    }
    fn mat_mixed(
        &mut self,
        parts: &[(&str, usize)],
        cols: usize,
        format: WeightFormat,
        mixed: Mixed,
    ) -> Mat {
        let rows = parts.iter().map(|p| p.1).sum();
        let m = Mat {
            off: self.mat_bytes,
            rows,
            cols,
            format,
            mixed,
        };
        self.mat_bytes += m.bytes().div_ceil(ALIGN) * ALIGN;
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
    /// A planned layer linear: its fused matrix (in the engine's format for it, or the blocks the
    /// source keeps its parts in), then its fused bias when it has one.
    fn linear(&mut self, plan: &LinearPlan) -> (Mat, Option<Vf>) {
        let format = WeightFormat::of_linear_as(plan, self.precision, self.quant);
        let weights = plan.weight_rows();
        let cols = plan.in_features;
        // A part the source keeps as whole-row blocks stays in them (as `model::linear` keeps it).
        let kept: Vec<Option<WeightFormat>> = weights
            .iter()
            .map(|(name, _)| {
                (self.stored)(name)
                    .filter(|t| t.row_bytes(cols).is_some())
                    .map(WeightFormat::Blocks)
            })
            .collect();
        let first_kept = kept.iter().flatten().next().copied();
        let Some(first_kept) = first_kept else {
            return self.linear_as(plan, format);
        };
        if kept.iter().all(|k| *k == Some(first_kept)) {
            return self.linear_as(plan, first_kept);
        }
        if weights.len() > MAX_PARTS {
            // No plan fuses more parts than q, k and v; were one to, its parts would be dense.
            return self.linear_as(plan, format);
        }
        let mut mixed = Mixed::default();
        for (slot, ((_, rows), k)) in mixed.parts.iter_mut().zip(weights.iter().zip(&kept)) {
            *slot = Some((*rows, k.unwrap_or(format)));
        }
        let w: Vec<(&str, usize)> = weights.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        let mat = self.mat_mixed(&w, cols, first_kept, mixed);
        (mat, self.bias(plan))
    }
    /// A planned linear stored in `format`.
    fn linear_as(&mut self, plan: &LinearPlan, format: WeightFormat) -> (Mat, Option<Vf>) {
        let weights = plan.weight_rows();
        let w: Vec<(&str, usize)> = weights.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        let mat = self.mat(&w, plan.in_features, format);
        (mat, self.bias(plan))
    }
    /// A planned linear's fused bias, when it has one.
    fn bias(&mut self, plan: &LinearPlan) -> Option<Vf> {
        plan.bias.then(|| {
            let biases = plan.bias_rows();
            let b: Vec<(&str, usize)> = biases.iter().map(|(n, r)| (n.as_str(), *r)).collect();
            self.vec(&b)
        })
    }
}

fn build<'a>(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    stored: StoredBlocks<'a>,
) -> (Layout, Builder<'a>) {
    let plan = ModelPlan::new(spec);
    let mut b = Builder {
        precision,
        quant,
        stored,
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
        // Never quantized (`crate::format`): dense like the embedding.
        false => b.linear_as(&plan.lm_head, table).0,
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
    pub fn new(spec: &ModelSpec, precision: Precision, quant: QuantFormat) -> Layout {
        build(spec, precision, quant, &|_| None).0
    }

    /// [`Layout::new`] for a source that keeps canonical tensors as GGML blocks (`kept`, under
    /// `--quant_format gguf`): each layer linear's parts in those blocks where their rows are whole
    /// blocks; the embedding and lm_head dense.
    pub fn kept(
        spec: &ModelSpec,
        precision: Precision,
        quant: QuantFormat,
        kept: &KeptBlocks,
    ) -> Layout {
        build(spec, precision, quant, &|name| kept.get(name).copied()).0
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

    /// Why the kernels cannot multiply this layout's matrices, if they cannot: the kernels read
    /// dense matrices of the engine's storage precision `T`, layer linears quantized at build, and
    /// layer linears (or their parts) in GGUF blocks of whole rows.
    pub fn format_problem(&self, precision: Precision) -> Option<String> {
        let dense = WeightFormat::Dense(precision);
        let ok = |m: &Mat| {
            m.segments().iter().all(|s| match s.format {
                WeightFormat::Dense(_) => s.format == dense,
                WeightFormat::Quantized(q) => {
                    q.fits(m.cols) && m.cols.is_multiple_of(codes_per_vector(q))
                }
                WeightFormat::Blocks(t) => t.row_bytes(m.cols).is_some(),
            })
        };
        let tables = [&self.embed, &self.lm_head]
            .into_iter()
            .chain(&self.pos_embed);
        if let Some(m) = tables.into_iter().find(|m| m.format != dense) {
            return Some(format!(
                "a {}x{} embedding or lm_head matrix is stored as {}, and the CUDA kernels of a \
                 {precision} engine take {dense}",
                m.rows, m.cols, m.format
            ));
        }
        self.matrices().find(|m| !ok(m)).map(|m| match m.format {
            WeightFormat::Quantized(q) => format!(
                "a {}x{} matrix is stored as {}, and the CUDA kernels read rows of whole groups and \
                 whole 16-byte vectors of codes ({} weights)",
                m.rows,
                m.cols,
                m.format,
                codes_per_vector(q)
            ),
            _ => format!(
                "a {}x{} matrix is stored as {}, and the CUDA kernels of a {precision} engine take \
                 {dense}, weights quantized at build or GGUF blocks of whole rows",
                m.rows, m.cols, m.format
            ),
        })
    }

    /// Elements of the largest matrix stored in another format than dense (the general path
    /// dequantises one at a time into a dense staging buffer for its GEMMs), 0 when all are dense.
    pub fn largest_packed(&self) -> usize {
        self.matrices()
            .filter(|m| m.segments().iter().any(|s| s.format.dense().is_none()))
            .map(|m| m.rows * m.cols)
            .max()
            .unwrap_or(0)
    }

    /// Bytes of weights a decode step streams (every matrix except the embedding tables, which are
    /// only gathered from; a tied lm_head counts once).
    pub fn streamed_bytes(&self) -> usize {
        let m = |m: &Mat| m.bytes();
        let mut total = m(&self.lm_head);
        for l in &self.layers {
            total += m(&l.qkv) + m(&l.o) + m(&l.up) + m(&l.down);
        }
        total
    }
}

/// The block type of each canonical tensor the engine keeps as GGML blocks (`--quant_format gguf`;
/// empty otherwise): with the spec, precision and quant format, what the layout is a function of.
pub type KeptBlocks = BTreeMap<String, BlockType>;

/// The packed host buffers of an engine.
pub struct Packed {
    pub layout: Layout,
    pub kept: KeptBlocks,
    pub mats: Vec<u8>,
    pub vecs: Vec<u8>,
}

/// Append the matrix of `parts` (stacked, `cols` wide) to a matrix buffer in `format`: dense
/// part by part, quantized as one matrix (all codes, then all scales, `crate::format`), GGUF blocks
/// as the source holds them.
fn append(
    out: &mut Vec<u8>,
    parts: &[&HostTensor],
    cols: usize,
    format: WeightFormat,
) -> Result<()> {
    match format {
        WeightFormat::Dense(p) => {
            for t in parts {
                append_dense(out, t, p);
            }
            Ok(())
        }
        WeightFormat::Quantized(q) => {
            out.extend_from_slice(&quantize_parts(q, parts, cols)?.to_bytes());
            Ok(())
        }
        WeightFormat::Blocks(t) => {
            for p in parts {
                match &p.data {
                    TensorData::Blocks { ty, bytes } if *ty == t => out.extend_from_slice(bytes),
                    _ => {
                        return Err(Error::invalid(format!(
                            "a matrix to keep as {format} has a part stored otherwise"
                        )));
                    }
                }
            }
            Ok(())
        }
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
pub fn pack(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    weights: &WeightMap,
) -> Result<Packed> {
    let kept: KeptBlocks = match quant {
        QuantFormat::Gguf => weights
            .tensors
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), t.blocks()?)))
            .collect(),
        _ => KeptBlocks::new(),
    };
    let stored = |name: &str| kept.get(name).copied();
    let (layout, b) = build(spec, precision, quant, &stored);
    let mut mats = Vec::with_capacity(layout.mat_bytes);
    for (m, parts) in &b.mats {
        debug_assert_eq!(mats.len(), m.off);
        let tensors = parts
            .iter()
            .map(|(name, rows)| weights.get(name, &[*rows, m.cols]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        match m.mixed == Mixed::default() {
            true => append(&mut mats, &tensors, m.cols, m.format)?,
            // One part per segment, each in its own format.
            false => {
                for (t, seg) in tensors.iter().zip(m.segments()) {
                    mats.resize(seg.off, 0);
                    append(&mut mats, &[t], m.cols, seg.format)?;
                }
            }
        }
        mats.resize(m.off + m.bytes().div_ceil(ALIGN) * ALIGN, 0);
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
    Ok(Packed {
        layout,
        kept,
        mats,
        vecs,
    })
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
        let p = pack(&spec, Precision::Fp32, QuantFormat::None, &map).expect("pack");
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
        let a = Layout::new(&spec, Precision::Fp16, QuantFormat::None);
        assert_eq!(a, Layout::new(&spec, Precision::Fp16, QuantFormat::None));
        let f = Layout::new(&spec, Precision::Fp32, QuantFormat::None);
        assert_eq!(f.streamed_bytes(), 2 * a.streamed_bytes());
        assert_eq!(a.lm_head == a.embed, spec.tie_word_embeddings);
    }

    #[test]
    fn every_matrix_is_dense_in_the_engine_precision() {
        let spec = tiny();
        let mut a = Layout::new(&spec, Precision::Bf16, QuantFormat::None);
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
        // A quantized matrix whose rows are not whole groups is refused by its format's name.
        a.layers[1].up.format = WeightFormat::Dense(Precision::Bf16);
        a.layers[0].o.format = WeightFormat::Quantized(crate::format::WeightQuant::Int4);
        let problem = a.format_problem(Precision::Bf16).expect("refused");
        assert!(problem.contains("int4 (groups of 128)"), "{problem}");
        // Kept GGUF blocks are read where the rows are whole blocks (64 weights: two of Q8_0's,
        // a quarter of Q4_K's).
        a.layers[0].o.format = WeightFormat::Blocks(crate::format::BlockType::Q8_0);
        assert_eq!(a.format_problem(Precision::Bf16), None);
        a.layers[0].o.format = WeightFormat::Blocks(crate::format::BlockType::Q4K);
        let problem = a.format_problem(Precision::Bf16).expect("refused");
        assert!(problem.contains("GGUF Q4_K"), "{problem}");
    }

    /// With `--quant_format gguf` a layer linear keeps the blocks its source holds: one format
    /// where the fused parts share a block type, else a stack of the parts each in its own (a
    /// dense part at the engine precision), as the file stores them; the embedding and lm_head
    /// dense. tiny-llama.gguf holds q as Q4_0, k as Q4_1, v as F16, gate as Q8_0, up as Q4_1 and
    /// down as Q4_0.
    #[test]
    fn kept_blocks_stay_as_the_file_holds_them() {
        use crate::format::BlockType;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spec = ModelSpec::from_dir(&root.join("models/tiny-llama")).expect("config");
        let source =
            crate::weights::WeightSource::Gguf(root.join("tests/fixtures/gguf/tiny-llama.gguf"));
        let map = crate::weights::load_as(&spec, &source, QuantFormat::Gguf).expect("loads");
        let p = pack(&spec, Precision::Fp16, QuantFormat::Gguf, &map).expect("pack");
        assert_eq!(p.layout.format_problem(Precision::Fp16), None);
        assert_eq!(
            p.layout,
            Layout::kept(&spec, Precision::Fp16, QuantFormat::Gguf, &p.kept)
        );
        let l = &p.layout.layers[0];
        let h = spec.hidden_size;
        let blocks = |n: &str| match &map.tensors[n].data {
            TensorData::Blocks { ty, bytes } => (*ty, bytes.clone()),
            _ => panic!("{n} is not blocks"),
        };
        let fmt = |seg: &Segment| seg.format;
        let qkv = l.qkv.segments();
        assert_eq!(
            qkv.iter().map(fmt).collect::<Vec<_>>(),
            [
                WeightFormat::Blocks(BlockType::Q4_0),
                WeightFormat::Blocks(BlockType::Q4_1),
                WeightFormat::Dense(Precision::Fp16)
            ]
        );
        assert_eq!(qkv[2].row, spec.q_dim() + spec.kv_dim());
        // Each part starts on a 16-byte boundary (Q4_0 and Q4_1 rows of 64 weights are 36 and 40
        // bytes: the k part follows q's 64 rows at 2304 bytes, v follows k at 2304 + 640).
        assert!(qkv.iter().all(|s| (s.off - l.qkv.off) % SEGMENT_ALIGN == 0));
        assert_eq!(
            l.qkv.bytes(),
            qkv[2].off - l.qkv.off + 2 * spec.kv_dim() * h
        );
        for (seg, name) in qkv.iter().zip(["layers.0.q.weight", "layers.0.k.weight"]) {
            let (ty, bytes) = blocks(name);
            assert_eq!(seg.format, WeightFormat::Blocks(ty));
            assert_eq!(
                &p.mats[seg.off..seg.off + bytes.len()],
                &bytes[..],
                "{name}"
            );
        }
        let v: Vec<f16> = map
            .get("layers.0.v.weight", &[spec.kv_dim(), h])
            .expect("v")
            .to_f32()
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let at = qkv[2].off;
        assert_eq!(
            &p.mats[at..at + 2 * v.len()],
            bytemuck::cast_slice::<f16, u8>(&v)
        );
        assert_eq!(
            l.up.segments().iter().map(fmt).collect::<Vec<_>>(),
            [
                WeightFormat::Blocks(BlockType::Q8_0),
                WeightFormat::Blocks(BlockType::Q4_1)
            ]
        );
        assert_eq!(l.down.format, WeightFormat::Blocks(BlockType::Q4_0));
        assert_eq!(l.down.segments().len(), 1);
        assert_eq!(l.o.format, WeightFormat::Dense(Precision::Fp16));
        assert_eq!(p.layout.embed.format, WeightFormat::Dense(Precision::Fp16));
        let dense = Layout::new(&spec, Precision::Fp16, QuantFormat::None);
        assert!(p.layout.streamed_bytes() < dense.streamed_bytes());
        // A payload's kept map re-derives the layout; without it the sizes differ.
        assert_ne!(p.layout.mat_bytes, dense.mat_bytes);
    }

    /// A linear quantized at build is its fused matrix's codes, then its scales, exactly as the
    /// quantization of each part stacked (`crate::format`); the tables stay dense.
    #[test]
    fn quantized_matrices_are_codes_then_scales() {
        use crate::format::WeightQuant;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/quant/tiny-llama-w128");
        let spec = ModelSpec::from_dir(&dir).expect("config");
        let map = crate::weights::load(&spec, &crate::weights::WeightSource::HfDir(dir))
            .expect("weights");
        let dense = Layout::new(&spec, Precision::Fp16, QuantFormat::None);
        for (quant, q) in [
            (QuantFormat::Int8, WeightQuant::Int8),
            (QuantFormat::Int4, WeightQuant::Int4),
            (QuantFormat::Fp8, WeightQuant::Fp8),
        ] {
            let p = pack(&spec, Precision::Fp16, quant, &map).expect("pack");
            let l = &p.layout.layers[0];
            assert_eq!(p.layout.format_problem(Precision::Fp16), None);
            assert_eq!(l.qkv.format, WeightFormat::Quantized(q));
            assert_eq!(
                p.layout.lm_head.format,
                WeightFormat::Dense(Precision::Fp16)
            );
            let h = spec.hidden_size;
            let parts = [
                "layers.0.q.weight",
                "layers.0.k.weight",
                "layers.0.v.weight",
            ];
            let rows = [spec.q_dim(), spec.kv_dim(), spec.kv_dim()];
            let tensors: Vec<_> = parts
                .iter()
                .zip(rows)
                .map(|(n, r)| map.get(n, &[r, h]).expect("part"))
                .collect();
            let want = quantize_parts(q, &tensors, h).expect("quantize").to_bytes();
            let at = l.qkv.off;
            assert_eq!(&p.mats[at..at + want.len()], &want[..], "{quant}");
            assert!(p.layout.streamed_bytes() < dense.streamed_bytes());
            assert_eq!(p.layout.largest_packed(), 2 * spec.intermediate_size * h);
            // What admission sets aside for it (`run_llm`'s GPU memory check).
            assert_eq!(
                2 * p.layout.largest_packed() as u64,
                crate::admission::staging_bytes(&spec, Precision::Fp16, quant, &|_| None)
            );
        }
    }
}
