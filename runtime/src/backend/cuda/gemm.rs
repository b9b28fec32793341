//! GEMMs: `y[m, n] = x[m, k] · W[n, k]ᵀ` with W and x in the storage type and y in f32 (f32
//! accumulation). Two implementations: cuBLASLt (any shape) and the NVRTC `gemv` kernel (few rows,
//! the decode step). The engine build times both on the model's actual shapes and records the winner
//! per shape ([`GemmChoice`]); shapes not timed fall back to `gemv` for a few rows and cuBLASLt's
//! heuristic otherwise.
//!
//! Row-major `y = x · Wᵀ` is column-major `yᵀ = W_cmᵀ · x_cm`: cuBLASLt's A is W (`[k, n]` column-major,
//! transposed), B is x (`[k, m]`, leading dimension `ldx`, which lets the last-row gather of the
//! lm_head read every `seq_len`-th row in place), and D is `[n, m]` with leading dimension n.

use super::cublaslt::{Handle, MatmulDesc, MatrixLayout, Preference, lt_err};
use super::device::Gpu;
use super::kernels::GEMV_MAX_ROWS;
use super::memory::{DevBuf, DevSlice, DevSliceMut, Stored};
use crate::backend_error::BackendError;
use crate::precision::Precision;
use crate::{Error, Result};
use cudarc::cublaslt::sys;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::c_void;

/// Workspace handed to cuBLASLt.
const WORKSPACE: usize = 32 << 20;

/// The shape of one GEMM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Which implementation runs a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GemmChoice {
    /// The NVRTC `gemv` kernel.
    Gemv,
    /// A cuBLASLt algorithm (the opaque `cublasLtMatmulAlgo_t` words).
    Lt { algo: [u64; 8] },
}

impl GemmChoice {
    /// Short text for the engine header.
    pub fn describe(&self, s: &GemmShape) -> String {
        match self {
            GemmChoice::Gemv => format!("m={} n={} k={}: gemv", s.m, s.n, s.k),
            GemmChoice::Lt { algo } => format!(
                "m={} n={} k={}: cublaslt algo {:016x}{:016x}",
                s.m, s.n, s.k, algo[0], algo[1]
            ),
        }
    }
}

/// Whether the gemv kernel can run a shape (row count and 16-byte rows).
pub fn gemv_fits(s: &GemmShape, precision: Precision) -> bool {
    s.m <= GEMV_MAX_ROWS && (s.k * precision.bytes_per_element()).is_multiple_of(16)
}

/// The default for a shape nobody timed.
pub fn default_choice(s: &GemmShape, precision: Precision) -> Option<GemmChoice> {
    gemv_fits(s, precision).then_some(GemmChoice::Gemv)
}

/// cuBLASLt descriptors of one shape and leading dimension.
struct Plan {
    desc: MatmulDesc,
    a: MatrixLayout,
    b: MatrixLayout,
    d: MatrixLayout,
    heuristic: Vec<sys::cublasLtMatmulAlgo_t>,
}

/// A cuBLASLt handle with a workspace and cached plans (dropped before the handle: fields drop in
/// declaration order).
pub struct Lt {
    plans: HashMap<(GemmShape, usize), Plan>,
    handle: Handle,
    workspace: DevBuf<u8>,
    dtype: sys::cudaDataType,
}

// SAFETY: the handle and descriptors are only used from the thread that owns the backend (the
// `Backend` is `Send`, not `Sync`; every call takes `&mut self`).
unsafe impl Send for Lt {}

impl Lt {
    pub fn new(gpu: &Gpu, precision: Precision) -> Result<Lt> {
        Ok(Lt {
            handle: Handle::new()?,
            workspace: gpu.zeros(&[WORKSPACE], "cuBLASLt workspace")?,
            dtype: match precision {
                Precision::Fp32 => sys::cudaDataType::CUDA_R_32F,
                Precision::Fp16 => sys::cudaDataType::CUDA_R_16F,
                Precision::Bf16 => sys::cudaDataType::CUDA_R_16BF,
            },
            plans: HashMap::new(),
        })
    }

    fn plan(&mut self, s: GemmShape, ldx: usize) -> Result<&Plan> {
        let key = (s, ldx);
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(s, ldx)?;
            self.plans.insert(key, plan);
        }
        self.plans
            .get(&key)
            .ok_or_else(|| Error::Backend(BackendError::Other("cuBLASLt plan missing".into())))
    }

    fn make_plan(&self, s: GemmShape, ldx: usize) -> Result<Plan> {
        let mut desc = MatmulDesc::new(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )?;
        desc.transpose_a()?;
        let a = MatrixLayout::new(self.dtype, s.k, s.n, s.k, "layout A")?;
        let b = MatrixLayout::new(self.dtype, s.k, s.m, ldx, "layout B")?;
        let d = MatrixLayout::new(sys::cudaDataType::CUDA_R_32F, s.n, s.m, s.n, "layout D")?;
        let pref = Preference::with_workspace(WORKSPACE)?;
        const WANT: usize = 6;
        // SAFETY: all-zero bytes are a valid value of this plain C struct (an output buffer).
        let mut results: [sys::cublasLtMatmulHeuristicResult_t; WANT] =
            unsafe { std::mem::zeroed() };
        let mut found: i32 = 0;
        // SAFETY: the handle and every descriptor are live (owned here); `results` has room for WANT
        // entries and `found` receives their count.
        let status = unsafe {
            sys::cublasLtMatmulAlgoGetHeuristic(
                self.handle.raw(),
                desc.raw(),
                a.raw(),
                b.raw(),
                d.raw(),
                d.raw(),
                pref.raw(),
                WANT as i32,
                results.as_mut_ptr(),
                &mut found,
            )
        };
        drop(pref);
        status
            .result()
            .map_err(lt_err("cublasLtMatmulAlgoGetHeuristic"))?;
        let heuristic = results[..(found.max(0) as usize).min(WANT)]
            .iter()
            .filter(|h| h.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
            .map(|h| h.algo)
            .collect::<Vec<_>>();
        if heuristic.is_empty() {
            return Err(Error::Backend(BackendError::Cuda {
                op: "cuBLASLt".into(),
                message: format!("no algorithm for m={} n={} k={}", s.m, s.n, s.k),
            }));
        }
        Ok(Plan {
            desc,
            a,
            b,
            d,
            heuristic,
        })
    }

    /// The heuristic's candidate algorithms for a shape (best first).
    pub fn candidates(&mut self, s: GemmShape, ldx: usize) -> Result<Vec<[u64; 8]>> {
        Ok(self
            .plan(s, ldx)?
            .heuristic
            .iter()
            .map(|a| a.data)
            .collect())
    }

    /// `y = x · Wᵀ` on `gpu`'s stream with `algo` (or the heuristic's first choice).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &mut self,
        gpu: &Gpu,
        s: GemmShape,
        w: DevSlice<'_, Stored>,
        x: DevSlice<'_, Stored>,
        ldx: usize,
        y: DevSliceMut<'_, f32>,
        algo: Option<[u64; 8]>,
    ) -> Result<()> {
        let ws = self.workspace.view_mut().ffi_mut();
        let handle = self.handle.raw();
        let plan = self.plan(s, ldx)?;
        let algo = sys::cublasLtMatmulAlgo_t {
            data: algo.unwrap_or(plan.heuristic[0].data),
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the descriptors describe buffers the caller sized for this shape (w: n*k, x: ldx*m,
        // y: n*m elements), each a view borrowed from a live buffer; the workspace is WORKSPACE
        // bytes; everything runs on gpu's stream.
        unsafe {
            cudarc::cublaslt::result::matmul(
                handle,
                plan.desc.raw(),
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                w.ffi(),
                plan.a.raw(),
                x.ffi(),
                plan.b.raw(),
                y.ffi_mut(),
                plan.d.raw(),
                y.ffi_mut(),
                plan.d.raw(),
                &algo,
                ws,
                WORKSPACE,
                gpu.stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .map_err(lt_err("cublasLtMatmul"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_only_takes_few_rows_of_16_byte_multiples() {
        let s = |m, k| GemmShape { m, n: 64, k };
        assert!(gemv_fits(&s(1, 64), Precision::Fp16));
        assert!(gemv_fits(&s(GEMV_MAX_ROWS, 8), Precision::Bf16));
        assert!(!gemv_fits(&s(GEMV_MAX_ROWS + 1, 64), Precision::Fp16));
        assert!(!gemv_fits(&s(1, 6), Precision::Fp32));
        assert_eq!(default_choice(&s(64, 64), Precision::Fp32), None);
    }

    #[test]
    fn choices_round_trip_through_json() {
        let c = GemmChoice::Lt {
            algo: [1, 2, 3, 4, 5, 6, 7, u64::MAX],
        };
        let text = serde_json::to_string(&c).expect("json");
        assert_eq!(serde_json::from_str::<GemmChoice>(&text).expect("parse"), c);
    }
}
