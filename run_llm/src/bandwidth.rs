//! The memory bandwidth the roofline figure is measured against, measured on the device the engine
//! runs on: a large buffer copied repeatedly (STREAM "copy" convention: bytes read + bytes written over
//! the time), best of several repetitions.
//!
//! CPU: a 256 MiB copy split across the engine's threads. CUDA: a 1 GiB device-to-device copy on the
//! engine's GPU, timed with CUDA events.

use anyhow::{Context, Result};
use rayon::prelude::*;
use runtime::engine::DeviceChoice;
use std::time::Instant;

const REPS: usize = 5;

pub struct Measured {
    pub gb_s: f64,
    pub probe: String,
}

pub fn measure(device: DeviceChoice) -> Result<Measured> {
    match device {
        DeviceChoice::Cpu { threads } => cpu(threads),
        DeviceChoice::Cuda { ordinal } => cuda(ordinal),
    }
}

fn cpu(threads: Option<usize>) -> Result<Measured> {
    const BYTES: usize = 256 << 20;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        pool = pool.num_threads(n);
    }
    let pool = pool
        .build()
        .context("thread pool for the bandwidth probe")?;
    let n = pool.current_num_threads();
    let words = BYTES / 8;
    let src: Vec<u64> = (0..words as u64).collect();
    let mut dst = vec![0u64; words];
    let chunk = words.div_ceil(n * 4);
    let mut best = f64::INFINITY;
    for _ in 0..REPS {
        let t = Instant::now();
        pool.install(|| {
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&dst);
    }
    Ok(Measured {
        gb_s: 2.0 * BYTES as f64 / best / 1e9,
        probe: format!("CPU memory copy probe: 256 MiB, {n} threads, best of {REPS}, read + write"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Measured> {
    anyhow::bail!(
        "no CUDA device {ordinal} for the bandwidth probe: this build has no CUDA backend"
    )
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Measured> {
    const BYTES: usize = 1 << 30;
    if crate::device::cuda_device_count() <= ordinal {
        anyhow::bail!("no CUDA device {ordinal} for the bandwidth probe");
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal)
        .context("CUDA context for the bandwidth probe")?;
    let stream = ctx.default_stream();
    let src = stream.alloc_zeros::<u8>(BYTES)?;
    let mut dst = stream.alloc_zeros::<u8>(BYTES)?;
    stream.memcpy_dtod(&src, &mut dst)?;
    stream.synchronize()?;
    let mut best_ms = f32::INFINITY;
    for _ in 0..REPS {
        let start = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        let end = ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?;
        start.record(&stream)?;
        stream.memcpy_dtod(&src, &mut dst)?;
        end.record(&stream)?;
        end.synchronize()?;
        best_ms = best_ms.min(start.elapsed_ms(&end)?);
    }
    Ok(Measured {
        gb_s: 2.0 * BYTES as f64 / (best_ms as f64 / 1e3) / 1e9,
        probe: format!(
            "GPU {ordinal} device-to-device copy probe: 1 GiB, best of {REPS}, read + write"
        ),
    })
}
