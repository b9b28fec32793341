#!/usr/bin/env bash
# Gemma 3 speed on the GPU in one device call, from the repository root:
#   TOTAL=500 bench/gpu_gemma.sh BIN_DIR OUT_DIR
# BIN_DIR holds the `cuda_bench` example. BF16, batch 1, seeded random weights, 128 new tokens:
#  1. copy bandwidth (the roofline's denominator);
#  2. gemma-3-1b-it at prompts 16 and 2048 with its sliding windows (local layers keep rings of 512),
#     and the same model with every layer's attention full (its config's window set past the cache),
#     alternated; Llama-3.2-1B beside it (the Llama of similar size);
#  3. transformers (static cache + torch.compile) on the same models and prompts.
# One JSON line per run in OUT_DIR/gemma.jsonl.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
START=$(date +%s)
TOTAL=${TOTAL:-500}
left() { echo $((START + TOTAL - $(date +%s))); }
nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PYTHON" "$HERE/gpu_hf.py" bandwidth >> "$OUT/gemma.jsonl" 2>> "$OUT/gemma.err"
full=/tmp/gemma-3-1b-it-full
mkdir -p "$full"
"$PYTHON" - "models/gemma-3-1b-it/config.json" "$full/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["sliding_window"] = 1 << 20  # past any cache: every layer attends to every earlier key
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
ours() {
    local dir=$1 p=$2 label=$3
    [ "$(left)" -gt 30 ] || { echo "$label $p skipped (deadline)" | tee -a "$OUT/summary.txt"; return; }
    timeout 120 "$BIN/cuda_bench" "$dir" --weights random --precision BF16 --prompt-len "$p" \
        --new-tokens 128 --reps 3 --label "$label" >> "$OUT/gemma.jsonl" 2>> "$OUT/gemma.err"
    echo "$label $p rc=$?" | tee -a "$OUT/summary.txt"
}
for p in 16 2048; do
    ours models/gemma-3-1b-it "$p" window
    ours "$full" "$p" full
    ours models/gemma-3-1b-it "$p" window
    ours "$full" "$p" full
    ours models/Llama-3.2-1B-Instruct "$p" ours
done
for m in gemma-3-1b-it Llama-3.2-1B-Instruct; do
    for p in 16 2048; do
        [ "$(left)" -gt 90 ] || { echo "transformers $m $p skipped (deadline)" | tee -a "$OUT/summary.txt"; continue; }
        timeout $(($(left) - 20)) "$PYTHON" "$HERE/gpu_hf.py" bench "$m" --prompt "$p" --new 128 \
            --mode static --dtype bf16 >> "$OUT/gemma.jsonl" 2>> "$OUT/gemma.err"
        echo "transformers $m $p rc=$?" | tee -a "$OUT/summary.txt"
    done
done
cat "$OUT/gemma.jsonl"
echo "total $(($(date +%s) - START)) s" | tee -a "$OUT/summary.txt"
