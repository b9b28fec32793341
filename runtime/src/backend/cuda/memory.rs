//! Device memory typed by element: the one module that holds raw device addresses. A [`DevBuf<E>`]
//! owns an allocation of `E` elements; [`DevSlice`] and [`DevSliceMut`] are views of a range of it,
//! borrowed from the buffer for their lifetime, that a kernel reads or writes; [`Arg`] is one kernel
//! argument as the driver copies it; [`Addr`] is a buffer's address as an identity (the CUDA graphs
//! are valid for the addresses they were captured with). Everything else in the backend sees only
//! these types.
//!
//! A written view is borrowed shared, not exclusively: no host reference ever points into device
//! memory, the kernels' reads and writes are ordered by the one stream, and a CUDA graph keeps
//! writing through its captured addresses long after any borrow ended. The borrow ties a view to the
//! buffer's life while a launch is built; the two view types say which way the kernel uses it.

use std::ffi::c_void;
use std::marker::PhantomData;

use cudarc::driver::{CudaSlice, DevicePtr, LaunchArgs, PushKernelArg};

/// An element type of device memory.
pub trait Elem: 'static {
    /// What the element is, for messages.
    const NAME: &'static str;
}

/// An element of one size at every precision, copied to and from the host as `Host`.
pub trait Fixed: Elem {
    type Host: bytemuck::Pod;
}

/// The engine's storage element: weights, GEMM inputs and the KV cache, as f32, f16 or bf16 by the
/// engine's precision (its size is fixed when a buffer is allocated).
pub enum Stored {}

/// A greedy-selection key (`argmax_key` in runtime/templates/kernels/common.cuh: the logit's
/// order-preserving image above the inverted token index), 8 bytes.
pub enum ArgmaxKey {}

/// A global-timer mark of the decode timeline (`trace.rs`), 8 bytes of nanoseconds.
pub enum Mark {}

impl Elem for Stored {
    const NAME: &'static str = "storage element";
}

macro_rules! fixed {
    ($($elem:ty => $host:ty, $name:literal;)+) => {$(
        impl Elem for $elem {
            const NAME: &'static str = $name;
        }
        impl Fixed for $elem {
            type Host = $host;
        }
    )+};
}
fixed! {
    f32 => f32, "f32";
    f64 => f64, "f64";
    u32 => u32, "u32";
    i32 => i32, "i32";
    u8 => u8, "byte";
    ArgmaxKey => u64, "argmax key";
    Mark => u64, "timeline mark";
}

/// Bytes of one element of `E` where its size does not depend on the precision.
pub fn fixed_bytes<E: Fixed>() -> usize {
    std::mem::size_of::<E::Host>()
}

/// A device allocation of `len` elements of `E`, each `elem` bytes.
pub struct DevBuf<E: Elem> {
    slice: CudaSlice<u8>,
    /// The device address of element 0.
    base: u64,
    len: usize,
    elem: usize,
    _elem: PhantomData<E>,
}

impl<E: Elem> DevBuf<E> {
    /// `slice` (at least `len * elem` bytes) as `len` elements of `elem` bytes.
    pub(super) fn new(slice: CudaSlice<u8>, len: usize, elem: usize) -> DevBuf<E> {
        debug_assert!(slice.len() >= len * elem);
        let base = slice.device_ptr(slice.stream()).0;
        DevBuf {
            slice,
            base,
            len,
            elem,
            _elem: PhantomData,
        }
    }

    /// The allocation, for copies to and from the host.
    pub(super) fn raw(&self) -> &CudaSlice<u8> {
        &self.slice
    }

    pub(super) fn raw_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.slice
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of one element.
    pub fn elem_bytes(&self) -> usize {
        self.elem
    }

    /// Bytes of all elements.
    pub fn bytes(&self) -> usize {
        self.len * self.elem
    }

    /// The buffer's address as an identity.
    pub fn addr(&self) -> Addr {
        Addr(self.base)
    }

    /// The whole buffer, read by a kernel.
    pub fn view(&self) -> DevSlice<'_, E> {
        self.slice(0, self.len)
    }

    /// The whole buffer, written by a kernel.
    pub fn view_mut(&self) -> DevSliceMut<'_, E> {
        self.slice_mut(0, self.len)
    }

    /// Elements `start..start + len`, read by a kernel.
    pub fn slice(&self, start: usize, len: usize) -> DevSlice<'_, E> {
        debug_assert!(
            start + len <= self.len,
            "{}..{} of {}",
            start,
            start + len,
            self.len
        );
        DevSlice {
            addr: self.base + (start * self.elem) as u64,
            len,
            elem: self.elem,
            _buf: PhantomData,
        }
    }

    /// Bytes `start..start + len` of the buffer, read by a kernel as bytes (a packed matrix of
    /// another format inside a buffer of storage elements).
    pub fn byte_slice(&self, start: usize, len: usize) -> DevSlice<'_, u8> {
        debug_assert!(
            start + len <= self.bytes(),
            "bytes {}..{} of {}",
            start,
            start + len,
            self.bytes()
        );
        DevSlice {
            addr: self.base + start as u64,
            len,
            elem: 1,
            _buf: PhantomData,
        }
    }

    /// Elements `start..start + len`, written by a kernel.
    pub fn slice_mut(&self, start: usize, len: usize) -> DevSliceMut<'_, E> {
        let s = self.slice(start, len);
        DevSliceMut {
            addr: s.addr,
            len,
            elem: s.elem,
            _buf: PhantomData,
        }
    }
}

/// `len` elements of `E` in device memory that a kernel reads (`const E*`), borrowed for `'a`.
pub struct DevSlice<'a, E: Elem> {
    addr: u64,
    len: usize,
    elem: usize,
    _buf: PhantomData<&'a DevBuf<E>>,
}

/// `len` elements of `E` in device memory that a kernel writes (`E*`), borrowed for `'a`.
pub struct DevSliceMut<'a, E: Elem> {
    addr: u64,
    len: usize,
    elem: usize,
    _buf: PhantomData<&'a DevBuf<E>>,
}

macro_rules! view_common {
    ($view:ident) => {
        impl<E: Elem> Clone for $view<'_, E> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<E: Elem> Copy for $view<'_, E> {}

        impl<E: Elem> std::fmt::Debug for $view<'_, E> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    concat!(stringify!($view), "<{}>({:#x}, {} elements)"),
                    E::NAME,
                    self.addr,
                    self.len
                )
            }
        }

        impl<'a, E: Elem> $view<'a, E> {
            /// Elements.
            pub fn len(&self) -> usize {
                self.len
            }

            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// Elements `start..start + len` of this view.
            pub fn slice(self, start: usize, len: usize) -> Self {
                debug_assert!(
                    start + len <= self.len,
                    "{}..{} of {}",
                    start,
                    start + len,
                    self.len
                );
                $view {
                    addr: self.addr + (start * self.elem) as u64,
                    len,
                    ..self
                }
            }

            /// The elements from `start` on.
            pub fn skip(self, start: usize) -> Self {
                debug_assert!(start <= self.len, "{} of {}", start, self.len);
                self.slice(start, self.len - start)
            }

            /// The view's address as an identity.
            pub fn addr(&self) -> Addr {
                Addr(self.addr)
            }

            /// Bytes of the view.
            pub fn byte_len(&self) -> usize {
                self.len * self.elem
            }

            /// The same bytes as elements of `F`, of the same size.
            pub fn cast<F: Fixed>(self) -> $view<'a, F> {
                debug_assert_eq!(fixed_bytes::<F>(), self.elem, "{} as {}", E::NAME, F::NAME);
                $view {
                    addr: self.addr,
                    len: self.len,
                    elem: self.elem,
                    _buf: PhantomData,
                }
            }

            /// The kernel argument: this view's address.
            pub fn arg(&self) -> Arg {
                Arg(Value::Ptr(self.addr))
            }
        }
    };
}
view_common!(DevSlice);
view_common!(DevSliceMut);

impl<'a, E: Elem> DevSliceMut<'a, E> {
    /// The same elements, read.
    pub fn read(self) -> DevSlice<'a, E> {
        DevSlice {
            addr: self.addr,
            len: self.len,
            elem: self.elem,
            _buf: PhantomData,
        }
    }

    /// The address for a library call that writes it (cuBLASLt).
    pub(super) fn ffi_mut(&self) -> *mut c_void {
        self.addr as *mut c_void
    }
}

impl<E: Elem> DevSlice<'_, E> {
    /// The address for a library call that reads it (cuBLASLt).
    pub(super) fn ffi(&self) -> *const c_void {
        self.addr as *const c_void
    }
}

/// A device address as an identity: equal for the same address, nothing else can be done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr(u64);

impl Addr {
    /// A made-up address, for tests of what compares addresses.
    #[cfg(test)]
    pub(crate) fn fake(n: usize) -> Addr {
        Addr(n as u64)
    }
}

/// One kernel argument as the driver copies it into the parameter space: a device address (null for
/// an absent optional buffer) or a 32-bit scalar. Addresses come only from views.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arg(Value);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Ptr(u64),
    I32(i32),
    U32(u32),
    F32(f32),
}

impl Arg {
    /// The null pointer of an absent optional buffer.
    pub const NULL: Arg = Arg(Value::Ptr(0));

    pub fn i32(v: i32) -> Arg {
        Arg(Value::I32(v))
    }

    pub fn u32(v: u32) -> Arg {
        Arg(Value::U32(v))
    }

    pub fn f32(v: f32) -> Arg {
        Arg(Value::F32(v))
    }

    /// The address of this value, as `cuLaunchKernelEx` reads each parameter (valid while `self` is).
    pub(super) fn driver_ptr(&self) -> *mut c_void {
        match &self.0 {
            Value::Ptr(v) => v as *const u64 as *mut c_void,
            Value::I32(v) => v as *const i32 as *mut c_void,
            Value::U32(v) => v as *const u32 as *mut c_void,
            Value::F32(v) => v as *const f32 as *mut c_void,
        }
    }

    /// Append this value to a cudarc launch (which keeps a pointer to it until the launch).
    pub(super) fn push_to<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        match &self.0 {
            Value::Ptr(v) => b.arg(v),
            Value::I32(v) => b.arg(v),
            Value::U32(v) => b.arg(v),
            Value::F32(v) => b.arg(v),
        };
    }
}
