//! The GGUF container (versions 2 and 3, little-endian): magic, version, tensor and key/value counts,
//! the metadata key/values, the tensor infos, then the tensor data at the next multiple of
//! `general.alignment` (default 32).
//!
//! Every read is bounds-checked; every count is checked against the bytes that remain before anything
//! is allocated from it; every tensor's byte range is checked to lie inside the file, aligned and
//! disjoint from the others. Problems come back as [`WeightsError`]s naming the file, the key or tensor,
//! and what is wrong.

use super::GgufValue;
use super::cursor::{Cursor, bad, truncated, value};
use super::types::GgmlType;
use crate::weights::WeightsError;
use std::collections::BTreeSet;
use std::path::Path;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: usize = 32;
/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
const ALIGNMENT_KEY: &str = "general.alignment";

/// One tensor of the file, validated.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major shape (GGML's `ne` reversed, as gguf-py and numpy see it).
    pub shape: Vec<usize>,
    /// The GGML type, or the name of the unsupported one (refused only when the tensor is read).
    pub ty: Result<GgmlType, String>,
    /// Absolute byte range inside the file (empty for unsupported types, whose size we cannot know).
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parsed header.
#[derive(Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorInfo>,
    /// End of the key/value section (the bytes hashed into a GGUF spec's `config_hash`).
    pub metadata_end: usize,
    pub alignment: usize,
}

/// Parse and validate everything before the tensor data.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Header, WeightsError> {
    let mut c = Cursor {
        path,
        bytes,
        pos: 0,
    };
    let magic = c.array::<4>(&|| "the GGUF magic".into())?;
    if &magic != MAGIC {
        return Err(bad(
            path,
            format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\""),
        ));
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(bad(
                path,
                "GGUF version 1 is not supported (only versions 2 and 3)",
            ));
        }
        v if v & 0xFFFF == 0 && v.swap_bytes() <= 3 => {
            return Err(bad(path, "big-endian GGUF files are not supported"));
        }
        v => {
            return Err(bad(
                path,
                format!("unsupported GGUF version {v} (only 2 and 3)"),
            ));
        }
    }
    // Each tensor info takes at least 24 bytes, each key/value at least 13.
    let n_tensors = c.count(24, &|| "the tensor count".into())?;
    let n_kv = c.count(13, &|| "the metadata count".into())?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = BTreeSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        if !keys.insert(key.clone()) {
            return Err(bad(path, format!("metadata key {key} appears twice")));
        }
        let ty = c.u32(&|| format!("the type of metadata {key}"))?;
        let v = value(&mut c, ty, &key, 0)?;
        if key == ALIGNMENT_KEY {
            alignment = match (ty, &v) {
                (4, GgufValue::U64(a)) if a.is_power_of_two() => *a as usize,
                _ => {
                    return Err(WeightsError::Metadata {
                        path: path.to_path_buf(),
                        key,
                        detail: format!("must be a UINT32 power of two, found {v:?}"),
                    });
                }
            };
        }
        metadata.push((key, v));
    }
    let metadata_end = c.pos;

    let mut infos = Vec::with_capacity(n_tensors);
    let mut names = BTreeSet::new();
    for i in 0..n_tensors {
        let raw = tensor_info(&mut c, i)?;
        if !names.insert(raw.name.clone()) {
            return Err(bad(path, format!("tensor {} appears twice", raw.name)));
        }
        infos.push(raw);
    }
    let data_start = c.pos.div_ceil(alignment) * alignment;
    let tensors = infos
        .into_iter()
        .map(|raw| place(path, bytes.len(), data_start, alignment, raw))
        .collect::<Result<Vec<_>, _>>()?;
    check_disjoint(path, &tensors)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        metadata_end,
        alignment,
    })
}

/// A tensor info as written: name, GGML dims (innermost first), type id, offset into the data section.
struct RawInfo {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
}

fn tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<RawInfo, WeightsError> {
    let name = c.string(&|| format!("the name of tensor #{i}"))?;
    let what = || format!("tensor info of {name}");
    let n_dims = c.u32(&what)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(bad(
            c.path,
            format!("tensor {name} has {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64(&what)?);
    }
    let type_id = c.u32(&what)?;
    let offset = c.u64(&what)?;
    Ok(RawInfo {
        name,
        dims,
        type_id,
        offset,
    })
}

/// Shape, type and absolute byte range of a tensor, checked against the file.
fn place(
    path: &Path,
    file_len: usize,
    data_start: usize,
    alignment: usize,
    raw: RawInfo,
) -> Result<TensorInfo, WeightsError> {
    let name = raw.name;
    let huge = || {
        bad(
            path,
            format!("tensor {name} has absurd dimensions {:?}", raw.dims),
        )
    };
    let mut shape = Vec::with_capacity(raw.dims.len());
    let mut numel: usize = 1;
    for &d in raw.dims.iter().rev() {
        let d = usize::try_from(d).map_err(|_| huge())?;
        numel = numel.checked_mul(d).ok_or_else(huge)?;
        shape.push(d);
    }
    let offset = usize::try_from(raw.offset).map_err(|_| huge())?;
    if offset % alignment != 0 {
        return Err(bad(
            path,
            format!(
                "tensor {name}: data offset {offset} is not a multiple of the alignment {alignment}"
            ),
        ));
    }
    let start = data_start.checked_add(offset).ok_or_else(huge)?;
    let ty = GgmlType::from_id(raw.type_id);
    let len = match ty {
        Ok(t) => {
            let row = raw.dims[0] as usize;
            #[allow(clippy::manual_is_multiple_of)]
            // `is_multiple_of` needs Rust 1.87; MSRV is 1.85
            if row % t.block_elems() != 0 {
                return Err(bad(
                    path,
                    format!(
                        "tensor {name}: row length {row} is not a multiple of the {} block size {}",
                        t.name(),
                        t.block_elems()
                    ),
                ));
            }
            (numel / t.block_elems())
                .checked_mul(t.block_bytes())
                .ok_or_else(huge)?
        }
        Err(_) => 0,
    };
    let end = start.checked_add(len).ok_or_else(huge)?;
    if start > file_len || end > file_len {
        return Err(truncated(
            path,
            format!("tensor {name} occupies bytes {start}..{end} but the file has {file_len}"),
        ));
    }
    Ok(TensorInfo {
        name,
        shape,
        ty,
        start,
        len,
    })
}

fn check_disjoint(path: &Path, tensors: &[TensorInfo]) -> Result<(), WeightsError> {
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.len > 0).collect();
    by_start.sort_by_key(|t| t.start);
    for pair in by_start.windows(2) {
        if pair[0].start + pair[0].len > pair[1].start {
            return Err(bad(
                path,
                format!("tensors {} and {} overlap", pair[0].name, pair[1].name),
            ));
        }
    }
    Ok(())
}
