//! The fused decode path: a step of a few rows (`batch <= GEMV_MAX_ROWS`, one token each) where every
//! matrix runs through the GEMV kernels, so the norms, the MLP activation and the residual adds ride
//! along inside them: per layer `gemv_norm(qkv)` → RoPE + KV write → split attention → combine →
//! `gemv(o)` accumulating into the residual stream → `gemv_norm(gate|up)` → `gemv_swiglu(down)`
//! (or `gemv_gelu(proj)`) accumulating into the residual stream; then `gemv_norm(lm_head)` and the
//! argmax. Seven launches per layer instead of ten, and no separate norm or activation pass.

use super::forward::{
    Arg, Call, Model, argmax, attention, embed, gemv_grid, launch, ov, qkv_rope, vp,
};
use super::gemm::{GemmChoice, GemmShape, default_choice, gemv_fits};
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
        choice == Some(GemmChoice::Gemv)
            && gemv_fits(&shape, m.precision)
            && rows * w.cols * e <= m.k.gemv_smem_limit
    })
}

/// One fused GEMV launch: `f(W, <prologue args>, y, bias, accumulate, N, K, M)`.
#[allow(clippy::too_many_arguments)]
fn gemv(
    m: &Model<'_>,
    f: &CudaFunction,
    name: &str,
    w: &Mat,
    prologue: &[u64],
    y: u64,
    bias: &Option<Vf>,
    accumulate: bool,
    rows: usize,
) -> Result<()> {
    let mut args = vec![Arg::P(m.mats.at(w.off))];
    args.extend(prologue.iter().map(|&p| Arg::P(p)));
    args.extend([
        Arg::P(y),
        Arg::P(ov(m, bias)),
        Arg::I(accumulate as i32),
        Arg::I(w.rows as i32),
        Arg::I(w.cols as i32),
        Arg::I(rows as i32),
    ]);
    let smem = rows * w.cols * m.precision.bytes_per_element();
    launch(m.gpu, f, name, gemv_grid(m, w.rows), 256, smem, &args)
}

pub fn encode_fused(m: &Model<'_>, s: &Scratch, call: &Call, cache: &[(u64, u64)]) -> Result<()> {
    let spec = m.spec;
    let rows = call.rows();
    let l = m.layout;
    let k = m.k;
    let x = s.x.ptr();
    let norm = |n: &(Vf, Option<Vf>)| [x, vp(m, &n.0), ov(m, &n.1)];
    embed(m, s, call)?;
    for (i, layer) in l.layers.iter().enumerate() {
        let nq = norm(&layer.attn_norm);
        gemv(
            m,
            &k.gemv_norm,
            "gemv_norm",
            &layer.qkv,
            &nq,
            s.qkv.ptr(),
            &None,
            false,
            rows,
        )?;
        let kv = cache.get(i).copied().unwrap_or((0, 0));
        qkv_rope(m, s, call, ov(m, &layer.qkv_bias), kv)?;
        attention(m, s, call, kv)?;
        // Plain gemv reads T rows `ldx` apart: the attention output is dense.
        let mut args = vec![
            Arg::P(m.mats.at(layer.o.off)),
            Arg::P(s.attn.ptr()),
            Arg::P(x),
        ];
        args.extend([
            Arg::P(ov(m, &layer.o_bias)),
            Arg::I(1),
            Arg::I(layer.o.rows as i32),
            Arg::I(layer.o.cols as i32),
            Arg::I(rows as i32),
            Arg::I(layer.o.cols as i32),
        ]);
        let smem = rows * layer.o.cols * m.precision.bytes_per_element();
        launch(
            m.gpu,
            &k.gemv,
            "gemv",
            gemv_grid(m, layer.o.rows),
            256,
            smem,
            &args,
        )?;
        let nm = norm(&layer.mlp_norm);
        gemv(
            m,
            &k.gemv_norm,
            "gemv_norm",
            &layer.up,
            &nm,
            s.up.ptr(),
            &None,
            false,
            rows,
        )?;
        let act = [s.up.ptr(), ov(m, &layer.up_bias)];
        match spec.mlp {
            Mlp::SwiGlu => gemv(
                m,
                &k.gemv_swiglu,
                "gemv_swiglu",
                &layer.down,
                &act,
                x,
                &layer.down_bias,
                true,
                rows,
            )?,
            Mlp::GeluNew => gemv(
                m,
                &k.gemv_gelu,
                "gemv_gelu",
                &layer.down,
                &act,
                x,
                &layer.down_bias,
                true,
                rows,
            )?,
        }
    }
    let nf = norm(&l.final_norm);
    gemv(
        m,
        &k.gemv_norm,
        "gemv_norm",
        &l.lm_head,
        &nf,
        s.logits.ptr(),
        &None,
        false,
        rows,
    )?;
    if call.argmax {
        argmax(m, s, call)?;
    }
    Ok(())
}
