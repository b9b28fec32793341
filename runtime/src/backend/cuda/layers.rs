//! The general layer loop (prefill, multi-token steps, and decode when the fused path does not fit):
//! per layer fused residual-add + norm → QKV GEMM → (per-head q/k norms) → bias + RoPE + KV write →
//! attention (→ a windowed layer's ring write) → O GEMM (→ sandwich norm) →
//! fused residual-add + norm → gate/up (or fc) GEMM → activation → down GEMM (→ sandwich norm); final
//! norm; lm_head over the last row of each sequence (read in place through the GEMM's leading
//! dimension); the final soft cap where the model has one; argmax.

use super::forward::{
    Call, LayerKv, Model, argmax, attention, embed, gemm, head_norm, norm_block, qkv_rope,
    ring_store,
};
use super::gemm::Lt;
use super::launch::Grid;
use super::launchers::{Activation, AddNorm, LogitSoftcap, PostNorm};
use super::scratch::Scratch;
use super::weights::Vf;
use crate::Result;

/// Issue every launch of one call through the general path (any row count).
pub fn encode_unfused(
    m: &Model<'_>,
    lt: &mut Lt,
    s: &Scratch,
    call: &Call,
    cache: &[LayerKv<'_>],
) -> Result<()> {
    let spec = m.spec;
    let rows = call.rows();
    let (h, qd) = (spec.hidden_size, spec.q_dim());
    let l = m.layout;
    embed(m, s, call)?;
    let mut pending_bias: Option<Vf> = None;
    for (i, layer) in l.layers.iter().enumerate() {
        let first = i == 0;
        add_norm(m, s, rows, !first, &pending_bias, &layer.attn_norm)?;
        gemm(
            m,
            lt,
            &layer.qkv,
            s.normed.view(),
            h,
            rows,
            s.qkv.view_mut(),
        )?;
        if let Some(w) = &layer.qk_norm {
            head_norm(m, s, rows, w)?;
        }
        let kv = cache.get(i).copied();
        qkv_rope(m, s, call, m.opt_vec(&layer.qkv_bias), kv, i)?;
        attention(m, s, call, kv, i, 0)?;
        ring_store(m, s, call, kv, i)?;
        gemm(m, lt, &layer.o, s.attn.view(), qd, rows, s.delta.view_mut())?;
        if let Some((post_attn, _)) = &layer.post_norms {
            post_norm(m, s, rows, post_attn)?;
        }
        add_norm(m, s, rows, true, &layer.o_bias, &layer.mlp_norm)?;
        gemm(m, lt, &layer.up, s.normed.view(), h, rows, s.up.view_mut())?;
        let act = match m.layer.gated {
            true => &m.k.glu,
            false => &m.k.gelu_bias,
        };
        let n = rows * spec.intermediate_size;
        Activation {
            x: s.up.view(),
            bias: m.opt_vec(&layer.up_bias),
            out: s.mid.view_mut(),
            rows: rows as i32,
        }
        .launch(
            &m.stream(),
            act,
            Grid::new((n.div_ceil(256).min(1 << 20) as u32, 1, 1), 256),
        )?;
        gemm(
            m,
            lt,
            &layer.down,
            s.mid.view(),
            spec.intermediate_size,
            rows,
            s.delta.view_mut(),
        )?;
        if let Some((_, post_mlp)) = &layer.post_norms {
            post_norm(m, s, rows, post_mlp)?;
        }
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
        gemm(
            m,
            lt,
            &l.lm_head,
            s.normed.view(),
            h,
            rows,
            s.logits.view_mut(),
        )?;
    } else {
        let last = s.normed.view().skip((call.seq_len - 1) * h);
        gemm(
            m,
            lt,
            &l.lm_head,
            last,
            call.seq_len * h,
            call.batch,
            s.logits.view_mut(),
        )?;
    }
    if let Some(cap) = m.layer.final_softcap {
        let n = call.logit_rows() * m.spec.vocab_size;
        LogitSoftcap {
            logits: s.logits.view_mut(),
            n: n as i32,
            cap,
        }
        .launch(
            &m.stream(),
            &m.k.logit_softcap,
            Grid::new((n.div_ceil(256).min(1 << 16) as u32, 1, 1), 256),
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
    AddNorm {
        x: s.x.view_mut(),
        delta: add.then(|| s.delta.view()),
        bias: if add { m.opt_vec(bias) } else { None },
        w: m.vec(w),
        b: m.opt_vec(b),
        out: s.normed.view_mut(),
    }
    .launch(
        &m.stream(),
        &m.k.add_norm,
        Grid::new((rows as u32, 1, 1), norm_block(m.spec.hidden_size)),
    )
}

/// `delta = rmsnorm(delta) * w` for every row: a sandwich norm of one half's output.
fn post_norm(m: &Model<'_>, s: &Scratch, rows: usize, w: &Vf) -> Result<()> {
    PostNorm {
        x: s.delta.view_mut(),
        w: m.vec(w),
    }
    .launch(
        &m.stream(),
        &m.k.post_norm,
        Grid::new((rows as u32, 1, 1), norm_block(m.spec.hidden_size)),
    )
}
