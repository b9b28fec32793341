#!/usr/bin/env bash
# Sliding windows, Gemma 3 and the fused Qwen3 decode on the GPU, in one device call, from the
# repository root:
#   TOTAL=540 bench/gpu_windows.sh BIN_DIR OUT_DIR
# BIN_DIR holds this build's release test binaries (cuda_kernels, cuda_parity, cuda_prefill_attention,
# typed_engine_cuda, cuda_ops, cuda_long_context), its `cuda_bench` example and `cuda_bench_base` (the
# example of the build before). Steps, each skipped once TOTAL seconds have gone:
#  1. the CUDA suites (the tiny windowed, Gemma 3 and Phi-3 fixtures run on the GPU in every precision
#     and cache mode, against transformers and against the CPU engine over rings that wrap), the
#     kernels op by op;
#  2. speed A/B of the two builds (FP16, batch 1, prompts 16 and 2048): Llama-3.2-1B and Qwen3-0.6B;
#  3. gemma-3-1b-it full-size seeded parity with transformers (FP32 and BF16) on a 600-token prompt,
#     longer than its 512-key window (bench/gpu_verify.sh).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
START=$(date +%s)
TOTAL=${TOTAL:-540}
left() { echo $((START + TOTAL - $(date +%s))); }
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
suite() {
    local t=$1 limit=$2 s
    s=$(date +%s)
    if [ "$(left)" -lt 40 ]; then
        echo "$t skipped (deadline)" | tee -a "$OUT/summary.txt"
        return
    fi
    LLMFORGE_REQUIRE_CUDA=1 timeout "$limit" "$BIN/$t" --include-ignored --test-threads 1 --nocapture \
        > "$OUT/$t.log" 2>&1
    echo "$t rc=$? $(($(date +%s) - s)) s" | tee -a "$OUT/summary.txt"
    grep -E "^test .*(ok|FAILED)$|test result" "$OUT/$t.log" | tail -8
}
suite cuda_parity 120
suite cuda_prefill_attention 150
if [ "$(left)" -gt 200 ]; then
    s=$(date +%s)
    timeout 120 "$HERE/gpu_ops.sh" "$BIN" "$OUT/ops"
    echo "cuda_ops rc=$? $(($(date +%s) - s)) s" | tee -a "$OUT/summary.txt"
fi
DEADLINE=$((START + TOTAL - 150)) AB_ORDER="base new new base" \
    AB_MODELS="Llama-3.2-1B-Instruct Qwen3-0.6B" "$HERE/gpu_ab.sh" "$BIN" "$OUT/ab"
if [ "$(left)" -gt 100 ]; then
    VERIFY_SUITES=0 VERIFY_MODELS=gemma-3-1b-it VERIFY_DTYPES="fp32 bf16" VERIFY_PROMPT=600 \
        timeout "$(($(left) - 20))" "$HERE/gpu_verify.sh" "$BIN" "$OUT/verify"
    echo "verify gemma rc=$?" | tee -a "$OUT/summary.txt"
fi
suite cuda_long_context 60
echo "total $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
