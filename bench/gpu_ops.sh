#!/usr/bin/env bash
# The CUDA kernels op by op against the CPU reference, run from the repository root on a GPU machine:
#   bench/gpu_ops.sh BIN_DIR OUT_DIR
# BIN_DIR holds the release test binary `cuda_ops` (built with `cargo test --release -p runtime --test
# cuda_ops --no-run`; cargo prints its path under target/release/deps/). It prints one line per output
# of every case (kernel, model, switches, precision, variant, max abs and relative error, bound) into
# OUT_DIR/cuda_ops.log and fails naming every case out of bound; the exit status is the test's.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
LLMFORGE_REQUIRE_CUDA=1 "$BIN/cuda_ops" --include-ignored --test-threads 1 --nocapture > "$OUT/cuda_ops.log" 2>&1
rc=$?
echo "cuda_ops rc=$rc" | tee "$OUT/summary.txt"
grep -E "FAIL|failed|cases run" "$OUT/cuda_ops.log" | tail -40 | tee -a "$OUT/summary.txt"
exit "$rc"
