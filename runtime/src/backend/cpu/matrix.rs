//! Packed weight matrices and the matvec/matmul that dominates decode time.
//!
//! A matrix is `[rows = out_features, cols = in_features]`, row-major, stored in the engine precision.
//! Decode is memory-bound: each output element is the dot product of one contiguous weight row with
//! the input, output rows are split in chunks over the rayon pool, and each dot product keeps 16
//! independent lane accumulators (`simd.rs`: SIMD intrinsics on x86-64, portable loops elsewhere).
//!
//! A matrix kept as GGUF blocks (`WeightFormat::Blocks`) streams its packed rows: decode dots each row
//! with the input in `block_dot.rs` (dequantised in registers, four rows at a time; without AVX2 into
//! a per-thread f32 row buffer, exactly as the GGUF loader dequantises), prefill dequantises whole rows
//! for the GEMM, and both agree bit for bit with the dense f32 engine on the dequantised weights.
//! A matrix quantized at build (`WeightFormat::Quantized`) does the same through `quant_dot.rs`.

use crate::format::{BlockType, WeightFormat, WeightQuant};
use crate::precision::Precision;
use crate::weights::quantize::Quantized;
use half::{bf16, f16};
use rayon::prelude::*;

/// Element storage of a packed matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    /// GGML blocks, each row `cols / block_elems` of them.
    Blocks(BlockType, Vec<u8>),
    /// Codes and scales of a quantization made at build (`crate::format`'s layout, the two parts
    /// held apart).
    Quantized(WeightQuant, Quantized),
    /// Matrices of the same width stacked along rows, each stored its own way (a fused linear whose
    /// parts a GGUF file holds in different block types).
    Stack(Vec<Matrix>),
    /// The rows in place in a mapped engine file (a loaded engine).
    Mapped(super::mapped::Mapped),
}

/// The element type of a packed matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    /// Bytes per element.
    pub fn width(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// The elements of some whole rows of a matrix, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Elems<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
    /// Whole rows of GGML blocks.
    Blocks(BlockType, &'a [u8]),
    /// Whole rows of a quantized matrix: their codes and their scales.
    Quantized(WeightQuant, &'a [u8], &'a [f32]),
}

impl Elems<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elems::F32(v) => v.len(),
            Elems::F16(v) => v.len(),
            Elems::Bf16(v) => v.len(),
            Elems::Blocks(t, v) => v.len() / t.block_bytes() * t.block_elems(),
            Elems::Quantized(WeightQuant::Int4, c, _) => 2 * c.len(),
            Elems::Quantized(_, c, _) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store {
    /// The element type of a dense store; `None` for blocks.
    pub fn dtype(&self) -> Option<Dtype> {
        match self {
            Store::F32(_) => Some(Dtype::F32),
            Store::F16(_) => Some(Dtype::F16),
            Store::Bf16(_) => Some(Dtype::Bf16),
            Store::Blocks(..) | Store::Quantized(..) | Store::Stack(_) => None,
            Store::Mapped(m) => Some(m.dtype()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub store: Store,
}

/// Rows of a matrix as runs of rows contiguous in memory (see [`Matrix::runs`]).
pub struct Runs<'a> {
    m: &'a Matrix,
    r: usize,
    end: usize,
}

impl<'a> Iterator for Runs<'a> {
    /// How many rows, and their elements.
    type Item = (usize, Elems<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.r >= self.end {
            return None;
        }
        let (r, end, c) = (self.r, self.end, self.m.cols);
        let run = match &self.m.store {
            Store::F32(v) => (end - r, Elems::F32(&v[r * c..end * c])),
            Store::F16(v) => (end - r, Elems::F16(&v[r * c..end * c])),
            Store::Bf16(v) => (end - r, Elems::Bf16(&v[r * c..end * c])),
            Store::Blocks(t, v) => {
                let rb = t.row_bytes(c).unwrap_or(0);
                (end - r, Elems::Blocks(*t, &v[r * rb..end * rb]))
            }
            Store::Quantized(q, m) => {
                let cb = q.code_bytes(c).unwrap_or(0);
                let sr = q.scales(c).unwrap_or(0);
                let (codes, scales) = (&m.codes[r * cb..end * cb], &m.scales[r * sr..end * sr]);
                (end - r, Elems::Quantized(*q, codes, scales))
            }
            Store::Stack(parts) => {
                // The part holding row `r`, and the run of it up to `end` or its last row.
                let mut first = 0;
                let mut run = (end - r, Elems::F32(&[]));
                for p in parts {
                    if r < first + p.rows {
                        let to = end.min(first + p.rows) - first;
                        if let Some(found) = p.runs(r - first, to).next() {
                            run = found;
                        }
                        break;
                    }
                    first += p.rows;
                }
                run
            }
            Store::Mapped(m) => m.run(r, end),
        };
        self.r += run.0;
        Some(run)
    }
}

impl Matrix {
    /// How the matrix is stored (`crate::format`): dense in its element type, or its blocks (a stack:
    /// its first part's format; [`Matrix::bytes`] sums the parts).
    pub fn format(&self) -> WeightFormat {
        match (&self.store, self.store.dtype()) {
            (Store::Blocks(t, _), _) => WeightFormat::Blocks(*t),
            (Store::Quantized(q, _), _) => WeightFormat::Quantized(*q),
            (Store::Stack(parts), _) if !parts.is_empty() => parts[0].format(),
            (_, Some(Dtype::F16)) => WeightFormat::Dense(Precision::Fp16),
            (_, Some(Dtype::Bf16)) => WeightFormat::Dense(Precision::Bf16),
            (_, _) => WeightFormat::Dense(Precision::Fp32),
        }
    }

    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::Stack(parts) => parts.iter().map(Matrix::bytes).sum(),
            _ => self.format().matrix_bytes(self.rows, self.cols),
        }
    }

    /// Rows `r0..r1` (`r1 <= rows`), in order, as runs of rows contiguous in memory: one run, unless
    /// the matrix is mapped and the rows cross from one of its canonical tensors into the next.
    pub fn runs(&self, r0: usize, r1: usize) -> Runs<'_> {
        Runs {
            m: self,
            r: r0,
            end: r1,
        }
    }

    /// Row `r` (`r < rows`).
    fn row(&self, r: usize) -> Elems<'_> {
        // A range of one row is always one run.
        match self.runs(r, r + 1).next() {
            Some((_, e)) => e,
            None => Elems::F32(&[]),
        }
    }

    /// Row `r` as f32 into `out` (`out.len() == cols`).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        match self.row(r) {
            Elems::F32(v) => out.copy_from_slice(v),
            Elems::F16(v) => f16_to_f32(v, out),
            Elems::Bf16(v) => bf16_to_f32(v, out),
            Elems::Blocks(t, v) => blocks_to_f32(t, v, out),
            Elems::Quantized(q, c, s) => super::quant_dot::dequantize(q, self.cols, c, s, out),
        }
    }

    /// `dot(row r, x)` with `x.len() == cols`.
    #[inline]
    pub fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        match self.row(r) {
            Elems::F32(v) => dot(v, x),
            Elems::F16(v) => super::simd::dot_f16(v, x),
            Elems::Bf16(v) => super::simd::dot_bf16(v, x),
            Elems::Blocks(t, v) => {
                BLOCK_ROW.with_borrow_mut(|buf| super::block_dot::row_dot(t, v, x, buf))
            }
            Elems::Quantized(q, c, s) => {
                let mut out = [0.0];
                BLOCK_ROW.with_borrow_mut(|buf| {
                    super::quant_dot::rows_dot(q, self.cols, c, s, x, &mut out, buf)
                });
                out[0]
            }
        }
    }

    /// Rows `r0..r1` as f32: borrowed where they are stored as one run of f32, else converted (or
    /// gathered from the runs of a mapped matrix) into `buf`.
    pub fn rows_f32<'a>(&'a self, r0: usize, r1: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let mut runs = self.runs(r0, r1);
        if let Some((rows, Elems::F32(v))) = runs.next()
            && rows == r1 - r0
        {
            return v;
        }
        buf.resize((r1 - r0) * self.cols, 0.0);
        let mut at = 0;
        for (_, e) in self.runs(r0, r1) {
            let dst = &mut buf[at..at + e.len()];
            match e {
                Elems::F32(v) => dst.copy_from_slice(v),
                Elems::F16(v) => f16_to_f32(v, dst),
                Elems::Bf16(v) => bf16_to_f32(v, dst),
                Elems::Blocks(t, v) => blocks_to_f32(t, v, dst),
                Elems::Quantized(q, c, s) => super::quant_dot::dequantize(q, self.cols, c, s, dst),
            }
            at += e.len();
        }
        buf
    }
}

/// `out[j] = dot(row j, x)` for the `cols`-long rows of `e`, one per element of `out`. f32 rows go
/// four at a time, each bit-identical to [`Matrix::row_dot`] of that row but streamed together
/// (see `simd::dot4`).
fn dot_rows(e: Elems<'_>, cols: usize, x: &[f32], out: &mut [f32]) {
    let row = |j: usize| j * cols..(j + 1) * cols;
    match e {
        Elems::F32(v) => {
            let quads = out.len() / 4;
            for (q, oq) in out[..4 * quads].chunks_exact_mut(4).enumerate() {
                let r = 4 * q;
                oq.copy_from_slice(&super::simd::dot4([0, 1, 2, 3].map(|k| &v[row(r + k)]), x));
            }
            for (j, o) in out.iter_mut().enumerate().skip(4 * quads) {
                *o = dot(&v[row(j)], x);
            }
        }
        Elems::F16(v) => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = super::simd::dot_f16(&v[row(j)], x);
            }
        }
        Elems::Bf16(v) => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = super::simd::dot_bf16(&v[row(j)], x);
            }
        }
        Elems::Blocks(t, v) => {
            BLOCK_ROW.with_borrow_mut(|buf| super::block_dot::rows_dot(t, v, x, out, buf));
        }
        Elems::Quantized(q, c, s) => {
            BLOCK_ROW.with_borrow_mut(|buf| super::quant_dot::rows_dot(q, cols, c, s, x, out, buf));
        }
    }
}

thread_local! {
    /// One dequantised row of a block or quantized matrix, per thread.
    static BLOCK_ROW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whole rows of blocks to f32: the GGUF loader's values, into `dst` (`block_dot::dequantize`).
pub(super) fn blocks_to_f32(t: BlockType, src: &[u8], dst: &mut [f32]) {
    super::block_dot::dequantize(t, src, dst);
}

/// f16 rows to f32 (exact; F16C where the CPU has it).
pub(super) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    super::simd::widen_f16(src, dst);
}

/// bf16 rows to f32 (exact: the 16 bits are the top half of the f32).
pub(super) fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = super::simd::Weight::widen(*s);
    }
}

pub use super::simd::dot;

/// Output rows per parallel task: enough tasks to balance the pool, few enough to amortise the
/// fork-join, and never fewer than 16 rows.
fn chunk_rows(rows: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads().max(1);
    rows.div_ceil(tasks).max(16)
}

/// `out[n, rows] = x[n, cols] · mᵀ (+ bias)`. `x.len() == n * cols`, `out.len() == n * rows`.
/// `_tmp` is not used: the GEMM writes its results into `out` directly (callers may pass an empty
/// vector).
pub fn matmul(
    m: &Matrix,
    x: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    _tmp: &mut Vec<f32>,
) {
    let chunk = chunk_rows(m.rows);
    if n == 1 {
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            let r0 = c * chunk;
            let mut done = 0;
            for (rows, e) in m.runs(r0, r0 + o.len()) {
                dot_rows(e, m.cols, x, &mut o[done..done + rows]);
                done += rows;
            }
        });
    } else {
        // Every prefill value is bit-identical to the decode matvec of the same row (tested below).
        super::gemm::gemm(m, x, n, out);
    }
    if let Some(b) = bias {
        out.par_chunks_mut(m.rows).for_each(|o| {
            for (v, bv) in o.iter_mut().zip(b) {
                *v += bv;
            }
        });
    }
}

/// The slow obvious reference: convert every element, multiply-accumulate in f64.
pub fn matmul_reference(m: &Matrix, x: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut row = vec![0.0f32; m.cols];
    let mut out = vec![0.0f32; n * m.rows];
    for j in 0..m.rows {
        m.row_into(j, &mut row);
        for i in 0..n {
            let mut s = 0.0f64;
            for k in 0..m.cols {
                s += row[k] as f64 * x[i * m.cols + k] as f64;
            }
            out[i * m.rows + j] = (s + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::test_data::lcg;

    fn case(rows: usize, cols: usize, n: usize, store: fn(Vec<f32>) -> Store) {
        let mut s = 7u64;
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut s)).collect();
        let b: Vec<f32> = (0..rows).map(|_| lcg(&mut s)).collect();
        let m = Matrix {
            rows,
            cols,
            store: store(w),
        };
        let want = matmul_reference(&m, &x, n, Some(&b));
        let mut got = vec![0.0; n * rows];
        matmul(&m, &x, n, Some(&b), &mut got, &mut Vec::new());
        // Prefill (n > 1) and decode (n == 1) compute every value identically.
        for i in 0..n {
            let mut one = vec![0.0; rows];
            matmul(
                &m,
                &x[i * cols..(i + 1) * cols],
                1,
                Some(&b),
                &mut one,
                &mut Vec::new(),
            );
            let same = one
                .iter()
                .zip(&got[i * rows..(i + 1) * rows])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "input {i} of {n}: batched result differs from the single-input one"
            );
        }
        for (g, w) in got.iter().zip(&want) {
            // f32 accumulation of `cols` products of magnitude ≤ 1 against an f64 reference.
            assert!((g - w).abs() <= 1e-5 * cols as f32, "{g} vs {w}");
        }
    }

    #[test]
    fn matmul_matches_reference_all_storages_and_shapes() {
        let f32s: fn(Vec<f32>) -> Store = Store::F32;
        let f16s: fn(Vec<f32>) -> Store =
            |v| Store::F16(v.into_iter().map(f16::from_f32).collect());
        let bf16s: fn(Vec<f32>) -> Store =
            |v| Store::Bf16(v.into_iter().map(bf16::from_f32).collect());
        for store in [f32s, f16s, bf16s] {
            for (rows, cols, n) in [
                (1, 1, 1),
                (37, 300, 1),
                (64, 64, 3),
                (130, 517, 5),
                (67, 100, 9),
                (256, 16, 1),
            ] {
                case(rows, cols, n, store);
            }
        }
    }

    #[test]
    fn bf16_conversion_is_exact() {
        let v = [1.5f32, -0.0078125, 3.0e38, -2.5];
        let b: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
        let mut out = [0.0f32; 4];
        bf16_to_f32(&b, &mut out);
        for (o, x) in out.iter().zip(&b) {
            assert_eq!(*o, x.to_f32());
        }
    }
}
