//! Kernel launches: the parameter list of a kernel as a type ([`Kernel`], implemented by the
//! launchers of `launchers.rs`), a loaded kernel function typed by its launcher ([`Function`]), and
//! the two ways a launch goes on the stream: plain, or as a programmatic dependent launch.

use super::device::{Gpu, cuda_err};
use super::memory::{Arg, DevSlice, DevSliceMut, Elem};
use crate::backend_error::BackendError;
use crate::{Error, Result};
use cudarc::driver::{CudaFunction, LaunchConfig};
use std::marker::PhantomData;

/// The type of one kernel parameter, as the kernel's C signature (and its PTX `.param`) has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamTy {
    /// A device pointer (`.param .u64`).
    Ptr,
    /// `int` (`.param .u32`).
    I32,
    /// `unsigned` (`.param .u32`).
    U32,
    /// `float` (`.param .f32`).
    F32,
}

impl ParamTy {
    /// Bytes in the kernel's parameter space.
    pub const fn bytes(self) -> usize {
        match self {
            ParamTy::Ptr => 8,
            ParamTy::I32 | ParamTy::U32 | ParamTy::F32 => 4,
        }
    }

    pub const fn is_float(self) -> bool {
        matches!(self, ParamTy::F32)
    }
}

/// A value a kernel parameter takes: its type and its argument.
pub trait Param {
    const TY: ParamTy;
    fn arg(&self) -> Arg;
}

impl Param for i32 {
    const TY: ParamTy = ParamTy::I32;
    fn arg(&self) -> Arg {
        Arg::i32(*self)
    }
}

impl Param for u32 {
    const TY: ParamTy = ParamTy::U32;
    fn arg(&self) -> Arg {
        Arg::u32(*self)
    }
}

impl Param for f32 {
    const TY: ParamTy = ParamTy::F32;
    fn arg(&self) -> Arg {
        Arg::f32(*self)
    }
}

impl<E: Elem> Param for DevSlice<'_, E> {
    const TY: ParamTy = ParamTy::Ptr;
    fn arg(&self) -> Arg {
        DevSlice::arg(self)
    }
}

impl<E: Elem> Param for DevSliceMut<'_, E> {
    const TY: ParamTy = ParamTy::Ptr;
    fn arg(&self) -> Arg {
        DevSliceMut::arg(self)
    }
}

/// An optional buffer: null when absent (the kernel tests the pointer).
impl<P: Param> Param for Option<P> {
    const TY: ParamTy = P::TY;
    fn arg(&self) -> Arg {
        self.as_ref().map_or(Arg::NULL, P::arg)
    }
}

/// A kernel's parameter list, in order: the entries of the PTX that take it, each parameter's name
/// and type, and the arguments of one launch.
pub trait Kernel {
    const ENTRIES: &'static [&'static str];
    const PARAMS: &'static [(&'static str, ParamTy)];
    fn args(&self) -> Vec<Arg>;
}

/// A launcher's parameter list as data, for checks against the PTX.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    /// The launcher's type.
    pub launcher: &'static str,
    pub entries: &'static [&'static str],
    pub params: &'static [(&'static str, ParamTy)],
}

impl Signature {
    pub const fn of<K: Kernel>(launcher: &'static str) -> Signature {
        Signature {
            launcher,
            entries: K::ENTRIES,
            params: K::PARAMS,
        }
    }
}

/// A loaded kernel function that only its launcher `K` launches.
pub struct Function<K> {
    func: CudaFunction,
    name: &'static str,
    _kernel: PhantomData<fn() -> K>,
}

impl<K: Kernel> Function<K> {
    /// `func`, loaded as entry `name`, which must be one of `K`'s.
    pub fn new(func: CudaFunction, name: &'static str) -> Result<Function<K>> {
        if !K::ENTRIES.contains(&name) {
            return Err(Error::Backend(BackendError::Other(format!(
                "kernel {name} is not launched with the parameters of {}",
                K::ENTRIES.join(" / ")
            ))));
        }
        Ok(Function {
            func,
            name,
            _kernel: PhantomData,
        })
    }
}

impl<K> Function<K> {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The driver's function (occupancy queries, attributes).
    pub fn cuda(&self) -> &CudaFunction {
        &self.func
    }
}

/// The geometry of one launch: blocks, threads per block (one dimension) and dynamic shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub blocks: (u32, u32, u32),
    pub threads: u32,
    pub smem: usize,
}

impl Grid {
    /// `blocks` of `threads` threads without dynamic shared memory.
    pub fn new(blocks: (u32, u32, u32), threads: u32) -> Grid {
        Grid {
            blocks,
            threads,
            smem: 0,
        }
    }

    /// The same grid with `smem` bytes of dynamic shared memory per block.
    pub fn smem(self, smem: usize) -> Grid {
        Grid { smem, ..self }
    }
}

/// Where launches go: the GPU's stream, with programmatic dependent launch or without.
#[derive(Clone, Copy)]
pub struct Stream<'a> {
    pub gpu: &'a Gpu,
    /// Launch with programmatic dependent launch (it may start while its predecessor drains; the
    /// kernels wait for it with `griddepcontrol.wait` before touching its results).
    pub pdl: bool,
}

impl Stream<'_> {
    /// Launch `f` with `kernel`'s arguments.
    pub fn launch<K: Kernel>(&self, f: &Function<K>, grid: Grid, kernel: &K) -> Result<()> {
        let args = kernel.args();
        debug_assert_eq!(args.len(), K::PARAMS.len());
        if self.pdl {
            return launch_pdl(self.gpu, f.cuda(), f.name(), grid, &args);
        }
        let mut b = self.gpu.stream.launch_builder(f.cuda());
        for a in &args {
            a.push_to(&mut b);
        }
        let cfg = LaunchConfig {
            grid_dim: grid.blocks,
            block_dim: (grid.threads, 1, 1),
            shared_mem_bytes: grid.smem as u32,
        };
        // SAFETY: the arguments are `K`'s parameter list, whose count, order and sizes the PTX compile
        // test checks against the kernel's `.entry`; every address is a view borrowed from a live
        // buffer, sized by `Scratch::new`, the weight layout or the cache shape checked by `Engine`
        // for the grid launched here; `smem` is within the limit set on the GEMV kernels at load
        // time (callers check).
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(cuda_err(f.name()))
    }
}

fn launch_pdl(gpu: &Gpu, f: &CudaFunction, name: &str, grid: Grid, args: &[Arg]) -> Result<()> {
    use cudarc::driver::sys;
    let mut params: Vec<*mut std::ffi::c_void> = args.iter().map(Arg::driver_ptr).collect();
    // SAFETY: all-zero bytes are a valid value of this plain C union.
    let mut value: sys::CUlaunchAttributeValue = unsafe { std::mem::zeroed() };
    value.programmaticStreamSerializationAllowed = 1;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value,
    };
    let cfg = sys::CUlaunchConfig {
        gridDimX: grid.blocks.0,
        gridDimY: grid.blocks.1,
        gridDimZ: grid.blocks.2,
        blockDimX: grid.threads,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: grid.smem as u32,
        hStream: gpu.stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: as in `Stream::launch` for the arguments (`params` points at `args`, alive for the
    // call, in the kernel's parameter order); `cfg` and `attr` outlive the call; the function belongs
    // to this context, which is current (cudarc binds it when the stream is created and on every
    // launch).
    unsafe {
        sys::cuLaunchKernelEx(
            &cfg,
            f.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(cuda_err(name))
}
