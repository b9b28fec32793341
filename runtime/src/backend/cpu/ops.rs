//! `Ops` for the CPU: f32 activations in host vectors, weights packed as [`Matrix`] in the engine's
//! storage precision, rotary tables precomputed for positions `0..max_seq_len`.

use super::attention::{self, KvView, Step};
use super::kernels;
use super::matrix::{self, Dtype, Elems, Matrix, Store};
use crate::backend::ops::{AttnGeometry, Norm, Ops};
use crate::backend_error::BackendError;
use crate::cache::{KvStorage, LayerKvMut};
use crate::format::{QuantFormat, WeightFormat};
use crate::plan::Rotary;
use crate::precision::Precision;
use crate::spec::NormKind;
use crate::step::{CacheMode, StepInputs};
use crate::weights::quantize::{self, Quantized};
use crate::weights::{HostTensor, TensorData};
use crate::{Error, Result};
use half::{bf16, f16};

/// A `[rows, cols]` f32 activation.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuAct {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

pub struct CpuOps {
    pub precision: Precision,
    /// `--quant_format`: the layers' linears are quantized at build when it makes a quantization.
    pub quant: QuantFormat,
    /// Per rotary embedding of the model: `(rotary, cos, sin)`, each table `[positions, head_dim /
    /// 2]`.
    rope: Vec<(Rotary, Vec<f32>, Vec<f32>)>,
    /// Positions the rotary tables cover.
    rope_positions: usize,
    /// Reused transposition buffer of the prefill matmul.
    tmp: Vec<f32>,
}

fn internal(msg: String) -> Error {
    Error::Backend(BackendError::Other(msg))
}

fn shape_check(what: &str, ok: bool, detail: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(internal(format!(
            "cpu {what}: shape mismatch ({})",
            detail()
        )))
    }
}

impl CpuOps {
    /// Ops storing weights at `precision`, with tables for each of `rotaries` (over `head_dim`)
    /// covering positions `0..positions`.
    pub fn new(
        precision: Precision,
        rotaries: &[Rotary],
        head_dim: usize,
        positions: usize,
    ) -> Result<CpuOps> {
        let mut rope = Vec::with_capacity(rotaries.len());
        for r in rotaries {
            let (c, s) =
                crate::rope::rotary_tables(r, head_dim, positions).map_err(Error::invalid)?;
            rope.push((*r, c, s));
        }
        Ok(CpuOps {
            precision,
            quant: QuantFormat::None,
            rope,
            rope_positions: positions,
            tmp: Vec::new(),
        })
    }
}

/// `parts` concatenated in the storage type `T`: copied where a part is already `T` (`same` gives
/// its elements), else converted from f32.
fn pack<T: Copy>(
    parts: &[&HostTensor],
    len: usize,
    same: impl Fn(&TensorData) -> Option<&[T]>,
    from_f32: impl Fn(f32) -> T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    for t in parts {
        match same(&t.data) {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(t.to_f32().into_iter().map(&from_f32)),
        }
    }
    out
}

fn kv_slice<'a>(t: &'a mut crate::cache::KvTensor, what: &str) -> Result<&'a mut [f32]> {
    let n: usize = t.shape.iter().product();
    let shape = t.shape;
    match &mut t.storage {
        KvStorage::Host(v) => {
            if v.len() != n {
                return Err(Error::invalid(format!(
                    "{what} cache holds {} values, its shape {shape:?} needs {n}",
                    v.len()
                )));
            }
            Ok(v.as_mut_slice())
        }
        KvStorage::Device(_) => Err(Error::invalid(format!(
            "{what} cache lives on a GPU; the CPU engine needs a host cache (Engine::new_cache)"
        ))),
    }
}

impl Ops for CpuOps {
    type Act = CpuAct;
    type Weight = Matrix;
    type Vector = Vec<f32>;

    fn precision(&self) -> Precision {
        self.precision
    }

    fn quant(&self) -> QuantFormat {
        self.quant
    }

    fn weight(
        &mut self,
        parts: &[&HostTensor],
        cols: usize,
        format: WeightFormat,
    ) -> Result<Matrix> {
        let rows: usize = parts
            .iter()
            .map(|t| t.shape.first().copied().unwrap_or(0))
            .sum();
        for t in parts {
            shape_check("weight", t.shape.len() == 2 && t.shape[1] == cols, || {
                format!("{:?} vs [_, {cols}]", t.shape)
            })?;
        }
        let n = rows * cols;
        let precision = match format {
            WeightFormat::Dense(p) => p,
            WeightFormat::Quantized(q) => {
                let m = quantize::quantize_parts(q, parts, cols)?;
                return Ok(Matrix {
                    rows,
                    cols,
                    store: Store::Quantized(q, m),
                });
            }
            WeightFormat::Blocks(t) => {
                // Kept as the source holds them: every part already blocks of `t`.
                let mut bytes = Vec::with_capacity(format.matrix_bytes(rows, cols));
                for p in parts {
                    match &p.data {
                        TensorData::Blocks { ty, bytes: b } if *ty == t => {
                            bytes.extend_from_slice(b)
                        }
                        _ => {
                            return Err(internal(format!(
                                "a matrix to keep as {format} has a part stored otherwise"
                            )));
                        }
                    }
                }
                if t.row_bytes(cols).map(|r| r * rows) != Some(bytes.len()) {
                    return Err(internal(format!(
                        "{rows}x{cols} as {format}: {} bytes of blocks",
                        bytes.len()
                    )));
                }
                return Ok(Matrix {
                    rows,
                    cols,
                    store: Store::Blocks(t, bytes),
                });
            }
        };
        let store = match precision {
            Precision::Fp32 => Store::F32(pack(
                parts,
                n,
                |d| match d {
                    TensorData::F32(v) => Some(v),
                    _ => None,
                },
                |x| x,
            )),
            Precision::Fp16 => Store::F16(pack(
                parts,
                n,
                |d| match d {
                    TensorData::F16(v) => Some(v),
                    _ => None,
                },
                f16::from_f32,
            )),
            Precision::Bf16 => Store::Bf16(pack(
                parts,
                n,
                |d| match d {
                    TensorData::BF16(v) => Some(v),
                    _ => None,
                },
                bf16::from_f32,
            )),
        };
        Ok(Matrix { rows, cols, store })
    }

    fn vector(&mut self, parts: &[&HostTensor]) -> Result<Vec<f32>> {
        Ok(parts.iter().flat_map(|t| t.to_f32()).collect())
    }

    fn stack(&mut self, parts: Vec<Matrix>) -> Result<Matrix> {
        let cols = parts.first().map_or(0, |m| m.cols);
        shape_check("stack", parts.iter().all(|m| m.cols == cols), || {
            format!(
                "widths {:?}",
                parts.iter().map(|m| m.cols).collect::<Vec<_>>()
            )
        })?;
        Ok(Matrix {
            rows: parts.iter().map(|m| m.rows).sum(),
            cols,
            store: Store::Stack(parts),
        })
    }

    fn weight_rows(&self, w: &Matrix, start: usize, rows: usize) -> Result<HostTensor> {
        shape_check("weight_rows", start + rows <= w.rows, || {
            format!("{start}+{rows} > {}", w.rows)
        })?;
        if let Store::Stack(parts) = &w.store {
            // Rows of one part (the payload asks for each canonical part in turn).
            let mut first = 0;
            for p in parts {
                if start >= first && start + rows <= first + p.rows {
                    return self.weight_rows(p, start - first, rows);
                }
                first += p.rows;
            }
            return Err(internal(format!(
                "weight_rows {start}+{rows} crosses the parts of a stacked matrix"
            )));
        }
        let n = rows * w.cols;
        let mut data = match (&w.store, w.store.dtype()) {
            (Store::Blocks(t, _), _) => TensorData::Blocks {
                ty: *t,
                bytes: Vec::new(),
            },
            (Store::Quantized(q, m), _) => {
                // The rows' codes, then their scales (`crate::format`'s layout of a matrix).
                let (cb, sr) = (
                    q.code_bytes(w.cols).unwrap_or(0),
                    q.scales(w.cols).unwrap_or(0),
                );
                let part = Quantized {
                    codes: m.codes[start * cb..(start + rows) * cb].to_vec(),
                    scales: m.scales[start * sr..(start + rows) * sr].to_vec(),
                };
                return Ok(HostTensor {
                    shape: vec![rows, w.cols],
                    data: TensorData::Quantized {
                        quant: *q,
                        bytes: part.to_bytes(),
                    },
                });
            }
            (_, Some(Dtype::F16)) => TensorData::F16(Vec::with_capacity(n)),
            (_, Some(Dtype::Bf16)) => TensorData::BF16(Vec::with_capacity(n)),
            (_, _) => TensorData::F32(Vec::with_capacity(n)),
        };
        for (_, e) in w.runs(start, start + rows) {
            match (&mut data, e) {
                (TensorData::F32(d), Elems::F32(s)) => d.extend_from_slice(s),
                (TensorData::F16(d), Elems::F16(s)) => d.extend_from_slice(s),
                (TensorData::BF16(d), Elems::Bf16(s)) => d.extend_from_slice(s),
                (TensorData::Blocks { bytes: d, .. }, Elems::Blocks(_, s)) => {
                    d.extend_from_slice(s)
                }
                _ => {
                    return Err(internal(
                        "weight_rows: a matrix of mixed element types".into(),
                    ));
                }
            }
        }
        Ok(HostTensor {
            shape: vec![rows, w.cols],
            data,
        })
    }

    fn vector_range(&self, v: &Vec<f32>, start: usize, len: usize) -> Result<HostTensor> {
        shape_check("vector_range", start + len <= v.len(), || {
            format!("{start}+{len}")
        })?;
        Ok(HostTensor {
            shape: vec![len],
            data: TensorData::F32(v[start..start + len].to_vec()),
        })
    }

    fn act(&mut self, rows: usize, cols: usize) -> Result<CpuAct> {
        Ok(CpuAct {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        })
    }

    fn act_shape(&self, a: &CpuAct) -> (usize, usize) {
        (a.rows, a.cols)
    }

    fn embed(&mut self, table: &Matrix, ids: &[u32], out: &mut CpuAct) -> Result<()> {
        shape_check(
            "embed",
            out.rows == ids.len() && out.cols == table.cols,
            || format!("{} ids into {}x{}", ids.len(), out.rows, out.cols),
        )?;
        for (row, &id) in out.data.chunks_mut(table.cols).zip(ids) {
            if id as usize >= table.rows {
                return Err(Error::invalid(format!(
                    "id {id} outside table of {} rows",
                    table.rows
                )));
            }
            table.row_into(id as usize, row);
        }
        Ok(())
    }

    fn add_embed(&mut self, table: &Matrix, ids: &[u32], x: &mut CpuAct) -> Result<()> {
        shape_check(
            "add_embed",
            x.rows == ids.len() && x.cols == table.cols,
            || format!("{} ids into {}x{}", ids.len(), x.rows, x.cols),
        )?;
        let mut buf = vec![0.0f32; table.cols];
        for (row, &id) in x.data.chunks_mut(table.cols).zip(ids) {
            if id as usize >= table.rows {
                return Err(Error::invalid(format!(
                    "position {id} outside the {} learned positions",
                    table.rows
                )));
            }
            table.row_into(id as usize, &mut buf);
            for (a, b) in row.iter_mut().zip(&buf) {
                *a += b;
            }
        }
        Ok(())
    }

    fn norm(
        &mut self,
        kind: NormKind,
        eps: f32,
        x: &CpuAct,
        w: &Norm<Vec<f32>>,
        out: &mut CpuAct,
    ) -> Result<()> {
        shape_check(
            "norm",
            x.rows == out.rows && x.cols == out.cols && w.weight.len() == x.cols,
            || format!("{}x{} -> {}x{}", x.rows, x.cols, out.rows, out.cols),
        )?;
        kernels::norm(
            kind,
            eps,
            &x.data,
            x.cols,
            &w.weight,
            w.bias.as_deref(),
            &mut out.data,
        );
        Ok(())
    }

    fn linear(
        &mut self,
        x: &CpuAct,
        w: &Matrix,
        bias: Option<&Vec<f32>>,
        out: &mut CpuAct,
    ) -> Result<()> {
        shape_check(
            "linear",
            x.cols == w.cols && out.rows == x.rows && out.cols == w.rows,
            || {
                format!(
                    "{}x{} · [{}x{}]ᵀ -> {}x{}",
                    x.rows, x.cols, w.rows, w.cols, out.rows, out.cols
                )
            },
        )?;
        matrix::matmul(
            w,
            &x.data,
            x.rows,
            bias.map(|b| b.as_slice()),
            &mut out.data,
            &mut self.tmp,
        );
        Ok(())
    }

    fn head_norm(
        &mut self,
        kind: NormKind,
        eps: f32,
        x: &mut CpuAct,
        col: usize,
        heads: usize,
        head_dim: usize,
        w: &Norm<Vec<f32>>,
    ) -> Result<()> {
        shape_check(
            "head_norm",
            col + heads * head_dim <= x.cols && w.weight.len() == head_dim,
            || format!("{heads} heads of {head_dim} at column {col} of {}", x.cols),
        )?;
        let cols = x.cols;
        kernels::head_norm(
            kind,
            eps,
            &mut x.data,
            cols,
            col,
            heads,
            head_dim,
            &w.weight,
            w.bias.as_deref(),
        );
        Ok(())
    }

    fn rope(
        &mut self,
        rotary: &Rotary,
        x: &mut CpuAct,
        col: usize,
        heads: usize,
        head_dim: usize,
        positions: &[u32],
    ) -> Result<()> {
        let Some((_, cos, sin)) = self.rope.iter().find(|(r, _, _)| r == rotary) else {
            return Err(internal(format!("no rotary table for {rotary:?}")));
        };
        let n = &self.rope_positions;
        shape_check(
            "rope",
            positions.len() == x.rows && col + heads * head_dim <= x.cols,
            || format!("{} positions for {} rows", positions.len(), x.rows),
        )?;
        if let Some(p) = positions.iter().find(|&&p| p as usize >= *n) {
            return Err(Error::invalid(format!(
                "position {p} beyond the rotary table of {n}"
            )));
        }
        kernels::rope(
            &mut x.data,
            x.cols,
            col,
            heads,
            head_dim,
            positions,
            cos,
            sin,
        );
        Ok(())
    }

    fn attention(
        &mut self,
        qkv: &CpuAct,
        geom: AttnGeometry,
        step: &StepInputs<'_>,
        cache: Option<&mut LayerKvMut<'_>>,
        mode: CacheMode,
        out: &mut CpuAct,
    ) -> Result<()> {
        shape_check(
            "attention",
            qkv.cols == geom.q_dim() + 2 * geom.kv_dim()
                && qkv.rows == step.batch * step.seq_len
                && out.rows == qkv.rows
                && out.cols == geom.q_dim(),
            || {
                format!(
                    "qkv {}x{}, out {}x{}",
                    qkv.rows, qkv.cols, out.rows, out.cols
                )
            },
        )?;
        let st = Step {
            batch: step.batch,
            seq_len: step.seq_len,
            start: step.start_idx,
        };
        let view = match (mode, cache) {
            (CacheMode::None, _) => None,
            (_, None) => return Err(Error::invalid("static cache modes need a cache")),
            (_, Some(layer)) => {
                let max_seq = layer.key.max_seq_len();
                Some(KvView {
                    key: kv_slice(layer.key, "key")?,
                    value: kv_slice(layer.value, "value")?,
                    max_seq,
                })
            }
        };
        attention::attention(&qkv.data, geom, st, view, mode, &mut out.data);
        Ok(())
    }

    fn swiglu(&mut self, gate_up: &CpuAct, out: &mut CpuAct) -> Result<()> {
        shape_check(
            "swiglu",
            gate_up.rows == out.rows && gate_up.cols == 2 * out.cols,
            || {
                format!(
                    "{}x{} -> {}x{}",
                    gate_up.rows, gate_up.cols, out.rows, out.cols
                )
            },
        )?;
        kernels::swiglu(&gate_up.data, out.cols, &mut out.data);
        Ok(())
    }

    fn geglu(&mut self, gate_up: &CpuAct, out: &mut CpuAct) -> Result<()> {
        shape_check(
            "geglu",
            gate_up.rows == out.rows && gate_up.cols == 2 * out.cols,
            || {
                format!(
                    "{}x{} -> {}x{}",
                    gate_up.rows, gate_up.cols, out.rows, out.cols
                )
            },
        )?;
        kernels::geglu(&gate_up.data, out.cols, &mut out.data);
        Ok(())
    }

    fn gelu_new(&mut self, x: &mut CpuAct) -> Result<()> {
        kernels::gelu_new(&mut x.data);
        Ok(())
    }

    fn scale(&mut self, x: &mut CpuAct, factor: f32) -> Result<()> {
        for v in &mut x.data {
            *v *= factor;
        }
        Ok(())
    }

    fn add(&mut self, x: &mut CpuAct, y: &CpuAct) -> Result<()> {
        shape_check("add", x.rows == y.rows && x.cols == y.cols, || {
            format!("{}x{} + {}x{}", x.rows, x.cols, y.rows, y.cols)
        })?;
        for (a, b) in x.data.iter_mut().zip(&y.data) {
            *a += b;
        }
        Ok(())
    }

    fn gather_rows(&mut self, x: &CpuAct, rows: &[usize], out: &mut CpuAct) -> Result<()> {
        shape_check(
            "gather_rows",
            out.rows == rows.len() && out.cols == x.cols,
            || format!("{} rows into {}x{}", rows.len(), out.rows, out.cols),
        )?;
        for (o, &r) in out.data.chunks_mut(x.cols).zip(rows) {
            if r >= x.rows {
                return Err(internal(format!("gather row {r} of {}", x.rows)));
            }
            o.copy_from_slice(&x.data[r * x.cols..(r + 1) * x.cols]);
        }
        Ok(())
    }

    fn to_host(&mut self, x: &CpuAct) -> Result<Vec<f32>> {
        Ok(x.data.clone())
    }
}
