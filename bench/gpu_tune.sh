#!/usr/bin/env bash
# Decode tuning on a GPU machine, from the repository root:
#   bench/gpu_tune.sh BIN_DIR OUT_DIR
# 1. Llama-3.2-1B decode (FP16, batch 1, prompt 16) for each decode GEMV grid size
#    (LLMFORGE_DECODE_BPS = blocks per SM) and with programmatic dependent launch off;
# 2. the other benchmark models at prompt 16 with the default grid;
# 3. where Nsight Compute (ncu) runs, each decode kernel of one Llama-3.2-1B step timed alone (ncu
#    serialises kernels: this is each kernel's isolated duration and DRAM throughput, not the overlap
#    the CUDA graph gets).
# JSON lines go to OUT_DIR/tune.jsonl, ncu's CSV to OUT_DIR/ncu.csv.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
bench() { # label model prompt [env...]
    local label=$1 model=$2 prompt=$3
    shift 3
    env "$@" timeout 120 "$BIN/cuda_bench" "models/$model" --weights random --precision FP16 \
        --prompt-len "$prompt" --new-tokens 128 --reps 3 --label "$label" >> "$OUT/tune.jsonl" 2>> "$OUT/tune.err"
}
for bps in ${TUNE_BPS:-1 2 3 4}; do
    bench "bps$bps" Llama-3.2-1B-Instruct 16 LLMFORGE_DECODE_BPS=$bps
done
bench nopdl Llama-3.2-1B-Instruct 16 LLMFORGE_CUDA_PDL=0
for model in ${TUNE_MODELS:-gpt2 Qwen2.5-0.5B-Instruct Llama-3.1-8B-Instruct}; do
    bench default "$model" 16
done
if command -v ncu > /dev/null && [ -z "${TUNE_NO_NCU:-}" ]; then
    # The prefill's embed, then one decode step (embed, 5 per layer, lm_head).
    timeout 240 ncu --clock-control none --csv -k 'regex:^(dec_|attn_decode|embed)' --launch-count 83 \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
        "$BIN/cuda_bench" models/Llama-3.2-1B-Instruct --weights random --precision FP16 --prompt-len 16 \
        --new-tokens 4 --reps 1 > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    echo "ncu rc=$?" >> "$OUT/tune.err"
fi
python3 - "$OUT/tune.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['label']:8} {r['model']:24} decode {r['decode_ms_per_token']:.3f} ms/tok  ttft {r['ttft_ms']:.2f} ms")
PY
