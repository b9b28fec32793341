//! GGUF files (llama.cpp's format, versions 2 and 3): a validated, memory-mapped reader (`reader`), the
//! dequantisation of F32/F16/BF16, the legacy Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the K-quants Q2_K..Q6_K to
//! f32 (`dequant`; or the block types kept as blocks, `tensor_as`), the model spec from `llama.*`,
//! `qwen2.*`, `qwen3.*`, `phi3.*` and `gemma3.*` metadata (`spec`) and the canonical weights with
//! llama.cpp's Q/K rotary permutation undone and Phi-3's fused tensors split (`canonical`).

mod canonical;
mod cursor;
pub(crate) mod dequant;
mod reader;
mod spec;
mod types;

pub use reader::TensorInfo;
pub use types::GgmlType;

use super::{HostTensor, TensorData, WeightMap, WeightsError};
use crate::spec::ModelSpec;
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One metadata value of a GGUF file. Unsigned integer types widen to `U64`, signed ones to `I64`,
/// FLOAT32 and FLOAT64 to `F64` (a FLOAT32 through its shortest decimal form, so `1e-5` stays `1e-5`).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// A readable name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            GgufValue::U64(_) => "an unsigned integer",
            GgufValue::I64(_) => "a signed integer",
            GgufValue::F64(_) => "a float",
            GgufValue::Bool(_) => "a bool",
            GgufValue::Str(_) => "a string",
            GgufValue::Array(_) => "an array",
        }
    }

    /// A non-negative integer of either signedness.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U64(v) => Some(v),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// An opened (memory-mapped, header-validated) GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    metadata_end: usize,
    alignment: usize,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let file = File::open(path).map_err(|e| WeightsError::io(path, e))?;
        // SAFETY: the mapping is read-only and lives as long as `self`; like every mmap-based loader we
        // rely on nobody truncating or rewriting the file while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| WeightsError::io(path, e))?;
        let header = reader::parse(path, &mmap)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: header.version,
            metadata: header.metadata.into_iter().collect(),
            tensors: header.tensors,
            metadata_end: header.metadata_end,
            alignment: header.alignment,
            mmap,
        })
    }

    /// A metadata value by key (e.g. `general.architecture`, `tokenizer.ggml.tokens`).
    pub fn metadata(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The model described by the file's metadata (`<general.architecture>.*` keys), named `name`.
    pub fn spec(&self, name: &str) -> Result<ModelSpec, WeightsError> {
        spec::spec(self, name)
    }

    /// All tensors dequantised to f32 under canonical names, with llama.cpp's Q/K permutation undone.
    pub fn canonical_weights(&self, spec: &ModelSpec) -> Result<WeightMap, WeightsError> {
        canonical::canonical_weights(self, spec, false)
    }

    /// [`GgufFile::canonical_weights`], but every 2-D tensor of a GGML block type kept as its
    /// blocks (`TensorData::Blocks`, rows permuted whole where llama.cpp permuted them).
    pub fn canonical_blocks(&self, spec: &ModelSpec) -> Result<WeightMap, WeightsError> {
        canonical::canonical_weights(self, spec, true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Every metadata key, sorted.
    pub fn metadata_keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.keys().map(String::as_str)
    }

    /// The tensors in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor `name` (llama.cpp's name) dequantised to f32, in its row-major shape, as stored (no
    /// permutation undone).
    pub fn tensor(&self, name: &str) -> Result<HostTensor, WeightsError> {
        self.tensor_as(name, false)
    }

    /// The tensor `name` as stored, no permutation undone: with `keep_blocks`, a 2-D tensor of a GGML
    /// block type whose rows are whole blocks stays blocks; everything else is dequantised to f32.
    pub fn tensor_as(&self, name: &str, keep_blocks: bool) -> Result<HostTensor, WeightsError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| WeightsError::Missing {
                name: name.to_string(),
            })?;
        let ty = info.ty.clone().map_err(|kind| WeightsError::UnknownQuant {
            path: self.path.clone(),
            tensor: name.to_string(),
            kind,
        })?;
        // In range: `reader::place` checked start + len against the file length.
        let bytes = &self.mmap[info.start..info.start + info.len];
        let block = crate::format::BlockType::from_ggml_id(ty.id());
        if let (true, Some(b), [_, cols]) = (keep_blocks, block, &info.shape[..])
            && b.row_bytes(*cols).is_some()
        {
            return Ok(HostTensor {
                shape: info.shape.clone(),
                data: TensorData::Blocks {
                    ty: b,
                    bytes: bytes.to_vec(),
                },
            });
        }
        Ok(HostTensor {
            shape: info.shape.clone(),
            data: TensorData::F32(dequant::dequantize(ty, bytes)),
        })
    }

    /// The header bytes up to the end of the metadata (hashed into a GGUF spec's `config_hash`).
    pub(crate) fn metadata_bytes(&self) -> &[u8] {
        &self.mmap[..self.metadata_end]
    }

    fn meta_err(&self, key: &str, detail: impl Into<String>) -> WeightsError {
        WeightsError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            detail: detail.into(),
        }
    }

    /// A string value; `Ok(None)` when absent, an error when of another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, WeightsError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(GgufValue::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.meta_err(key, format!("expected a string, found {}", v.kind()))),
        }
    }

    /// A non-negative integer value; `Ok(None)` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, WeightsError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.meta_err(key, format!("expected a non-negative integer, found {v:?}"))
            }),
        }
    }

    /// A float (or integer) value; `Ok(None)` when absent.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, WeightsError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(GgufValue::F64(x)) => Ok(Some(*x)),
            Some(GgufValue::U64(x)) => Ok(Some(*x as f64)),
            Some(GgufValue::I64(x)) => Ok(Some(*x as f64)),
            Some(v) => Err(self.meta_err(key, format!("expected a number, found {}", v.kind()))),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, WeightsError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.meta_err(key, format!("expected a bool, found {}", v.kind()))),
        }
    }

    /// An array value's elements; `Ok(None)` when absent.
    pub fn get_array(&self, key: &str) -> Result<Option<&[GgufValue]>, WeightsError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(GgufValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.meta_err(key, format!("expected an array, found {}", v.kind()))),
        }
    }

    /// An array of strings; `Ok(None)` when absent.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, WeightsError> {
        let Some(items) = self.get_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                GgufValue::Str(s) => Ok(s.as_str()),
                other => Err(self.meta_err(
                    key,
                    format!("element {i} should be a string, found {}", other.kind()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An array of integers; `Ok(None)` when absent.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, WeightsError> {
        let Some(items) = self.get_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match *v {
                GgufValue::I64(x) => Ok(x),
                GgufValue::U64(x) => i64::try_from(x)
                    .map_err(|_| self.meta_err(key, format!("element {i} = {x} is too large"))),
                ref other => Err(self.meta_err(
                    key,
                    format!("element {i} should be an integer, found {}", other.kind()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A required value, or an error saying it is missing.
    pub(crate) fn required<T>(
        &self,
        key: &str,
        got: Result<Option<T>, WeightsError>,
    ) -> Result<T, WeightsError> {
        got?.ok_or_else(|| self.meta_err(key, "is missing"))
    }
}
