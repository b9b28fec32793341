//! The CUDA engine-file payload (after the common header, which carries the target SM and the GEMM
//! choices in words): little-endian `u64` length + JSON (compiled PTX per module, GEMM choices per
//! shape), then `u64` length + the packed matrix buffer, then `u64` length + the f32 vector buffer.
//! The weight layout is re-derived from the spec and precision on load and must match the lengths.

use super::device::Gpu;
use super::gemm::{GemmChoice, GemmShape};
use super::kernels::{CompiledKernels, KERNEL_ABI};
use super::weights::{KeptBlocks, Layout};
use super::{CudaBackend, ordinal};
use crate::engine_file::{EngineFileError, EngineHeader};
use crate::format::QuantFormat;
use crate::options::BuildOptions;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct Meta {
    kernels: CompiledKernels,
    gemm: Vec<(GemmShape, GemmChoice)>,
    /// The tensors kept as GGUF blocks (absent in files without).
    #[serde(default)]
    kept: KeptBlocks,
}

/// What a CUDA payload holds.
pub struct Payload {
    pub kernels: CompiledKernels,
    pub choices: BTreeMap<GemmShape, GemmChoice>,
    pub kept: KeptBlocks,
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
    kept: &KeptBlocks,
    mats: &[u8],
    vecs: &[u8],
) -> Result<()> {
    let meta = Meta {
        kernels: kernels.clone(),
        gemm: choices.iter().map(|(s, c)| (*s, *c)).collect(),
        kept: kept.clone(),
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
        kept: meta.kept,
        mats,
        vecs,
    })
}

/// Refuse an engine file whose header names another GPU compute capability than this GPU's.
pub fn check_target(
    path: &Path,
    header_sm: Option<u32>,
    gpu_sm: u32,
    gpu_name: &str,
) -> std::result::Result<(), EngineFileError> {
    if header_sm == Some(gpu_sm) {
        return Ok(());
    }
    Err(EngineFileError::Mismatch {
        path: path.to_path_buf(),
        what: "GPU compute capability",
        found: header_sm.map_or("none (not a GPU engine)".to_string(), |s| format!("sm_{s}")),
        expected: format!("sm_{gpu_sm} ({gpu_name})"),
    })
}

/// The payload must hold kernels for the header's GPU and exactly the packed weights the spec,
/// precision and quant format lay out.
pub fn check_contents(
    path: &Path,
    p: &Payload,
    sm: u32,
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
) -> std::result::Result<(), EngineFileError> {
    let corrupt = |message: String| {
        Err(EngineFileError::Corrupt {
            path: path.to_path_buf(),
            message,
        })
    };
    if p.kernels.abi != KERNEL_ABI {
        return Err(EngineFileError::Mismatch {
            path: path.to_path_buf(),
            what: "CUDA kernel version (rebuild the engine with this llmforge)",
            found: p.kernels.abi.to_string(),
            expected: KERNEL_ABI.to_string(),
        });
    }
    if p.kernels.sm != sm {
        return corrupt(format!(
            "kernels compiled for sm_{} under a header for sm_{sm}",
            p.kernels.sm
        ));
    }
    if let Some(module) = super::kernels::modules_for(quant).find(|m| p.kernels.module(m).is_none())
    {
        return corrupt(format!(
            "no PTX for kernel module {module}, which a {quant} engine runs"
        ));
    }
    let layout = Layout::kept(spec, precision, quant, &p.kept);
    if p.mats.len() != layout.mat_bytes || p.vecs.len() != layout.vec_bytes {
        return corrupt(format!(
            "packed weights hold {} + {} bytes, {} at {precision} needs {} + {}",
            p.mats.len(),
            p.vecs.len(),
            spec.name,
            layout.mat_bytes,
            layout.vec_bytes
        ));
    }
    Ok(())
}

/// Load the CUDA payload of an engine file whose header `header.check` already accepted: refuses a
/// file compiled for another GPU compute capability by name, then uploads the stored weights.
pub fn load(
    path: &Path,
    header: &EngineHeader,
    reader: &mut dyn Read,
    payload_len: u64,
    spec: &ModelSpec,
    expect: &BuildOptions,
) -> Result<CudaBackend> {
    let gpu = Gpu::open(ordinal(expect)?)?;
    check_target(path, header.target_sm, gpu.sm, &gpu.name)?;
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
    check_contents(path, &p, gpu.sm, spec, expect.precision, expect.quant)?;
    CudaBackend::assemble(
        spec, expect, gpu, p.kernels, p.choices, p.kept, &p.mats, &p.vecs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BlockType;

    fn sample() -> Vec<u8> {
        let k = CompiledKernels {
            abi: KERNEL_ABI,
            sm: 90,
            ptx: vec![("norm".into(), ".version 9.0".into())],
            decode_mma: true,
        };
        let choices = BTreeMap::from([(GemmShape { m: 1, n: 8, k: 16 }, GemmChoice::Gemv)]);
        let kept = KeptBlocks::from([("layers.0.down.weight".to_string(), BlockType::Q6K)]);
        let mut out = Vec::new();
        write(&mut out, &k, &choices, &kept, &[1, 2, 3, 4], &[5, 6, 7, 8]).expect("write");
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let p = read(&mut &bytes[..], bytes.len() as u64).expect("read");
        assert_eq!(p.kernels.sm, 90);
        assert!(p.kernels.decode_mma);
        assert_eq!(p.mats, vec![1, 2, 3, 4]);
        assert_eq!(p.vecs, vec![5, 6, 7, 8]);
        assert_eq!(p.choices.len(), 1);
        assert_eq!(p.kept.get("layers.0.down.weight"), Some(&BlockType::Q6K));
    }

    #[test]
    fn another_gpu_or_a_cpu_engine_is_refused_by_name() {
        let path = Path::new("model.engine");
        assert!(check_target(path, Some(90), 90, "NVIDIA H200").is_ok());
        let e = check_target(path, Some(80), 90, "NVIDIA H200").expect_err("sm_80 on sm_90");
        let text = e.to_string();
        assert!(
            text.contains("GPU compute capability")
                && text.contains("sm_80")
                && text.contains("sm_90 (NVIDIA H200)"),
            "{text}"
        );
        let e = check_target(path, None, 90, "NVIDIA H200").expect_err("no target");
        assert!(e.to_string().contains("none"), "{e}");
    }

    #[test]
    fn contents_must_match_the_spec_layout() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-llama");
        let spec = ModelSpec::from_dir(&dir).expect("tiny config");
        let layout = Layout::new(&spec, Precision::Fp16, QuantFormat::None);
        let mut p = Payload {
            kernels: CompiledKernels {
                abi: KERNEL_ABI,
                sm: 90,
                ptx: super::super::kernels::modules_for(QuantFormat::None)
                    .map(|m| (m.to_string(), String::new()))
                    .collect(),
                decode_mma: false,
            },
            choices: BTreeMap::new(),
            kept: KeptBlocks::new(),
            mats: vec![0; layout.mat_bytes],
            vecs: vec![0; layout.vec_bytes],
        };
        let path = Path::new("tiny.engine");
        assert!(check_contents(path, &p, 90, &spec, Precision::Fp16, QuantFormat::None).is_ok());
        let e = check_contents(path, &p, 90, &spec, Precision::Fp32, QuantFormat::None)
            .expect_err("fp32 needs more");
        assert!(e.to_string().contains("packed weights"), "{e}");
        assert!(check_contents(path, &p, 89, &spec, Precision::Fp16, QuantFormat::None).is_err());
        p.vecs.pop();
        assert!(check_contents(path, &p, 90, &spec, Precision::Fp16, QuantFormat::None).is_err());
        p.vecs.push(0);
        p.kernels.abi = KERNEL_ABI - 1;
        let e = check_contents(path, &p, 90, &spec, Precision::Fp16, QuantFormat::None)
            .expect_err("older kernels");
        assert!(e.to_string().contains("CUDA kernel version"), "{e}");
        // An engine of weights quantized at build runs the `quant` module, one keeping GGUF blocks
        // the `blocks` module: a payload without it is refused naming it.
        p.kernels.abi = KERNEL_ABI;
        for (quant, module) in [(QuantFormat::Int8, "quant"), (QuantFormat::Gguf, "blocks")] {
            let e = check_contents(path, &p, 90, &spec, Precision::Fp16, quant)
                .expect_err("module missing");
            assert!(e.to_string().contains(module), "{e}");
        }
        // Weights quantized at build, or kept as GGUF blocks, are other bytes: a payload of dense
        // weights is not theirs.
        for module in ["quant", "blocks"] {
            p.kernels.ptx.push((module.to_string(), String::new()));
        }
        let e = check_contents(path, &p, 90, &spec, Precision::Fp16, QuantFormat::Int8)
            .expect_err("int8 is fewer bytes");
        assert!(e.to_string().contains("packed weights"), "{e}");
        p.kept = KeptBlocks::from([
            ("layers.0.down.weight".to_string(), BlockType::Q8_0),
            ("layers.1.down.weight".to_string(), BlockType::Q8_0),
        ]);
        assert!(check_contents(path, &p, 90, &spec, Precision::Fp16, QuantFormat::Gguf).is_err());
    }

    #[test]
    fn kernels_from_before_the_version_field_read_as_version_1() {
        let old = r#"{"sm":90,"ptx":[["norm",".version 9.0"]]}"#;
        let k: CompiledKernels = serde_json::from_str(old).expect("old metadata parses");
        assert_eq!((k.abi, k.sm), (1, 90));
        assert_ne!(k.abi, KERNEL_ABI);
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
