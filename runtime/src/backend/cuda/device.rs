//! The GPU handle: library presence checks (so a machine without CUDA gets
//! [`BackendError::CudaUnavailable`], never a panic from the dynamic loader), the context and its one
//! stream, raw device buffers, and the conversion of driver errors into [`BackendError`].

use crate::backend_error::BackendError;
use crate::{Error, Result};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use std::sync::Arc;

/// Free and total memory of GPU `ordinal`, in bytes (opens the device's primary context).
pub fn memory_info(ordinal: usize) -> Result<(usize, usize)> {
    check_libraries()?;
    let ctx = CudaContext::new(ordinal).map_err(cuda_err("cuCtxCreate"))?;
    ctx.mem_get_info().map_err(cuda_err("cuMemGetInfo"))
}

/// Fail with `CudaUnavailable` unless the driver, NVRTC and cuBLASLt libraries can all be loaded.
pub fn check_libraries() -> Result<()> {
    // SAFETY: each probe only tries to dlopen the library by its candidate names and drops it.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    // SAFETY: as above.
    let nvrtc = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    // SAFETY: as above.
    let lt = unsafe { cudarc::cublaslt::sys::is_culib_present() };
    let missing: Vec<&str> = [
        (driver, "the CUDA driver (libcuda.so)"),
        (nvrtc, "NVRTC (libnvrtc.so.13)"),
        (lt, "cuBLASLt (libcublasLt.so.13)"),
    ]
    .iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| *what)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Backend(BackendError::CudaUnavailable(format!(
            "cannot load {} (install the CUDA 13 driver/toolkit or put the libraries on LD_LIBRARY_PATH)",
            missing.join(", ")
        ))))
    }
}

/// Only NVRTC is needed to compile kernels to PTX (CI has no GPU).
pub fn check_nvrtc() -> Result<()> {
    // SAFETY: only tries to dlopen the library.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Backend(BackendError::CudaUnavailable(
            "cannot load NVRTC (libnvrtc.so.13); put it on LD_LIBRARY_PATH".into(),
        )))
    }
}

pub fn cuda_err(op: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| {
        Error::Backend(BackendError::Cuda {
            op: op.to_string(),
            message: e.to_string(),
        })
    }
}

/// One GPU: its context, the stream everything runs on, compute capability and name.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// Compute capability as `major * 10 + minor` (90 for sm_90).
    pub sm: u32,
    pub name: String,
    /// Streaming multiprocessors.
    pub sms: usize,
}

impl Gpu {
    pub fn open(ordinal: usize) -> Result<Gpu> {
        check_libraries()?;
        let count = CudaContext::device_count().map_err(cuda_err("cuDeviceGetCount"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Backend(BackendError::CudaUnavailable(format!(
                "GPU {ordinal} requested, {count} visible"
            ))));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("cuCtxCreate"))?;
        // SAFETY: everything of this backend runs on the one stream below, so cudarc's cross-stream
        // event tracking is not needed (and must not add event records inside CUDA graph capture).
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_err("compute capability"))?;
        let name = ctx.name().map_err(cuda_err("device name"))?;
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(cuda_err("multiprocessor count"))?;
        let stream = ctx.new_stream().map_err(cuda_err("cuStreamCreate"))?;
        Ok(Gpu {
            ctx,
            stream,
            sm: (major * 10 + minor) as u32,
            name,
            sms: sms.max(1) as usize,
        })
    }

    /// `bytes` of uninitialised-then-zeroed device memory.
    pub fn zeros(&self, bytes: usize, what: &str) -> Result<DevBuf> {
        // Refused before asking the driver when the GPU reports less free memory than `bytes`.
        let free = self.mem_info().map_or(usize::MAX, |(free, _)| free);
        if bytes > free {
            return Err(out_of_memory(what, bytes, free));
        }
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| oom_or(e, what, bytes, &self.ctx))?;
        Ok(DevBuf { slice, bytes })
    }

    /// Zeroed device memory of [`checked_bytes`]`(dims)` bytes.
    pub fn zeros_of(&self, dims: &[usize], what: &str) -> Result<DevBuf> {
        self.zeros(checked_bytes(dims, what)?, what)
    }

    /// A device copy of `data`.
    pub fn upload(&self, data: &[u8], what: &str) -> Result<DevBuf> {
        let mut buf = self.zeros(data.len(), what)?;
        if !data.is_empty() {
            self.stream
                .memcpy_htod(data, &mut buf.slice)
                .map_err(cuda_err(what))?;
        }
        Ok(buf)
    }

    /// Copy `data` to the start of `dst` (which must be large enough).
    pub fn write(&self, dst: &mut DevBuf, data: &[u8], what: &str) -> Result<()> {
        if data.len() > dst.bytes {
            return Err(Error::Backend(BackendError::Other(format!(
                "{what}: {} bytes do not fit a {}-byte device buffer",
                data.len(),
                dst.bytes
            ))));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice.slice_mut(0..data.len());
        self.stream
            .memcpy_htod(data, &mut view)
            .map_err(cuda_err(what))
    }

    /// Copy the first `out.len()` bytes of `src` to the host (synchronises the stream).
    pub fn read(&self, src: &DevBuf, out: &mut [u8], what: &str) -> Result<()> {
        if out.len() > src.bytes {
            return Err(Error::Backend(BackendError::Other(format!(
                "{what}: reading {} bytes from a {}-byte device buffer",
                out.len(),
                src.bytes
            ))));
        }
        let view = src.slice.slice(0..out.len());
        self.stream
            .memcpy_dtoh(&view, out)
            .map_err(cuda_err(what))?;
        self.sync(what)
    }

    pub fn sync(&self, what: &str) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err(what))
    }

    /// Device memory bytes (free, total).
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(cuda_err("cuMemGetInfo"))
    }
}

/// The product of `dims` (element counts and the element size): sizes from user options that
/// overflow are an error naming `what`, never a wrapped (too small) allocation.
pub fn checked_bytes(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            Error::invalid(format!(
                "the GPU's {what} ({}) overflows a 64-bit size",
                dims.join(" x ")
            ))
        })
}

fn out_of_memory(what: &str, bytes: usize, free: usize) -> Error {
    Error::Backend(BackendError::OutOfMemory {
        what: what.to_string(),
        bytes,
        free,
    })
}

fn oom_or(e: cudarc::driver::DriverError, what: &str, bytes: usize, ctx: &CudaContext) -> Error {
    if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        let free = ctx.mem_get_info().map_or(0, |(free, _)| free);
        out_of_memory(what, bytes, free)
    } else {
        cuda_err(what)(e)
    }
}

/// An untyped device allocation; kernels receive its address.
pub struct DevBuf {
    slice: CudaSlice<u8>,
    pub bytes: usize,
}

impl DevBuf {
    /// The device address of byte 0.
    pub fn ptr(&self) -> u64 {
        let (p, _sync) = self.slice.device_ptr(self.slice.stream());
        p
    }

    /// The device address of byte `offset` (which must lie inside the buffer).
    pub fn at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.bytes);
        self.ptr() + offset as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_are_refused_by_name() {
        assert_eq!(checked_bytes(&[3, 5, 4], "logits").ok(), Some(60));
        let err = checked_bytes(&[1 << 40, 1 << 20, 16], "residual stream").expect_err("2^64");
        let msg = err.to_string();
        assert!(
            msg.contains("residual stream") && msg.contains("overflows"),
            "{msg}"
        );
    }
}
