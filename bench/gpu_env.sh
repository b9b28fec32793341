# Sourced by the GPU scripts (`bench/gpu_*.sh BIN_DIR OUT_DIR`): sets BIN and OUT from the script's
# arguments (OUT is created), then puts the CUDA 13 NVRTC and cuBLASLt libraries on LD_LIBRARY_PATH
# (cudarc loads them by name), looking in the CUDA toolkit and in the pip wheels torch brings along.
BIN="${1:?usage: $0 BIN_DIR OUT_DIR}"
OUT="${2:?usage: $0 BIN_DIR OUT_DIR}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
for lib in libnvrtc.so.13 libcublasLt.so.13; do
    if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
        site=$("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
        found=$(find /usr/local/cuda*/ $site -name "$lib" 2>/dev/null | head -1)
        if [ -n "$found" ]; then
            export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        else
            echo "gpu_env.sh: $lib not found" >&2
        fi
    fi
done
# The test binaries locate models/ and tests/fixtures through the CARGO_MANIFEST_DIR they were built
# in (/work/main/runtime, or a worktree's): point those paths at this checkout.
for root in /work/main /work/wt/cuda; do
    if [ ! -e "$root/models" ]; then
        mkdir -p "$(dirname "$root")" && ln -sfn "$PWD" "$root"
    fi
done
