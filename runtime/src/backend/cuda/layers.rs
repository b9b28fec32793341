//! The general layer loop (prefill, multi-token steps, and decode when the fused path does not fit):
//! per layer fused residual-add + norm → QKV GEMM → bias + RoPE + KV write → attention → O GEMM →
//! fused residual-add + norm → gate/up (or fc) GEMM → activation → down GEMM; final norm; lm_head over
//! the last row of each sequence (read in place through the GEMM's leading dimension); argmax.

use super::forward::{
    Arg, Call, Model, argmax, attention, embed, gemm, launch, norm_block, ov, qkv_rope, vp,
};
use super::gemm::Lt;
use super::scratch::Scratch;
use super::weights::Vf;
use crate::Result;

/// Issue every launch of one call through the general path (any row count).
pub fn encode_unfused(
    m: &Model<'_>,
    lt: &mut Lt,
    s: &Scratch,
    call: &Call,
    cache: &[(u64, u64)],
) -> Result<()> {
    let spec = m.spec;
    let (rows, e) = (call.rows(), m.precision.bytes_per_element());
    let (h, qd) = (spec.hidden_size, spec.q_dim());
    let l = m.layout;
    embed(m, s, call)?;
    let mut pending_bias: Option<Vf> = None;
    for (i, layer) in l.layers.iter().enumerate() {
        let first = i == 0;
        add_norm(m, s, rows, !first, &pending_bias, &layer.attn_norm)?;
        gemm(m, lt, &layer.qkv, s.normed.ptr(), h, rows, s.qkv.ptr())?;
        let kv = cache.get(i).copied().unwrap_or((0, 0));
        qkv_rope(m, s, call, ov(m, &layer.qkv_bias), kv)?;
        attention(m, s, call, kv, 0)?;
        gemm(m, lt, &layer.o, s.attn.ptr(), qd, rows, s.delta.ptr())?;
        add_norm(m, s, rows, true, &layer.o_bias, &layer.mlp_norm)?;
        gemm(m, lt, &layer.up, s.normed.ptr(), h, rows, s.up.ptr())?;
        let act = match m.layer.swiglu {
            true => (&m.k.swiglu, "swiglu"),
            false => (&m.k.gelu_bias, "gelu_bias"),
        };
        let n = rows * spec.intermediate_size;
        launch(
            m,
            act.0,
            act.1,
            (n.div_ceil(256).min(1 << 20) as u32, 1, 1),
            256,
            0,
            &[
                Arg::P(s.up.ptr()),
                Arg::P(ov(m, &layer.up_bias)),
                Arg::P(s.mid.ptr()),
                Arg::I(rows as i32),
            ],
        )?;
        gemm(
            m,
            lt,
            &layer.down,
            s.mid.ptr(),
            spec.intermediate_size,
            rows,
            s.delta.ptr(),
        )?;
        pending_bias = layer.down_bias;
    }
    add_norm(
        m,
        s,
        rows,
        !l.layers.is_empty(),
        &pending_bias,
        &l.final_norm,
    )?;
    if call.all_rows {
        gemm(m, lt, &l.lm_head, s.normed.ptr(), h, rows, s.logits.ptr())?;
    } else {
        let last = s.normed.at((call.seq_len - 1) * h * e);
        gemm(
            m,
            lt,
            &l.lm_head,
            last,
            call.seq_len * h,
            call.batch,
            s.logits.ptr(),
        )?;
    }
    if call.argmax {
        argmax(m, s, call)?;
    }
    Ok(())
}

/// `x += delta (+ bias)` when `add`, then `normed = norm(x)` for every row.
fn add_norm(
    m: &Model<'_>,
    s: &Scratch,
    rows: usize,
    add: bool,
    bias: &Option<Vf>,
    norm: &(Vf, Option<Vf>),
) -> Result<()> {
    let (w, b) = norm;
    launch(
        m,
        &m.k.add_norm,
        "add_norm",
        (rows as u32, 1, 1),
        norm_block(m.spec.hidden_size),
        0,
        &[
            Arg::P(s.x.ptr()),
            Arg::P(if add { s.delta.ptr() } else { 0 }),
            Arg::P(if add { ov(m, bias) } else { 0 }),
            Arg::P(vp(m, w)),
            Arg::P(ov(m, b)),
            Arg::P(s.normed.ptr()),
        ],
    )
}
