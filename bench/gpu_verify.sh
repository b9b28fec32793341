#!/usr/bin/env bash
# GPU verification of the CUDA backend, run from the repository root on a GPU machine:
#   bench/gpu_verify.sh BIN_DIR OUT_DIR
# BIN_DIR holds the release test binaries `cuda_kernels`, `cuda_parity` (optionally
# `hostile_engine_file_cuda`, `hostile_gpu_memory_cuda`, `typed_engine_cuda`,
# `cuda_prefill_attention`, `cuda_long_context`, `cuda_sampling`, `smollm2_greedy_cuda`) and the
# `cuda_bench` example (built with `cargo test --release -p runtime --no-run` / `cargo build --release
# -p runtime --example cuda_bench`). Logs and JSON results go to OUT_DIR.
#  1. NVRTC compile tests and the tiny-fixture parity tests against transformers' references.
#  2. Full-size architectures (VERIFY_MODELS, default Qwen2.5-0.5B and Llama-3.2-1B) with seeded
#     weights: transformers makes the model (torch.manual_seed(0)) and saves it; our engine loads that
#     directory; logits of the last prompt position and the greedy continuation are compared on the
#     same GPU. Each of our greedy tokens is also scored by transformers given our own prefix (teacher
#     forcing), and at FP16/BF16 transformers' greedy run is compared with its FP32 run on the same
#     weights: how soon 16-bit rounding alone makes a continuation part ways. `gpu_hf.py compare`
#     fails a run that crosses one of its thresholds (its docstring lists them: distance to
#     transformers' logits, distance to the FP32 logits no worse than transformers' own 16-bit run,
#     greedy runs parting only at a near-tie) and names the threshold.
# Every step runs whatever an earlier one gave; each step's exit status is in OUT_DIR/summary.txt, and
# the script exits 1 when any step failed (the failed steps are listed last), else 0.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
FAILED=()
# record NAME RC: the step's exit status into the summary, and the step into FAILED unless RC is 0.
record() {
    echo "$1 rc=$2" | tee -a "$OUT/summary.txt"
    [ "$2" -eq 0 ] || FAILED+=("$1 (rc=$2)")
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
# VERIFY_SUITES=0 skips the test suites (steps 1) and runs only the full-size checks.
if [ "${VERIFY_SUITES:-1}" = 1 ]; then
"$BIN/cuda_kernels" --include-ignored --test-threads 1 > "$OUT/cuda_kernels.log" 2>&1
record cuda_kernels $?
LLMFORGE_REQUIRE_CUDA=1 "$BIN/cuda_parity" --include-ignored --test-threads 1 --nocapture > "$OUT/cuda_parity.log" 2>&1
record cuda_parity $?
# GPU-only tests of other suites, where their binaries were carried (hostile CUDA engine files and GPU
# memory, the typed API on CUDA, long-prompt prefill attention against the CPU engine, 1100-token
# prompts against transformers, device sampling against the host sampler).
for t in hostile_engine_file_cuda hostile_gpu_memory_cuda typed_engine_cuda cuda_prefill_attention cuda_long_context cuda_sampling smollm2_greedy_cuda; do
    [ -x "$BIN/$t" ] || { echo "$t: not in $BIN" | tee -a "$OUT/summary.txt"; continue; }
    # The real SmolLM2 needs its GGUF (LLMFORGE_SMOLLM2_GGUF; docs/cuda-backend.md says how to bring it).
    if [ "$t" = smollm2_greedy_cuda ] && [ ! -f "${LLMFORGE_SMOLLM2_GGUF:-}" ]; then
        echo "$t: skipped, LLMFORGE_SMOLLM2_GGUF is not a file" | tee -a "$OUT/summary.txt"
        continue
    fi
    "$BIN/$t" --include-ignored --test-threads 1 --nocapture > "$OUT/$t.log" 2>&1
    record "$t" $?
done
fi
# VERIFY_MODELS / VERIFY_DTYPES choose the full-size checks, VERIFY_PROMPT the prompt length (default 16;
# longer than a model's sliding window to take its local layers round their rings) (all four benchmark models: several minutes;
# Llama-3.1-8B in FP32 writes 32 GB).
for name in ${VERIFY_MODELS:-Qwen2.5-0.5B-Instruct Llama-3.2-1B-Instruct}; do
    for dtype in ${VERIFY_DTYPES:-fp32 fp16}; do
        dir="/tmp/hf/$name-$dtype"
        "$PYTHON" "$HERE/gpu_hf.py" make "$name" "$dir" --dtype "$dtype" >> "$OUT/make.log" 2>&1
        rc=$?
        record "make $name $dtype" $rc
        if [ "$rc" -eq 0 ]; then
            p=$(echo "$dtype" | tr a-z A-Z)
            rm -f "$OUT/$name-$dtype.json"
            "$BIN/cuda_bench" "$dir" --weights hf --precision "$p" --prompt-len "${VERIFY_PROMPT:-16}" --new-tokens 32 --reps 1 \
                --dump "$OUT/$name-$dtype.json" >> "$OUT/ours_verify.jsonl" 2>> "$OUT/ours_verify.err"
            rc=$?
            record "cuda_bench $name $dtype" $rc
        fi
        if [ "$rc" -eq 0 ]; then
            # Its stderr names each crossed threshold: kept in compare.err and the summary.
            "$PYTHON" "$HERE/gpu_hf.py" compare "$dir" "$OUT/$name-$dtype.json" --dtype "$dtype" \
                --oracle fp32 --model "$name" >> "$OUT/compare.jsonl" 2> "$OUT/compare.last.err"
            rc=$?
            cat "$OUT/compare.last.err" >> "$OUT/compare.err"
            grep "FAIL:" "$OUT/compare.last.err" | tee -a "$OUT/summary.txt"
            record "compare $name $dtype" $rc
        fi
        rm -rf "$dir"
    done
done
rm -f "$OUT/compare.last.err"
cat "$OUT/compare.jsonl" >> "$OUT/summary.txt" 2>/dev/null
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu_verify.sh: ${#FAILED[@]} step(s) failed:" | tee -a "$OUT/summary.txt"
    printf '  %s\n' "${FAILED[@]}" | tee -a "$OUT/summary.txt"
    exit 1
fi
echo "gpu_verify.sh: every step passed" | tee -a "$OUT/summary.txt"
