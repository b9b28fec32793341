//! The engine file: header (magic, format version, model, config hash, precision, max sequence length,
//! batch, backend, target SM, GEMM choices) followed by the backend's payload.
//!
//! Layout: `b"LLMFORGE"`, `u32` format version (little endian), `u32` header length, the header as
//! JSON, then the payload. The version comes before the JSON so that a file of another version is
//! refused by number even if its header no longer parses. The header is padded with spaces so that the
//! payload starts at a multiple of [`PAYLOAD_ALIGN`] bytes. Saving writes a temporary file in the
//! destination directory and renames it into place, so a reader never sees half a file.

use crate::format::QuantFormat;
use crate::options::BuildOptions;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::step::BackendKind;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"LLMFORGE";
pub const FORMAT_VERSION: u32 = 1;
/// The payload starts at a multiple of this many bytes of the file (the header JSON is padded with
/// spaces up to it), so that a backend can align what it stores in the payload within the file.
pub const PAYLOAD_ALIGN: usize = 64;
/// Headers are small; anything larger is corruption, not a header.
const MAX_HEADER: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineHeader {
    pub format_version: u32,
    pub model: String,
    pub config_hash: String,
    pub precision: Precision,
    pub max_seq_len: usize,
    pub max_batch: usize,
    /// How the linear layers are stored; files from before the field are `none`.
    #[serde(default)]
    pub quant: QuantFormat,
    pub backend: BackendKind,
    /// GPU compute capability (e.g. 90 for sm_90); `None` for the CPU.
    pub target_sm: Option<u32>,
    /// Backend-chosen GEMM algorithms, opaque to the header (empty on the CPU).
    pub gemm_algorithms: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineFileError {
    #[error("{path}: not an llmforge engine file (bad magic)")]
    BadMagic { path: PathBuf },
    #[error(
        "{path}: engine file format version {found}, this build reads version {expected}; rebuild the engine"
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "{path}: engine was built for {what} {found}, but {expected} was requested; rebuild the engine"
    )]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{path}: truncated engine file ({what})")]
    Truncated { path: PathBuf, what: String },
    #[error("{path}: corrupt engine file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl EngineHeader {
    pub fn new(spec: &ModelSpec, options: &BuildOptions, target_sm: Option<u32>) -> Self {
        EngineHeader {
            format_version: FORMAT_VERSION,
            model: spec.name.clone(),
            config_hash: spec.config_hash.clone(),
            precision: options.precision,
            max_seq_len: options.max_seq_len,
            max_batch: options.max_batch,
            quant: options.quant,
            backend: options.device.backend_kind(),
            target_sm,
            gemm_algorithms: Vec::new(),
        }
    }

    /// Refuse a header that does not match what the caller expects, naming both values.
    pub fn check(
        &self,
        path: &Path,
        spec: &ModelSpec,
        expect: &BuildOptions,
    ) -> Result<(), EngineFileError> {
        let mismatch = |what: &'static str, found: String, expected: String| {
            Err(EngineFileError::Mismatch {
                path: path.to_path_buf(),
                what,
                found,
                expected,
            })
        };
        if self.model != spec.name {
            return mismatch("model", self.model.clone(), spec.name.clone());
        }
        if self.config_hash != spec.config_hash {
            return mismatch(
                "config hash",
                self.config_hash.clone(),
                spec.config_hash.clone(),
            );
        }
        if self.precision != expect.precision {
            return mismatch(
                "precision",
                self.precision.to_string(),
                expect.precision.to_string(),
            );
        }
        if self.quant != expect.quant {
            return mismatch(
                "quant format",
                self.quant.to_string(),
                expect.quant.to_string(),
            );
        }
        let want_backend = expect.device.backend_kind();
        if self.backend != want_backend {
            return mismatch(
                "backend",
                self.backend.as_str().into(),
                want_backend.as_str().into(),
            );
        }
        if self.max_seq_len != expect.max_seq_len {
            return mismatch(
                "max sequence length",
                self.max_seq_len.to_string(),
                expect.max_seq_len.to_string(),
            );
        }
        if self.max_batch != expect.max_batch {
            return mismatch(
                "max batch",
                self.max_batch.to_string(),
                expect.max_batch.to_string(),
            );
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> EngineFileError + '_ {
    move |source| EngineFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `header` and the payload produced by `payload` to `path` atomically.
pub fn save(
    path: &Path,
    header: &EngineHeader,
    payload: &dyn Fn(&mut dyn Write) -> crate::Result<()>,
) -> crate::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| crate::Error::invalid(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    // Removes the temporary file on every exit but a successful rename, unwinding included.
    let mut guard = TempFile {
        path: tmp.clone(),
        keep: false,
    };
    (|| -> crate::Result<()> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::new(file);
        let mut json = serde_json::to_vec(header)
            .map_err(|e| EngineFileError::Other(format!("serialising header: {e}")))?;
        let end = 16 + json.len();
        json.resize(json.len() + end.next_multiple_of(PAYLOAD_ALIGN) - end, b' ');
        w.write_all(MAGIC).map_err(io_err(&tmp))?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())
            .map_err(io_err(&tmp))?;
        w.write_all(&(json.len() as u32).to_le_bytes())
            .map_err(io_err(&tmp))?;
        w.write_all(&json).map_err(io_err(&tmp))?;
        payload(&mut w)?;
        let file = w.into_inner().map_err(|e| EngineFileError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        guard.keep = true;
        Ok(())
    })()
}

/// A temporary file that is deleted when dropped unless `keep` (it was renamed into place).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the temporary file is ours and useless after a failure.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An opened engine file, positioned at the start of the payload.
pub struct OpenedEngine {
    pub header: EngineHeader,
    pub reader: BufReader<File>,
    /// Where the payload starts in the file.
    pub payload_offset: u64,
    /// Bytes of payload that follow the header.
    pub payload_len: u64,
}

/// Open `path` and read its header (magic and version checked).
pub fn open(path: &Path) -> Result<OpenedEngine, EngineFileError> {
    let file = File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(EngineFileError::Other(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let total = meta.len();
    let mut reader = BufReader::new(file);
    let (header, header_end) = read_header(&mut reader, total, path)?;
    Ok(OpenedEngine {
        header,
        reader,
        payload_offset: header_end,
        payload_len: total - header_end,
    })
}

/// Parse the header of an engine file held in memory; returns it and the offset of the payload.
/// The same checks as [`open`] (errors name the file as `<memory>`).
pub fn parse_header(bytes: &[u8]) -> Result<(EngineHeader, usize), EngineFileError> {
    let mut r = bytes;
    let (header, end) = read_header(&mut r, bytes.len() as u64, Path::new("<memory>"))?;
    // `end <= bytes.len()` was checked against `total`, so it fits in usize.
    Ok((header, end as usize))
}

/// Read magic, version, header length and header from `r`, a file of `total` bytes. Returns the
/// header and the offset of the payload.
fn read_header(
    r: &mut dyn Read,
    total: u64,
    path: &Path,
) -> Result<(EngineHeader, u64), EngineFileError> {
    let truncated = |what: &str| EngineFileError::Truncated {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let read_err = |what: &str, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            truncated(what)
        } else {
            EngineFileError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    };
    // A short file is "truncated" only if what it holds is the start of the magic.
    let mut magic = [0u8; 8];
    let have = total.min(8) as usize;
    r.read_exact(&mut magic[..have])
        .map_err(|e| read_err("magic", e))?;
    if magic[..have] != MAGIC[..have] {
        return Err(EngineFileError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    if have < 8 {
        return Err(truncated("magic"));
    }
    let mut word = [0u8; 4];
    r.read_exact(&mut word)
        .map_err(|e| read_err("format version", e))?;
    let version = u32::from_le_bytes(word);
    if version != FORMAT_VERSION {
        return Err(EngineFileError::Version {
            path: path.to_path_buf(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    r.read_exact(&mut word)
        .map_err(|e| read_err("header length", e))?;
    let len = u32::from_le_bytes(word);
    if len > MAX_HEADER {
        return Err(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!("header length {len} exceeds {MAX_HEADER}"),
        });
    }
    let end = 16 + len as u64;
    if end > total {
        return Err(truncated("header"));
    }
    let mut json = vec![0u8; len as usize];
    r.read_exact(&mut json).map_err(|e| read_err("header", e))?;
    let header: EngineHeader =
        serde_json::from_slice(&json).map_err(|e| EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!("header: {e}"),
        })?;
    if header.format_version != version {
        return Err(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "header says version {} after a version {version} prefix",
                header.format_version
            ),
        });
    }
    Ok((header, end))
}
