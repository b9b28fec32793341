//! The CUDA engine-file payload (after the common header, which carries the target SM and the GEMM
//! choices in words): little-endian `u64` length + JSON (compiled PTX per module, GEMM choices per
//! shape), then `u64` length + the packed matrix buffer, then `u64` length + the f32 vector buffer.
//! The weight layout is re-derived from the spec and precision on load and must match the lengths.

use super::device::Gpu;
use super::gemm::{GemmChoice, GemmShape};
use super::kernels::CompiledKernels;
use super::weights::Layout;
use super::{CudaBackend, ordinal};
use crate::engine::BuildOptions;
use crate::spec::ModelSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

#[derive(Serialize, Deserialize)]
struct Meta {
    kernels: CompiledKernels,
    gemm: Vec<(GemmShape, GemmChoice)>,
}

/// What a CUDA payload holds.
pub struct Payload {
    pub kernels: CompiledKernels,
    pub choices: BTreeMap<GemmShape, GemmChoice>,
    pub mats: Vec<u8>,
    pub vecs: Vec<u8>,
}

fn io(e: std::io::Error) -> Error {
    Error::invalid(format!("writing engine payload: {e}"))
}

pub fn write(
    out: &mut dyn Write,
    kernels: &CompiledKernels,
    choices: &BTreeMap<GemmShape, GemmChoice>,
    mats: &[u8],
    vecs: &[u8],
) -> Result<()> {
    let meta = Meta {
        kernels: kernels.clone(),
        gemm: choices.iter().map(|(s, c)| (*s, *c)).collect(),
    };
    let json =
        serde_json::to_vec(&meta).map_err(|e| Error::invalid(format!("CUDA payload: {e}")))?;
    for part in [&json[..], mats, vecs] {
        out.write_all(&(part.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(part).map_err(io)?;
    }
    Ok(())
}

/// Why a payload could not be read: the file ended early (`Truncated`) or holds nonsense.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadError {
    Truncated(String),
    Corrupt(String),
}

fn section(
    r: &mut dyn Read,
    left: &mut u64,
    what: &str,
) -> std::result::Result<Vec<u8>, PayloadError> {
    let mut word = [0u8; 8];
    if *left < 8 {
        return Err(PayloadError::Truncated(format!("{what} length")));
    }
    r.read_exact(&mut word)
        .map_err(|e| PayloadError::Truncated(format!("{what} length: {e}")))?;
    *left -= 8;
    let n = u64::from_le_bytes(word);
    if n > *left {
        return Err(PayloadError::Truncated(format!(
            "{what}: needs {n} bytes, {left} left"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf)
        .map_err(|e| PayloadError::Truncated(format!("{what}: {e}")))?;
    *left -= n;
    Ok(buf)
}

/// Read a payload of `limit` bytes.
pub fn read(r: &mut dyn Read, limit: u64) -> std::result::Result<Payload, PayloadError> {
    let mut left = limit;
    let json = section(r, &mut left, "kernel metadata")?;
    let meta: Meta = serde_json::from_slice(&json)
        .map_err(|e| PayloadError::Corrupt(format!("kernel metadata: {e}")))?;
    let mats = section(r, &mut left, "packed weights")?;
    let vecs = section(r, &mut left, "packed vectors")?;
    if left != 0 {
        return Err(PayloadError::Corrupt(format!(
            "{left} trailing bytes after the packed vectors"
        )));
    }
    Ok(Payload {
        kernels: meta.kernels,
        choices: meta.gemm.into_iter().collect(),
        mats,
        vecs,
    })
}

/// Load the CUDA payload of an engine file whose header `header.check` already accepted: refuses a
/// file compiled for another GPU compute capability by name, then uploads the stored weights.
pub fn load(
    path: &std::path::Path,
    header: &crate::engine_file::EngineHeader,
    reader: &mut dyn std::io::Read,
    payload_len: u64,
    spec: &ModelSpec,
    expect: &BuildOptions,
) -> Result<CudaBackend> {
    use crate::engine_file::EngineFileError;
    let gpu = Gpu::open(ordinal(expect)?)?;
    let sm_name = |sm: Option<u32>| sm.map_or("none".to_string(), |s| format!("sm_{s}"));
    if header.target_sm != Some(gpu.sm) {
        return Err(Error::EngineFile(EngineFileError::Mismatch {
            path: path.to_path_buf(),
            what: "GPU compute capability",
            found: sm_name(header.target_sm),
            expected: format!("sm_{} ({})", gpu.sm, gpu.name),
        }));
    }
    let p = read(reader, payload_len).map_err(|e| match e {
        PayloadError::Truncated(what) => EngineFileError::Truncated {
            path: path.to_path_buf(),
            what,
        },
        PayloadError::Corrupt(message) => EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message,
        },
    })?;
    if p.kernels.sm != gpu.sm {
        return Err(Error::EngineFile(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "kernels compiled for sm_{} under a header for sm_{}",
                p.kernels.sm, gpu.sm
            ),
        }));
    }
    let layout = Layout::new(spec, expect.precision);
    if p.mats.len() != layout.mat_bytes || p.vecs.len() != layout.vec_bytes {
        return Err(Error::EngineFile(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "packed weights hold {} + {} bytes, {} at {} needs {} + {}",
                p.mats.len(),
                p.vecs.len(),
                spec.name,
                expect.precision,
                layout.mat_bytes,
                layout.vec_bytes
            ),
        }));
    }
    CudaBackend::assemble(spec, expect, gpu, p.kernels, p.choices, &p.mats, &p.vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let k = CompiledKernels {
            sm: 90,
            ptx: vec![("norm".into(), ".version 9.0".into())],
        };
        let choices = BTreeMap::from([(GemmShape { m: 1, n: 8, k: 16 }, GemmChoice::Gemv)]);
        let mut out = Vec::new();
        write(&mut out, &k, &choices, &[1, 2, 3, 4], &[5, 6, 7, 8]).expect("write");
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let p = read(&mut &bytes[..], bytes.len() as u64).expect("read");
        assert_eq!(p.kernels.sm, 90);
        assert_eq!(p.mats, vec![1, 2, 3, 4]);
        assert_eq!(p.vecs, vec![5, 6, 7, 8]);
        assert_eq!(p.choices.len(), 1);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_named() {
        let bytes = sample();
        let cut = &bytes[..bytes.len() - 2];
        assert!(
            matches!(read(&mut &cut[..], cut.len() as u64), Err(PayloadError::Truncated(w)) if w.contains("packed vectors"))
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            matches!(read(&mut &long[..], long.len() as u64), Err(PayloadError::Corrupt(w)) if w.contains("trailing"))
        );
    }
}
