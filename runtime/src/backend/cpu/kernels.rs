//! Row-wise CPU kernels (norms, rotary, activations) with a slow obvious reference for each.
//! The fast versions work in place on row-major `[rows, cols]` f32 buffers, rows in parallel.

use crate::spec::NormKind;
use rayon::prelude::*;

/// Rows per parallel task for cheap row-wise kernels.
const ROW_TASK: usize = 8;

/// RMSNorm (`x * rsqrt(mean(x²) + eps) * w`) or LayerNorm (`(x - mean) * rsqrt(var + eps) * w + b`).
pub fn norm(
    kind: NormKind,
    eps: f32,
    x: &[f32],
    cols: usize,
    w: &[f32],
    b: Option<&[f32]>,
    out: &mut [f32],
) {
    out.par_chunks_mut(cols * ROW_TASK)
        .zip(x.par_chunks(cols * ROW_TASK))
        .for_each(|(o, xs)| {
            for (orow, xrow) in o.chunks_mut(cols).zip(xs.chunks(cols)) {
                norm_row(kind, eps, xrow, w, b, orow);
            }
        });
}

fn norm_row(kind: NormKind, eps: f32, x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    let n = x.len() as f32;
    match kind {
        NormKind::RmsNorm => {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / n;
            let r = 1.0 / (ms + eps).sqrt();
            for ((o, v), wv) in out.iter_mut().zip(x).zip(w) {
                *o = wv * (v * r);
            }
        }
        NormKind::LayerNorm => {
            let mean = x.iter().sum::<f32>() / n;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let r = 1.0 / (var + eps).sqrt();
            for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
                *o = (v - mean) * r * w[i] + b.map_or(0.0, |b| b[i]);
            }
        }
    }
}

/// The norm of each of `heads` heads of `head_dim` starting at column `col` of each row, in place,
/// every head with the same `head_dim` weights (`w`, `b`).
#[allow(clippy::too_many_arguments)]
pub fn head_norm(
    kind: NormKind,
    eps: f32,
    x: &mut [f32],
    cols: usize,
    col: usize,
    heads: usize,
    head_dim: usize,
    w: &[f32],
    b: Option<&[f32]>,
) {
    x.par_chunks_mut(cols * ROW_TASK).for_each(|rows| {
        let mut normed = vec![0.0f32; head_dim];
        for row in rows.chunks_mut(cols) {
            for head in row[col..col + heads * head_dim].chunks_mut(head_dim) {
                norm_row(kind, eps, head, w, b, &mut normed);
                head.copy_from_slice(&normed);
            }
        }
    });
}

/// Rotate `heads` heads of `head_dim` starting at column `col` of each row (HF `rotate_half`):
/// `x1' = x1·cos − x2·sin`, `x2' = x2·cos + x1·sin` over the two halves of each head.
/// `cos`/`sin` are `[positions, head_dim/2]`; `positions[r]` is row r's position (checked by the caller).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &mut [f32],
    cols: usize,
    col: usize,
    heads: usize,
    head_dim: usize,
    positions: &[u32],
    cos: &[f32],
    sin: &[f32],
) {
    let half = head_dim / 2;
    x.par_chunks_mut(cols)
        .zip(positions.par_iter())
        .for_each(|(row, &p)| {
            let c = &cos[p as usize * half..(p as usize + 1) * half];
            let s = &sin[p as usize * half..(p as usize + 1) * half];
            for h in 0..heads {
                let base = col + h * head_dim;
                let (x1, x2) = row[base..base + head_dim].split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (x1[i], x2[i]);
                    x1[i] = a * c[i] - b * s[i];
                    x2[i] = b * c[i] + a * s[i];
                }
            }
        });
}

/// `out[r] = silu(gate[r]) * up[r]` for `gate_up` rows `[gate | up]` of width `2 * inter`.
pub fn swiglu(gate_up: &[f32], inter: usize, out: &mut [f32]) {
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((ov, gv), uv) in o.iter_mut().zip(g).zip(u) {
                *ov = gv / (1.0 + (-gv).exp()) * uv;
            }
        });
}

/// `out[r] = gelu_tanh(gate[r]) * up[r]` over `[gate | up]` rows of `2 * inter`.
pub fn geglu(gate_up: &[f32], inter: usize, out: &mut [f32]) {
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((ov, gv), uv) in o.iter_mut().zip(g).zip(u) {
                *ov = gelu_new_scalar(*gv) * uv;
            }
        });
}

/// In place `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_new(x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|c| {
        for v in c {
            *v = gelu_new_scalar(*v);
        }
    });
}

#[inline]
fn gelu_new_scalar(x: f32) -> f32 {
    let k = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// Slow obvious references (f64 where it matters), used by the tests.
pub mod reference {
    use crate::spec::NormKind;

    pub fn norm(kind: NormKind, eps: f64, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let n = x.len() as f64;
        let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        match kind {
            NormKind::RmsNorm => {
                let ms = xs.iter().map(|v| v * v).sum::<f64>() / n;
                xs.iter()
                    .zip(w)
                    .map(|(v, &wv)| (v / (ms + eps).sqrt() * wv as f64) as f32)
                    .collect()
            }
            NormKind::LayerNorm => {
                let mean = xs.iter().sum::<f64>() / n;
                let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                (0..xs.len())
                    .map(|i| {
                        let bias = b.map_or(0.0, |b| b[i] as f64);
                        ((xs[i] - mean) / (var + eps).sqrt() * w[i] as f64 + bias) as f32
                    })
                    .collect()
            }
        }
    }

    /// Rotary of one head by building `rotate_half(x)` explicitly: `x·cos + rotate_half(x)·sin`.
    pub fn rope_head(x: &[f32], inv_freq: &[f32], pos: u32) -> Vec<f32> {
        let half = x.len() / 2;
        let rotated: Vec<f32> = (0..x.len())
            .map(|i| if i < half { -x[i + half] } else { x[i - half] })
            .collect();
        (0..x.len())
            .map(|i| {
                let angle = (pos as f32 * inv_freq[i % half]) as f64;
                (x[i] as f64 * angle.cos() + rotated[i] as f64 * angle.sin()) as f32
            })
            .collect()
    }

    pub fn silu_mul(g: f32, u: f32) -> f32 {
        let g = g as f64;
        (g / (1.0 + (-g).exp()) * u as f64) as f32
    }

    pub fn gelu_new(x: f32) -> f32 {
        let x = x as f64;
        (0.5 * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()))
            as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-2, 2).
    fn data(n: usize, seed: u64) -> Vec<f32> {
        crate::backend::cpu::test_data::data(n, seed)
            .into_iter()
            .map(|v| v * 2.0)
            .collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn norms_match_reference() {
        let (rows, cols) = (11, 96);
        let x = data(rows * cols, 1);
        let w = data(cols, 2);
        let b = data(cols, 3);
        for (kind, bias) in [
            (NormKind::RmsNorm, None),
            (NormKind::LayerNorm, Some(&b[..])),
        ] {
            let mut out = vec![0.0; rows * cols];
            norm(kind, 1e-5, &x, cols, &w, bias, &mut out);
            for r in 0..rows {
                let want = reference::norm(kind, 1e-5, &x[r * cols..(r + 1) * cols], &w, bias);
                close(&out[r * cols..(r + 1) * cols], &want, 1e-5);
            }
        }
    }

    #[test]
    fn rope_matches_rotate_half_reference() {
        let (heads, hd, rows) = (3, 16, 5);
        let cols = 10 + heads * hd;
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32))
            .collect();
        let (cos, sin) = crate::rope::tables(&inv, 64);
        let positions = [0u32, 1, 7, 30, 63];
        let x = data(rows * cols, 4);
        let mut y = x.clone();
        rope(&mut y, cols, 10, heads, hd, &positions, &cos, &sin);
        for r in 0..rows {
            assert_eq!(&y[r * cols..r * cols + 10], &x[r * cols..r * cols + 10]);
            for h in 0..heads {
                let s = r * cols + 10 + h * hd;
                let want = reference::rope_head(&x[s..s + hd], &inv, positions[r]);
                close(&y[s..s + hd], &want, 1e-6);
            }
        }
    }

    #[test]
    fn activations_match_reference() {
        let inter = 40;
        let gu = data(3 * 2 * inter, 5);
        let mut out = vec![0.0; 3 * inter];
        swiglu(&gu, inter, &mut out);
        for r in 0..3 {
            for i in 0..inter {
                let want =
                    reference::silu_mul(gu[r * 2 * inter + i], gu[r * 2 * inter + inter + i]);
                close(&[out[r * inter + i]], &[want], 1e-6);
            }
        }
        let x = data(5000, 6);
        let mut y = x.clone();
        gelu_new(&mut y);
        let want: Vec<f32> = x.iter().map(|&v| reference::gelu_new(v)).collect();
        close(&y, &want, 1e-6);
    }
}
