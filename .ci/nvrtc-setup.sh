# Source this from .ci/run (bash): makes NVRTC from CUDA 13.0 loadable so that the CUDA kernel
# templates are compiled to PTX by `cargo test -p runtime --test cuda_kernels` on a machine without a
# GPU or a CUDA toolkit. cudarc loads `libnvrtc.so.13` by name through the dynamic loader, so putting
# the wheel's lib directory on LD_LIBRARY_PATH is all it takes.
#
#   . .ci/nvrtc-setup.sh
#
# Needs python3 with pip and network access to PyPI the first time; later runs reuse the cache dir.
# Pinned to 13.0 (the CUDA version the cudarc feature `cuda-13000` targets): PTX from a newer NVRTC
# carries a PTX ISA version that a CUDA 13.0 driver refuses to load.
LLMFORGE_NVRTC_VERSION=13.0.88
LLMFORGE_NVRTC_DIR="${LLMFORGE_NVRTC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llmforge/nvrtc-$LLMFORGE_NVRTC_VERSION}"
if [ ! -f "$LLMFORGE_NVRTC_DIR/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    mkdir -p "$LLMFORGE_NVRTC_DIR"
    "${PYTHON:-python3}" -m pip download --quiet --no-deps \
        "nvidia-cuda-nvrtc==$LLMFORGE_NVRTC_VERSION" -d "$LLMFORGE_NVRTC_DIR"
    "${PYTHON:-python3}" - "$LLMFORGE_NVRTC_DIR" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
zipfile.ZipFile(glob.glob(d + "/nvidia_cuda_nvrtc-*.whl")[0]).extractall(d)
PY
fi
export LD_LIBRARY_PATH="$LLMFORGE_NVRTC_DIR/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
