//! The errors a backend reports (CUDA missing or failing, out of GPU memory, a kernel that does not
//! compile). Its one import is `admission::human`, for byte counts.

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("CUDA is not available on this machine: {0}")]
    CudaUnavailable(String),
    #[error("CUDA error in {op}: {message}")]
    Cuda { op: String, message: String },
    #[error(
        "out of GPU memory allocating {what} ({bytes} bytes, {} free on the GPU)",
        crate::admission::human(*free as u64)
    )]
    OutOfMemory {
        what: String,
        bytes: usize,
        free: usize,
    },
    #[error("kernel compilation failed for {kernel}: {log}")]
    KernelCompile { kernel: String, log: String },
    /// The backend's kernels cannot compute this model's layers (named in the message); another
    /// backend may.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}
