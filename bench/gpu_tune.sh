#!/usr/bin/env bash
# Decode tuning on a GPU machine, from the repository root:
#   bench/gpu_tune.sh BIN_DIR OUT_DIR < cases
# Each line of `cases` is `label model prompt_len [VAR=value ...]`: our engine on models/<model> (FP16,
# batch 1, seeded random weights, 128 new tokens, median of 3) with those environment variables, e.g.
# LLMFORGE_DECODE_VPS (16-byte vectors per lane per decode GEMV step: 4, 8, 16), LLMFORGE_DECODE_BPS
# (decode GEMV blocks per SM), LLMFORGE_CUDA_PDL=0 (programmatic dependent launch off),
# LLMFORGE_DECODE_TRACE=1 (per-kernel timeline of the decode steps, printed to tune.err at exit).
# With NCU=1, afterwards each decode kernel of one Llama-3.2-1B step is timed alone by Nsight Compute
# (ncu serialises kernels: isolated durations and DRAM bytes, not the overlap the CUDA graph gets).
# JSON lines go to OUT_DIR/tune.jsonl, ncu's CSV to OUT_DIR/ncu.csv; a table is printed last.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
while read -r label model prompt vars; do
    [ -z "$label" ] || [ "${label#\#}" != "$label" ] && continue
    # shellcheck disable=SC2086
    env $vars timeout 120 "$BIN/cuda_bench" "models/$model" --weights random --precision FP16 \
        --prompt-len "$prompt" --new-tokens 128 --reps 3 --label "$label" \
        >> "$OUT/tune.jsonl" 2>> "$OUT/tune.err" < /dev/null
done
if [ -n "${NCU:-}" ] && command -v ncu > /dev/null; then
    # The prefill's embed, then one decode step (embed, 5 launches per layer, lm_head).
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
    if "impl" in r:
        print(f"{r['impl']:14} {r['model']:24} {r['prompt_len']:5} decode {r['decode_ms_per_token']:.3f} ms/tok  ttft {r['ttft_ms']:.2f} ms")
PY
