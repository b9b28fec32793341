//! GEMMs: `y[m, n] = x[m, k] · W[n, k]ᵀ` with W and x in the storage type and y in f32 (f32
//! accumulation). Two implementations: cuBLASLt (any shape) and the NVRTC `gemv` kernel (few rows,
//! the decode step). The engine build times both on the model's actual shapes and records the winner
//! per shape ([`GemmChoice`]); shapes not timed fall back to `gemv` for a few rows and cuBLASLt's
//! heuristic otherwise.
//!
//! Row-major `y = x · Wᵀ` is column-major `yᵀ = W_cmᵀ · x_cm`: cuBLASLt's A is W (`[k, n]` column-major,
//! transposed), B is x (`[k, m]`, leading dimension `ldx`, which lets the last-row gather of the
//! lm_head read every `seq_len`-th row in place), and D is `[n, m]` with leading dimension n.

use super::device::{DevBuf, Gpu};
use super::kernels::GEMV_MAX_ROWS;
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

fn lt_err(op: &str) -> impl Fn(cudarc::cublaslt::result::CublasError) -> Error + '_ {
    move |e| {
        Error::Backend(BackendError::Cuda {
            op: op.to_string(),
            message: format!("{e:?}"),
        })
    }
}

/// cuBLASLt descriptors of one shape and leading dimension.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    heuristic: Vec<sys::cublasLtMatmulAlgo_t>,
}

/// A cuBLASLt handle with a workspace and cached plans.
pub struct Lt {
    handle: sys::cublasLtHandle_t,
    workspace: DevBuf,
    dtype: sys::cudaDataType,
    plans: HashMap<(GemmShape, usize), Plan>,
}

// SAFETY: the handle and descriptors are only used from the thread that owns the backend (the
// `Backend` is `Send`, not `Sync`; every call takes `&mut self`).
unsafe impl Send for Lt {}

impl Lt {
    pub fn new(gpu: &Gpu, precision: Precision) -> Result<Lt> {
        let handle = cudarc::cublaslt::result::create_handle().map_err(lt_err("cublasLtCreate"))?;
        Ok(Lt {
            handle,
            workspace: gpu.zeros(WORKSPACE, "cuBLASLt workspace")?,
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
        use cudarc::cublaslt::result as r;
        let desc = r::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(lt_err("cublasLtMatmulDescCreate"))?;
        let trans: i32 = 1; // CUBLAS_OP_T
        // SAFETY: desc was just created; the attribute is a 4-byte cublasOperation_t.
        unsafe {
            r::set_matmul_desc_attribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &trans as *const i32 as *const c_void,
                4,
            )
        }
        .map_err(lt_err("cublasLtMatmulDescSetAttribute"))?;
        let a = r::create_matrix_layout(self.dtype, s.k as u64, s.n as u64, s.k as i64)
            .map_err(lt_err("layout A"))?;
        let b = r::create_matrix_layout(self.dtype, s.k as u64, s.m as u64, ldx as i64)
            .map_err(lt_err("layout B"))?;
        let d = r::create_matrix_layout(
            sys::cudaDataType::CUDA_R_32F,
            s.n as u64,
            s.m as u64,
            s.n as i64,
        )
        .map_err(lt_err("layout D"))?;
        let pref = r::create_matmul_pref().map_err(lt_err("cublasLtMatmulPreferenceCreate"))?;
        let ws = WORKSPACE as u64;
        // SAFETY: pref was just created; the attribute is a u64 byte count.
        unsafe {
            r::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            )
        }
        .map_err(lt_err("cublasLtMatmulPreferenceSetAttribute"))?;
        const WANT: usize = 6;
        // SAFETY: all-zero bytes are a valid value of this plain C struct (an output buffer).
        let mut results: [sys::cublasLtMatmulHeuristicResult_t; WANT] =
            unsafe { std::mem::zeroed() };
        let mut found: i32 = 0;
        // SAFETY: every descriptor is live; `results` has room for WANT entries.
        let status = unsafe {
            sys::cublasLtMatmulAlgoGetHeuristic(
                self.handle,
                desc,
                a,
                b,
                d,
                d,
                pref,
                WANT as i32,
                results.as_mut_ptr(),
                &mut found,
            )
        };
        // SAFETY: pref is not used after this.
        let _ = unsafe { r::destroy_matmul_pref(pref) };
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
        w: u64,
        x: u64,
        ldx: usize,
        y: u64,
        algo: Option<[u64; 8]>,
    ) -> Result<()> {
        let ws = self.workspace.ptr();
        let handle = self.handle;
        let plan = self.plan(s, ldx)?;
        let algo = sys::cublasLtMatmulAlgo_t {
            data: algo.unwrap_or(plan.heuristic[0].data),
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the descriptors describe buffers the caller sized for this shape (w: n*k, x: ldx*m,
        // y: n*m elements); the workspace is WORKSPACE bytes; everything runs on gpu's stream.
        unsafe {
            cudarc::cublaslt::result::matmul(
                handle,
                plan.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                w as *const c_void,
                plan.a,
                x as *const c_void,
                plan.b,
                y as *const c_void,
                plan.d,
                y as *mut c_void,
                plan.d,
                &algo,
                ws as *mut c_void,
                WORKSPACE,
                gpu.stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .map_err(lt_err("cublasLtMatmul"))
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        for (_, p) in self.plans.drain() {
            // SAFETY: each descriptor was created by make_plan and is destroyed once, here.
            unsafe {
                let _ = cudarc::cublaslt::result::destroy_matrix_layout(p.a);
                let _ = cudarc::cublaslt::result::destroy_matrix_layout(p.b);
                let _ = cudarc::cublaslt::result::destroy_matrix_layout(p.d);
                let _ = cudarc::cublaslt::result::destroy_matmul_desc(p.desc);
            }
        }
        // SAFETY: the handle is destroyed once, after its plans.
        let _ = unsafe { cudarc::cublaslt::result::destroy_handle(self.handle) };
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
