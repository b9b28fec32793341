//! The CUDA backend: cudarc (dynamic loading), cuBLASLt GEMMs, NVRTC kernels specialised per model,
//! CUDA graphs for decode.
