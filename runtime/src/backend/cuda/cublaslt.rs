//! cuBLASLt objects, each owned by a type that destroys it once, in its own `Drop`: the library
//! handle, a matmul descriptor, a matrix layout, and a heuristic-search preference.

use crate::backend_error::BackendError;
use crate::{Error, Result};
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use std::ffi::c_void;

/// A cuBLASLt failure of `op` as a backend error.
pub fn lt_err(op: &str) -> impl Fn(lt::CublasError) -> Error + '_ {
    move |e| {
        Error::Backend(BackendError::Cuda {
            op: op.to_string(),
            message: format!("{e:?}"),
        })
    }
}

/// A cuBLASLt library handle.
pub struct Handle(sys::cublasLtHandle_t);

impl Handle {
    pub fn new() -> Result<Handle> {
        lt::create_handle()
            .map(Handle)
            .map_err(lt_err("cublasLtCreate"))
    }

    pub fn raw(&self) -> sys::cublasLtHandle_t {
        self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `Handle::new` and is destroyed once, here.
        let _ = unsafe { lt::destroy_handle(self.0) };
    }
}

/// A matmul descriptor: compute and scale types, and the operations on A and B.
pub struct MatmulDesc(sys::cublasLtMatmulDesc_t);

impl MatmulDesc {
    pub fn new(compute: sys::cublasComputeType_t, scale: sys::cudaDataType) -> Result<MatmulDesc> {
        lt::create_matmul_desc(compute, scale)
            .map(MatmulDesc)
            .map_err(lt_err("cublasLtMatmulDescCreate"))
    }

    /// Read A transposed (`CUBLAS_OP_T`).
    pub fn transpose_a(&mut self) -> Result<()> {
        let trans: i32 = 1; // CUBLAS_OP_T
        // SAFETY: the descriptor is live (owned by `self`); the attribute is a 4-byte
        // cublasOperation_t, read from `trans` during the call.
        unsafe {
            lt::set_matmul_desc_attribute(
                self.0,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &trans as *const i32 as *const c_void,
                4,
            )
        }
        .map_err(lt_err("cublasLtMatmulDescSetAttribute"))
    }

    pub fn raw(&self) -> sys::cublasLtMatmulDesc_t {
        self.0
    }
}

impl Drop for MatmulDesc {
    fn drop(&mut self) {
        // SAFETY: the descriptor was created by `MatmulDesc::new` and is destroyed once, here.
        let _ = unsafe { lt::destroy_matmul_desc(self.0) };
    }
}

/// The layout of one matrix: element type, rows, columns (column-major) and leading dimension.
pub struct MatrixLayout(sys::cublasLtMatrixLayout_t);

impl MatrixLayout {
    pub fn new(
        dtype: sys::cudaDataType,
        rows: usize,
        cols: usize,
        ld: usize,
        what: &str,
    ) -> Result<MatrixLayout> {
        lt::create_matrix_layout(dtype, rows as u64, cols as u64, ld as i64)
            .map(MatrixLayout)
            .map_err(lt_err(what))
    }

    pub fn raw(&self) -> sys::cublasLtMatrixLayout_t {
        self.0
    }
}

impl Drop for MatrixLayout {
    fn drop(&mut self) {
        // SAFETY: the layout was created by `MatrixLayout::new` and is destroyed once, here.
        let _ = unsafe { lt::destroy_matrix_layout(self.0) };
    }
}

/// Preferences of the heuristic algorithm search.
pub struct Preference(sys::cublasLtMatmulPreference_t);

impl Preference {
    /// Preferences allowing at most `workspace` bytes of workspace.
    pub fn with_workspace(workspace: usize) -> Result<Preference> {
        let pref = lt::create_matmul_pref()
            .map(Preference)
            .map_err(lt_err("cublasLtMatmulPreferenceCreate"))?;
        let ws = workspace as u64;
        // SAFETY: the preference is live (owned by `pref`); the attribute is a u64 byte count, read
        // from `ws` during the call.
        unsafe {
            lt::set_matmul_pref_attribute(
                pref.0,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            )
        }
        .map_err(lt_err("cublasLtMatmulPreferenceSetAttribute"))?;
        Ok(pref)
    }

    pub fn raw(&self) -> sys::cublasLtMatmulPreference_t {
        self.0
    }
}

impl Drop for Preference {
    fn drop(&mut self) {
        // SAFETY: the preference was created by `Preference::with_workspace` and is destroyed once,
        // here.
        let _ = unsafe { lt::destroy_matmul_pref(self.0) };
    }
}
