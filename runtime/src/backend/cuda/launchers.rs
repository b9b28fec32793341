//! One launcher per kernel of runtime/templates/kernels: a struct whose fields are the kernel's
//! parameters, in the order and with the names of its C signature, typed by element and by whether the
//! kernel reads or writes them (`Option` where the kernel takes a null pointer for "absent"). Kernels
//! of one signature built twice (the decode kernels for one row and for up to `GEMV_MAX_ROWS` rows)
//! or interchangeable (the two prefill attentions, the two activations) share a launcher.
//! [`SIGNATURES`] lists them all; the PTX compile test (runtime/tests/cuda_kernels.rs) checks each
//! against its kernels' `.entry` parameter lists and that every kernel of `kernels::MODULES` has one.

use super::launch::{Function, Grid, Kernel, Param, ParamTy, Signature, Stream};
use super::memory::{Arg, ArgmaxKey, DevSlice, DevSliceMut, Mark, Stored};
use crate::Result;

macro_rules! launchers {
    ($(
        $(#[$doc:meta])*
        $name:ident [$($entry:literal),+] {
            $($(#[$fdoc:meta])* $field:ident: $ty:ty,)+
        }
    )+) => {
        $(
            $(#[$doc])*
            pub struct $name<'a> {
                $($(#[$fdoc])* pub $field: $ty,)+
            }

            impl<'a> Kernel for $name<'a> {
                const ENTRIES: &'static [&'static str] = &[$($entry),+];
                const PARAMS: &'static [(&'static str, ParamTy)] =
                    &[$((stringify!($field), <$ty as Param>::TY)),+];
                fn args(&self) -> Vec<Arg> {
                    vec![$(Param::arg(&self.$field)),+]
                }
            }

            impl<'a> $name<'a> {
                /// Launch `f` (one of this launcher's kernels) with these arguments.
                pub fn launch(
                    &self,
                    on: &Stream<'_>,
                    f: &Function<$name<'static>>,
                    grid: Grid,
                ) -> Result<()> {
                    on.launch(f, grid, self)
                }
            }
        )+

        /// Every launcher's parameter list.
        pub const SIGNATURES: &[Signature] =
            &[$(Signature::of::<$name<'static>>(stringify!($name))),+];
    };
}

launchers! {
    /// `embed` (norm.cu): token (and learned position) embedding of each row into the residual
    /// stream; also clears the first `nbest` argmax keys.
    Embed ["embed"] {
        ids: DevSlice<'a, u32>,
        pos: DevSlice<'a, u32>,
        table: DevSlice<'a, Stored>,
        /// Learned position embeddings (GPT-2).
        pos_table: Option<DevSlice<'a, Stored>>,
        x: DevSliceMut<'a, f32>,
        best: DevSliceMut<'a, ArgmaxKey>,
        nbest: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `add_norm` (norm.cu): `x += delta (+ bias)` when `delta` is given, then `out = norm(x)` per row.
    AddNorm ["add_norm"] {
        x: DevSliceMut<'a, f32>,
        delta: Option<DevSlice<'a, f32>>,
        bias: Option<DevSlice<'a, f32>>,
        w: DevSlice<'a, f32>,
        /// LayerNorm's bias.
        b: Option<DevSlice<'a, f32>>,
        out: DevSliceMut<'a, Stored>,
    }

    /// `head_norm` (head_norm.cu): per-head RMSNorm of the q and k heads of each QKV row, in
    /// place, before `qkv_rope`.
    HeadNorm ["head_norm"] {
        qkv: DevSliceMut<'a, f32>,
        /// `[head_dim]` gains of every q head and of every k head.
        wq: DevSlice<'a, f32>,
        wk: DevSlice<'a, f32>,
    }

    /// `qkv_rope` (rope_kv.cu): bias, RoPE and the K/V cache write of a QKV GEMM's output.
    QkvRope ["qkv_rope"] {
        qkv: DevSlice<'a, f32>,
        bias: Option<DevSlice<'a, f32>>,
        pos: DevSlice<'a, u32>,
        /// `start_idx, end_idx`.
        step: DevSlice<'a, i32>,
        /// RoPE tables (absent for learned positions).
        cos_t: Option<DevSlice<'a, f32>>,
        sin_t: Option<DevSlice<'a, f32>>,
        q: DevSliceMut<'a, f32>,
        new_k: DevSliceMut<'a, Stored>,
        new_v: DevSliceMut<'a, Stored>,
        /// The layer's cache (absent without one).
        cache_k: Option<DevSliceMut<'a, Stored>>,
        cache_v: Option<DevSliceMut<'a, Stored>>,
        seq_len: i32,
        max_seq: i32,
        write_cache: i32,
        /// The layer's sliding window (its cache a ring of that many slots), 0 for none.
        window: i32,
    }

    /// `kv_ring_store` (rope_kv.cu): a windowed layer's multi-token step, after its attention: the
    /// step's last `window` K/V rows into their ring slots.
    KvRingStore ["kv_ring_store"] {
        new_k: DevSlice<'a, Stored>,
        new_v: DevSlice<'a, Stored>,
        step: DevSlice<'a, i32>,
        cache_k: DevSliceMut<'a, Stored>,
        cache_v: DevSliceMut<'a, Stored>,
        seq_len: i32,
        window: i32,
    }

    /// `post_norm` (norm.cu): `x = rmsnorm(x) * w` per row, in place (a sandwich norm).
    PostNorm ["post_norm"] {
        x: DevSliceMut<'a, f32>,
        w: DevSlice<'a, f32>,
    }

    /// `add_post_norm` (norm.cu): `x += rmsnorm(delta) * w` per row (a sandwich norm of a fused
    /// decode GEMV's output).
    AddPostNorm ["add_post_norm"] {
        x: DevSliceMut<'a, f32>,
        delta: DevSlice<'a, f32>,
        w: DevSlice<'a, f32>,
    }

    /// `attn_prefill` (attention.cu, on CUDA cores) and `attn_prefill_tc` (attn_prefill_tc.cu, on
    /// tensor cores): causal attention of every query row over the cache prefix and the new keys.
    AttnPrefill ["attn_prefill", "attn_prefill_tc"] {
        q: DevSlice<'a, f32>,
        ck: Option<DevSlice<'a, Stored>>,
        cv: Option<DevSlice<'a, Stored>>,
        nk: DevSlice<'a, Stored>,
        nv: DevSlice<'a, Stored>,
        step: DevSlice<'a, i32>,
        out: DevSliceMut<'a, Stored>,
        seq_len: i32,
        max_seq: i32,
        mode: i32,
        /// The layer's sliding window, 0 for none.
        window: i32,
    }

    /// `attn_decode` (attention.cu): one query row per sequence over 128-key splits, the combine
    /// folded into the last split to finish.
    AttnDecode ["attn_decode"] {
        q: DevSlice<'a, f32>,
        ck: DevSlice<'a, Stored>,
        cv: DevSlice<'a, Stored>,
        nk: DevSlice<'a, Stored>,
        nv: DevSlice<'a, Stored>,
        step: DevSlice<'a, i32>,
        part_o: DevSliceMut<'a, f32>,
        part_ml: DevSliceMut<'a, f32>,
        /// Split-completion counters, left at zero.
        counters: DevSliceMut<'a, u32>,
        out: DevSliceMut<'a, Stored>,
        max_seq: i32,
        mode: i32,
        /// The layer's sliding window, 0 for none.
        window: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `glu` and `gelu_bias` (mlp.cu): the activation of the first MLP projection.
    Activation ["glu", "gelu_bias"] {
        /// `[gate | up]` (SwiGLU, GeGLU) or `fc` (GELU) rows.
        x: DevSlice<'a, f32>,
        bias: Option<DevSlice<'a, f32>>,
        out: DevSliceMut<'a, Stored>,
        rows: i32,
    }

    /// `gemv` (gemv.cu): `y[m, n] (+)= x[m, k] · w[n, k]ᵀ (+ bias)` for a few rows, `x` staged in
    /// shared memory.
    Gemv ["gemv"] {
        w: DevSlice<'a, Stored>,
        x: DevSlice<'a, Stored>,
        y: DevSliceMut<'a, f32>,
        bias: Option<DevSlice<'a, f32>>,
        accumulate: i32,
        n: i32,
        k: i32,
        m: i32,
        ldx: i32,
        /// Elements between rows of `y`.
        ldy: i32,
    }

    /// `dequant` (quant.cu): a matrix quantized at build into a dense `[rows, cols]` matrix of `T`.
    Dequant ["dequant"] {
        w: DevSlice<'a, u8>,
        out: DevSliceMut<'a, Stored>,
        rows: i32,
        cols: i32,
        /// `FMT_INT8`, `FMT_INT4` or `FMT_FP8` (quant.cuh).
        fmt: i32,
    }

    /// `dec_qkv_1` / `dec_qkv_n` (decode.cu): norm → QKV → bias + RoPE → q and the K/V cache rows.
    DecQkv ["dec_qkv_1", "dec_qkv_n"] {
        /// The matrix in its format (runtime/templates/kernels/quant.cuh).
        w: DevSlice<'a, u8>,
        x: DevSlice<'a, f32>,
        nw: DevSlice<'a, f32>,
        nb: Option<DevSlice<'a, f32>>,
        bias: Option<DevSlice<'a, f32>>,
        pos: DevSlice<'a, u32>,
        step: DevSlice<'a, i32>,
        cos_t: Option<DevSlice<'a, f32>>,
        sin_t: Option<DevSlice<'a, f32>>,
        q: DevSliceMut<'a, f32>,
        new_k: DevSliceMut<'a, Stored>,
        new_v: DevSliceMut<'a, Stored>,
        cache_k: DevSliceMut<'a, Stored>,
        cache_v: DevSliceMut<'a, Stored>,
        max_seq: i32,
        /// The layer's sliding window, 0 for none.
        window: i32,
        m: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `dec_o_1` / `dec_o_n` (decode.cu): the attention output projection added to the residual
    /// stream.
    DecO ["dec_o_1", "dec_o_n"] {
        /// The matrix in its format (runtime/templates/kernels/quant.cuh).
        w: DevSlice<'a, u8>,
        a: DevSlice<'a, Stored>,
        x: DevSliceMut<'a, f32>,
        bias: Option<DevSlice<'a, f32>>,
        m: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `dec_up_1` / `dec_up_n` (decode.cu): norm → gate/up → SwiGLU, or fc → gelu.
    DecUp ["dec_up_1", "dec_up_n"] {
        /// The matrix in its format (runtime/templates/kernels/quant.cuh).
        w: DevSlice<'a, u8>,
        x: DevSlice<'a, f32>,
        nw: DevSlice<'a, f32>,
        nb: Option<DevSlice<'a, f32>>,
        bias: Option<DevSlice<'a, f32>>,
        mid: DevSliceMut<'a, Stored>,
        m: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `dec_down_1` / `dec_down_n` (decode.cu): the MLP's down projection added to the residual
    /// stream.
    DecDown ["dec_down_1", "dec_down_n"] {
        /// The matrix in its format (runtime/templates/kernels/quant.cuh).
        w: DevSlice<'a, u8>,
        mid: DevSlice<'a, Stored>,
        x: DevSliceMut<'a, f32>,
        bias: Option<DevSlice<'a, f32>>,
        m: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `dec_lm_1` / `dec_lm_n` (decode.cu): final norm → lm_head → logits, with the greedy argmax
    /// in the epilogue when `best` is given.
    DecLm ["dec_lm_1", "dec_lm_n"] {
        w: DevSlice<'a, Stored>,
        x: DevSlice<'a, f32>,
        nw: DevSlice<'a, f32>,
        nb: Option<DevSlice<'a, f32>>,
        logits: DevSliceMut<'a, f32>,
        best: Option<DevSliceMut<'a, ArgmaxKey>>,
        /// Vocabulary rows of `w`.
        n: i32,
        /// The final soft cap (`tanh(l / cap) * cap`), 0 for none.
        cap: f32,
        m: i32,
        trace: Option<DevSliceMut<'a, Mark>>,
        slot: i32,
    }

    /// `logit_softcap` (argmax.cu): `x = tanh(x / cap) * cap` over the first `n` logits.
    LogitSoftcap ["logit_softcap"] {
        logits: DevSliceMut<'a, f32>,
        n: i32,
        cap: f32,
    }

    /// `argmax` (argmax.cu): the greedy key of each sequence's logits row.
    Argmax ["argmax"] {
        logits: DevSlice<'a, f32>,
        best_out: DevSliceMut<'a, ArgmaxKey>,
    }

    /// `dequant_blocks` (blocks.cu): a `[rows, cols]` matrix of GGUF blocks of GGML type `ty`
    /// (`BlockType::ggml_id`; `cols` a multiple of its block) into the dense row-major `out`, each
    /// weight the CPU's dequantised value rounded to the storage type. Any grid
    /// ([`DequantBlocks::grid`]); 16-byte aligned `w` and `out` take the fast loads and stores.
    DequantBlocks ["dequant_blocks"] {
        w: DevSlice<'a, u8>,
        out: DevSliceMut<'a, Stored>,
        rows: i32,
        cols: i32,
        ty: i32,
    }

    /// `gemv_blocks` (blocks.cu): `y[r, j] = Σ_c x[r * ldx + c] · W[j, c]` for `r < m` (at most
    /// `GEMV_MAX_ROWS`), `W` `[n, k]` GGUF blocks of GGML type `ty` (`k` a multiple of its block),
    /// dequantised in registers, f32 accumulation; the `m` input rows staged in shared memory
    /// ([`GemvBlocks::smem`]). One warp per output row at a time ([`GemvBlocks::grid`]); a 16-byte
    /// aligned `w` takes the fast loads.
    GemvBlocks ["gemv_blocks"] {
        w: DevSlice<'a, u8>,
        x: DevSlice<'a, Stored>,
        y: DevSliceMut<'a, f32>,
        n: i32,
        k: i32,
        m: i32,
        ldx: i32,
        /// Elements between rows of `y`.
        ldy: i32,
        ty: i32,
    }

    /// `sample_top_k` (sample.cu): one token per sequence from its top `k` logits (and top-p), with
    /// the host's uniform draw.
    SampleTopK ["sample_top_k"] {
        logits: DevSlice<'a, f32>,
        draws: DevSlice<'a, f64>,
        inv_t: f32,
        k: i32,
        /// Above 1: no top-p.
        top_p: f32,
        out: DevSliceMut<'a, ArgmaxKey>,
    }
}

/// Threads per block of the `blocks` kernels: 8 warps.
const BLOCKS_THREADS: u32 = 256;

impl DequantBlocks<'_> {
    /// The launch over `rows × cols` weights: a thread per 16 weights (no unit of any block type is
    /// smaller), at most `max_blocks` blocks of 256 threads (the grid strides over the rest).
    pub fn grid(rows: usize, cols: usize, max_blocks: usize) -> Grid {
        let threads = (rows * cols).div_ceil(16);
        let blocks = threads
            .div_ceil(BLOCKS_THREADS as usize)
            .clamp(1, max_blocks.max(1));
        Grid::new((blocks as u32, 1, 1), BLOCKS_THREADS)
    }
}

impl GemvBlocks<'_> {
    /// Dynamic shared memory of a launch: the `m` staged input rows of `k` storage elements of
    /// `elem_bytes` bytes (the caller checks it against `Kernels::gemv_smem_limit`).
    pub fn smem(m: usize, k: usize, elem_bytes: usize) -> usize {
        m * k * elem_bytes
    }

    /// The launch over `n` output rows with `smem` bytes of staged inputs: blocks of 8 warps, one
    /// output row per warp, at most `max_blocks` blocks (one resident wave: SMs × the occupancy at
    /// this shared memory; the warps stride over the rest).
    pub fn grid(n: usize, smem: usize, max_blocks: usize) -> Grid {
        let warps = (BLOCKS_THREADS / 32) as usize;
        let blocks = n.div_ceil(warps).clamp(1, max_blocks.max(1));
        Grid::new((blocks as u32, 1, 1), BLOCKS_THREADS).smem(smem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_one_launcher() {
        let mut entries: Vec<&str> = SIGNATURES.iter().flat_map(|s| s.entries).copied().collect();
        let n = entries.len();
        entries.sort_unstable();
        entries.dedup();
        assert_eq!(entries.len(), n, "an entry with two launchers");
        let sig = SIGNATURES
            .iter()
            .find(|s| s.launcher == "SampleTopK")
            .expect("sample launcher");
        let tys: Vec<ParamTy> = sig.params.iter().map(|p| p.1).collect();
        use ParamTy::*;
        assert_eq!(tys, [Ptr, Ptr, F32, I32, F32, Ptr]);
        assert_eq!(sig.params[4].0, "top_p");
    }
}
