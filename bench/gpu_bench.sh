#!/usr/bin/env bash
# GPU benchmark, run from the repository root on a GPU machine:
#   bench/gpu_bench.sh BIN_DIR OUT_DIR
# For each model (BENCH_MODELS, default GPT-2, Qwen2.5-0.5B, Llama-3.2-1B, Llama-3.1-8B; FP16, batch 1,
# prompts of 16 and 2048 tokens, 128 new tokens): our engine (seeded random weights: speed does not
# depend on values), transformers eager, and transformers with the static cache + torch.compile
# (mode reduce-overhead), all on the same card in the same run, plus the measured device copy
# bandwidth. Every result is one JSON line in OUT_DIR/bench.jsonl; bench/gpu_report.py turns it into
# bench/RESULTS.md. BENCH_IMPLS selects any of: ours ours-nopdl (programmatic dependent launch off)
# eager static.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu_name.txt" 2>&1
"$PYTHON" "$HERE/gpu_hf.py" bandwidth >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
MODELS="${BENCH_MODELS:-gpt2 Qwen2.5-0.5B-Instruct Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct}"
PROMPTS="${BENCH_PROMPTS:-16 2048}"
IMPLS="${BENCH_IMPLS:-ours eager static}"
for name in $MODELS; do
    for prompt in $PROMPTS; do
        # GPT-2 has 1024 learned positions: its long prompt is 896 tokens (+128 new = 1024).
        if [ "$name" = gpt2 ] && [ "$prompt" -gt 896 ]; then prompt=896; fi
        for impl in $IMPLS; do
            case "$impl" in
            ours | ours-nopdl)
                pdl=1
                [ "$impl" = ours-nopdl ] && pdl=0
                LLMFORGE_CUDA_PDL=$pdl timeout 300 "$BIN/cuda_bench" "models/$name" --weights random \
                    --precision FP16 --prompt-len "$prompt" --new-tokens 128 --reps 3 --label "$impl" \
                    >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err" ;;
            eager | static)
                timeout 400 "$PYTHON" "$HERE/gpu_hf.py" bench "$name" --prompt "$prompt" --new 128 \
                    --mode "$impl" --dtype fp16 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err" ;;
            esac
            echo "$name $prompt $impl rc=$?" >> "$OUT/progress.txt"
        done
    done
done
