//! An engine file image → header, then the payload of the backend it names (CPU tensors, or the CUDA
//! kernels, GEMM choices and packed buffers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, end)) = runtime::engine_file::parse_header(data) {
        let mut payload = &data[end..];
        let len = payload.len() as u64;
        match header.backend {
            runtime::backend::BackendKind::Cpu => {
                let _ = runtime::backend::cpu::payload::read(&mut payload, len);
            }
            runtime::backend::BackendKind::Cuda => {
                let _ = runtime::backend::cuda::payload::read(&mut payload, len);
            }
        }
    }
});
