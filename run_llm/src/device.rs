//! `--device`: the CPU, or the first CUDA GPU. Without the flag a usable GPU is preferred; "usable"
//! means the CUDA driver library loads, reports a device, and this build's CUDA backend builds on it
//! (the caller falls back to the CPU, saying so, when the build reports CUDA as unavailable).

use crate::args::DeviceArg;
use anyhow::Result;
use runtime::engine::DeviceChoice;

/// The device to try first, and whether the user chose it. `--device cuda` in a build without the
/// `cuda` feature is refused here, before anything loads.
pub fn choose(flag: Option<DeviceArg>, threads: Option<usize>) -> Result<(DeviceChoice, bool)> {
    Ok(match flag {
        Some(DeviceArg::Cpu) => (DeviceChoice::Cpu { threads }, true),
        Some(DeviceArg::Cuda) => {
            let device = DeviceChoice::Cuda { ordinal: 0 };
            compiled_in(device, "--device cuda")?;
            (device, true)
        }
        None if cuda_device_count() > 0 => (DeviceChoice::Cuda { ordinal: 0 }, false),
        None => (DeviceChoice::Cpu { threads }, false),
    })
}

/// Refuses a CUDA `device` when this build has no CUDA backend (run_llm's `cuda` feature is off);
/// `what` names what asked for it.
pub fn compiled_in(device: DeviceChoice, what: &str) -> Result<()> {
    if matches!(device, DeviceChoice::Cuda { .. }) && !cfg!(feature = "cuda") {
        anyhow::bail!(
            "{what}: this run_llm was built without CUDA support (its `cuda` feature is off); \
             build it with its default features to run on a GPU"
        );
    }
    Ok(())
}

/// Number of CUDA devices the driver reports; 0 when there is no driver library or no device, or
/// when this build has no CUDA backend.
#[cfg(not(feature = "cuda"))]
pub fn cuda_device_count() -> usize {
    0
}

/// Number of CUDA devices the driver reports; 0 when there is no driver library or no device.
#[cfg(feature = "cuda")]
pub fn cuda_device_count() -> usize {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library and reports whether it loaded;
    // it has no preconditions.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return 0;
    }
    if cudarc::driver::result::init().is_err() {
        return 0;
    }
    cudarc::driver::result::device::get_count().map_or(0, |n| n.max(0) as usize)
}

/// A name for the output.
pub fn label(device: DeviceChoice) -> String {
    match device {
        DeviceChoice::Cpu { threads } => {
            let n = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            format!("cpu ({n} threads)")
        }
        DeviceChoice::Cuda { ordinal } => format!("cuda:{ordinal}"),
    }
}
