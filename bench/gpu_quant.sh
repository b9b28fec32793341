#!/usr/bin/env bash
# Weights quantized at build and GGUF blocks kept on the GPU, in one device call: the quantized-engine
# tests against transformers (cuda_quant) and the kept-blocks tests against the CPU engine (cuda_gguf), the op harness and the dense parity suite (regressions of the shared
# decode kernels), then batch-1 decode speed of each format beside FP16 dense, int4 also on the f32
# GEMV path (and, where BASE_BIN holds an earlier build's cuda_bench, that build's dense speed for an
# A/B):
#   TOTAL=560 bench/gpu_quant.sh BIN_DIR OUT_DIR [BASE_BIN]
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
BASE="${3:-}"
START=$(date +%s)
TOTAL=${TOTAL:-560}
left() { echo $((START + TOTAL - $(date +%s))); }
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
run_test() { # name timeout
    [ "$(left)" -gt "$2" ] || { echo "$1 skipped (deadline)" | tee -a "$OUT/summary.txt"; return; }
    LLMFORGE_REQUIRE_CUDA=1 timeout "$2" "$BIN/$1" --include-ignored --test-threads 1 --nocapture \
        > "$OUT/$1.log" 2>&1
    echo "$1 rc=$?" | tee -a "$OUT/summary.txt"
    grep -E "^test result|FAIL|panicked" "$OUT/$1.log" | head -8
}
run_test cuda_quant 150
run_test cuda_gguf 100
speed() { # label bin model quant [extra...]
    local label=$1 bin=$2 model=$3 quant=$4
    shift 4
    [ "$(left)" -gt 100 ] || { echo "$label $model $quant skipped (deadline)" | tee -a "$OUT/summary.txt"; return; }
    local q=()
    [ "$quant" = none ] || q=(--quant "$quant")
    timeout 100 "$bin/cuda_bench" "models/$model" --weights random --precision FP16 --prompt-len 16 \
        --new-tokens 128 --reps 3 --label "$label" "${q[@]}" "$@" >> "$OUT/speed.jsonl" 2>> "$OUT/speed.err"
    echo "$label $model $quant rc=$?" | tee -a "$OUT/summary.txt"
}
for model in Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct; do
    [ -n "$BASE" ] && speed base "$BASE" "$model" none
    for quant in none int4 int8 fp8; do speed ours "$BIN" "$model" "$quant"; done
    # The f32 GEMV path for the same format (LLMFORGE_DECODE_MMA=0), and the tensor-core one with a
    # block per 16-row tile instead of the persistent grid, against the default.
    LLMFORGE_DECODE_MMA=0 speed ours-f32-gemv "$BIN" "$model" int4
    LLMFORGE_DECODE_MMA_GRID=tiles speed ours-tile-grid "$BIN" "$model" int4
    [ -n "$BASE" ] && speed base "$BASE" "$model" none
done
cat "$OUT/speed.jsonl"
# Logit distance of each format to FP16 dense on the same seeded weights (full-size Llama-3.2-1B, the
# prompt's last-position logits and the greedy tokens of cuda_bench --dump).
if [ "$(left)" -gt 200 ]; then
    for quant in none int8 int4 fp8; do
        q=()
        [ "$quant" = none ] || q=(--quant "$quant")
        timeout 60 "$BIN/cuda_bench" models/Llama-3.2-1B-Instruct --weights random --precision FP16 \
            --prompt-len 32 --new-tokens 32 --reps 1 "${q[@]}" --dump "$OUT/dump-$quant.json" \
            > /dev/null 2>> "$OUT/speed.err"
    done
    "$PYTHON" - "$OUT" <<'PY' | tee "$OUT/distance.txt"
import json, math, sys
out = sys.argv[1]
ref = json.load(open(f"{out}/dump-none.json"))
r = ref["last_logits"]
scale = max(abs(x) for x in r)
def softmax(v):
    m = max(v); e = [math.exp(x - m) for x in v]; s = sum(e); return [x / s for x in e]
p = softmax(r)
for q in ["int8", "int4", "fp8"]:
    try:
        d = json.load(open(f"{out}/dump-{q}.json"))
    except OSError:
        print(q, "missing"); continue
    g = d["last_logits"]
    rel = max(abs(a - b) for a, b in zip(g, r)) / scale
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, softmax(g)) if pi > 0)
    agree = next((i for i, (a, b) in enumerate(zip(d["greedy"], ref["greedy"])) if a != b), len(ref["greedy"]))
    print(f"{q}: max|d|/max|fp16| {rel:.3e}, KL(fp16||{q}) {kl:.3e}, greedy agreement {agree}/{len(ref['greedy'])}")
PY
fi
run_test cuda_ops 120
run_test cuda_parity 150
echo "total $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
