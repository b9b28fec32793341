//! Device activations of one engine call, allocated once for the largest call seen (grown, never
//! shrunk: CUDA graphs address them), plus the device copy of the call's inputs.

use super::device::{DevBuf, Gpu};
use super::kernels::DECODE_CHUNK;
use crate::Result;
use crate::precision::Precision;
use crate::spec::{Mlp, ModelSpec};

/// Device activations for up to `rows` token rows (grown on demand, never shrunk).
pub struct Scratch {
    pub rows: usize,
    pub x: DevBuf,
    pub normed: DevBuf,
    pub qkv: DevBuf,
    pub q: DevBuf,
    pub new_k: DevBuf,
    pub new_v: DevBuf,
    pub attn: DevBuf,
    pub delta: DevBuf,
    pub up: DevBuf,
    pub mid: DevBuf,
    pub logits: DevBuf,
    pub part_o: DevBuf,
    pub part_ml: DevBuf,
    /// `ids [rows] u32 | positions [rows] u32 | start_idx, end_idx i32`.
    pub inputs: DevBuf,
    /// Device-side argmax result, `[max_batch] u32`.
    pub next_ids: DevBuf,
}

/// Number of decode-attention splits for a cache of `max_seq` positions.
pub fn decode_splits(max_seq: usize) -> usize {
    max_seq.div_ceil(DECODE_CHUNK)
}

/// Columns of the first MLP projection (`[gate | up]` or `fc`).
pub fn up_cols(spec: &ModelSpec) -> usize {
    match spec.mlp {
        Mlp::SwiGlu => 2 * spec.intermediate_size,
        Mlp::GeluNew => spec.intermediate_size,
    }
}

impl Scratch {
    pub fn new(
        gpu: &Gpu,
        spec: &ModelSpec,
        precision: Precision,
        rows: usize,
        max_batch: usize,
        max_seq: usize,
    ) -> Result<Scratch> {
        let e = precision.bytes_per_element();
        let (h, qd, kvd) = (spec.hidden_size, spec.q_dim(), spec.kv_dim());
        let splits = decode_splits(max_seq);
        let z = |n: usize, what: &str| gpu.zeros(n, what);
        Ok(Scratch {
            rows,
            x: z(rows * h * 4, "residual stream")?,
            normed: z(rows * h * e, "normed activations")?,
            qkv: z(rows * (qd + 2 * kvd) * 4, "qkv activations")?,
            q: z(rows * qd * 4, "rotated queries")?,
            new_k: z(rows * kvd * e, "new keys")?,
            new_v: z(rows * kvd * e, "new values")?,
            attn: z(rows * qd * e, "attention output")?,
            delta: z(rows * h * 4, "projection output")?,
            up: z(rows * up_cols(spec) * 4, "mlp activations")?,
            mid: z(rows * spec.intermediate_size * e, "mlp activations")?,
            logits: z(rows * spec.vocab_size * 4, "logits")?,
            part_o: z(
                max_batch * spec.num_heads * splits * spec.head_dim * 4,
                "attention splits",
            )?,
            part_ml: z(
                max_batch * spec.num_heads * splits * 2 * 4,
                "attention splits",
            )?,
            inputs: z(rows * 8 + 8, "step inputs")?,
            next_ids: z(max_batch * 4, "next token ids")?,
        })
    }

    pub fn pos_off(&self) -> usize {
        self.rows * 4
    }
    pub fn step_off(&self) -> usize {
        self.rows * 8
    }

    /// The bytes of `inputs` for one call.
    pub fn input_bytes(&self, ids: &[u32], pos: &[u32], start: usize, end: usize) -> Vec<u8> {
        let mut b = vec![0u8; self.rows * 8 + 8];
        b[..ids.len() * 4].copy_from_slice(bytemuck::cast_slice(ids));
        let p = self.pos_off();
        b[p..p + pos.len() * 4].copy_from_slice(bytemuck::cast_slice(pos));
        let s = self.step_off();
        b[s..s + 4].copy_from_slice(&(start as i32).to_le_bytes());
        b[s + 4..s + 8].copy_from_slice(&(end as i32).to_le_bytes());
        b
    }
}
