//! Device activations of one engine call, allocated once for the largest call seen (grown, never
//! shrunk: CUDA graphs address them), plus the device copy of the call's inputs.

use super::device::Gpu;
use super::kernels::DECODE_CHUNK;
use super::memory::{ArgmaxKey, DevBuf, DevSlice, Stored};
use crate::Result;
use crate::plan::ModelPlan;
use crate::precision::Precision;
use crate::spec::ModelSpec;

/// Device activations for up to `rows` token rows (grown on demand, never shrunk).
pub struct Scratch {
    pub rows: usize,
    /// The residual stream.
    pub x: DevBuf<f32>,
    pub normed: DevBuf<Stored>,
    pub qkv: DevBuf<f32>,
    pub q: DevBuf<f32>,
    pub new_k: DevBuf<Stored>,
    pub new_v: DevBuf<Stored>,
    pub attn: DevBuf<Stored>,
    pub delta: DevBuf<f32>,
    pub up: DevBuf<f32>,
    pub mid: DevBuf<Stored>,
    pub logits: DevBuf<f32>,
    pub part_o: DevBuf<f32>,
    pub part_ml: DevBuf<f32>,
    /// `ids [rows] | positions [rows] | start_idx, end_idx` (the last two read as i32): one copy
    /// per call.
    pub inputs: DevBuf<u32>,
    /// Device-side greedy selection: per sequence an argmax key.
    pub best: DevBuf<ArgmaxKey>,
    /// The host's sampling draws of a step, `[max_batch]` (device sampling).
    pub draws: DevBuf<f64>,
    /// Split-completion counters of the decode attention, `[max_batch, heads]` (kept at zero
    /// between launches by the kernel).
    pub counters: DevBuf<u32>,
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
        let (h, qd, kvd) = (spec.hidden_size, spec.q_dim(), spec.kv_dim());
        let splits = decode_splits(max_seq);
        let (heads, hd) = (spec.num_heads, spec.head_dim);
        // Row counts and max_batch come from the user: sizes are checked (`Gpu::zeros`).
        let st = |dims: &[usize], what: &str| gpu.zeros_stored(precision, dims, what);
        Ok(Scratch {
            rows,
            x: gpu.zeros(&[rows, h], "residual stream")?,
            normed: st(&[rows, h], "normed activations")?,
            qkv: gpu.zeros(&[rows, qd + 2 * kvd], "qkv activations")?,
            q: gpu.zeros(&[rows, qd], "rotated queries")?,
            new_k: st(&[rows, kvd], "new keys")?,
            new_v: st(&[rows, kvd], "new values")?,
            attn: st(&[rows, qd], "attention output")?,
            delta: gpu.zeros(&[rows, h], "projection output")?,
            up: gpu.zeros(&[rows, up_cols(spec)], "mlp activations")?,
            mid: st(&[rows, spec.intermediate_size], "mlp activations")?,
            logits: gpu.zeros(&[rows, spec.vocab_size], "logits")?,
            part_o: gpu.zeros(&[max_batch, heads, splits, hd], "attention splits")?,
            part_ml: gpu.zeros(&[max_batch, heads, splits, 2], "attention splits")?,
            // ids and positions (one word each per row), then start_idx and end_idx.
            inputs: gpu.zeros(&[rows.saturating_add(1), 2], "step inputs")?,
            best: gpu.zeros(&[max_batch], "next token ids")?,
            draws: gpu.zeros(&[max_batch], "sampling draws")?,
            counters: gpu.zeros(&[max_batch, heads], "attention split counters")?,
        })
    }

    /// The token ids of the call's rows.
    pub fn ids(&self) -> DevSlice<'_, u32> {
        self.inputs.slice(0, self.rows)
    }

    /// The positions of the call's rows.
    pub fn positions(&self) -> DevSlice<'_, u32> {
        self.inputs.slice(self.rows, self.rows)
    }

    /// `start_idx, end_idx`.
    pub fn step(&self) -> DevSlice<'_, i32> {
        self.inputs.slice(2 * self.rows, 2).cast()
    }

    /// The words of `inputs` for one call.
    pub fn input_words(&self, ids: &[u32], pos: &[u32], start: usize, end: usize) -> Vec<u32> {
        let mut w = vec![0u32; 2 * self.rows + 2];
        w[..ids.len()].copy_from_slice(ids);
        w[self.rows..self.rows + pos.len()].copy_from_slice(pos);
        w[2 * self.rows] = start as i32 as u32;
        w[2 * self.rows + 1] = end as i32 as u32;
        w
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
