//! The catalogue of CUDA op cases (in the spirit of llama.cpp's `test-backend-ops`): every kernel of
//! `kernels::MODULES` on the tiny models' shapes and switches (RMSNorm / LayerNorm, rotary / learned
//! positions, SwiGLU / GeGLU / GELU, biases, q/k norms, sandwich norms, an embedding scale, sliding
//! windows over ring caches) and on two wide specs (long rows: several weight steps per decode GEMV,
//! 16 vectors per lane, head_dim 128; and a Gemma-3-like one with head_dim 256 and an embedding
//! scale that is not a power of two), at FP32, FP16 and BF16, with seeded random
//! inputs, the CPU reference of each output computed here in f32/f64 from the same (storage-rounded)
//! inputs, and a bound per output. `cuda_ops.rs` runs each case on a GPU through the typed launchers;
//! `cuda_ops_catalogue.rs` checks, without a GPU, that the catalogue covers every kernel and switch and
//! that the references agree with independent computations.
//!
//! Errors are `max |gpu - ref| / max |ref|` over one output tensor (`rel_err`).
//!
//! Bounds (see [`Bound`]): an output gets the arithmetic bound of its op plus, when it is stored in the
//! 16-bit type, the rounding of the store: round-to-nearest moves each element by at most half an ulp,
//! `u = 2^-11` (FP16) or `2^-8` (BF16) of itself, so at most `u` of the tensor's largest value.
//! - exact (0): copies and single f32 additions done in the same order on both sides (embedding,
//!   the residual add, the K/V written by the decode QKV kernel's cache copy compared with its own
//!   new rows, the ring store), and the scaled embedding (one f32 product of two stored values, exact
//!   in f64, rounded once to f32 and once to the storage type on both sides).
//! - elementwise f32 (`ELEM` = 5e-6): rotary products (the GPU may fuse a multiply-add), `expf` and
//!   `tanhf` (a few ulp) against f64.
//! - f32 reductions (`RED` = 1e-5): norms (`rsqrtf`, block sums in another order), dot products of up to
//!   4352 terms (f32 accumulation in lanes then a warp tree against f64; products of 16-bit inputs are
//!   exact in f32) and the f32 online softmax of the CUDA-core attention: about 100 f32 ulps of the
//!   largest value, far above the ~1e-6 these orders give and far below any wrong index or term.
//! - staged 16-bit inputs (`+ u`): the fused decode kernels round the normed input rows to the storage
//!   type before the GEMV, and so does the reference; where the GPU's f32 norm and the f64 one fall on
//!   both sides of a rounding boundary one input moves by one ulp, moving an output by about
//!   `2u |w x| / max|y|` (under `u`: rare, and `|w x|` is well below the largest output).
//! - tensor-core attention (`TC`): q (scaled) and the softmax weights P are rounded to the 16-bit type
//!   before the MMAs, which the f64 reference does not do: a score moves by up to
//!   `u · Σ|q_i k_i| · scale` (with a scale of `1/sqrt(d)`, `sqrt(d)/4 · u` for inputs in [-1, 1):
//!   2.8u at d = 128, 4u at d = 256), each weight by `u`, plus the output store: about 5u to 6u,
//!   bound 10u (5e-3 FP16, 4e-2 BF16).
//! - ids (argmax, sampling): exact (no mismatch allowed).
//! - GGUF blocks dequantised to the storage type (`dequant_blocks`): the bits of the CPU's values
//!   rounded to it (`Bound::Bits`, signs of zero included); the block GEMV (`gemv_blocks`) of those
//!   values: `RED`, as `gemv`.
//!
//! The block kernels depend on no model constant but the storage type, so their cases run on the
//! first model only, at every precision, over every GGML block type: blocks from the committed GGUF
//! fixtures (gguf-py's quantizer for Q8_0, Q4_0 and Q4_1; random bytes for the others) followed by
//! seeded random blocks with finite f16 scales of either sign, some zero and some subnormal.
#![allow(dead_code)]

use runtime::backend::CacheMode;
use runtime::backend::cpu::{attention, kernels as cpu};
use runtime::backend::cuda::fused_layer::FusedLayer;
use runtime::backend::cuda::op_check::round;
use runtime::backend::ops::AttnGeometry;
use runtime::format::{BlockType, WeightQuant};
use runtime::plan::ModelPlan;
use runtime::sample::{Sampler, Sampling};
use runtime::spec::{NormKind, Positions};
use runtime::weights::TensorData;
use runtime::weights::gguf::GgufFile;
use runtime::weights::quantize::{dequantize_rows, quantize};
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;

/// Cache positions of every case: three decode-attention splits of 128 keys.
pub const MAX_SEQ: usize = 320;
pub const PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];
/// The position of the fused decode QKV cases' step (`start_idx`; rows at distinct positions from it).
pub const DEC_START: usize = 100;
/// Elementwise f32 bound (module docs).
pub const ELEM: f32 = 5e-6;
/// f32 reduction bound (module docs).
pub const RED: f32 = 1e-5;
/// The soft cap of the logit cases (`dec_lm` with `cap`, `logit_softcap`): of the order of the test
/// logits, so both the near-linear and the saturated parts of `tanh` are exercised.
pub const LOGIT_CAP: f32 = 8.0;

/// `tanh(l / LOGIT_CAP) * LOGIT_CAP` of each logit, in f64 (transformers' final soft cap).
pub fn softcap_ref(logits: &[f32]) -> Vec<f32> {
    let cap = LOGIT_CAP as f64;
    logits
        .iter()
        .map(|&l| ((l as f64 / cap).tanh() * cap) as f32)
        .collect()
}

/// The largest magnitude of `v`.
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The models whose kernels are tested: the tiny fixtures that differ in what the kernels compile
/// (tiny-mistral computes what tiny-llama does; tiny-mistral-window slides a window of 8 keys in
/// every layer, tiny-gemma3 in most: sandwich norms, GeGLU, an embedding scale, q/k norms, head_dim
/// 32), `wide` and `wide-gemma`.
pub const MODELS: [&str; 9] = [
    "tiny-llama",
    "tiny-llama-bias",
    "tiny-qwen2",
    "tiny-qwen3",
    "tiny-gpt2",
    "tiny-gemma3",
    "tiny-mistral-window",
    "wide",
    "wide-gemma",
];

/// A window longer than a decode split (128 keys) and not a multiple of any attention tile, tested on
/// every model with a sliding window beside its own.
pub const LONG_WINDOW: usize = 130;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The spec of `name`: a fixture under `models/`; `wide`, tiny-llama with long rows: hidden 4352
/// (decode GEMVs of 16 vectors per lane per step, 2-3 steps per row, not a whole number of steps;
/// 1024-thread norms), head_dim 128 over 8 heads and 2 KV heads (FP32 decode attention loads its rows
/// after the wait), intermediate 1024, a 512-token vocabulary; or `wide-gemma`, tiny-gemma3 with
/// gemma-3-1b's attention shape and scale: hidden 1152 (embedding scale sqrt(1152), which rounds in
/// every storage type), head_dim 256 over 4 heads and 1 KV head (8-key CUDA-core and 32-key
/// tensor-core prefill tiles, decode outputs wider than a split), intermediate 1024, a 512-token
/// vocabulary.
pub fn spec(name: &str) -> ModelSpec {
    let dir = |m: &str| root().join("models").join(m);
    if name == "wide-gemma" {
        let mut s = ModelSpec::from_dir(&dir("tiny-gemma3")).expect("tiny-gemma3 config");
        s.name = "wide-gemma".into();
        s.hidden_size = 1152;
        s.num_heads = 4;
        s.num_kv_heads = 1;
        s.head_dim = 256;
        s.intermediate_size = 1024;
        s.vocab_size = 512;
        s.embed_scale = Some((s.hidden_size as f64).sqrt());
        // gemma-3-1b's query_pre_attn_scalar (256): the tensor-core bound below assumes a scale of
        // about 1/sqrt(head_dim); tiny-gemma3 covers a scale that differs from it.
        s.attention_scale = Some(1.0 / 16.0);
        return s;
    }
    if name != "wide" {
        return ModelSpec::from_dir(&dir(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut s = ModelSpec::from_dir(&dir("tiny-llama")).expect("tiny-llama config");
    s.name = "wide".into();
    s.hidden_size = 4352;
    s.num_heads = 8;
    s.num_kv_heads = 2;
    s.head_dim = 128;
    s.intermediate_size = 1024;
    s.vocab_size = 512;
    s
}

/// One model's switches, shapes and tables, shared by its cases.
pub struct Model {
    pub name: &'static str,
    pub spec: ModelSpec,
    pub layer: FusedLayer,
    /// RoPE `(cos, sin)` tables `[MAX_SEQ, head_dim / 2]` (absent for learned positions).
    pub rope: Option<(Vec<f32>, Vec<f32>)>,
}

impl Model {
    pub fn new(name: &'static str) -> Model {
        let spec = spec(name);
        let layer = FusedLayer::of(name, &ModelPlan::new(&spec)).expect("fused layer");
        let rope = match runtime::rope::inv_freq(&spec.positions, spec.head_dim) {
            Some(f) if matches!(spec.positions, Positions::Rope { .. }) => {
                Some(runtime::rope::tables(&f, MAX_SEQ))
            }
            _ => None,
        };
        Model {
            name,
            spec,
            layer,
            rope,
        }
    }

    pub fn norm_kind(&self) -> NormKind {
        if self.layer.rms {
            NormKind::RmsNorm
        } else {
            NormKind::LayerNorm
        }
    }

    /// The attention geometry with every earlier key visible.
    pub fn geometry(&self) -> AttnGeometry {
        self.geometry_in(0)
    }

    /// The attention geometry with a sliding window of `window` keys (0: every earlier key).
    pub fn geometry_in(&self, window: usize) -> AttnGeometry {
        AttnGeometry {
            num_heads: self.spec.num_heads,
            num_kv_heads: self.spec.num_kv_heads,
            head_dim: self.spec.head_dim,
            scale: self.layer.scale,
            window: match window {
                0 => runtime::plan::Window::Full,
                w => runtime::plan::Window::Sliding(w),
            },
        }
    }

    /// The windows of this model's windowed cases: its own sliding window and [`LONG_WINDOW`], or
    /// none for a model whose layers all see every earlier key.
    pub fn windows(&self) -> Vec<usize> {
        match self.spec.sliding_window {
            Some(w) => vec![w, LONG_WINDOW],
            None => vec![],
        }
    }

    pub fn h(&self) -> usize {
        self.spec.hidden_size
    }
    pub fn qd(&self) -> usize {
        self.spec.q_dim()
    }
    pub fn kvd(&self) -> usize {
        self.spec.kv_dim()
    }
    pub fn qkv_dim(&self) -> usize {
        self.qd() + 2 * self.kvd()
    }
    pub fn inter(&self) -> usize {
        self.spec.intermediate_size
    }
    /// Rows of the first MLP matrix: `[gate | up]` or `fc`.
    pub fn up_rows(&self) -> usize {
        if self.layer.gated {
            2 * self.inter()
        } else {
            self.inter()
        }
    }
    /// The model's switches as the catalogue prints them.
    pub fn flags(&self) -> String {
        let l = &self.layer;
        let s = &self.spec;
        let mut f = vec![
            if l.rms { "rms" } else { "layernorm" },
            if l.rope { "rope" } else { "learned-pos" },
            match (l.gated, l.gelu_gate) {
                (true, false) => "swiglu",
                (true, true) => "geglu",
                (false, _) => "gelu",
            },
        ];
        if l.qk_norm {
            f.push("qk-norm");
        }
        if l.sandwich {
            f.push("sandwich");
        }
        if l.embed_scale.is_some() {
            f.push("embed-scale");
        }
        if s.sliding_window.is_some() {
            f.push("sliding");
        }
        if s.qkv_bias {
            f.push("qkv-bias");
        }
        if s.o_bias {
            f.push("o-bias");
        }
        if s.mlp_bias {
            f.push("mlp-bias");
        }
        f.join(",")
    }
}

/// What one case launches, with its shape and its runtime variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Embed {
        rows: usize,
    },
    /// `delta`: the residual add first (every norm but the first layer's); `bias`: with a bias on it.
    AddNorm {
        rows: usize,
        delta: bool,
        bias: bool,
    },
    /// The sandwich norm: RMSNorm of f32 rows in place.
    PostNorm {
        rows: usize,
    },
    /// The sandwich norm of a fused decode GEMV's output, added to the residual stream.
    AddPostNorm {
        rows: usize,
    },
    HeadNorm {
        rows: usize,
    },
    /// `write_cache`: a cache mode (else mode none: no cache, start 0). `window` > 0: the cache is a
    /// ring of that many slots (a one-token step, as the engine writes a ring only then).
    QkvRope {
        batch: usize,
        seq_len: usize,
        start: usize,
        bias: bool,
        write_cache: bool,
        window: usize,
    },
    /// A windowed layer's multi-token step, after its attention: the step's K/V rows into the ring.
    KvRingStore {
        batch: usize,
        seq_len: usize,
        start: usize,
        window: usize,
    },
    /// `window` > 0: queries see only the last `window` keys, the cache is a ring of that many slots.
    AttnPrefill {
        tc: bool,
        batch: usize,
        seq_len: usize,
        start: usize,
        mode: CacheMode,
        window: usize,
    },
    AttnDecode {
        batch: usize,
        start: usize,
        mode: CacheMode,
        window: usize,
    },
    /// The gated MLP's activation (SwiGLU or GeGLU, as the model's gate).
    Glu {
        rows: usize,
        bias: bool,
    },
    GeluBias {
        rows: usize,
        bias: bool,
    },
    /// `y[m, n] (+)= x · wᵀ (+ bias)`, x rows `seq` rows apart (the lm_head's last-row read).
    Gemv {
        m: usize,
        n: usize,
        k: usize,
        seq: usize,
        bias: bool,
        accumulate: bool,
    },
    /// The fused decode kernels: `n` picks the `_n` variant (else `_1`). `window` > 0: the QKV
    /// kernel's cache is a ring of that many slots.
    DecQkv {
        rows: usize,
        n: bool,
        bias: bool,
        window: usize,
    },
    DecO {
        rows: usize,
        n: bool,
        bias: bool,
    },
    DecUp {
        rows: usize,
        n: bool,
        bias: bool,
    },
    DecDown {
        rows: usize,
        n: bool,
        bias: bool,
    },
    DecLm {
        rows: usize,
        n: bool,
        argmax: bool,
        /// The logits soft-capped at [`LOGIT_CAP`] in the epilogue.
        cap: bool,
    },
    /// `logit_softcap` at [`LOGIT_CAP`].
    LogitSoftcap {
        rows: usize,
    },
    Argmax {
        rows: usize,
    },
    /// A `[rows, cols]` matrix of GGUF blocks of `ty` into the storage type. `offset`: the blocks
    /// start `offset` bytes into their buffer and the output `offset` elements into its own (0: both
    /// 16-byte aligned, the fast loads and stores; else the byte-by-byte loads and scalar stores).
    DequantBlocks {
        ty: BlockType,
        rows: usize,
        cols: usize,
        offset: usize,
    },
    /// `y[m, n] = x · Wᵀ` over `[n, k]` GGUF blocks of `ty`, the input rows `ldx` apart; `offset` as
    /// for `DequantBlocks` (the blocks only).
    GemvBlocks {
        ty: BlockType,
        m: usize,
        n: usize,
        k: usize,
        ldx: usize,
        offset: usize,
    },
    SampleTopK {
        rows: usize,
        temperature: f32,
        k: usize,
        top_p: Option<f32>,
    },
    /// `dequant` of a `[rows, cols]` matrix quantized at build as `quant`.
    Dequant {
        quant: WeightQuant,
        rows: usize,
        cols: usize,
    },
}

impl Op {
    /// The kernel entry this case launches.
    pub fn kernel(&self) -> &'static str {
        let v = |n: bool, one: &'static str, many: &'static str| if n { many } else { one };
        match *self {
            Op::Embed { .. } => "embed",
            Op::AddNorm { .. } => "add_norm",
            Op::PostNorm { .. } => "post_norm",
            Op::AddPostNorm { .. } => "add_post_norm",
            Op::HeadNorm { .. } => "head_norm",
            Op::QkvRope { .. } => "qkv_rope",
            Op::KvRingStore { .. } => "kv_ring_store",
            Op::AttnPrefill { tc: false, .. } => "attn_prefill",
            Op::AttnPrefill { tc: true, .. } => "attn_prefill_tc",
            Op::AttnDecode { .. } => "attn_decode",
            Op::Glu { .. } => "glu",
            Op::GeluBias { .. } => "gelu_bias",
            Op::Gemv { .. } => "gemv",
            Op::DecQkv { n, .. } => v(n, "dec_qkv_1", "dec_qkv_n"),
            Op::DecO { n, .. } => v(n, "dec_o_1", "dec_o_n"),
            Op::DecUp { n, .. } => v(n, "dec_up_1", "dec_up_n"),
            Op::DecDown { n, .. } => v(n, "dec_down_1", "dec_down_n"),
            Op::DecLm { n, .. } => v(n, "dec_lm_1", "dec_lm_n"),
            Op::LogitSoftcap { .. } => "logit_softcap",
            Op::Argmax { .. } => "argmax",
            Op::DequantBlocks { .. } => "dequant_blocks",
            Op::GemvBlocks { .. } => "gemv_blocks",
            Op::SampleTopK { .. } => "sample_top_k",
            Op::Dequant { .. } => "dequant",
        }
    }

    /// The runtime variant tags of this case (what the coverage test asks for per kernel).
    pub fn tags(&self) -> Vec<String> {
        let b = |on: bool| if on { "bias" } else { "no-bias" }.to_string();
        let mode = |m: CacheMode| format!("{m:?}");
        let win = |w: usize| if w > 0 { "window" } else { "full" }.to_string();
        match *self {
            Op::Embed { .. }
            | Op::PostNorm { .. }
            | Op::AddPostNorm { .. }
            | Op::HeadNorm { .. }
            | Op::LogitSoftcap { .. }
            | Op::Argmax { .. } => vec![],
            Op::Dequant { quant, .. } => vec![quant.name().to_string()],
            Op::AddNorm { delta, bias, .. } => {
                vec![if delta { "delta" } else { "no-delta" }.into(), b(bias)]
            }
            Op::QkvRope {
                bias,
                write_cache,
                window,
                ..
            } => vec![
                b(bias),
                if write_cache { "cache" } else { "no-cache" }.into(),
                win(window),
            ],
            Op::KvRingStore {
                seq_len,
                start,
                window,
                ..
            } => vec![
                if seq_len > window {
                    "longer-than-window"
                } else {
                    "within-window"
                }
                .into(),
                if start % window + seq_len.min(window) > window {
                    "wraps"
                } else {
                    "no-wrap"
                }
                .into(),
            ],
            Op::AttnPrefill {
                mode: m,
                start,
                window,
                ..
            } => vec![
                mode(m),
                if start > 0 { "prefix" } else { "start-0" }.into(),
                win(window),
            ],
            Op::AttnDecode {
                mode: m,
                start,
                window,
                ..
            } => {
                let keys = if window > 0 {
                    (start + 1).min(window)
                } else {
                    start + 1
                };
                vec![
                    mode(m),
                    if keys > 128 { "splits" } else { "one-split" }.into(),
                    win(window),
                ]
            }
            Op::Glu { bias, .. } | Op::GeluBias { bias, .. } => vec![b(bias)],
            Op::Gemv {
                m,
                seq,
                bias,
                accumulate,
                ..
            } => vec![
                if m > 1 { "rows" } else { "one-row" }.into(),
                if seq > 1 { "strided" } else { "dense" }.into(),
                if bias && accumulate {
                    "bias-accumulate"
                } else {
                    "plain"
                }
                .into(),
            ],
            Op::DecQkv { bias, window, .. } => vec![b(bias), win(window)],
            Op::DecO { bias, .. } | Op::DecUp { bias, .. } | Op::DecDown { bias, .. } => {
                vec![b(bias)]
            }
            Op::DecLm { argmax, cap, .. } => vec![
                if argmax { "argmax" } else { "logits" }.into(),
                if cap { "softcap" } else { "no-softcap" }.into(),
            ],
            Op::SampleTopK { top_p, .. } => {
                vec![if top_p.is_some() { "top-p" } else { "top-k" }.into()]
            }
            Op::DequantBlocks {
                ty,
                rows,
                cols,
                offset,
            } => vec![
                ty.name().into(),
                blocks_tag(ty, cols),
                if rows > 1 { "rows" } else { "one-row" }.into(),
                aligned_tag(offset),
            ],
            Op::GemvBlocks {
                ty,
                m,
                k,
                ldx,
                offset,
                ..
            } => vec![
                ty.name().into(),
                format!("m{m}"),
                blocks_tag(ty, k),
                if ldx > k { "strided" } else { "dense" }.into(),
                aligned_tag(offset),
            ],
        }
    }
}

/// Whether rows of `cols` weights are one block of `ty` or several.
fn blocks_tag(ty: BlockType, cols: usize) -> String {
    if cols > ty.block_elems() {
        "several-blocks"
    } else {
        "one-block"
    }
    .into()
}

fn aligned_tag(offset: usize) -> String {
    if offset == 0 { "aligned" } else { "unaligned" }.into()
}

/// One case: a model, a precision, an op and the seed of its inputs.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Index into [`MODELS`].
    pub model: usize,
    pub precision: Precision,
    pub op: Op,
    pub seed: u64,
}

impl Case {
    pub fn model_name(&self) -> &'static str {
        MODELS[self.model]
    }

    /// One line naming the case: kernel, model, precision, shape and variant.
    pub fn name(&self) -> String {
        format!(
            "{} [{} {}] {:?}",
            self.op.kernel(),
            self.model_name(),
            self.precision,
            self.op
        )
    }
}

/// Whether `attn_prefill_tc` runs for this model and precision (given sm_80+): as `forward.rs`
/// chooses it.
pub fn tc_attention(m: &Model, p: Precision) -> bool {
    runtime::backend::cuda::kernels::tc_prefill_supported(&m.spec, p)
}

/// Every case of model `mi` at precision `p`.
pub fn cases_of(m: &Model, p: Precision) -> Vec<Op> {
    use CacheMode::*;
    let mut ops = vec![Op::Embed { rows: 5 }];
    for (delta, bias) in [(false, false), (true, false), (true, true)] {
        ops.push(Op::AddNorm {
            rows: 3,
            delta,
            bias,
        });
    }
    // The sandwich norm is an RMSNorm (a stub in LayerNorm models, never launched there).
    if m.layer.rms {
        ops.push(Op::PostNorm { rows: 3 });
        ops.push(Op::AddPostNorm { rows: 3 });
    }
    if m.layer.qk_norm {
        ops.push(Op::HeadNorm { rows: 5 });
    }
    let qkv_bias = [false, m.spec.qkv_bias];
    let windows = m.windows();
    for bias in qkv_bias {
        ops.push(Op::QkvRope {
            batch: 2,
            seq_len: 5,
            start: 0,
            bias,
            write_cache: false,
            window: 0,
        });
        ops.push(Op::QkvRope {
            batch: 2,
            seq_len: 5,
            start: 131,
            bias,
            write_cache: true,
            window: 0,
        });
        // A windowed layer writes its ring here only in one-token steps: before and after the ring
        // fills.
        for &window in &windows {
            for start in [5, 131] {
                ops.push(Op::QkvRope {
                    batch: 3,
                    seq_len: 1,
                    start,
                    bias,
                    write_cache: true,
                    window,
                });
            }
        }
    }
    // The ring store of a multi-token step: within the ring, wrapping past its last slot, exactly
    // one ring, and longer than the ring (only the last `window` rows land).
    for &window in &windows {
        for (seq_len, start) in [
            (5, 0),
            (5, window - 2),
            (window, 3),
            (20, 37),
            (window + 3, 0),
        ] {
            ops.push(Op::KvRingStore {
                batch: 2,
                seq_len,
                start,
                window,
            });
        }
    }
    // Prefill attention: on CUDA cores always; on tensor cores where the engine would pick them.
    let tcs: &[bool] = if tc_attention(m, p) {
        &[false, true]
    } else {
        &[false]
    };
    for &tc in tcs {
        for (seq_len, start, mode) in [
            (7, 0, None),
            (70, 0, StaticV1),
            (20, 37, StaticV1),
            (20, 37, StaticV2),
            (3, 130, StaticV2),
        ] {
            ops.push(Op::AttnPrefill {
                tc,
                batch: 2,
                seq_len,
                start,
                mode,
                window: 0,
            });
        }
        // Windowed: in-step masks only (start 0), a ring not yet full (start 3, and 37 under the
        // long window), a ring wrapped (37 and 300 under the short window, 150 and 300 under the
        // long one), steps longer than the window.
        for &window in &windows {
            for (seq_len, start, mode) in [
                (20, 0, None),
                (70, 0, StaticV1),
                (5, 3, StaticV2),
                (20, 37, StaticV1),
                (20, 37, StaticV2),
                (40, 150, StaticV1),
                (3, 300, StaticV2),
            ] {
                ops.push(Op::AttnPrefill {
                    tc,
                    batch: 2,
                    seq_len,
                    start,
                    mode,
                    window,
                });
            }
        }
    }
    // Decode attention: cache lengths (start + 1) in one split, exactly one, crossing into a second
    // and a third.
    for start in [0, 9, 127, 128, 200, 300] {
        for mode in [StaticV1, StaticV2] {
            ops.push(Op::AttnDecode {
                batch: 2,
                start,
                mode,
                window: 0,
            });
        }
    }
    // Windowed: a ring not yet full, exactly full, wrapped; under the long window two splits.
    for &window in &windows {
        for start in [0, 5, 7, 9, 129, 200, 300] {
            for mode in [StaticV1, StaticV2] {
                ops.push(Op::AttnDecode {
                    batch: 2,
                    start,
                    mode,
                    window,
                });
            }
        }
    }
    for bias in [false, true] {
        ops.push(if m.layer.gated {
            Op::Glu { rows: 3, bias }
        } else {
            Op::GeluBias { rows: 3, bias }
        });
    }
    let (h, qkv, inter, vocab) = (m.h(), m.qkv_dim(), m.inter(), m.spec.vocab_size);
    for (mm, n, k, seq, bias, accumulate) in [
        (1, qkv, h, 1, false, false),
        (5, qkv, h, 1, false, false),
        (8, h, inter, 1, false, false),
        (2, vocab, h, 3, false, false),
        (3, h, inter, 1, true, true),
    ] {
        ops.push(Op::Gemv {
            m: mm,
            n,
            k,
            seq,
            bias,
            accumulate,
        });
    }
    // The fused decode kernels. With q/k norms `dec_qkv` only writes the unrotated QKV row for
    // `head_norm` and `qkv_rope` (cases of their own above), leaving K/V and the cache alone.
    for (rows, n) in [(1, false), (1, true), (3, true), (8, true)] {
        for bias in [false, true] {
            ops.push(Op::DecQkv {
                rows,
                n,
                bias,
                window: 0,
            });
            // Into a ring (q/k norms write no cache here: nothing a window changes).
            if !m.layer.qk_norm {
                for &window in &windows {
                    ops.push(Op::DecQkv {
                        rows,
                        n,
                        bias,
                        window,
                    });
                }
            }
            ops.push(Op::DecO { rows, n, bias });
            ops.push(Op::DecUp { rows, n, bias });
            ops.push(Op::DecDown { rows, n, bias });
        }
        for argmax in [false, true] {
            for cap in [false, true] {
                ops.push(Op::DecLm {
                    rows,
                    n,
                    argmax,
                    cap,
                });
            }
        }
    }
    ops.push(Op::LogitSoftcap { rows: 3 });
    ops.push(Op::Argmax { rows: 3 });
    // Each format over the model's widest quantizable linear (int4: whole groups of 128).
    for quant in WeightQuant::ALL {
        let cols = [m.h(), m.inter()]
            .into_iter()
            .filter(|&c| quant.fits(c))
            .max()
            .unwrap_or(2 * runtime::format::INT4_GROUP);
        ops.push(Op::Dequant {
            quant,
            rows: 5,
            cols,
        });
    }
    if m.name == MODELS[0] {
        ops.extend(block_cases());
    }
    for (temperature, k, top_p) in [
        (1.0, 1, Option::None),
        (0.7, 50, Option::None),
        (1.0, 40, Some(0.9)),
        (1.3, 1024, Option::None),
    ] {
        ops.push(Op::SampleTopK {
            rows: 3,
            temperature,
            k,
            top_p,
        });
    }
    ops
}

/// Row width of the block cases' long rows: 17 K-quant super-blocks, 136 blocks of 32.
pub const BLOCK_LONG_ROW: usize = 4352;

/// The GGUF block kernels' cases, for every block type: dequantisation of one block, of a few rows of
/// a few blocks, of many long rows, and unaligned; the GEMV for every row count 1..=8 (rows of a
/// few blocks and long rows, with a row count not a multiple of a block's warps, inputs dense,
/// strided with whole 16-byte vectors and strided without), of one-block rows, and unaligned.
pub fn block_cases() -> Vec<Op> {
    let mut ops = Vec::new();
    for ty in BlockType::ALL {
        let e = ty.block_elems();
        for (rows, cols, offset) in [
            (1, e, 0),
            (3, 2 * e, 0),
            (37, BLOCK_LONG_ROW, 0),
            (5, 3 * e, 1),
        ] {
            ops.push(Op::DequantBlocks {
                ty,
                rows,
                cols,
                offset,
            });
        }
        for m in 1..=8 {
            let k = if m % 2 == 1 { BLOCK_LONG_ROW } else { 3 * e };
            let ldx = match m {
                1 | 2 => k,
                5 | 7 => k + 3,
                _ => k + 24,
            };
            ops.push(Op::GemvBlocks {
                ty,
                m,
                n: 61 + 2 * m,
                k,
                ldx,
                offset: 0,
            });
        }
        for (m, n, k, ldx, offset) in [(2, 67, e, e, 0), (3, 40, 2 * e, 2 * e + 3, 1)] {
            ops.push(Op::GemvBlocks {
                ty,
                m,
                n,
                k,
                ldx,
                offset,
            });
        }
    }
    ops
}

/// The blocks of each type in the committed GGUF fixtures (`scripts/make_gguf_fixtures.py`):
/// tests/fixtures/gguf/quants.gguf (Q8_0, Q4_0, Q4_1 made by gguf-py's quantizer) and kquants.gguf
/// (Q5_0, Q5_1 and the K-quants, random bytes), six blocks each.
pub fn fixture_blocks(ty: BlockType) -> Vec<u8> {
    static ALL: std::sync::OnceLock<Vec<(BlockType, Vec<u8>)>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        let mut out = Vec::new();
        for file in ["quants.gguf", "kquants.gguf"] {
            let path = root().join("tests/fixtures/gguf").join(file);
            let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            for info in f.tensor_infos() {
                let t = f.tensor_as(&info.name, true).expect("tensor reads");
                if let TensorData::Blocks { ty, bytes } = t.data {
                    out.push((ty, bytes));
                }
            }
        }
        out
    });
    let found: Vec<u8> = all
        .iter()
        .filter(|(t, _)| *t == ty)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert!(!found.is_empty(), "no {} blocks in the fixtures", ty.name());
    found
}

/// Byte offsets of the f16 scales (`d`, and `dmin` or `m` where the type has one) in a block of `ty`.
pub fn scale_offsets(ty: BlockType) -> &'static [usize] {
    match ty {
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[0],
        BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4K | BlockType::Q5K => &[0, 2],
        BlockType::Q2K => &[80, 82],
        BlockType::Q3K => &[108],
        BlockType::Q6K => &[208],
    }
}

/// `count` blocks of `ty`: the fixture's blocks first, then random bytes whose f16 scales are finite
/// (random bytes would make some infinities or NaNs, which no quantizer writes): every seventh block
/// has a zero `d`, every seventh (another) a subnormal one, the others uniform in ±0.032 (gguf-py's
/// scales on unit-variance weights are of that size) of either sign.
pub fn test_blocks(ty: BlockType, count: usize, r: &mut Rng) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut out = fixture_blocks(ty);
    out.truncate(count.min(out.len() / bb) * bb);
    for i in out.len() / bb..count {
        let mut b: Vec<u8> = (0..bb).map(|_| r.next_u64() as u8).collect();
        for (j, &at) in scale_offsets(ty).iter().enumerate() {
            let v = match (i % 7, j) {
                (3, 0) => 0.0,
                (5, 0) => 6.0e-6 * if r.below(2) == 0 { 1.0 } else { -1.0 },
                _ => r.uniform(-0.032, 0.032),
            };
            b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        out.extend_from_slice(&b);
    }
    out
}

/// The whole catalogue, models in [`MODELS`] order, precisions in [`PRECISIONS`] order.
pub fn catalogue(models: &[Model]) -> Vec<Case> {
    let mut out = Vec::new();
    for (mi, m) in models.iter().enumerate() {
        for (pi, &p) in PRECISIONS.iter().enumerate() {
            for (i, op) in cases_of(m, p).into_iter().enumerate() {
                let seed = (mi as u64) << 40 | (pi as u64) << 32 | i as u64;
                out.push(Case {
                    model: mi,
                    precision: p,
                    op,
                    seed,
                });
            }
        }
    }
    out
}

pub fn models() -> Vec<Model> {
    MODELS.iter().map(|&n| Model::new(n)).collect()
}

/// A seeded generator of inputs (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// `n` values in [lo, hi) rounded to the storage type of `p` (what the GPU buffer will hold).
    pub fn stored(&mut self, p: Precision, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| round(p, self.uniform(lo, hi))).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Half an ulp of the storage type, relative: what one store moves a value by at most.
pub fn store_unit(p: Precision) -> f32 {
    match p {
        Precision::Fp32 => 0.0,
        Precision::Fp16 => 1.0 / 2048.0,
        Precision::Bf16 => 1.0 / 256.0,
    }
}

/// How an output is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// `rel_err <= bound`.
    Rel(f32),
    /// Token ids: equal.
    Ids,
    /// Every element's bits equal (signs of zero included).
    Bits,
}

/// One output of a case: its name, the reference, and the bound.
#[derive(Debug, Clone)]
pub struct Expect {
    pub name: &'static str,
    pub want: Vec<f32>,
    pub bound: Bound,
}

/// `max |got - want| / max |want|` (and the absolute maximum), NaN-aware: a NaN on either side is an
/// infinite error.
pub fn errors(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len(), "output length");
    let scale = want
        .iter()
        .fold(0f32, |a, w| a.max(w.abs()))
        .max(f32::MIN_POSITIVE);
    let mut abs = 0f32;
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        abs = if d.is_nan() {
            f32::INFINITY
        } else {
            abs.max(d)
        };
    }
    (abs, abs / scale)
}

/// The norm of each row (`cols` wide) by the CPU's f64 reference.
pub fn norm_rows(m: &Model, x: &[f32], cols: usize, w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|r| cpu::reference::norm(m.norm_kind(), m.layer.eps as f64, r, w, b))
        .collect()
}

/// `y[r, n] = Σ_k x[r, k] w[n, k]` in f64, rounded once to f32.
pub fn matmul(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
    x.chunks(k)
        .flat_map(|xr| {
            w.chunks(k).map(move |wr| {
                xr.iter()
                    .zip(wr)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>() as f32
            })
        })
        .collect()
}

/// Bias (f32 add) then rotary (the CPU kernel, where the model rotates) of QKV rows: returns the
/// rotated rows `[rows, QKV_DIM]` (v only biased). `pos[r]` is row r's position.
pub fn bias_rope(m: &Model, qkv: &[f32], bias: Option<&[f32]>, pos: &[u32]) -> Vec<f32> {
    let cols = m.qkv_dim();
    let mut out = qkv.to_vec();
    if let Some(b) = bias {
        for row in out.chunks_mut(cols) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
    if let Some((cos, sin)) = &m.rope {
        let s = &m.spec;
        cpu::rope(
            &mut out,
            cols,
            0,
            s.num_heads + s.num_kv_heads,
            s.head_dim,
            pos,
            cos,
            sin,
        );
    }
    out
}

/// The K (`value` false) or V head rows of QKV rows, as `[batch, KV_HEADS, seq_len, head_dim]`.
pub fn split_kv(m: &Model, qkv: &[f32], batch: usize, seq_len: usize, value: bool) -> Vec<f32> {
    let (cols, d, kvh) = (m.qkv_dim(), m.spec.head_dim, m.spec.num_kv_heads);
    let off = m.qd() + if value { m.kvd() } else { 0 };
    let mut out = Vec::with_capacity(batch * kvh * seq_len * d);
    for b in 0..batch {
        for h in 0..kvh {
            for s in 0..seq_len {
                let r = (b * seq_len + s) * cols + off + h * d;
                out.extend_from_slice(&qkv[r..r + d]);
            }
        }
    }
    out
}

/// The q part of QKV rows, `[rows, Q_DIM]`.
pub fn split_q(m: &Model, qkv: &[f32]) -> Vec<f32> {
    qkv.chunks(m.qkv_dim())
        .flat_map(|r| r[..m.qd()].to_vec())
        .collect()
}

/// `cache [batch, KV_HEADS, MAX_SEQ, head_dim]` with `rows [batch, KV_HEADS, seq_len, head_dim]` at
/// positions `start..start + seq_len`.
pub fn write_rows(
    m: &Model,
    cache: &mut [f32],
    rows: &[f32],
    batch: usize,
    seq_len: usize,
    start: usize,
) {
    let (d, kvh) = (m.spec.head_dim, m.spec.num_kv_heads);
    for b in 0..batch {
        for h in 0..kvh {
            for s in 0..seq_len {
                let src = ((b * kvh + h) * seq_len + s) * d;
                let dst = ((b * kvh + h) * MAX_SEQ + start + s) * d;
                cache[dst..dst + d].copy_from_slice(&rows[src..src + d]);
            }
        }
    }
}

/// `cache [batch, KV_HEADS, slots, head_dim]` after writing `rows [batch, KV_HEADS, seq_len,
/// head_dim]` one after another, position `start + s` into slot `(start + s) % slots`: in a ring
/// shorter than the step a later row takes the slot of an earlier one.
#[allow(clippy::too_many_arguments)]
pub fn write_ring(
    m: &Model,
    cache: &mut [f32],
    slots: usize,
    rows: &[f32],
    batch: usize,
    seq_len: usize,
    start: usize,
) {
    let (d, kvh) = (m.spec.head_dim, m.spec.num_kv_heads);
    for s in 0..seq_len {
        let slot = (start + s) % slots;
        for b in 0..batch {
            for h in 0..kvh {
                let src = ((b * kvh + h) * seq_len + s) * d;
                let dst = ((b * kvh + h) * slots + slot) * d;
                cache[dst..dst + d].copy_from_slice(&rows[src..src + d]);
            }
        }
    }
}

/// Sliding-window attention in f64 from its definition: query `s` of sequence `b` at position
/// `p = start + s` attends to the keys `j` with `p - window < j <= p` (softmax of `q · k_j` times the
/// model's scale, then the weighted sum of the values). Key `j >= start` is the step's own row
/// `j - start` of `nk`/`nv`; an earlier key is the one the ring `(ck, cv)` (`[batch, KV_HEADS,
/// window, head_dim]`) holds in slot `j % window`.
#[allow(clippy::too_many_arguments)]
pub fn ring_attention_ref(
    m: &Model,
    q: &[f32],
    nk: &[f32],
    nv: &[f32],
    ring: Option<(&[f32], &[f32])>,
    batch: usize,
    seq_len: usize,
    start: usize,
    window: usize,
) -> Vec<f32> {
    let (d, heads, kvh) = (m.spec.head_dim, m.spec.num_heads, m.spec.num_kv_heads);
    let group = heads / kvh;
    let scale = m.layer.scale as f64;
    let mut out = vec![0f32; batch * seq_len * m.qd()];
    for b in 0..batch {
        for h in 0..heads {
            let kh = h / group;
            let row = |j: usize, value: bool| -> &[f32] {
                if j >= start {
                    let at = ((b * kvh + kh) * seq_len + (j - start)) * d;
                    let t = if value { nv } else { nk };
                    &t[at..at + d]
                } else {
                    let (ck, cv) = ring.expect("a key before the step needs the ring");
                    let at = ((b * kvh + kh) * window + j % window) * d;
                    let t = if value { cv } else { ck };
                    &t[at..at + d]
                }
            };
            for s in 0..seq_len {
                let p = start + s;
                let r = b * seq_len + s;
                let qh = &q[r * m.qd() + h * d..r * m.qd() + (h + 1) * d];
                let keys: Vec<usize> = (0..=p).filter(|&j| j + window > p).collect();
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let k = row(j, false);
                        qh.iter()
                            .zip(k)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for i in 0..d {
                    let acc: f64 = keys
                        .iter()
                        .zip(&e)
                        .map(|(&j, w)| w * row(j, true)[i] as f64)
                        .sum();
                    out[r * m.qd() + h * d + i] = (acc / z) as f32;
                }
            }
        }
    }
    out
}

/// QKV rows `[rows, QKV_DIM]` assembled from q `[rows, Q_DIM]` and K/V `[batch, KV, seq_len, d]`
/// (what the CPU attention reference reads).
pub fn join_qkv(
    m: &Model,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    batch: usize,
    seq_len: usize,
) -> Vec<f32> {
    let (d, kvh, qd, kvd) = (m.spec.head_dim, m.spec.num_kv_heads, m.qd(), m.kvd());
    let mut out = vec![0f32; batch * seq_len * m.qkv_dim()];
    for (r, row) in out.chunks_mut(m.qkv_dim()).enumerate() {
        let (b, s) = (r / seq_len, r % seq_len);
        row[..qd].copy_from_slice(&q[r * qd..(r + 1) * qd]);
        for h in 0..kvh {
            let src = ((b * kvh + h) * seq_len + s) * d;
            row[qd + h * d..qd + (h + 1) * d].copy_from_slice(&k[src..src + d]);
            row[qd + kvd + h * d..qd + kvd + (h + 1) * d].copy_from_slice(&v[src..src + d]);
        }
    }
    out
}

/// The attention reference (the CPU's f64 one) of q with new K/V and the cache, in `mode`.
#[allow(clippy::too_many_arguments)]
pub fn attention_ref(
    m: &Model,
    q: &[f32],
    nk: &[f32],
    nv: &[f32],
    cache: Option<(&[f32], &[f32])>,
    batch: usize,
    seq_len: usize,
    start: usize,
    mode: CacheMode,
) -> Vec<f32> {
    let qkv = join_qkv(m, q, nk, nv, batch, seq_len);
    let st = attention::Step {
        batch,
        seq_len,
        start,
    };
    let mut c = cache.map(|(k, v)| (k.to_vec(), v.to_vec()));
    let arg = c.as_mut().map(|(k, v)| (k, v, MAX_SEQ));
    attention::reference(&qkv, m.geometry(), st, arg, mode)
}

/// Every input and expected output of one case, by op (host f32 values; storage inputs already
/// rounded to the case's precision).
pub enum Data {
    /// A quantized matrix's bytes (codes, then scales).
    Packed {
        bytes: Vec<u8>,
    },
    Embed {
        ids: Vec<u32>,
        pos: Vec<u32>,
        table: Vec<f32>,
        pos_table: Option<Vec<f32>>,
        /// `best` before the launch; the first `nbest` must come back zero, the rest unchanged.
        best: Vec<u64>,
        nbest: usize,
    },
    AddNorm {
        x: Vec<f32>,
        delta: Option<Vec<f32>>,
        bias: Option<Vec<f32>>,
        w: Vec<f32>,
        b: Option<Vec<f32>>,
    },
    PostNorm {
        x: Vec<f32>,
        w: Vec<f32>,
    },
    AddPostNorm {
        x: Vec<f32>,
        delta: Vec<f32>,
        w: Vec<f32>,
    },
    /// A ring store: the step's K/V `[batch, KV_HEADS, seq_len, head_dim]` and the ring
    /// `[batch, KV_HEADS, window, head_dim]` before the launch.
    Ring {
        nk: Vec<f32>,
        nv: Vec<f32>,
        cache: (Vec<f32>, Vec<f32>),
    },
    HeadNorm {
        qkv: Vec<f32>,
        wq: Vec<f32>,
        wk: Vec<f32>,
    },
    QkvRope {
        qkv: Vec<f32>,
        bias: Option<Vec<f32>>,
        pos: Vec<u32>,
        /// `[batch, KV_HEADS, slots, head_dim]` each (slots: `MAX_SEQ`, or the window of a ring),
        /// before the launch (with a cache).
        cache: Option<(Vec<f32>, Vec<f32>)>,
    },
    Attn {
        q: Vec<f32>,
        nk: Vec<f32>,
        nv: Vec<f32>,
        cache: Option<(Vec<f32>, Vec<f32>)>,
    },
    Act {
        x: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    Gemv {
        w: Vec<f32>,
        /// `[m * seq, k]`: the kernel reads row `seq - 1` of each group of `seq`.
        x: Vec<f32>,
        y0: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    /// The decode kernels: `x` is the f32 residual stream (or, for O and down, the stored input rows
    /// `a`); `x0` the residual stream they add to.
    Dec {
        w: Vec<f32>,
        x: Vec<f32>,
        nw: Vec<f32>,
        nb: Option<Vec<f32>>,
        bias: Option<Vec<f32>>,
        pos: Vec<u32>,
        cache: Option<(Vec<f32>, Vec<f32>)>,
        x0: Vec<f32>,
    },
    Logits {
        logits: Vec<f32>,
        draws: Vec<f64>,
    },
    /// GGUF blocks (`w`, whole blocks of the case's type, GGUF's byte layout) and, for the GEMV, the
    /// input rows `[m, ldx]` (stored).
    Blocks {
        w: Vec<u8>,
        x: Vec<f32>,
    },
}

/// A case's inputs and expected outputs.
pub struct Prepared {
    pub data: Data,
    pub expect: Vec<Expect>,
}

fn gains(r: &mut Rng, n: usize) -> Vec<f32> {
    r.vec(n, 0.5, 1.5)
}

/// The inputs of `case` and its CPU reference outputs.
pub fn prepare(m: &Model, case: &Case) -> Prepared {
    let p = case.precision;
    let u = store_unit(p);
    let mut r = Rng::new(case.seed);
    let (h, qd, qkv_dim) = (m.h(), m.qd(), m.qkv_dim());
    let (d, kvh, inter, vocab) = (
        m.spec.head_dim,
        m.spec.num_kv_heads,
        m.inter(),
        m.spec.vocab_size,
    );
    let layernorm = !m.layer.rms;
    match case.op {
        Op::Embed { rows } => {
            let ids: Vec<u32> = (0..rows).map(|_| r.below(vocab) as u32).collect();
            let learned = m.rope.is_none();
            let npos = if learned {
                m.spec.max_position_embeddings.min(MAX_SEQ)
            } else {
                MAX_SEQ
            };
            let pos: Vec<u32> = (0..rows).map(|_| r.below(npos) as u32).collect();
            let table = r.stored(p, vocab * h, -1.0, 1.0);
            let pos_table = learned.then(|| r.stored(p, npos * h, -1.0, 1.0));
            // The embedding scale as the model applies it in the storage type: the factor (an f32)
            // rounded to it, the product of two stored values (rounded once to f32, exactly as an f64
            // product would be) rounded to it.
            let scale = m.layer.embed_scale.map(|s| round(p, s));
            let mut x = Vec::with_capacity(rows * h);
            for i in 0..rows {
                for c in 0..h {
                    let mut v = table[ids[i] as usize * h + c];
                    if let Some(s) = scale {
                        v = round(p, v * s);
                    }
                    if let Some(pt) = &pos_table {
                        v += pt[pos[i] as usize * h + c];
                    }
                    x.push(v);
                }
            }
            let nbest = 2;
            Prepared {
                data: Data::Embed {
                    ids,
                    pos,
                    table,
                    pos_table,
                    best: vec![0xdead_beef_0bad_f00d; 4],
                    nbest,
                },
                expect: vec![Expect {
                    name: "x",
                    want: x,
                    bound: Bound::Rel(0.0),
                }],
            }
        }
        Op::AddNorm { rows, delta, bias } => {
            let x = r.vec(rows * h, -2.0, 2.0);
            let dl = delta.then(|| r.vec(rows * h, -1.0, 1.0));
            let bs = (delta && bias).then(|| r.vec(h, -0.5, 0.5));
            let w = gains(&mut r, h);
            let b = layernorm.then(|| r.vec(h, -0.5, 0.5));
            let mut x1 = x.clone();
            if let Some(dl) = &dl {
                for (i, v) in x1.iter_mut().enumerate() {
                    *v += dl[i];
                    if let Some(bs) = &bs {
                        *v += bs[i % h];
                    }
                }
            }
            let out = norm_rows(m, &x1, h, &w, b.as_deref());
            Prepared {
                data: Data::AddNorm {
                    x,
                    delta: dl,
                    bias: bs,
                    w,
                    b,
                },
                expect: vec![
                    Expect {
                        name: "x",
                        want: x1,
                        bound: Bound::Rel(0.0),
                    },
                    Expect {
                        name: "out",
                        want: out,
                        bound: Bound::Rel(RED + u),
                    },
                ],
            }
        }
        Op::PostNorm { rows } => {
            let x = r.vec(rows * h, -4.0, 4.0);
            let w = gains(&mut r, h);
            let want: Vec<f32> = x
                .chunks(h)
                .flat_map(|row| {
                    cpu::reference::norm(NormKind::RmsNorm, m.layer.eps as f64, row, &w, None)
                })
                .collect();
            Prepared {
                data: Data::PostNorm { x, w },
                expect: vec![Expect {
                    name: "x",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::AddPostNorm { rows } => {
            let x = r.vec(rows * h, -2.0, 2.0);
            let delta = r.vec(rows * h, -4.0, 4.0);
            let w = gains(&mut r, h);
            let normed: Vec<f32> = delta
                .chunks(h)
                .flat_map(|row| {
                    cpu::reference::norm(NormKind::RmsNorm, m.layer.eps as f64, row, &w, None)
                })
                .collect();
            let want = x.iter().zip(&normed).map(|(a, b)| a + b).collect();
            Prepared {
                data: Data::AddPostNorm { x, delta, w },
                expect: vec![Expect {
                    name: "x",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::KvRingStore {
            batch,
            seq_len,
            start,
            window,
        } => {
            let n = batch * kvh * seq_len * d;
            let nk = r.stored(p, n, -1.0, 1.0);
            let nv = r.stored(p, n, -1.0, 1.0);
            let ring = batch * kvh * window * d;
            let cache = (r.stored(p, ring, -1.0, 1.0), r.stored(p, ring, -1.0, 1.0));
            let (mut ck, mut cv) = cache.clone();
            write_ring(m, &mut ck, window, &nk, batch, seq_len, start);
            write_ring(m, &mut cv, window, &nv, batch, seq_len, start);
            Prepared {
                data: Data::Ring { nk, nv, cache },
                expect: vec![
                    Expect {
                        name: "cache_k",
                        want: ck,
                        bound: Bound::Rel(0.0),
                    },
                    Expect {
                        name: "cache_v",
                        want: cv,
                        bound: Bound::Rel(0.0),
                    },
                ],
            }
        }
        Op::HeadNorm { rows } => {
            let qkv = r.vec(rows * qkv_dim, -2.0, 2.0);
            let wq = gains(&mut r, d);
            let wk = gains(&mut r, d);
            let mut want = qkv.clone();
            let s = &m.spec;
            let eps = m.layer.eps;
            cpu::head_norm(
                NormKind::RmsNorm,
                eps,
                &mut want,
                qkv_dim,
                0,
                s.num_heads,
                d,
                &wq,
                None,
            );
            cpu::head_norm(
                NormKind::RmsNorm,
                eps,
                &mut want,
                qkv_dim,
                qd,
                kvh,
                d,
                &wk,
                None,
            );
            Prepared {
                data: Data::HeadNorm { qkv, wq, wk },
                expect: vec![Expect {
                    name: "qkv",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::QkvRope {
            batch,
            seq_len,
            start,
            bias,
            write_cache,
            window,
        } => {
            let rows = batch * seq_len;
            let qkv = r.vec(rows * qkv_dim, -2.0, 2.0);
            let bias = bias.then(|| r.vec(qkv_dim, -0.5, 0.5));
            let pos: Vec<u32> = (0..rows).map(|i| (start + i % seq_len) as u32).collect();
            let rot = bias_rope(m, &qkv, bias.as_deref(), &pos);
            let nk = split_kv(m, &rot, batch, seq_len, false);
            let nv = split_kv(m, &rot, batch, seq_len, true);
            let slots = slots_of(window);
            let cache = write_cache.then(|| {
                let n = batch * kvh * slots * d;
                (r.stored(p, n, -1.0, 1.0), r.stored(p, n, -1.0, 1.0))
            });
            let mut expect = vec![
                Expect {
                    name: "q",
                    want: split_q(m, &rot),
                    bound: Bound::Rel(ELEM),
                },
                Expect {
                    name: "new_k",
                    want: nk.clone(),
                    bound: Bound::Rel(ELEM + u),
                },
                Expect {
                    name: "new_v",
                    want: nv.clone(),
                    bound: Bound::Rel(ELEM + u),
                },
            ];
            if let Some((ck, cv)) = &cache {
                let (mut ck, mut cv) = (ck.clone(), cv.clone());
                write_ring(m, &mut ck, slots, &nk, batch, seq_len, start);
                write_ring(m, &mut cv, slots, &nv, batch, seq_len, start);
                expect.push(Expect {
                    name: "cache_k",
                    want: ck,
                    bound: Bound::Rel(ELEM + u),
                });
                expect.push(Expect {
                    name: "cache_v",
                    want: cv,
                    bound: Bound::Rel(ELEM + u),
                });
            }
            Prepared {
                data: Data::QkvRope {
                    qkv,
                    bias,
                    pos,
                    cache,
                },
                expect,
            }
        }
        Op::AttnPrefill {
            tc,
            batch,
            seq_len,
            start,
            mode,
            window,
        } => {
            let data = attn_inputs(m, &mut r, p, batch, seq_len, start, mode, window);
            let Data::Attn { q, nk, nv, cache } = &data else {
                unreachable!()
            };
            let cache = cache.as_ref().map(|(k, v)| (&k[..], &v[..]));
            let want = if window > 0 {
                ring_attention_ref(m, q, nk, nv, cache, batch, seq_len, start, window)
            } else {
                attention_ref(m, q, nk, nv, cache, batch, seq_len, start, mode)
            };
            let bound = if tc { 10.0 * u } else { RED + u };
            Prepared {
                data,
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Rel(bound),
                }],
            }
        }
        Op::AttnDecode {
            batch,
            start,
            mode,
            window,
        } => {
            let data = attn_inputs(m, &mut r, p, batch, 1, start, mode, window);
            let Data::Attn { q, nk, nv, cache } = &data else {
                unreachable!()
            };
            let cache = cache.as_ref().map(|(k, v)| (&k[..], &v[..]));
            let want = if window > 0 {
                ring_attention_ref(m, q, nk, nv, cache, batch, 1, start, window)
            } else {
                attention_ref(m, q, nk, nv, cache, batch, 1, start, mode)
            };
            Prepared {
                data,
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Rel(RED + u),
                }],
            }
        }
        Op::Glu { rows, bias } => {
            let x = r.vec(rows * 2 * inter, -4.0, 4.0);
            let bias = bias.then(|| r.vec(2 * inter, -0.5, 0.5));
            let want = glu_ref(m, &x, bias.as_deref(), inter);
            Prepared {
                data: Data::Act { x, bias },
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Rel(ELEM + u),
                }],
            }
        }
        Op::GeluBias { rows, bias } => {
            let x = r.vec(rows * inter, -4.0, 4.0);
            let bias = bias.then(|| r.vec(inter, -0.5, 0.5));
            let want = gelu_ref(&x, bias.as_deref(), inter);
            Prepared {
                data: Data::Act { x, bias },
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Rel(ELEM + u),
                }],
            }
        }
        Op::Gemv {
            m: mm,
            n,
            k,
            seq,
            bias,
            accumulate,
        } => {
            let w = r.stored(p, n * k, -1.0, 1.0);
            let x = r.stored(p, mm * seq * k, -1.0, 1.0);
            let y0 = if accumulate {
                r.vec(mm * n, -4.0, 4.0)
            } else {
                vec![0.0; mm * n]
            };
            let bias = bias.then(|| r.vec(n, -0.5, 0.5));
            let last: Vec<f32> = x
                .chunks(seq * k)
                .flat_map(|g| g[(seq - 1) * k..].to_vec())
                .collect();
            let mut want = matmul(&last, &w, k);
            for (i, v) in want.iter_mut().enumerate() {
                // The kernel: (accumulate ? y : 0) + s + bias, left to right in f32.
                *v = y0[i] + *v + bias.as_ref().map_or(0.0, |b| b[i % n]);
            }
            Prepared {
                data: Data::Gemv { w, x, y0, bias },
                expect: vec![Expect {
                    name: "y",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::DecQkv {
            rows, bias, window, ..
        } => {
            let start = DEC_START;
            let w = r.stored(p, qkv_dim * h, -1.0, 1.0);
            let (x, nw, nb) = dec_norm_inputs(&mut r, rows, h, layernorm);
            let bias = bias.then(|| r.vec(qkv_dim, -0.5, 0.5));
            let pos: Vec<u32> = (0..rows).map(|i| (start + 7 * i) as u32).collect();
            let slots = slots_of(window);
            let n = rows * kvh * slots * d;
            let cache = (r.stored(p, n, -1.0, 1.0), r.stored(p, n, -1.0, 1.0));
            let xs: Vec<f32> = norm_rows(m, &x, h, &nw, nb.as_deref())
                .into_iter()
                .map(|v| round(p, v))
                .collect();
            let y = matmul(&xs, &w, h);
            let staged = RED + u;
            let expect = if m.layer.qk_norm {
                // The whole QKV row, biased but neither normed nor rotated (head_norm and qkv_rope
                // follow); the K/V outputs (zeroed before the launch) and the cache stay as they were.
                let mut row = y;
                if let Some(b) = &bias {
                    for (i, v) in row.iter_mut().enumerate() {
                        *v += b[i % qkv_dim];
                    }
                }
                vec![
                    Expect {
                        name: "q",
                        want: row,
                        bound: Bound::Rel(staged),
                    },
                    Expect {
                        name: "new_k",
                        want: vec![0.0; rows * m.kvd()],
                        bound: Bound::Rel(0.0),
                    },
                    Expect {
                        name: "new_v",
                        want: vec![0.0; rows * m.kvd()],
                        bound: Bound::Rel(0.0),
                    },
                    Expect {
                        name: "cache_k",
                        want: cache.0.clone(),
                        bound: Bound::Rel(0.0),
                    },
                    Expect {
                        name: "cache_v",
                        want: cache.1.clone(),
                        bound: Bound::Rel(0.0),
                    },
                ]
            } else {
                let rot = bias_rope(m, &y, bias.as_deref(), &pos);
                let nk = split_kv(m, &rot, rows, 1, false);
                let nv = split_kv(m, &rot, rows, 1, true);
                // Every row is one sequence's token at the step's position `start`.
                let (mut ck, mut cv) = cache.clone();
                write_ring(m, &mut ck, slots, &nk, rows, 1, start);
                write_ring(m, &mut cv, slots, &nv, rows, 1, start);
                vec![
                    Expect {
                        name: "q",
                        want: split_q(m, &rot),
                        bound: Bound::Rel(staged),
                    },
                    Expect {
                        name: "new_k",
                        want: nk,
                        bound: Bound::Rel(staged + u),
                    },
                    Expect {
                        name: "new_v",
                        want: nv,
                        bound: Bound::Rel(staged + u),
                    },
                    Expect {
                        name: "cache_k",
                        want: ck,
                        bound: Bound::Rel(staged + u),
                    },
                    Expect {
                        name: "cache_v",
                        want: cv,
                        bound: Bound::Rel(staged + u),
                    },
                ]
            };
            Prepared {
                data: Data::Dec {
                    w,
                    x,
                    nw,
                    nb,
                    bias,
                    pos,
                    cache: Some(cache),
                    x0: vec![],
                },
                expect,
            }
        }
        Op::DecO { rows, bias, .. } | Op::DecDown { rows, bias, .. } => {
            let k = if matches!(case.op, Op::DecO { .. }) {
                qd
            } else {
                inter
            };
            let w = r.stored(p, h * k, -1.0, 1.0);
            let a = r.stored(p, rows * k, -1.0, 1.0);
            let x0 = r.vec(rows * h, -4.0, 4.0);
            let bias = bias.then(|| r.vec(h, -0.5, 0.5));
            let s = matmul(&a, &w, k);
            // With sandwich norms the output is stored for add_post_norm, else added to x.
            let want: Vec<f32> = (0..rows * h)
                .map(|i| {
                    let y = s[i] + bias.as_ref().map_or(0.0, |b| b[i % h]);
                    if m.layer.sandwich { y } else { x0[i] + y }
                })
                .collect();
            Prepared {
                data: Data::Dec {
                    w,
                    x: a,
                    nw: vec![],
                    nb: None,
                    bias,
                    pos: vec![],
                    cache: None,
                    x0,
                },
                expect: vec![Expect {
                    name: "x",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::DecUp { rows, bias, .. } => {
            let up = m.up_rows();
            let w = r.stored(p, up * h, -1.0, 1.0);
            let (x, nw, nb) = dec_norm_inputs(&mut r, rows, h, layernorm);
            let bias = bias.then(|| r.vec(up, -0.5, 0.5));
            let xs: Vec<f32> = norm_rows(m, &x, h, &nw, nb.as_deref())
                .into_iter()
                .map(|v| round(p, v))
                .collect();
            let y = matmul(&xs, &w, h);
            let want = if m.layer.gated {
                glu_ref(m, &y, bias.as_deref(), inter)
            } else {
                gelu_ref(&y, bias.as_deref(), inter)
            };
            Prepared {
                data: Data::Dec {
                    w,
                    x,
                    nw,
                    nb,
                    bias,
                    pos: vec![],
                    cache: None,
                    x0: vec![],
                },
                expect: vec![Expect {
                    name: "mid",
                    want,
                    bound: Bound::Rel(RED + 2.0 * u),
                }],
            }
        }
        Op::DecLm {
            rows, argmax, cap, ..
        } => {
            let w = r.stored(p, vocab * h, -1.0, 1.0);
            let (x, nw, nb) = dec_norm_inputs(&mut r, rows, h, layernorm);
            let xs: Vec<f32> = norm_rows(m, &x, h, &nw, nb.as_deref())
                .into_iter()
                .map(|v| round(p, v))
                .collect();
            let raw = matmul(&xs, &w, h);
            // The cap's slope is at most 1: an error of the product stays an error of at most that
            // size, relative to the capped (smaller) largest logit.
            let (logits, bound) = if cap {
                let capped = softcap_ref(&raw);
                let grow = max_abs(&raw) / max_abs(&capped);
                (capped, (RED + u) * grow + 8.0 * f32::EPSILON)
            } else {
                (raw, RED + u)
            };
            let mut expect = vec![Expect {
                name: "logits",
                want: logits.clone(),
                bound: Bound::Rel(bound),
            }];
            if argmax {
                // The fused argmax is checked against the GPU's own logits (exact: the first index of
                // the largest); these are the reference's, for the report.
                expect.push(Expect {
                    name: "best",
                    want: logits
                        .chunks(vocab)
                        .map(|row| runtime::sample::argmax(row) as f32)
                        .collect(),
                    bound: Bound::Ids,
                });
            }
            Prepared {
                data: Data::Dec {
                    w,
                    x,
                    nw,
                    nb,
                    bias: None,
                    pos: vec![],
                    cache: None,
                    x0: vec![],
                },
                expect,
            }
        }
        Op::Dequant { quant, rows, cols } => {
            let w = r.vec(rows * cols, -2.0, 2.0);
            let q = quantize(quant, &w, rows, cols).expect("quantizes");
            let mut want = vec![0.0; rows * cols];
            dequantize_rows(quant, cols, &q.codes, &q.scales, &mut want);
            // The kernel's f32 product `scale * code` is dequantize_rows' value; then one rounding.
            let want = want.iter().map(|&v| round(p, v)).collect();
            Prepared {
                data: Data::Packed {
                    bytes: q.to_bytes(),
                },
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Rel(0.0),
                }],
            }
        }
        Op::LogitSoftcap { rows } => {
            // Across the cap: nearly linear below it, saturated far above it.
            let logits = r.vec(rows * vocab, -4.0 * LOGIT_CAP, 4.0 * LOGIT_CAP);
            Prepared {
                expect: vec![Expect {
                    name: "logits",
                    want: softcap_ref(&logits),
                    // tanhf's few ulps and the division's rounding, relative to values up to the cap.
                    bound: Bound::Rel(8.0 * f32::EPSILON),
                }],
                data: Data::Logits {
                    logits,
                    draws: vec![],
                },
            }
        }
        Op::Argmax { rows } => {
            let mut logits = r.vec(rows * vocab, -8.0, 8.0);
            // Row 1: its largest value twice (the first index wins); row 2: all equal.
            if rows > 2 {
                let row = &mut logits[vocab..2 * vocab];
                let top = runtime::sample::argmax(row) as usize;
                let v = row[top];
                row[(top + vocab / 2) % vocab] = v;
                logits[2 * vocab..3 * vocab].fill(0.25);
            }
            let want = logits
                .chunks(vocab)
                .map(|row| runtime::sample::argmax(row) as f32)
                .collect();
            Prepared {
                data: Data::Logits {
                    logits,
                    draws: vec![],
                },
                expect: vec![Expect {
                    name: "best",
                    want,
                    bound: Bound::Ids,
                }],
            }
        }
        Op::DequantBlocks { ty, rows, cols, .. } => {
            let w = test_blocks(ty, rows * cols / ty.block_elems(), &mut r);
            let want = runtime::weights::dequantize_blocks(ty, &w)
                .into_iter()
                .map(|v| round(p, v))
                .collect();
            Prepared {
                data: Data::Blocks { w, x: vec![] },
                expect: vec![Expect {
                    name: "out",
                    want,
                    bound: Bound::Bits,
                }],
            }
        }
        Op::GemvBlocks {
            ty,
            m: mm,
            n,
            k,
            ldx,
            ..
        } => {
            let w = test_blocks(ty, n * k / ty.block_elems(), &mut r);
            let x = r.stored(p, mm * ldx, -1.0, 1.0);
            let rows: Vec<f32> = x.chunks(ldx).flat_map(|row| row[..k].to_vec()).collect();
            let want = matmul(&rows, &runtime::weights::dequantize_blocks(ty, &w), k);
            Prepared {
                data: Data::Blocks { w, x },
                expect: vec![Expect {
                    name: "y",
                    want,
                    bound: Bound::Rel(RED),
                }],
            }
        }
        Op::SampleTopK {
            rows,
            temperature,
            k,
            top_p,
        } => {
            let logits = r.vec(rows * vocab, -6.0, 6.0);
            let params = Sampling {
                temperature,
                top_k: Some(k),
                top_p,
                seed: case.seed ^ 0x5eed,
            };
            // The host sampler takes one draw per row; the device gets the same draws, in order.
            let mut host = Sampler::new(params);
            let want = logits
                .chunks(vocab)
                .map(|row| host.sample(row) as f32)
                .collect();
            let mut drawer = Sampler::new(params);
            let draws = (0..rows).map(|_| drawer.draw()).collect();
            Prepared {
                data: Data::Logits { logits, draws },
                expect: vec![Expect {
                    name: "best",
                    want,
                    bound: Bound::Ids,
                }],
            }
        }
    }
}

/// The decode kernels' normed input: the residual rows, the norm gains and (LayerNorm) bias.
fn dec_norm_inputs(
    r: &mut Rng,
    rows: usize,
    h: usize,
    layernorm: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let x = r.vec(rows * h, -2.0, 2.0);
    let nw = gains(r, h);
    let nb = layernorm.then(|| r.vec(h, -0.5, 0.5));
    (x, nw, nb)
}

/// Attention inputs: q f32, the step's new K/V (stored) and, in a cache mode, the cache (stored,
/// random beyond what the step writes; in static_v1 the step's rows are already in it, as the QKV
/// kernel leaves them before attention). With a window the cache is a ring of `window` slots, into
/// which the QKV kernel writes a one-token step's row (static_v1) but not a longer step's rows: those
/// are stored after the attention (`kv_ring_store`), so the ring holds the positions before `start`.
#[allow(clippy::too_many_arguments)]
fn attn_inputs(
    m: &Model,
    r: &mut Rng,
    p: Precision,
    batch: usize,
    seq_len: usize,
    start: usize,
    mode: CacheMode,
    window: usize,
) -> Data {
    let (d, kvh) = (m.spec.head_dim, m.spec.num_kv_heads);
    let q = r.vec(batch * seq_len * m.qd(), -1.0, 1.0);
    let nk = r.stored(p, batch * kvh * seq_len * d, -1.0, 1.0);
    let nv = r.stored(p, batch * kvh * seq_len * d, -1.0, 1.0);
    let slots = slots_of(window);
    let cache = (mode != CacheMode::None).then(|| {
        let n = batch * kvh * slots * d;
        let (mut ck, mut cv) = (r.stored(p, n, -1.0, 1.0), r.stored(p, n, -1.0, 1.0));
        if mode == CacheMode::StaticV1 && (window == 0 || seq_len == 1) {
            write_ring(m, &mut ck, slots, &nk, batch, seq_len, start);
            write_ring(m, &mut cv, slots, &nv, batch, seq_len, start);
        }
        (ck, cv)
    });
    Data::Attn { q, nk, nv, cache }
}

/// Cache rows per (sequence, KV head): the window of a ring, else [`MAX_SEQ`].
pub fn slots_of(window: usize) -> usize {
    if window > 0 { window } else { MAX_SEQ }
}

/// `gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` in f64.
pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())
}

/// `gelu_tanh(g + bias) * (u + bias)` per row of `[gate | up]` (f32 bias adds, then f64).
pub fn geglu_ref(x: &[f32], bias: Option<&[f32]>, inter: usize) -> Vec<f32> {
    x.chunks(2 * inter)
        .flat_map(|row| {
            (0..inter).map(move |i| {
                let (mut g, mut up) = (row[i], row[inter + i]);
                if let Some(b) = bias {
                    g += b[i];
                    up += b[inter + i];
                }
                (gelu_tanh(g as f64) * up as f64) as f32
            })
        })
        .collect()
}

/// The gated activation of the model's MLP: GeGLU or SwiGLU.
pub fn glu_ref(m: &Model, x: &[f32], bias: Option<&[f32]>, inter: usize) -> Vec<f32> {
    if m.layer.gelu_gate {
        geglu_ref(x, bias, inter)
    } else {
        swiglu_ref(x, bias, inter)
    }
}

/// `silu(g + bias) * (u + bias)` per row of `[gate | up]` (f32 bias adds, then the f64 reference).
pub fn swiglu_ref(x: &[f32], bias: Option<&[f32]>, inter: usize) -> Vec<f32> {
    x.chunks(2 * inter)
        .flat_map(|row| {
            (0..inter).map(move |i| {
                let (mut g, mut up) = (row[i], row[inter + i]);
                if let Some(b) = bias {
                    g += b[i];
                    up += b[inter + i];
                }
                cpu::reference::silu_mul(g, up)
            })
        })
        .collect()
}

/// `gelu_new(x + bias)` per row (f32 bias add, then the f64 reference).
pub fn gelu_ref(x: &[f32], bias: Option<&[f32]>, inter: usize) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| cpu::reference::gelu_new(v + bias.map_or(0.0, |b| b[i % inter])))
        .collect()
}
