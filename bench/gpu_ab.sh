#!/usr/bin/env bash
# Speed A/B of two builds of the CUDA engine on one card, from the repository root:
#   bench/gpu_ab.sh BIN_DIR OUT_DIR
# BIN_DIR/cuda_bench_base and BIN_DIR/cuda_bench (runtime's `cuda_bench` example of each build); FP16,
# batch 1, seeded random weights, 128 new tokens, prompts of 16 and 2048 tokens. AB_MODELS (default
# Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct), AB_ORDER (default "base new new base": the builds
# alternate per case), DEADLINE (epoch seconds after which no run starts). One JSON line per run in
# OUT_DIR/ab.jsonl and the mean TTFT and decode ms/token of each build per case.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
for m in ${AB_MODELS:-Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct}; do
    for p in 16 2048; do
        for b in ${AB_ORDER:-base new new base}; do
            if [ -n "${DEADLINE:-}" ] && [ "$(date +%s)" -gt "$DEADLINE" ]; then
                echo "$m $p $b skipped (deadline)" | tee -a "$OUT/ab_progress.txt"
                continue
            fi
            exe=$BIN/cuda_bench
            [ "$b" = base ] && exe=$BIN/cuda_bench_base
            timeout 150 "$exe" "models/$m" --weights random --precision FP16 --prompt-len "$p" \
                --new-tokens 128 --reps 3 --label "$b" >> "$OUT/ab.jsonl" 2>> "$OUT/ab.err"
            echo "$m $p $b rc=$?" >> "$OUT/ab_progress.txt"
        done
    done
done
"$PYTHON" - "$OUT/ab.jsonl" <<'PY'
import collections, json, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    runs[(d["model"], d["prompt_len"], d["impl"])].append((d["ttft_ms"], d["decode_ms_per_token"]))
    print(d["impl"], d["gpu"], d["model"], d["prompt_len"],
          "ttft %.3f ms decode %.4f ms/token" % (d["ttft_ms"], d["decode_ms_per_token"]))
mean = lambda xs: sum(xs) / len(xs)
for m, p in sorted({(k[0], k[1]) for k in runs}):
    b, n = runs.get((m, p, "base")), runs.get((m, p, "new"))
    if b and n:
        bt, nt = mean([x[0] for x in b]), mean([x[0] for x in n])
        bd, nd = mean([x[1] for x in b]), mean([x[1] for x in n])
        print(f"{m} prompt {p}: TTFT {bt:.3f} -> {nt:.3f} ms ({100 * (nt / bt - 1):+.1f}%), "
              f"decode {bd:.4f} -> {nd:.4f} ms/token ({100 * (nd / bd - 1):+.1f}%)")
PY
