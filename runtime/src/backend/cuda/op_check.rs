//! A small surface for testing the kernels one at a time (`runtime/tests/cuda_ops.rs`): the kernels of a
//! spec and precision compiled and loaded on GPU 0, storage-element buffers made from and read back as
//! f32, and the host rounding to the storage type that the kernels' `from_f32` applies
//! (runtime/templates/kernels/common.cuh: round to nearest even). The launches themselves go through the
//! typed launchers of `launchers.rs`, as the engine's do.

use super::device::Gpu;
use super::kernels::{self, Kernels};
use super::launch::Stream;
use super::memory::{DevBuf, Stored};
use crate::Result;
use crate::format::QuantFormat;
use crate::precision::Precision;
use crate::spec::ModelSpec;
use half::{bf16, f16};

/// `x` rounded to the storage type of `precision` and back (exact for FP32).
pub fn round(precision: Precision, x: f32) -> f32 {
    match precision {
        Precision::Fp32 => x,
        Precision::Fp16 => f16::from_f32(x).to_f32(),
        Precision::Bf16 => bf16::from_f32(x).to_f32(),
    }
}

/// `xs` as little-endian storage elements of `precision` (each rounded to nearest even).
pub fn to_stored_bytes(precision: Precision, xs: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * precision.bytes_per_element());
    for &x in xs {
        match precision {
            Precision::Fp32 => out.extend_from_slice(&x.to_le_bytes()),
            Precision::Fp16 => out.extend_from_slice(&f16::from_f32(x).to_le_bytes()),
            Precision::Bf16 => out.extend_from_slice(&bf16::from_f32(x).to_le_bytes()),
        }
    }
    out
}

/// Little-endian storage elements of `precision` as f32.
pub fn from_stored_bytes(precision: Precision, bytes: &[u8]) -> Vec<f32> {
    let e = precision.bytes_per_element();
    bytes
        .chunks_exact(e)
        .map(|c| match precision {
            Precision::Fp32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            Precision::Fp16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
            Precision::Bf16 => bf16::from_le_bytes([c[0], c[1]]).to_f32(),
        })
        .collect()
}

/// GPU 0 with the kernels of one spec and precision loaded.
pub struct OpGpu {
    pub gpu: Gpu,
    pub kernels: Kernels,
    pub precision: Precision,
}

impl OpGpu {
    /// Compile every kernel module of `spec` at `precision` (over its whole context; the
    /// weight-format modules too) for GPU 0's compute capability and load them.
    pub fn open(spec: &ModelSpec, precision: Precision) -> Result<OpGpu> {
        OpGpu::open_as(spec, precision, QuantFormat::None)
    }

    /// [`OpGpu::open`] with the layer linears' kernels compiled for `quant`.
    pub fn open_as(spec: &ModelSpec, precision: Precision, quant: QuantFormat) -> Result<OpGpu> {
        let gpu = Gpu::open(0)?;
        let context = spec.max_position_embeddings;
        let compiled = kernels::compile_all(spec, precision, quant, context, gpu.sm)?;
        let kernels = Kernels::load(&gpu, &compiled)?;
        Ok(OpGpu {
            gpu,
            kernels,
            precision,
        })
    }

    /// Plain launches (no programmatic dependent launch) on the GPU's stream.
    pub fn stream(&self) -> Stream<'_> {
        Stream {
            gpu: &self.gpu,
            pdl: false,
        }
    }

    /// A device buffer of `xs` in the storage element (rounded as [`round`]).
    pub fn stored(&self, xs: &[f32], what: &str) -> Result<DevBuf<Stored>> {
        self.gpu
            .upload_stored(self.precision, &to_stored_bytes(self.precision, xs), what)
    }

    /// Every element of a storage buffer as f32 (synchronises the stream).
    pub fn read_stored(&self, buf: &DevBuf<Stored>, what: &str) -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; buf.bytes()];
        self.gpu.read_bytes(buf, &mut bytes, what)?;
        Ok(from_stored_bytes(self.precision, &bytes))
    }

    /// A device copy of `xs` as f32.
    pub fn f32s(&self, xs: &[f32], what: &str) -> Result<DevBuf<f32>> {
        self.gpu.upload::<f32>(xs, what)
    }

    /// Every element of an f32 buffer (synchronises the stream).
    pub fn read_f32(&self, buf: &DevBuf<f32>, what: &str) -> Result<Vec<f32>> {
        let mut out = vec![0f32; buf.len()];
        self.gpu.read(buf, &mut out, what)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_rounding_is_to_nearest_even_and_round_trips() {
        let xs = [1.0f32, -0.333_333_34, 65504.0, 1.0 + 1.0 / 2048.0, 3.0e-8];
        for p in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            let back = from_stored_bytes(p, &to_stored_bytes(p, &xs));
            let want: Vec<f32> = xs.iter().map(|&x| round(p, x)).collect();
            assert_eq!(back, want, "{p}");
        }
        // Halfway between 1 and the next f16 (1 + 2^-10): ties go to the even neighbour, 1.
        assert_eq!(round(Precision::Fp16, 1.0 + 1.0 / 2048.0), 1.0);
        // BF16 keeps 8 bits of mantissa: 1 + 2^-8 is a tie, to 1; 1 + 3 * 2^-9 rounds up.
        assert_eq!(round(Precision::Bf16, 1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(Precision::Bf16, 1.0 + 3.0 / 512.0), 1.0 + 1.0 / 128.0);
    }
}
