//! One engine call on the GPU: [`encode`] issues every launch on the stream, through the fused decode
//! path (`decode.rs`) when a step has few rows and the GEMV kernels can take every matrix, else the
//! general path (`layers.rs`). Token ids, positions and `start_idx`/`end_idx` are read from device
//! memory only, so the same launches, captured once into a CUDA graph, serve every decode step.

use super::device::Gpu;
use super::fused_layer::{FusedLayer, LayerPositions};
use super::gemm::{GemmChoice, GemmShape, Lt, default_choice};
use super::kernels::{
    DECODE_CHUNK, GEMV_MAX_ROWS, Kernels, codes_per_vector, format_code, tc_prefill_supported,
};
use super::launch::{Function, Grid, Stream};
use super::launchers::{
    Argmax, AttnDecode, AttnPrefill, Dequant, DequantBlocks, Embed, Gemv, GemvBlocks, HeadNorm,
    KvRingStore, QkvRope,
};
use super::memory::{DevBuf, DevSlice, DevSliceMut, Mark, Stored};
use super::scratch::{Scratch, decode_splits};
use super::weights::{Layout, Mat, Segment, Vf};
use crate::Result;
use crate::backend_error::BackendError;
use crate::format::WeightFormat;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::step::CacheMode;
use cudarc::driver::CudaFunction;
use std::collections::BTreeMap;

/// Everything one engine call needs besides the scratch.
pub struct Model<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub spec: &'a ModelSpec,
    /// The layer plan's switches (the same the kernels were compiled with).
    pub layer: FusedLayer,
    pub precision: Precision,
    pub layout: &'a Layout,
    /// Every matrix of the layout, each in its format.
    pub mats: &'a DevBuf<Stored>,
    /// The dense staging matrix the general path dequantises a quantized matrix into before its
    /// GEMM (as large as the largest; absent when every matrix is dense).
    pub unpacked: Option<&'a DevBuf<Stored>>,
    /// Every norm weight and bias of the layout.
    pub vecs: &'a DevBuf<f32>,
    /// `(cos, sin)` tables, `[max_seq, head_dim / 2]`, of each rotary embedding of the plan
    /// (`ModelPlan::rotaries`); none for learned positions.
    pub rope: &'a [(DevBuf<f32>, DevBuf<f32>)],
    /// Each layer's window and rotary embedding.
    pub positions: &'a [LayerPositions],
    pub max_seq: usize,
    pub choices: &'a BTreeMap<GemmShape, GemmChoice>,
    /// Launch with programmatic dependent launch (sm_90+, fused decode path only).
    pub pdl: bool,
    /// Decode timeline marks (`trace.rs`; absent when not tracing, and on the general path).
    pub trace: Option<DevSliceMut<'a, Mark>>,
}

impl<'a> Model<'a> {
    /// Where this call's launches go.
    pub fn stream(&self) -> Stream<'a> {
        Stream {
            gpu: self.gpu,
            pdl: self.pdl,
        }
    }

    /// Matrix `w` of the layout, which is dense in the storage element.
    pub fn mat(&self, w: &Mat) -> DevSlice<'a, Stored> {
        debug_assert_eq!(w.format.dense(), Some(self.precision));
        self.mats
            .slice(w.off / self.mats.elem_bytes(), w.rows * w.cols)
    }

    /// The bytes of matrix `w` of the layout, in its format (dense or quantized at build).
    pub fn packed(&self, w: &Mat) -> DevSlice<'a, u8> {
        self.mats.byte_slice(w.off, w.bytes())
    }

    /// Vector `v` of the layout.
    pub fn vec(&self, v: &Vf) -> DevSlice<'a, f32> {
        self.vecs.slice(v.off / self.vecs.elem_bytes(), v.len)
    }

    /// Vector `v` of the layout, where the model has one.
    pub fn opt_vec(&self, v: &Option<Vf>) -> Option<DevSlice<'a, f32>> {
        v.as_ref().map(|v| self.vec(v))
    }

    /// The RoPE cosine and sine tables of `layer`, where the model rotates.
    pub fn rope_of(&self, layer: usize) -> (Option<DevSlice<'a, f32>>, Option<DevSlice<'a, f32>>) {
        let tables = self
            .positions
            .get(layer)
            .and_then(|p| p.rotary)
            .and_then(|r| self.rope.get(r));
        (tables.map(|t| t.0.view()), tables.map(|t| t.1.view()))
    }

    /// The sliding window of `layer` (its cache a ring of that many positions), 0 for none.
    pub fn window_of(&self, layer: usize) -> usize {
        self.positions.get(layer).map_or(0, |p| p.window)
    }
}

/// The key and value cache tensors of one layer, written by the step.
#[derive(Debug, Clone, Copy)]
pub struct LayerKv<'a> {
    pub k: DevSliceMut<'a, Stored>,
    pub v: DevSliceMut<'a, Stored>,
}

/// What one call computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub batch: usize,
    pub seq_len: usize,
    pub mode: CacheMode,
    /// Logits of every row (`true`) or of each sequence's last row.
    pub all_rows: bool,
    /// Also pick `argmax` of each sequence into `next_ids`.
    pub argmax: bool,
}

impl Call {
    pub fn rows(&self) -> usize {
        self.batch * self.seq_len
    }
    /// One new token per sequence against the cache: the split decode attention (and a CUDA graph).
    pub fn is_decode(&self) -> bool {
        self.seq_len == 1 && self.mode != CacheMode::None
    }
    pub fn logit_rows(&self) -> usize {
        if self.all_rows {
            self.rows()
        } else {
            self.batch
        }
    }
}

/// Grid of a gemv launch of `f` over `n` outputs (8 per block): one resident wave at most, so each
/// block stages its input rows once and then streams several weight rows (grid-stride).
pub fn gemv_grid(m: &Model<'_>, f: &CudaFunction, n: usize, smem: usize) -> (u32, u32, u32) {
    let per_sm = f
        .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
        .map_or(4, |b| b.max(1) as usize);
    (n.div_ceil(8).min(m.gpu.sms * per_sm).max(1) as u32, 1, 1)
}

/// The shape of `y[rows, w.rows] = x · wᵀ` and how to run it: the choice recorded at build time, else
/// the default for the shape.
pub fn choice(m: &Model<'_>, w: &Mat, rows: usize) -> (GemmShape, Option<GemmChoice>) {
    let shape = GemmShape {
        m: rows,
        n: w.rows,
        k: w.cols,
    };
    let choice = m
        .choices
        .get(&shape)
        .copied()
        .or_else(|| default_choice(&shape, m.precision));
    (shape, choice)
}

/// A kernel of a weight-format module, which the engine compiles only where its formats need it.
fn compiled<'k, K>(f: &'k Option<Function<K>>, name: &str) -> Result<&'k Function<K>> {
    f.as_ref().ok_or_else(|| {
        crate::Error::Backend(BackendError::Other(format!(
            "kernel {name} was not compiled into this engine (its weight formats do not use it)"
        )))
    })
}

/// Matrix `w` dense in the storage element: itself, or (quantized at build, GGUF blocks, or a stack
/// of parts in different formats) each of its segments dequantised (or copied, where dense) into the
/// staging matrix, which holds it until the next call.
fn dense_of<'a>(m: &Model<'a>, w: &Mat) -> Result<DevSlice<'a, Stored>> {
    let segments = w.segments();
    if let [
        Segment {
            format: WeightFormat::Dense(_),
            ..
        },
    ] = segments[..]
    {
        return Ok(m.mat(w));
    }
    let n = w.rows * w.cols;
    let staging = m.unpacked.filter(|u| u.len() >= n).ok_or_else(|| {
        crate::Error::Backend(BackendError::Other(format!(
            "no dense staging matrix for a {}x{} matrix stored as {}",
            w.rows, w.cols, w.format
        )))
    })?;
    for seg in &segments {
        let out = staging.slice_mut(seg.row * w.cols, seg.rows * w.cols);
        let bytes = m
            .mats
            .byte_slice(seg.off, seg.format.matrix_bytes(seg.rows, w.cols));
        let (rows, cols) = (seg.rows as i32, w.cols as i32);
        match seg.format {
            WeightFormat::Dense(_) => {
                let elems = m.precision.bytes_per_element();
                let src = m.mats.slice(seg.off / elems, seg.rows * w.cols);
                m.gpu.copy_device(src, out)?;
            }
            WeightFormat::Quantized(q) => {
                let vecs = seg.rows * w.cols / codes_per_vector(q);
                Dequant {
                    w: bytes,
                    out,
                    rows,
                    cols,
                    fmt: format_code(seg.format).map_err(crate::Error::invalid)? as i32,
                }
                .launch(
                    &m.stream(),
                    compiled(&m.k.dequant, "dequant")?,
                    Grid::new((vecs.div_ceil(256).clamp(1, 1 << 16) as u32, 1, 1), 256),
                )?;
            }
            WeightFormat::Blocks(t) => DequantBlocks {
                w: bytes,
                out,
                rows,
                cols,
                ty: t.ggml_id() as i32,
            }
            .launch(
                &m.stream(),
                compiled(&m.k.dequant_blocks, "dequant_blocks")?,
                DequantBlocks::grid(seg.rows, w.cols, m.gpu.sms * 8),
            )?,
        }
    }
    Ok(staging.slice(0, n))
}

/// The `gemv` kernel: `y[rows, n] = x · wᵀ` for a dense `w` of `[n, k]` (`dims`), the inputs `ldx`
/// apart, the outputs `ldy` apart, the inputs staged in shared memory.
#[allow(clippy::too_many_arguments)]
fn gemv(
    m: &Model<'_>,
    w: DevSlice<'_, Stored>,
    dims: (usize, usize),
    x: DevSlice<'_, Stored>,
    ldx: usize,
    rows: usize,
    y: DevSliceMut<'_, f32>,
    ldy: usize,
) -> Result<()> {
    let (n, k) = dims;
    let smem = rows * k * m.precision.bytes_per_element();
    let grid = gemv_grid(m, m.k.gemv.cuda(), n, smem);
    Gemv {
        w,
        x,
        y,
        bias: None,
        accumulate: 0,
        n: n as i32,
        k: k as i32,
        m: rows as i32,
        ldx: ldx as i32,
        ldy: ldy as i32,
    }
    .launch(&m.stream(), &m.k.gemv, Grid::new(grid, 256).smem(smem))
}

/// `y[rows, w.rows] = x · wᵀ` for a matrix holding GGUF blocks and a step of few rows whose inputs
/// fit in shared memory: each segment's GEMV reads its blocks (or dense rows) directly, into its
/// columns of `y`. `false` when the step does not fit (the caller then dequantises).
fn gemv_segments(
    m: &Model<'_>,
    w: &Mat,
    x: DevSlice<'_, Stored>,
    ldx: usize,
    rows: usize,
    y: DevSliceMut<'_, f32>,
) -> Result<bool> {
    let e = m.precision.bytes_per_element();
    let smem = GemvBlocks::smem(rows, w.cols, e);
    let dense_fits = ldx.is_multiple_of(16 / e) && (w.cols * e).is_multiple_of(16);
    let segments = w.segments();
    let fits = rows <= GEMV_MAX_ROWS
        && smem <= m.k.gemv_smem_limit
        && segments.iter().all(|s| match s.format {
            WeightFormat::Blocks(_) => true,
            WeightFormat::Dense(_) => dense_fits,
            WeightFormat::Quantized(_) => false,
        });
    if !fits {
        return Ok(false);
    }
    for seg in &segments {
        let ys = y.skip(seg.row);
        match seg.format {
            WeightFormat::Blocks(t) => {
                let kernel = compiled(&m.k.gemv_blocks, "gemv_blocks")?;
                let f = kernel.cuda();
                let per_sm = f
                    .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
                    .map_or(1, |b| b.max(1) as usize);
                GemvBlocks {
                    w: m.mats
                        .byte_slice(seg.off, seg.format.matrix_bytes(seg.rows, w.cols)),
                    x,
                    y: ys,
                    n: seg.rows as i32,
                    k: w.cols as i32,
                    m: rows as i32,
                    ldx: ldx as i32,
                    ldy: w.rows as i32,
                    ty: t.ggml_id() as i32,
                }
                .launch(
                    &m.stream(),
                    kernel,
                    GemvBlocks::grid(seg.rows, smem, m.gpu.sms * per_sm),
                )?
            }
            _ => {
                let dense = m.mats.slice(seg.off / e, seg.rows * w.cols);
                gemv(m, dense, (seg.rows, w.cols), x, ldx, rows, ys, w.rows)?
            }
        }
    }
    Ok(true)
}

/// `y[rows, w.rows] = x · wᵀ` (x rows `ldx` elements apart), by the recorded or default choice; a
/// matrix holding GGUF blocks runs its segments' GEMVs on few rows; a quantized matrix (or one of
/// GGUF blocks on many rows) is first dequantised into the staging matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: &Model<'_>,
    lt: &mut Lt,
    w: &Mat,
    x: DevSlice<'_, Stored>,
    ldx: usize,
    rows: usize,
    y: DevSliceMut<'_, f32>,
) -> Result<()> {
    let blocks = w
        .segments()
        .iter()
        .any(|s| matches!(s.format, WeightFormat::Blocks(_)));
    if blocks && gemv_segments(m, w, x, ldx, rows, y)? {
        return Ok(());
    }
    let (shape, choice) = choice(m, w, rows);
    let dense = dense_of(m, w)?;
    let e = m.precision.bytes_per_element();
    let smem = rows * w.cols * e;
    match choice {
        Some(GemmChoice::Gemv) if ldx.is_multiple_of(16 / e) && smem <= m.k.gemv_smem_limit => {
            gemv(m, dense, (w.rows, w.cols), x, ldx, rows, y, w.rows)
        }
        Some(GemmChoice::Lt { algo }) if ldx == w.cols => {
            lt.matmul(m.gpu, shape, dense, x, ldx, y, Some(algo))
        }
        _ => lt.matmul(m.gpu, shape, dense, x, ldx, y, None),
    }
}

pub fn norm_block(h: usize) -> u32 {
    if h > 2048 { 1024 } else { 256 }
}

/// Attention of one layer: the split decode kernels for one-token steps against the cache, else the
/// tiled causal kernel (on tensor cores for 16-bit storage where `tc_prefill_supported`, sm_80+).
/// `kv` is the layer's cache (absent in mode none).
pub fn attention(
    m: &Model<'_>,
    s: &Scratch,
    call: &Call,
    kv: Option<LayerKv<'_>>,
    layer: usize,
    slot: usize,
) -> Result<()> {
    let spec = m.spec;
    let window = m.window_of(layer) as i32;
    let mode = match call.mode {
        CacheMode::StaticV1 => 0,
        CacheMode::StaticV2 => 1,
        CacheMode::None => 2,
    };
    if call.is_decode() {
        let kv = kv.ok_or_else(|| no_cache("decode attention"))?;
        let splits = decode_splits(m.max_seq);
        let grid = (splits as u32, spec.num_heads as u32, call.batch as u32);
        AttnDecode {
            q: s.q.view(),
            ck: kv.k.read(),
            cv: kv.v.read(),
            nk: s.new_k.view(),
            nv: s.new_v.view(),
            step: s.step(),
            part_o: s.part_o.view_mut(),
            part_ml: s.part_ml.view_mut(),
            counters: s.counters.view_mut(),
            out: s.attn.view_mut(),
            max_seq: m.max_seq as i32,
            mode,
            window,
            trace: m.trace,
            slot: slot as i32,
        }
        .launch(
            &m.stream(),
            &m.k.attn_decode,
            Grid::new(grid, DECODE_CHUNK as u32),
        )
    } else {
        let a = AttnPrefill {
            q: s.q.view(),
            ck: kv.map(|kv| kv.k.read()),
            cv: kv.map(|kv| kv.v.read()),
            nk: s.new_k.view(),
            nv: s.new_v.view(),
            step: s.step(),
            out: s.attn.view_mut(),
            seq_len: call.seq_len as i32,
            max_seq: m.max_seq as i32,
            mode,
            window,
        };
        let heads = spec.num_heads as u32;
        if tc_prefill_supported(spec, m.precision) && m.gpu.sm >= 80 {
            // Tensor cores: 64 queries per block.
            let grid = (call.seq_len.div_ceil(64) as u32, heads, call.batch as u32);
            a.launch(&m.stream(), &m.k.attn_prefill_tc, Grid::new(grid, 128))
        } else {
            let grid = (call.seq_len.div_ceil(16) as u32, heads, call.batch as u32);
            a.launch(&m.stream(), &m.k.attn_prefill, Grid::new(grid, 128))
        }
    }
}

/// A launch that needs the layer's KV cache was asked for without one.
pub fn no_cache(what: &str) -> crate::Error {
    crate::Error::Backend(BackendError::Other(format!("{what} without a KV cache")))
}

/// Per-head RMSNorm of the q and k heads of every QKV row (`w`: the q and k gains), in place.
pub fn head_norm(m: &Model<'_>, s: &Scratch, rows: usize, w: &(Vf, Vf)) -> Result<()> {
    let heads = (m.spec.num_heads + m.spec.num_kv_heads) as u32;
    HeadNorm {
        qkv: s.qkv.view_mut(),
        wq: m.vec(&w.0),
        wk: m.vec(&w.1),
    }
    .launch(
        &m.stream(),
        &m.k.head_norm,
        Grid::new((rows as u32, heads, 1), 32),
    )
}

/// Work items of one row of the RoPE kernel: rotated pairs of q and k heads, then v elements.
fn rope_items(spec: &ModelSpec) -> usize {
    (spec.num_heads + spec.num_kv_heads) * spec.head_dim / 2 + spec.kv_dim()
}

/// Fused RoPE + bias + KV write of one layer (`kv` absent in mode none). A windowed layer's
/// multi-token step leaves its ring to [`ring_store`], after the attention.
pub fn qkv_rope(
    m: &Model<'_>,
    s: &Scratch,
    call: &Call,
    bias: Option<DevSlice<'_, f32>>,
    kv: Option<LayerKv<'_>>,
    layer: usize,
) -> Result<()> {
    let grid = (
        call.rows() as u32,
        rope_items(m.spec).div_ceil(256) as u32,
        1,
    );
    let window = m.window_of(layer);
    let (cos_t, sin_t) = m.rope_of(layer);
    QkvRope {
        qkv: s.qkv.view(),
        bias,
        pos: s.positions(),
        step: s.step(),
        cos_t,
        sin_t,
        q: s.q.view_mut(),
        new_k: s.new_k.view_mut(),
        new_v: s.new_v.view_mut(),
        cache_k: kv.map(|kv| kv.k),
        cache_v: kv.map(|kv| kv.v),
        seq_len: call.seq_len as i32,
        max_seq: m.max_seq as i32,
        write_cache: (call.mode != CacheMode::None && (window == 0 || call.seq_len == 1)) as i32,
        window: window as i32,
    }
    .launch(&m.stream(), &m.k.qkv_rope, Grid::new(grid, 256))
}

/// After the attention of a windowed layer's multi-token step: the step's K/V rows its ring keeps
/// (nothing for other layers, one-token steps, or without a cache).
pub fn ring_store(
    m: &Model<'_>,
    s: &Scratch,
    call: &Call,
    kv: Option<LayerKv<'_>>,
    layer: usize,
) -> Result<()> {
    let window = m.window_of(layer);
    let Some(kv) = kv else { return Ok(()) };
    if window == 0 || call.seq_len == 1 || call.mode == CacheMode::None {
        return Ok(());
    }
    let grid = (call.rows() as u32, m.spec.kv_dim().div_ceil(256) as u32, 1);
    KvRingStore {
        new_k: s.new_k.view(),
        new_v: s.new_v.view(),
        step: s.step(),
        cache_k: kv.k,
        cache_v: kv.v,
        seq_len: call.seq_len as i32,
        window: window as i32,
    }
    .launch(&m.stream(), &m.k.kv_ring_store, Grid::new(grid, 256))
}

/// Token (and learned position) embedding into the residual stream.
pub fn embed(m: &Model<'_>, s: &Scratch, call: &Call) -> Result<()> {
    let l = m.layout;
    Embed {
        ids: s.ids(),
        pos: s.positions(),
        table: m.mat(&l.embed),
        pos_table: l.pos_embed.as_ref().map(|p| m.mat(p)),
        x: s.x.view_mut(),
        best: s.best.view_mut(),
        nbest: call.batch as i32,
        trace: m.trace,
        slot: 0,
    }
    .launch(
        &m.stream(),
        &m.k.embed,
        Grid::new((call.rows() as u32, 1, 1), 256),
    )
}

/// Device argmax of each sequence's logits row into `best`.
pub fn argmax(m: &Model<'_>, s: &Scratch, call: &Call) -> Result<()> {
    Argmax {
        logits: s.logits.view(),
        best_out: s.best.view_mut(),
    }
    .launch(
        &m.stream(),
        &m.k.argmax,
        Grid::new((call.batch as u32, 1, 1), 1024),
    )
}

/// Issue every launch of one call. `cache[l]` is layer l's cache (empty in mode none).
pub fn encode(
    m: &Model<'_>,
    lt: &mut Lt,
    s: &Scratch,
    call: &Call,
    cache: &[LayerKv<'_>],
) -> Result<()> {
    if call.rows() > s.rows || call.batch == 0 {
        return Err(crate::Error::Backend(crate::backend::BackendError::Other(
            format!("{} rows do not fit scratch for {}", call.rows(), s.rows),
        )));
    }
    if super::decode::fits(m, call) {
        super::decode::encode_fused(m, s, call, cache)
    } else {
        let m = Model {
            pdl: false,
            trace: None,
            ..*m
        };
        super::layers::encode_unfused(&m, lt, s, call, cache)
    }
}
