//! The CPU engine file payload: the packed weights, written back as canonical tensors in the storage
//! precision (fused matrices split along their parts), so loading is the ordinary build from a
//! [`WeightMap`] whose conversion is the identity.
//!
//! Layout (little endian): `u32 count`, then per tensor `u16 name_len, name, u8 dtype (0 f32, 1 f16,
//! 2 bf16), u8 ndim, u64 dims[ndim], raw elements`.

use super::ops::CpuOps;
use crate::backend::ops::{Linear, Norm, Ops};
use crate::model::{MlpWeights, ModelWeights};
use crate::spec::ModelSpec;
use crate::weights::{HostTensor, TensorData, WeightMap};
use crate::{Error, Result};
use half::{bf16, f16};
use std::io::{Read, Write};

type Lin = Linear<super::matrix::Matrix, Vec<f32>>;

fn canonical(
    spec: &ModelSpec,
    ops: &CpuOps,
    w: &ModelWeights<CpuOps>,
) -> Result<Vec<(String, HostTensor)>> {
    let mut out = Vec::new();
    let rows = |m: &super::matrix::Matrix| m.rows;
    out.push((
        "embed.weight".to_string(),
        ops.weight_rows(w.embed_table(), 0, rows(w.embed_table()))?,
    ));
    if let Some(p) = &w.pos_embed {
        out.push((
            "pos_embed.weight".to_string(),
            ops.weight_rows(p, 0, p.rows)?,
        ));
    }
    let lin = |out: &mut Vec<(String, HostTensor)>, l: &Lin| -> Result<()> {
        let mut start = 0;
        for part in &l.parts {
            out.push((
                format!("{}.weight", part.name),
                ops.weight_rows(&l.weight, start, part.rows)?,
            ));
            if let Some(b) = &l.bias {
                out.push((
                    format!("{}.bias", part.name),
                    ops.vector_range(b, start, part.rows)?,
                ));
            }
            start += part.rows;
        }
        Ok(())
    };
    let norm = |out: &mut Vec<(String, HostTensor)>, n: &Norm<Vec<f32>>, p: &str| -> Result<()> {
        out.push((
            format!("{p}.weight"),
            ops.vector_range(&n.weight, 0, n.weight.len())?,
        ));
        if let Some(b) = &n.bias {
            out.push((format!("{p}.bias"), ops.vector_range(b, 0, b.len())?));
        }
        Ok(())
    };
    for (i, l) in w.layers.iter().enumerate() {
        norm(&mut out, &l.attn_norm, &format!("layers.{i}.attn_norm"))?;
        lin(&mut out, &l.qkv)?;
        lin(&mut out, &l.o)?;
        norm(&mut out, &l.mlp_norm, &format!("layers.{i}.mlp_norm"))?;
        match &l.mlp {
            MlpWeights::SwiGlu { gate_up, down } => {
                lin(&mut out, gate_up)?;
                lin(&mut out, down)?;
            }
            MlpWeights::Gelu { fc, proj } => {
                lin(&mut out, fc)?;
                lin(&mut out, proj)?;
            }
        }
    }
    norm(&mut out, &w.final_norm, "final_norm")?;
    if !spec.tie_word_embeddings {
        lin(&mut out, &w.lm_head)?;
    }
    Ok(out)
}

fn io(e: std::io::Error) -> Error {
    Error::invalid(format!("writing engine payload: {e}"))
}

pub fn write(
    spec: &ModelSpec,
    ops: &CpuOps,
    w: &ModelWeights<CpuOps>,
    out: &mut dyn Write,
) -> Result<()> {
    let tensors = canonical(spec, ops, w)?;
    out.write_all(&(tensors.len() as u32).to_le_bytes())
        .map_err(io)?;
    for (name, t) in &tensors {
        out.write_all(&(name.len() as u16).to_le_bytes())
            .map_err(io)?;
        out.write_all(name.as_bytes()).map_err(io)?;
        let (code, bytes): (u8, Vec<u8>) = match &t.data {
            TensorData::F32(v) => (0, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::F16(v) => (1, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            TensorData::BF16(v) => (2, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        out.write_all(&[code, t.shape.len() as u8]).map_err(io)?;
        for d in &t.shape {
            out.write_all(&(*d as u64).to_le_bytes()).map_err(io)?;
        }
        out.write_all(&bytes).map_err(io)?;
    }
    Ok(())
}

/// Why a payload could not be read.
#[derive(Debug)]
pub enum PayloadError {
    /// The file ended inside `what`.
    Truncated(String),
    Corrupt(String),
}

/// Reads at most `limit` bytes, never allocating more than what remains.
struct Bounded<'a> {
    r: &'a mut dyn Read,
    left: u64,
}

impl Bounded<'_> {
    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, PayloadError> {
        if n > self.left {
            return Err(PayloadError::Truncated(format!(
                "{what}: needs {n} bytes, {} left",
                self.left
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|e| PayloadError::Truncated(format!("{what}: {e}")))?;
        self.left -= n;
        Ok(buf)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PayloadError> {
        let v = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
}

/// Read the canonical tensors back. `limit` is the number of payload bytes in the file.
pub fn read(r: &mut dyn Read, limit: u64) -> Result<WeightMap, PayloadError> {
    let mut b = Bounded { r, left: limit };
    let count = u32::from_le_bytes(b.array("tensor count")?);
    let mut map = WeightMap::default();
    for i in 0..count {
        let len = u16::from_le_bytes(b.array("tensor name length")?);
        let name = String::from_utf8(b.bytes(len as u64, "tensor name")?)
            .map_err(|_| PayloadError::Corrupt(format!("tensor {i} name is not UTF-8")))?;
        let [code, ndim] = b.array::<2>(&name)?;
        if ndim > 4 {
            return Err(PayloadError::Corrupt(format!("{name}: {ndim} dimensions")));
        }
        let mut shape = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            let d = u64::from_le_bytes(b.array(&name)?);
            shape.push(
                usize::try_from(d)
                    .map_err(|_| PayloadError::Corrupt(format!("{name}: dim {d}")))?,
            );
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| PayloadError::Corrupt(format!("{name}: shape {shape:?} overflows")))?;
        let width: u64 = match code {
            0 => 4,
            1 | 2 => 2,
            c => {
                return Err(PayloadError::Corrupt(format!(
                    "{name}: unknown dtype code {c}"
                )));
            }
        };
        let nbytes = numel
            .checked_mul(width)
            .ok_or_else(|| PayloadError::Corrupt(format!("{name}: size overflows")))?;
        let raw = b.bytes(nbytes, &name)?;
        let data = match code {
            0 => TensorData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            1 => TensorData::F16(
                raw.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            _ => TensorData::BF16(
                raw.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
        };
        if map
            .tensors
            .insert(name.clone(), HostTensor { shape, data })
            .is_some()
        {
            return Err(PayloadError::Corrupt(format!(
                "tensor {name} appears twice"
            )));
        }
    }
    if b.left != 0 {
        return Err(PayloadError::Corrupt(format!(
            "{} trailing bytes after the last tensor",
            b.left
        )));
    }
    Ok(map)
}
