#!/usr/bin/env bash
# The redesign's GPU evidence in one device call, from the repository root:
#   TOTAL=520 bench/gpu_redesign.sh BIN_DIR OUT_DIR
# BIN_DIR holds this build's release test binaries (cuda_parity, typed_engine_cuda,
# cuda_prefill_attention, cuda_sampling, cuda_ops, hostile_gpu_memory_cuda, hostile_engine_file_cuda,
# cuda_long_context), its `cuda_bench` example, and `cuda_bench_base`: the example built at a commit
# before the redesign (8010719). Steps run in order of priority, each skipped once TOTAL seconds have
# gone: the CUDA suites and the typed engine, the kernels op by op (bench/gpu_ops.sh), the speed A/B
# (bench/gpu_ab.sh: Llama-3.2-1B both builds twice per prompt, Llama-3.1-8B once each), then the
# hostile and long-context suites.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
START=$(date +%s)
TOTAL=${TOTAL:-520}
left() { echo $((START + TOTAL - $(date +%s))); }
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
suite() {
    local t=$1 s
    s=$(date +%s)
    if [ "$(left)" -lt 40 ]; then
        echo "$t skipped (deadline)" | tee -a "$OUT/summary.txt"
        return
    fi
    LLMFORGE_REQUIRE_CUDA=1 timeout 100 "$BIN/$t" --include-ignored --test-threads 1 --nocapture \
        > "$OUT/$t.log" 2>&1
    echo "$t rc=$? $(($(date +%s) - s)) s" | tee -a "$OUT/summary.txt"
    grep -E "^test .*(ok|FAILED)$|test result" "$OUT/$t.log" | tail -6
}
suite cuda_parity
suite typed_engine_cuda
suite cuda_prefill_attention
suite cuda_sampling
if [ "$(left)" -gt 120 ]; then
    s=$(date +%s)
    timeout 150 "$HERE/gpu_ops.sh" "$BIN" "$OUT/ops"
    echo "cuda_ops rc=$? $(($(date +%s) - s)) s" | tee -a "$OUT/summary.txt"
fi
DEADLINE=$((START + TOTAL - 30)) AB_ORDER="base new new base" AB_MODELS=Llama-3.2-1B-Instruct \
    "$HERE/gpu_ab.sh" "$BIN" "$OUT/ab1"
DEADLINE=$((START + TOTAL - 60)) AB_ORDER="base new" AB_MODELS=Llama-3.1-8B-Instruct \
    "$HERE/gpu_ab.sh" "$BIN" "$OUT/ab8"
suite hostile_gpu_memory_cuda
suite hostile_engine_file_cuda
suite cuda_long_context
echo "total $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
