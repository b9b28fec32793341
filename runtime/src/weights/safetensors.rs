//! Hugging Face safetensors, memory-mapped: a single `model.safetensors` or a sharded set named by
//! `model.safetensors.index.json`. Tensors keep their HF names here; `names` maps them to canonical ones.
//!
//! The JSON header is validated by us first (so every error names the tensor and the problem: unknown
//! dtype, offsets that disagree with dtype × shape, data past the end of the file), then by the
//! `safetensors` crate (contiguity, full coverage of the data section).

use super::{HostTensor, TensorData, WeightsError};
use ::safetensors::Dtype;
use half::{bf16, f16};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Name of a single-file checkpoint inside a snapshot directory.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index inside a snapshot directory.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Largest JSON header we accept (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

/// Byte range and type of one tensor inside a file's data section.
#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// One memory-mapped safetensors file with a validated header.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    entries: BTreeMap<String, Entry>,
}

fn bad(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::BadHeader {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn truncated(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Truncated {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let file = File::open(path).map_err(|e| WeightsError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| WeightsError::io(path, e))?
            .len();
        if len < 8 {
            // Mapping an empty file fails; say what is wrong instead.
            return Err(truncated(
                path,
                format!("{len} bytes, shorter than the 8-byte header length"),
            ));
        }
        // SAFETY: the mapping is read-only and lives as long as `self`; like every mmap-based loader we
        // rely on nobody truncating or rewriting the file while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| WeightsError::io(path, e))?;
        let (data_start, entries) = check_header(path, &mmap)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            data_start,
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Copy tensor `name` out of the map (f32, f16 and bf16 are kept in their own dtype).
    pub fn tensor(&self, name: &str) -> Result<HostTensor, WeightsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsError::Missing {
                name: name.to_string(),
            })?;
        let bytes = &self.mmap[self.data_start + e.start..self.data_start + e.end];
        let data = match e.dtype {
            Dtype::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F16 => TensorData::F16(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            Dtype::BF16 => TensorData::BF16(
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            other => {
                return Err(WeightsError::UnknownDtype {
                    path: self.path.clone(),
                    tensor: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        Ok(HostTensor {
            shape: e.shape.clone(),
            data,
        })
    }
}

/// Validate the header of a safetensors file held in memory (named `path` in errors), with the same
/// checks as [`SafetensorsFile::open`]; returns the tensors' names, dtypes and shapes.
pub fn parse_bytes(
    path: &Path,
    buf: &[u8],
) -> Result<Vec<(String, Dtype, Vec<usize>)>, WeightsError> {
    let (_, entries) = check_header(path, buf)?;
    Ok(entries
        .into_iter()
        .map(|(name, e)| (name, e.dtype, e.shape))
        .collect())
}

/// Our header checks, then a second opinion from the reference implementation (offsets contiguous
/// and covering the data section).
fn check_header(path: &Path, buf: &[u8]) -> Result<(usize, BTreeMap<String, Entry>), WeightsError> {
    let parsed = parse_header(path, buf)?;
    ::safetensors::SafeTensors::deserialize(buf).map_err(|e| bad(path, e.to_string()))?;
    Ok(parsed)
}

/// Parse and check the JSON header; returns the data section's offset in the file and the entries.
fn parse_header(path: &Path, buf: &[u8]) -> Result<(usize, BTreeMap<String, Entry>), WeightsError> {
    let Some(len_bytes) = buf.get(..8) else {
        return Err(truncated(
            path,
            format!("{} bytes, shorter than the 8-byte header length", buf.len()),
        ));
    };
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(len8);
    let rest = (buf.len() - 8) as u64;
    if n > MAX_HEADER {
        return Err(bad(path, format!("header length {n} exceeds {MAX_HEADER}")));
    }
    if n > rest {
        return Err(truncated(
            path,
            format!("header claims {n} bytes but only {rest} follow"),
        ));
    }
    let data_start = 8 + n as usize;
    let text = std::str::from_utf8(&buf[8..data_start])
        .map_err(|e| bad(path, format!("header is not UTF-8: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(path, format!("header is not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| bad(path, "header is not a JSON object"))?;
    let data_len = buf.len() - data_start;
    let mut entries = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let entry = parse_entry(path, name, v, data_len)?;
        entries.insert(name.clone(), entry);
    }
    Ok((data_start, entries))
}

fn parse_entry(
    path: &Path,
    name: &str,
    v: &serde_json::Value,
    data_len: usize,
) -> Result<Entry, WeightsError> {
    let dtype_str = v
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad(path, format!("tensor {name} has no dtype string")))?;
    let dtype: Dtype = serde_json::from_value(serde_json::Value::String(dtype_str.to_string()))
        .map_err(|_| WeightsError::UnknownDtype {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            dtype: dtype_str.to_string(),
        })?;
    let shape: Vec<usize> = v
        .get("shape")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| bad(path, format!("tensor {name} has no valid shape")))?;
    let offsets: [u64; 2] = v
        .get("data_offsets")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| bad(path, format!("tensor {name} has no valid data_offsets")))?;
    let [start, end] = offsets;
    if start > end {
        return Err(bad(
            path,
            format!("tensor {name}: data_offsets [{start}, {end}] run backwards"),
        ));
    }
    let bits = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.bitsize()))
        .ok_or_else(|| bad(path, format!("tensor {name}: shape {shape:?} overflows")))?;
    let need = (bits / 8) as u64;
    if end - start != need {
        return Err(bad(
            path,
            format!(
                "tensor {name}: dtype {dtype} and shape {shape:?} need {need} bytes, but data_offsets \
                 [{start}, {end}] span {}",
                end - start
            ),
        ));
    }
    if end > data_len as u64 {
        return Err(truncated(
            path,
            format!(
                "tensor {name} ends at byte {end} of the data section, which holds only {data_len} bytes"
            ),
        ));
    }
    Ok(Entry {
        dtype,
        shape,
        start: start as usize,
        end: end as usize,
    })
}

/// Every safetensors file of a checkpoint, with each tensor name resolved to its file.
pub struct SafetensorsSet {
    files: Vec<SafetensorsFile>,
    owner: BTreeMap<String, usize>,
}

impl SafetensorsSet {
    /// Open a snapshot directory: `model.safetensors.index.json` (sharded) if present, else
    /// `model.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<Self, WeightsError> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return Self::open_index(&index);
        }
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_file(&single);
        }
        Err(WeightsError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    /// One `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<Self, WeightsError> {
        let file = SafetensorsFile::open(path)?;
        let owner = file.names().map(|n| (n.to_string(), 0)).collect();
        Ok(SafetensorsSet {
            files: vec![file],
            owner,
        })
    }

    /// A shard index (`{"weight_map": {tensor: shard file}}`); shards live beside it.
    pub fn open_index(index: &Path) -> Result<Self, WeightsError> {
        let text = std::fs::read_to_string(index).map_err(|e| WeightsError::io(index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(index, format!("index is not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad(index, "index has no weight_map object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shard_ids: BTreeMap<String, usize> = BTreeMap::new();
        let mut files = Vec::new();
        let mut owner = BTreeMap::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(index, format!("weight_map entry {tensor} is not a string")))?;
            let id = match shard_ids.get(shard) {
                Some(&id) => id,
                None => {
                    let file_name = Path::new(shard);
                    if file_name.components().count() != 1 || shard.contains("..") {
                        return Err(bad(
                            index,
                            format!("shard name {shard:?} is not a plain file name"),
                        ));
                    }
                    let shard_path = dir.join(file_name);
                    if !shard_path.is_file() {
                        return Err(WeightsError::MissingShard {
                            index: index.to_path_buf(),
                            shard: shard.to_string(),
                        });
                    }
                    files.push(SafetensorsFile::open(&shard_path)?);
                    shard_ids.insert(shard.to_string(), files.len() - 1);
                    files.len() - 1
                }
            };
            if !files[id].contains(tensor) {
                return Err(bad(
                    index,
                    format!(
                        "index places tensor {tensor} in shard {shard}, which does not hold it"
                    ),
                ));
            }
            owner.insert(tensor.clone(), id);
        }
        Ok(SafetensorsSet { files, owner })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.owner.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let id = *self.owner.get(name)?;
        self.files[id].shape(name)
    }

    pub fn tensor(&self, name: &str) -> Result<HostTensor, WeightsError> {
        let id = *self.owner.get(name).ok_or_else(|| WeightsError::Missing {
            name: name.to_string(),
        })?;
        self.files[id].tensor(name)
    }
}

/// A host tensor as little-endian bytes, for the `safetensors` serialiser.
struct ByteView {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl ::safetensors::View for &ByteView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn to_view(t: &HostTensor) -> ByteView {
    let (dtype, bytes) = match &t.data {
        TensorData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F16(v) => (Dtype::F16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::BF16(v) => (
            Dtype::BF16,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        // safetensors has no GGML block types or our quantized layouts: the values, dequantised.
        TensorData::Blocks { .. } | TensorData::Quantized { .. } => (
            Dtype::F32,
            t.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    };
    ByteView {
        dtype,
        shape: t.shape.clone(),
        bytes,
    }
}

/// Write `tensors` (names as given) to one safetensors file with `{"format": "pt"}` metadata.
pub fn write_file(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<(), WeightsError> {
    let views: Vec<(String, ByteView)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), to_view(t)))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = ::safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), Some(meta))
        .map_err(|e| WeightsError::Other(format!("serialising {}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(|e| WeightsError::io(path, e))
}
