//! The fused decode path: a step of a few rows (`batch <= GEMV_MAX_ROWS`, one token each) where every
//! matrix runs through the GEMV kernels, so the norms, the MLP activation and the residual adds ride
//! along inside them: per layer `gemv_norm(qkv)` → RoPE + KV write → split attention → combine →
//! `gemv(o)` accumulating into the residual stream → `gemv_norm(gate|up)` → `gemv_swiglu(down)`
//! (or `gemv_gelu(proj)`) accumulating into the residual stream; then `gemv_norm(lm_head)` and the
//! argmax fused into its epilogue. Six launches per layer instead of nine, no separate norm,
//! activation or argmax pass.

use super::forward::{
    Arg, Call, Model, attention, choice, embed, gemv_grid, launch, ov, qkv_rope, vp,
};
use super::gemm::{GemmChoice, gemv_fits};
use super::kernels::GEMV_MAX_ROWS;
use super::scratch::Scratch;
use super::weights::{Mat, Vf};
use crate::Result;
use crate::spec::Mlp;
use cudarc::driver::CudaFunction;

/// Whether `call` can take the fused path: a decode step whose every GEMM shape is (or defaults to)
/// the GEMV kernel and whose staged inputs fit in shared memory.
pub fn fits(m: &Model<'_>, call: &Call) -> bool {
    let rows = call.rows();
    if !call.is_decode() || rows > GEMV_MAX_ROWS {
        return false;
    }
    let l = m.layout;
    let mut mats = vec![l.lm_head];
    if let Some(first) = l.layers.first() {
        mats.extend([first.qkv, first.o, first.up, first.down]);
    }
    let e = m.precision.bytes_per_element();
    mats.iter().all(|w| {
        let (shape, choice) = choice(m, w, rows);
        choice == Some(GemmChoice::Gemv)
            && gemv_fits(&shape, m.precision)
            && rows * w.cols * e <= m.k.gemv_smem_limit
    })
}

/// One fused GEMV launch: `f(W, <prologue args>, y, bias, accumulate, N, K, M [, best])`.
struct Gemv<'a> {
    f: &'a CudaFunction,
    name: &'a str,
    w: &'a Mat,
    prologue: Vec<u64>,
    y: u64,
    bias: Option<Vf>,
    accumulate: bool,
    /// The argmax slots (only `gemv_norm` takes this parameter; 0 for none).
    best: Option<u64>,
}

impl Gemv<'_> {
    fn run(&self, m: &Model<'_>, rows: usize) -> Result<()> {
        let w = self.w;
        let mut args = vec![Arg::P(m.mats.at(w.off))];
        args.extend(self.prologue.iter().map(|&p| Arg::P(p)));
        args.extend([
            Arg::P(self.y),
            Arg::P(ov(m, &self.bias)),
            Arg::I(self.accumulate as i32),
            Arg::I(w.rows as i32),
            Arg::I(w.cols as i32),
            Arg::I(rows as i32),
        ]);
        args.extend(self.best.map(Arg::P));
        let smem = rows * w.cols * m.precision.bytes_per_element();
        launch(
            m,
            self.f,
            self.name,
            gemv_grid(m, self.f, w.rows, smem),
            256,
            smem,
            &args,
        )
    }
}

pub fn encode_fused(m: &Model<'_>, s: &Scratch, call: &Call, cache: &[(u64, u64)]) -> Result<()> {
    let rows = call.rows();
    let (l, k) = (m.layout, m.k);
    let x = s.x.ptr();
    let normed =
        |n: &(Vf, Option<Vf>), y: u64, best: u64| (vec![x, vp(m, &n.0), ov(m, &n.1)], y, best);
    let run_normed = |w: &Mat, (prologue, y, best): (Vec<u64>, u64, u64)| {
        Gemv {
            f: &k.gemv_norm,
            name: "gemv_norm",
            w,
            prologue,
            y,
            bias: None,
            accumulate: false,
            best: Some(best),
        }
        .run(m, rows)
    };
    embed(m, s, call)?;
    for (i, layer) in l.layers.iter().enumerate() {
        run_normed(&layer.qkv, normed(&layer.attn_norm, s.qkv.ptr(), 0))?;
        let kv = cache.get(i).copied().unwrap_or((0, 0));
        qkv_rope(m, s, call, ov(m, &layer.qkv_bias), kv)?;
        attention(m, s, call, kv)?;
        // Plain gemv over the (dense, `ldx = K`) attention output, accumulating into the residual.
        let o = &layer.o;
        let mut args = vec![Arg::P(m.mats.at(o.off)), Arg::P(s.attn.ptr()), Arg::P(x)];
        args.extend([Arg::P(ov(m, &layer.o_bias)), Arg::I(1)]);
        args.extend([o.rows, o.cols, rows, o.cols].map(|v| Arg::I(v as i32)));
        let smem = rows * o.cols * m.precision.bytes_per_element();
        launch(
            m,
            &k.gemv,
            "gemv",
            gemv_grid(m, &k.gemv, o.rows, smem),
            256,
            smem,
            &args,
        )?;
        run_normed(&layer.up, normed(&layer.mlp_norm, s.up.ptr(), 0))?;
        let (f, name) = match m.spec.mlp {
            Mlp::SwiGlu => (&k.gemv_swiglu, "gemv_swiglu"),
            Mlp::GeluNew => (&k.gemv_gelu, "gemv_gelu"),
        };
        Gemv {
            f,
            name,
            w: &layer.down,
            prologue: vec![s.up.ptr(), ov(m, &layer.up_bias)],
            y: x,
            bias: layer.down_bias,
            accumulate: true,
            best: None,
        }
        .run(m, rows)?;
    }
    // The greedy selection rides in the lm_head epilogue (atomicMax of argmax keys into `best`).
    let best = if call.argmax { s.best.ptr() } else { 0 };
    run_normed(&l.lm_head, normed(&l.final_norm, s.logits.ptr(), best))
}
