//! Device activations of one engine call, allocated once for the largest call seen (grown, never
//! shrunk: CUDA graphs address them), plus the device copy of the call's inputs.

use super::device::{DevBuf, Gpu};
use super::kernels::DECODE_CHUNK;
use crate::Result;
use crate::plan::ModelPlan;
use crate::precision::Precision;
use crate::spec::ModelSpec;

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
    /// Device-side greedy selection: per sequence an `argmax_key` (u64: logit bits, inverted index).
    pub best: DevBuf,
    /// The host's sampling draws of a step, `[max_batch] f64` (device sampling).
    pub draws: DevBuf,
    /// Split-completion counters of the decode attention, `[max_batch, heads] u32` (kept at zero
    /// between launches by the kernel).
    pub counters: DevBuf,
}

/// Number of decode-attention splits for a cache of `max_seq` positions.
pub fn decode_splits(max_seq: usize) -> usize {
    max_seq.div_ceil(DECODE_CHUNK)
}

/// Columns of the first MLP projection (`[gate | up]` or `fc`).
pub fn up_cols(spec: &ModelSpec) -> usize {
    let plan = ModelPlan::new(spec);
    plan.layers
        .iter()
        .map(|l| l.up.out_features())
        .max()
        .unwrap_or(0)
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
        let (heads, hd) = (spec.num_heads, spec.head_dim);
        // Row counts and max_batch come from the user: sizes are checked (`Gpu::zeros_of`).
        let z = |dims: &[usize], what: &str| gpu.zeros_of(dims, what);
        Ok(Scratch {
            rows,
            x: z(&[rows, h, 4], "residual stream")?,
            normed: z(&[rows, h, e], "normed activations")?,
            qkv: z(&[rows, qd + 2 * kvd, 4], "qkv activations")?,
            q: z(&[rows, qd, 4], "rotated queries")?,
            new_k: z(&[rows, kvd, e], "new keys")?,
            new_v: z(&[rows, kvd, e], "new values")?,
            attn: z(&[rows, qd, e], "attention output")?,
            delta: z(&[rows, h, 4], "projection output")?,
            up: z(&[rows, up_cols(spec), 4], "mlp activations")?,
            mid: z(&[rows, spec.intermediate_size, e], "mlp activations")?,
            logits: z(&[rows, spec.vocab_size, 4], "logits")?,
            part_o: z(&[max_batch, heads, splits, hd, 4], "attention splits")?,
            part_ml: z(&[max_batch, heads, splits, 2, 4], "attention splits")?,
            // ids and positions (4 bytes each per row), then start_idx and end_idx.
            inputs: z(&[rows.saturating_add(1), 8], "step inputs")?,
            best: z(&[max_batch, 8], "next token ids")?,
            draws: z(&[max_batch, 8], "sampling draws")?,
            counters: z(&[max_batch, heads, 4], "attention split counters")?,
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

/// The token id encoded in an `argmax_key` (runtime/templates/kernels/common.cuh).
pub fn argmax_id(key: u64) -> u32 {
    0xffff_ffff - (key & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_id_reads_the_index_from_the_low_word_alone() {
        // common.cuh's layout: the low word is 0xffffffff - index (so that on equal high words the
        // lowest index has the largest key); the high word, the logit's order-preserving image, is
        // ignored. The keys are written out from that layout; the device function that makes them is
        // checked on a GPU (tests/cuda_sampling.rs: its choices against the argmax's definition on
        // crafted logits).
        let cases = [
            (0x0000_0000_ffff_ffff_u64, 0),
            (0xffff_ffff_ffff_ffff, 0),
            (0x8000_0000_ffff_fffe, 1),
            (0x3f80_0000_ffff_3fff, 49_152),
            (0xc000_0000_ffff_3ffe, 49_153),
            (0x7f7f_ffff_8000_0000, 0x7fff_ffff),
            (0x0123_4567_0000_0000, u32::MAX),
        ];
        for (key, id) in cases {
            assert_eq!(argmax_id(key), id, "key {key:#018x}");
        }
    }

    #[test]
    fn decode_splits_cover_the_cache() {
        assert_eq!(decode_splits(1), 1);
        assert_eq!(decode_splits(DECODE_CHUNK), 1);
        assert_eq!(decode_splits(DECODE_CHUNK + 1), 2);
    }
}
