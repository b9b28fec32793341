//! The CPU engine file payload: the packed weights as canonical tensors in the storage precision
//! (fused matrices split along their parts). Loading maps the file and uses the matrices in place
//! (`mapped.rs`); nothing is converted or re-packed.
//!
//! Layout (little endian): `u32 count`, then `count` records, each `u16 name_len, name, u8 dtype
//! (0 f32, 1 f16, 2 bf16; 3, 4, 5 a matrix quantized at build as int8, int4, fp8, stored as
//! `crate::format` lays it out: its codes, then its scales; 16 + the GGML id for GGML blocks),
//! u8 ndim, u64 dims[ndim], raw elements`. The writer puts every record's
//! elements at a multiple of [`ALIGN`] bytes from the start of the payload, which itself starts at
//! such a multiple in the file (`engine_file::save`), by writing a padding record before a record that
//! would not: a 1-D f32 tensor of zeros named `padding.N` (N zero-filled to the width that makes the
//! sizes work), which loading never asks for. Files written without padding load too: a matrix whose
//! elements are not aligned for their type is copied once into the packed storage instead.

use super::mapped::{EngineMap, Mapped};
use super::matrix::{Dtype, Matrix, Store};
use super::ops::CpuOps;
use crate::backend::ops::{Linear, Norm, Ops};
use crate::engine_file::EngineFileError;
use crate::format::{BlockType, WeightFormat, WeightQuant};
use crate::model::{ModelWeights, Tensors};
use crate::plan::Residual;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::weights::{HostTensor, TensorData, WeightMap, WeightsError};
use crate::{Error, Result};
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

/// Every record's elements start at a multiple of this many bytes of the file (a cache line).
pub const ALIGN: usize = crate::engine_file::PAYLOAD_ALIGN;

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
    for (plan, l) in w.plan.layers.iter().zip(&w.layers) {
        norm(&mut out, &l.attn_norm, &plan.attn_norm.name)?;
        lin(&mut out, &l.qkv)?;
        if let (Some(names), Some((q, k))) = (&plan.attention.qk_norm, &l.qk_norm) {
            norm(&mut out, q, &names.q.name)?;
            norm(&mut out, k, &names.k.name)?;
        }
        lin(&mut out, &l.o)?;
        let post = match (&plan.residual, &l.post_norms) {
            (
                Residual::Sandwich {
                    post_attn_norm,
                    post_mlp_norm,
                },
                Some((attn, mlp)),
            ) => Some(((attn, &post_attn_norm.name), (mlp, &post_mlp_norm.name))),
            _ => None,
        };
        if let Some(((w, name), _)) = post {
            norm(&mut out, w, name)?;
        }
        norm(&mut out, &l.mlp_norm, &plan.mlp_norm.name)?;
        lin(&mut out, &l.up)?;
        lin(&mut out, &l.down)?;
        if let Some((_, (w, name))) = post {
            norm(&mut out, w, name)?;
        }
    }
    norm(&mut out, &w.final_norm, &w.plan.final_norm.name)?;
    if !spec.tie_word_embeddings {
        lin(&mut out, &w.lm_head)?;
    }
    Ok(out)
}

fn io(e: std::io::Error) -> Error {
    Error::invalid(format!("writing engine payload: {e}"))
}

/// A record's type code: 0, 1, 2 for f32, f16, bf16 elements; [`BLOCK_CODES`] plus the GGML id for
/// a matrix of GGML blocks.
fn dtype_code(d: &TensorData) -> u8 {
    match d {
        TensorData::F32(_) => 0,
        TensorData::F16(_) => 1,
        TensorData::BF16(_) => 2,
        TensorData::Blocks { ty, .. } => BLOCK_CODES + ty.ggml_id() as u8,
        TensorData::Quantized { quant, .. } => quant_code(*quant),
    }
}

/// The type code of a matrix quantized at build.
fn quant_code(q: WeightQuant) -> u8 {
    match q {
        WeightQuant::Int8 => 3,
        WeightQuant::Int4 => 4,
        WeightQuant::Fp8 => 5,
    }
}

/// Type codes from here on are GGML block types (the code less this is the GGML id).
const BLOCK_CODES: u8 = 16;

/// Bytes of a tensor's data in its record.
fn data_len(t: &HostTensor) -> usize {
    match &t.data {
        TensorData::Blocks { bytes, .. } | TensorData::Quantized { bytes, .. } => bytes.len(),
        d => t.numel() * dtype_width(d),
    }
}

/// Bytes of a record's header (name length, name, dtype, ndim, dims).
fn header_len(name: &str, ndim: usize) -> usize {
    2 + name.len() + 2 + 8 * ndim
}

/// The padding record `k` that takes `gap` bytes (mod [`ALIGN`]): its name and element count. A
/// record of a 1-D f32 tensor takes `12 + name length + 4 * elements` bytes, so the name's length
/// fixes the size mod 4 (by zero-filling `k`) and the elements the rest.
fn padding(k: usize, gap: usize) -> (String, usize) {
    let mut width = k.to_string().len();
    while (header_len("padding.", 1) + width) % 4 != gap % 4 {
        width += 1;
    }
    let name = format!("padding.{k:0width$}");
    let fixed = header_len(&name, 1);
    let elements = (gap + ALIGN * fixed.div_ceil(ALIGN) - fixed) % ALIGN / 4;
    (name, elements)
}

fn write_record(out: &mut dyn Write, name: &str, t: &HostTensor) -> Result<()> {
    let code = dtype_code(&t.data);
    out.write_all(&(name.len() as u16).to_le_bytes())
        .map_err(io)?;
    out.write_all(name.as_bytes()).map_err(io)?;
    out.write_all(&[code, t.shape.len() as u8]).map_err(io)?;
    for d in &t.shape {
        out.write_all(&(*d as u64).to_le_bytes()).map_err(io)?;
    }
    match &t.data {
        TensorData::F32(v) => write_elems(out, v, f32::to_le_bytes),
        TensorData::F16(v) => write_elems(out, v, f16::to_le_bytes),
        TensorData::BF16(v) => write_elems(out, v, bf16::to_le_bytes),
        TensorData::Blocks { bytes, .. } | TensorData::Quantized { bytes, .. } => {
            out.write_all(bytes).map_err(io)
        }
    }
}

/// The elements of `v`, little endian.
fn write_elems<T: bytemuck::Pod, const N: usize>(
    out: &mut dyn Write,
    v: &[T],
    le: fn(T) -> [u8; N],
) -> Result<()> {
    if cfg!(target_endian = "little") {
        return out.write_all(bytemuck::cast_slice(v)).map_err(io);
    }
    let bytes: Vec<u8> = v.iter().flat_map(|&x| le(x)).collect();
    out.write_all(&bytes).map_err(io)
}

/// Write the payload; it must start at a multiple of [`ALIGN`] in the file for the records to be
/// aligned there (`engine_file::save` sees to it).
pub fn write(
    spec: &ModelSpec,
    ops: &CpuOps,
    w: &ModelWeights<CpuOps>,
    out: &mut dyn Write,
) -> Result<()> {
    let tensors = canonical(spec, ops, w)?;
    // The records in order, padding included, laid out from the count on.
    let mut records: Vec<(String, Option<&HostTensor>, usize)> = Vec::new();
    let mut at = 4;
    for (name, t) in &tensors {
        let start = at + header_len(name, t.shape.len());
        if !start.is_multiple_of(ALIGN) {
            let (pad, elements) = padding(records.len(), ALIGN - start % ALIGN);
            at += header_len(&pad, 1) + 4 * elements;
            records.push((pad, None, elements));
        }
        at += header_len(name, t.shape.len()) + data_len(t);
        records.push((name.clone(), Some(t), 0));
    }
    out.write_all(&(records.len() as u32).to_le_bytes())
        .map_err(io)?;
    for (name, t, elements) in records {
        match t {
            Some(t) => write_record(out, &name, t)?,
            None => {
                let zeros = HostTensor {
                    shape: vec![elements],
                    data: TensorData::F32(vec![0.0; elements]),
                };
                write_record(out, &name, &zeros)?;
            }
        }
    }
    Ok(())
}

fn dtype_width(d: &TensorData) -> usize {
    match d {
        TensorData::F32(_) => 4,
        TensorData::F16(_) | TensorData::BF16(_) => 2,
        // Sized by their bytes (`data_len`).
        TensorData::Blocks { .. } | TensorData::Quantized { .. } => 0,
    }
}

/// Why a payload could not be read.
#[derive(Debug)]
pub enum PayloadError {
    /// The file ended inside `what`.
    Truncated(String),
    Corrupt(String),
}

impl PayloadError {
    /// The engine-file error for the file at `path`.
    pub fn at(self, path: &Path) -> EngineFileError {
        let path = path.to_path_buf();
        match self {
            PayloadError::Truncated(what) => EngineFileError::Truncated { path, what },
            PayloadError::Corrupt(message) => EngineFileError::Corrupt { path, message },
        }
    }
}

/// One tensor record of a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The element type (of a dense record).
    pub dtype: Dtype,
    /// The GGML block type of a matrix kept as blocks (then `dtype` is not used).
    pub blocks: Option<BlockType>,
    /// The quantization of a matrix quantized at build (then `dtype` is not used).
    pub quant: Option<WeightQuant>,
    pub shape: Vec<usize>,
    /// Where its elements are, in bytes from the start of the payload.
    pub data: Range<usize>,
}

/// Reads the payload front to back, never past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes, as a range of the payload.
    fn take(&mut self, n: u64, what: &str) -> Result<Range<usize>, PayloadError> {
        let left = self.bytes.len() - self.at;
        if n > left as u64 {
            return Err(PayloadError::Truncated(format!(
                "{what}: needs {n} bytes, {left} left"
            )));
        }
        // `n <= left`, so it fits in usize.
        let range = self.at..self.at + n as usize;
        self.at = range.end;
        Ok(range)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PayloadError> {
        let range = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[range]);
        Ok(a)
    }
}

/// Every record of `payload` by name, checked: lengths against what the payload holds, dtype codes,
/// dimensions, sizes, no name twice, nothing after the last record.
pub fn index(payload: &[u8]) -> Result<BTreeMap<String, Record>, PayloadError> {
    let mut c = Cursor {
        bytes: payload,
        at: 0,
    };
    let count = u32::from_le_bytes(c.array("tensor count")?);
    let mut records = BTreeMap::new();
    for i in 0..count {
        let len = u16::from_le_bytes(c.array("tensor name length")?);
        let name_bytes = c.take(len as u64, "tensor name")?;
        let name = String::from_utf8(payload[name_bytes].to_vec())
            .map_err(|_| PayloadError::Corrupt(format!("tensor {i} name is not UTF-8")))?;
        let [code, ndim] = c.array::<2>(&name)?;
        if ndim > 4 {
            return Err(PayloadError::Corrupt(format!("{name}: {ndim} dimensions")));
        }
        let mut shape = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            let d = u64::from_le_bytes(c.array(&name)?);
            shape.push(
                usize::try_from(d)
                    .map_err(|_| PayloadError::Corrupt(format!("{name}: dim {d}")))?,
            );
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| PayloadError::Corrupt(format!("{name}: shape {shape:?} overflows")))?;
        let quant = WeightQuant::ALL
            .into_iter()
            .find(|q| quant_code(*q) == code);
        let (dtype, blocks) = match code {
            0 => (Dtype::F32, None),
            1 => (Dtype::F16, None),
            2 => (Dtype::Bf16, None),
            _ if quant.is_some() => (Dtype::F32, None),
            c if c >= BLOCK_CODES => {
                let id = (c - BLOCK_CODES) as u32;
                let t = BlockType::from_ggml_id(id).ok_or_else(|| {
                    PayloadError::Corrupt(format!("{name}: unknown block type code {c}"))
                })?;
                (Dtype::F32, Some(t))
            }
            c => {
                return Err(PayloadError::Corrupt(format!(
                    "{name}: unknown dtype code {c}"
                )));
            }
        };
        let nbytes = match (blocks, quant, &shape[..]) {
            (None, Some(q), [rows, cols]) => q
                .row_bytes(*cols)
                .and_then(|r| (r as u64).checked_mul(*rows as u64)),
            (None, Some(q), _) => {
                return Err(PayloadError::Corrupt(format!(
                    "{name}: quantized as {} in a tensor of shape {shape:?}, not a matrix",
                    q.name()
                )));
            }
            (None, None, _) => numel.checked_mul(dtype.width() as u64),
            (Some(t), _, [rows, cols]) => t
                .row_bytes(*cols)
                .and_then(|r| (r as u64).checked_mul(*rows as u64)),
            (Some(t), _, _) => {
                return Err(PayloadError::Corrupt(format!(
                    "{name}: {} blocks in a tensor of shape {shape:?}, not a matrix",
                    t.name()
                )));
            }
        }
        .ok_or_else(|| {
            PayloadError::Corrupt(format!(
                "{name}: shape {shape:?}: its size overflows or its rows are not whole blocks or groups"
            ))
        })?;
        let data = c.take(nbytes, &name)?;
        let record = Record {
            dtype,
            blocks,
            quant,
            shape,
            data,
        };
        if records.insert(name.clone(), record).is_some() {
            return Err(PayloadError::Corrupt(format!(
                "tensor {name} appears twice"
            )));
        }
    }
    let left = payload.len() - c.at;
    if left != 0 {
        return Err(PayloadError::Corrupt(format!(
            "{left} trailing bytes after the last tensor"
        )));
    }
    Ok(records)
}

/// The data of record `r` (`bytes`: little-endian elements, or GGML blocks) as a host tensor.
fn host_tensor(r: &Record, bytes: &[u8]) -> HostTensor {
    let data = match (r.blocks, r.quant, r.dtype) {
        (Some(ty), _, _) => TensorData::Blocks {
            ty,
            bytes: bytes.to_vec(),
        },
        (None, Some(quant), _) => TensorData::Quantized {
            quant,
            bytes: bytes.to_vec(),
        },
        (None, None, Dtype::F32) => TensorData::F32(from_le(bytes, f32::from_le_bytes)),
        (None, None, Dtype::F16) => TensorData::F16(from_le(bytes, f16::from_le_bytes)),
        (None, None, Dtype::Bf16) => TensorData::BF16(from_le(bytes, bf16::from_le_bytes)),
    };
    HostTensor {
        shape: r.shape.clone(),
        data,
    }
}

/// Little-endian elements of `N` bytes each.
fn from_le<T: bytemuck::Pod, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    gather(&[bytes], from)
}

/// The little-endian elements of `parts`, one after another (on a little-endian host a plain copy
/// of the bytes into the elements, whatever the alignment of `parts`).
fn gather<T: bytemuck::Pod, const N: usize>(parts: &[&[u8]], from: fn([u8; N]) -> T) -> Vec<T> {
    let len = parts.iter().map(|p| p.len() / N).sum();
    if cfg!(target_endian = "little") {
        let mut out = vec![T::zeroed(); len];
        let mut at = 0;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        for p in parts {
            let whole = p.len() - p.len() % N;
            bytes[at..at + whole].copy_from_slice(&p[..whole]);
            at += whole;
        }
        return out;
    }
    let mut out = Vec::with_capacity(len);
    for p in parts {
        out.extend(p.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        }));
    }
    out
}

/// Read the records back as canonical tensors (copies; loading an engine maps the file instead,
/// [`MappedPayload`]). `limit` is the number of payload bytes in the file.
pub fn read(r: &mut dyn Read, limit: u64) -> Result<WeightMap, PayloadError> {
    let mut payload = Vec::new();
    r.take(limit)
        .read_to_end(&mut payload)
        .map_err(|e| PayloadError::Truncated(format!("payload: {e}")))?;
    if (payload.len() as u64) < limit {
        return Err(PayloadError::Truncated(format!(
            "payload: {limit} bytes expected, {} read",
            payload.len()
        )));
    }
    let mut map = WeightMap::default();
    for (name, rec) in index(&payload)? {
        let t = host_tensor(&rec, &payload[rec.data.clone()]);
        map.tensors.insert(name, t);
    }
    Ok(map)
}

/// A CPU engine file, mapped, and its payload's records: the tensors [`crate::model::load`] packs
/// the engine from, used in place.
pub struct MappedPayload {
    map: EngineMap,
    /// Where the payload starts in the file.
    start: usize,
    records: BTreeMap<String, Record>,
}

impl MappedPayload {
    /// The payload starting at byte `start` of `map`, its records checked ([`index`]).
    pub fn new(map: EngineMap, start: usize) -> Result<MappedPayload, PayloadError> {
        let payload = map
            .bytes()
            .get(start..)
            .ok_or_else(|| PayloadError::Truncated("payload".into()))?;
        let records = index(payload)?;
        Ok(MappedPayload {
            map,
            start,
            records,
        })
    }

    /// The first tensor (by name) stored in another type than an engine of `precision` computes
    /// from; 1-D f32 tensors (norms, biases) are allowed in every precision.
    pub fn precision_mismatch(&self, precision: Precision) -> Option<&str> {
        self.records
            .iter()
            .find(|(_, r)| !match r.dtype {
                // Kept blocks and quantized matrices serve an engine of any precision.
                _ if r.blocks.is_some() || r.quant.is_some() => true,
                Dtype::F32 => r.shape.len() == 1 || precision == Precision::Fp32,
                Dtype::F16 => precision == Precision::Fp16,
                Dtype::Bf16 => precision == Precision::Bf16,
            })
            .map(|(name, _)| name.as_str())
    }

    /// The record `name` with exactly `shape` (the errors of `WeightMap::get`).
    fn get(&self, name: &str, shape: &[usize]) -> Result<&Record, WeightsError> {
        let r = self
            .records
            .get(name)
            .ok_or_else(|| WeightsError::Missing {
                name: name.to_string(),
            })?;
        if r.shape != shape {
            return Err(WeightsError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: r.shape.clone(),
            });
        }
        Ok(r)
    }

    /// A record's elements, as bytes of the file.
    fn file_range(&self, r: &Record) -> Range<usize> {
        self.start + r.data.start..self.start + r.data.end
    }
}

impl Tensors<CpuOps> for MappedPayload {
    fn weight(
        &self,
        _ops: &mut CpuOps,
        parts: &[(&str, usize)],
        cols: usize,
        format: WeightFormat,
    ) -> Result<Matrix> {
        let precision = match format {
            WeightFormat::Dense(p) => p,
            WeightFormat::Quantized(q) => {
                // Copied out of the file as the fused matrix (every part's codes, then every
                // part's scales).
                let mut m = crate::weights::quantize::Quantized {
                    codes: Vec::new(),
                    scales: Vec::new(),
                };
                for &(name, rows) in parts {
                    let r = self.get(name, &[rows, cols])?;
                    if r.quant != Some(q) {
                        return Err(Error::Weights(WeightsError::Other(format!(
                            "tensor {name} is not stored as {format}"
                        ))));
                    }
                    let bytes = &self.map.bytes()[self.file_range(r)];
                    let part =
                        crate::weights::quantize::Quantized::from_bytes(q, rows, cols, bytes)?;
                    m.codes.extend_from_slice(&part.codes);
                    m.scales.extend_from_slice(&part.scales);
                }
                let rows = parts.iter().map(|p| p.1).sum();
                return Ok(Matrix {
                    rows,
                    cols,
                    store: Store::Quantized(q, m),
                });
            }
            WeightFormat::Blocks(t) => {
                // Kept blocks are copied out of the file (the product kernels read owned rows).
                let mut bytes = Vec::new();
                for &(name, rows) in parts {
                    let r = self.get(name, &[rows, cols])?;
                    if r.blocks != Some(t) {
                        return Err(Error::Weights(WeightsError::Other(format!(
                            "tensor {name} is not stored as {format}"
                        ))));
                    }
                    bytes.extend_from_slice(&self.map.bytes()[self.file_range(r)]);
                }
                let rows = parts.iter().map(|p| p.1).sum();
                return Ok(Matrix {
                    rows,
                    cols,
                    store: Store::Blocks(t, bytes),
                });
            }
        };
        let dtype = match precision {
            Precision::Fp32 => Dtype::F32,
            Precision::Fp16 => Dtype::F16,
            Precision::Bf16 => Dtype::Bf16,
        };
        let mut ranges = Vec::with_capacity(parts.len());
        for &(name, rows) in parts {
            let r = self.get(name, &[rows, cols])?;
            if let Some(t) = r.blocks {
                return Err(Error::Weights(WeightsError::Other(format!(
                    "tensor {name} is stored as GGUF {} blocks, the engine computes from {:?}",
                    t.name(),
                    dtype
                ))));
            }
            if let Some(q) = r.quant {
                return Err(Error::Weights(WeightsError::Other(format!(
                    "tensor {name} is quantized as {}, the engine computes from {:?}",
                    q.name(),
                    dtype
                ))));
            }
            if r.dtype != dtype {
                return Err(Error::Weights(WeightsError::Other(format!(
                    "tensor {name} is stored as {:?}, the engine computes from {:?}",
                    r.dtype, dtype
                ))));
            }
            ranges.push(self.file_range(r));
        }
        let rows = parts.iter().map(|p| p.1).sum();
        if let Some(m) = Mapped::new(&self.map, dtype, cols, &ranges) {
            return Ok(Matrix {
                rows,
                cols,
                store: Store::Mapped(m),
            });
        }
        // Not usable in place (elements not aligned for their type: a file written without padding;
        // a big-endian host): one copy, straight into the packed storage.
        let parts: Vec<&[u8]> = ranges
            .iter()
            .map(|r| &self.map.bytes()[r.clone()])
            .collect();
        let store = match dtype {
            Dtype::F32 => Store::F32(gather(&parts, f32::from_le_bytes)),
            Dtype::F16 => Store::F16(gather(&parts, f16::from_le_bytes)),
            Dtype::Bf16 => Store::Bf16(gather(&parts, bf16::from_le_bytes)),
        };
        Ok(Matrix { rows, cols, store })
    }

    fn vector(&self, _: &mut CpuOps, parts: &[(&str, usize)]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for &(name, len) in parts {
            let r = self.get(name, &[len])?;
            let t = host_tensor(r, &self.map.bytes()[self.file_range(r)]);
            out.extend(t.to_f32());
        }
        Ok(out)
    }

    fn stored_block(&self, name: &str) -> Option<BlockType> {
        self.records.get(name).and_then(|r| r.blocks)
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
