#!/usr/bin/env bash
# The op harness with the Gemma 3 and window cases, Qwen3-8B full-size seeded parity (FP16) and the
# 8B decode speeds (Qwen3-8B beside Llama-3.1-8B, FP16, batch 1, prompt 16), in one device call:
#   TOTAL=400 bench/gpu_session12b.sh BIN_DIR OUT_DIR
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
START=$(date +%s)
TOTAL=${TOTAL:-400}
left() { echo $((START + TOTAL - $(date +%s))); }
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 150 "$HERE/gpu_ops.sh" "$BIN" "$OUT/ops" | tail -5
echo "cuda_ops rc=${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
for m in Qwen3-8B Llama-3.1-8B-Instruct; do
    [ "$(left)" -gt 250 ] || { echo "$m speed skipped (deadline)" | tee -a "$OUT/summary.txt"; continue; }
    timeout 120 "$BIN/cuda_bench" "models/$m" --weights random --precision FP16 --prompt-len 16 \
        --new-tokens 128 --reps 3 >> "$OUT/speed.jsonl" 2>> "$OUT/speed.err"
    echo "$m speed rc=$?" | tee -a "$OUT/summary.txt"
done
cat "$OUT/speed.jsonl"
if [ "$(left)" -gt 120 ]; then
    VERIFY_SUITES=0 VERIFY_MODELS=Qwen3-8B VERIFY_DTYPES=fp16 \
        timeout "$(($(left) - 10))" "$HERE/gpu_verify.sh" "$BIN" "$OUT/verify"
    echo "verify Qwen3-8B rc=$?" | tee -a "$OUT/summary.txt"
    cat "$OUT/verify/compare.jsonl"
fi
echo "total $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
