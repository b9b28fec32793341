//! The GPU handle: library presence checks (so a machine without CUDA gets
//! [`BackendError::CudaUnavailable`], never a panic from the dynamic loader), the context and its one
//! stream, typed device buffers ([`DevBuf`], from `memory.rs`) allocated and copied to and from the
//! host, and the conversion of driver errors into [`BackendError`].

use super::memory::{DevBuf, DevSlice, DevSliceMut, Elem, Fixed, Stored, fixed_bytes};
use crate::backend_error::BackendError;
use crate::precision::Precision;
use crate::{Error, Result};
use cudarc::driver::{CudaContext, CudaStream};
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

    /// Zeroed device memory of [`checked_bytes`]`(dims)` elements of `E`.
    pub fn zeros<E: Fixed>(&self, dims: &[usize], what: &str) -> Result<DevBuf<E>> {
        self.alloc(dims, fixed_bytes::<E>(), what)
    }

    /// Zeroed device memory of [`checked_bytes`]`(dims)` storage elements of `precision`.
    pub fn zeros_stored(
        &self,
        precision: Precision,
        dims: &[usize],
        what: &str,
    ) -> Result<DevBuf<Stored>> {
        self.alloc(dims, precision.bytes_per_element(), what)
    }

    /// A device copy of `data`.
    pub fn upload<E: Fixed>(&self, data: &[E::Host], what: &str) -> Result<DevBuf<E>> {
        self.upload_bytes(bytemuck::cast_slice(data), what)
    }

    /// A device copy of elements of `E` packed into `bytes` (little-endian, whole elements).
    pub fn upload_bytes<E: Fixed>(&self, bytes: &[u8], what: &str) -> Result<DevBuf<E>> {
        self.upload_packed(bytes, fixed_bytes::<E>(), what)
    }

    /// A device copy of storage elements of `precision` packed into `bytes` (whole elements).
    pub fn upload_stored(
        &self,
        precision: Precision,
        bytes: &[u8],
        what: &str,
    ) -> Result<DevBuf<Stored>> {
        self.upload_packed(bytes, precision.bytes_per_element(), what)
    }

    /// Copy the bytes of `src` into the start of `dst` on the stream (ordered with the launches).
    pub fn copy_device<E: Elem>(
        &self,
        src: DevSlice<'_, E>,
        dst: DevSliceMut<'_, E>,
    ) -> Result<()> {
        let bytes = src.byte_len();
        if dst.byte_len() < bytes {
            return Err(Error::Backend(BackendError::Other(format!(
                "device copy of {bytes} bytes into {} bytes",
                dst.byte_len()
            ))));
        }
        let (s, d) = (src.ffi() as usize, dst.ffi_mut() as usize);
        if s < d + bytes && d < s + bytes {
            return Err(Error::Backend(BackendError::Other(format!(
                "device copy of {bytes} bytes between overlapping ranges"
            ))));
        }
        // SAFETY: both views borrow live allocations of this context (their lifetimes), `dst` holds
        // at least `bytes` bytes and the ranges do not overlap (both checked), and the copy is
        // ordered on the one stream every launch uses, so it neither races the kernels nor outlives
        // the buffers' borrows.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.ffi_mut() as u64,
                src.ffi() as u64,
                bytes,
                self.stream.cu_stream(),
            )
        }
        .map_err(cuda_err("cuMemcpyDtoDAsync"))
    }

    /// Copy `data` to the start of `dst` (which must be large enough).
    pub fn write<E: Fixed>(&self, dst: &mut DevBuf<E>, data: &[E::Host], what: &str) -> Result<()> {
        self.copy_in(dst, bytemuck::cast_slice(data), what)
    }

    /// Copy the first `out.len()` elements of `src` to the host (synchronises the stream).
    pub fn read<E: Fixed>(&self, src: &DevBuf<E>, out: &mut [E::Host], what: &str) -> Result<()> {
        self.read_bytes(src, bytemuck::cast_slice_mut(out), what)
    }

    /// Copy the first `out.len()` bytes of `src` to the host (synchronises the stream).
    pub fn read_bytes<E: Elem>(&self, src: &DevBuf<E>, out: &mut [u8], what: &str) -> Result<()> {
        if out.len() > src.bytes() {
            return Err(Error::Backend(BackendError::Other(format!(
                "{what}: reading {} bytes from a {}-byte device buffer",
                out.len(),
                src.bytes()
            ))));
        }
        let view = src.raw().slice(0..out.len());
        self.stream
            .memcpy_dtoh(&view, out)
            .map_err(cuda_err(what))?;
        self.sync(what)
    }

    /// Zeroed device memory of `dims` elements of `elem` bytes, refused before asking the driver
    /// when the GPU reports less free memory than it needs.
    fn alloc<E: Elem>(&self, dims: &[usize], elem: usize, what: &str) -> Result<DevBuf<E>> {
        let mut sized = dims.to_vec();
        sized.push(elem);
        let bytes = checked_bytes(&sized, what)?;
        let free = self.mem_info().map_or(usize::MAX, |(free, _)| free);
        if bytes > free {
            return Err(out_of_memory(what, bytes, free));
        }
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| oom_or(e, what, bytes, &self.ctx))?;
        Ok(DevBuf::new(slice, bytes / elem.max(1), elem))
    }

    /// A device copy of `bytes` as elements of `elem` bytes.
    fn upload_packed<E: Elem>(&self, bytes: &[u8], elem: usize, what: &str) -> Result<DevBuf<E>> {
        if !bytes.len().is_multiple_of(elem) {
            return Err(Error::Backend(BackendError::Other(format!(
                "{what}: {} bytes are not whole {elem}-byte elements",
                bytes.len()
            ))));
        }
        let mut buf = self.alloc(&[bytes.len() / elem], elem, what)?;
        self.copy_in(&mut buf, bytes, what)?;
        Ok(buf)
    }

    /// Copy `data` to the start of `dst` (which must be large enough).
    fn copy_in<E: Elem>(&self, dst: &mut DevBuf<E>, data: &[u8], what: &str) -> Result<()> {
        if data.len() > dst.bytes() {
            return Err(Error::Backend(BackendError::Other(format!(
                "{what}: {} bytes do not fit a {}-byte device buffer",
                data.len(),
                dst.bytes()
            ))));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut view = dst.raw_mut().slice_mut(0..data.len());
        self.stream
            .memcpy_htod(data, &mut view)
            .map_err(cuda_err(what))
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
