#!/bin/bash
# CPU A/B of two run_llm builds on SmolLM2-135M-Instruct (the benchmark's default model): the builds
# interleaved, their order alternating per round, one line per run (TTFT, decode ms/token, end-to-end
# median, 1-min load). Run on a quiet machine and compare within one output.
#   BASE=path/to/run_llm NEW=path/to/run_llm bench/cpu_ab.sh > runs.log
# Environment (defaults): ROUNDS (3), ISLS ("512 16"), PRECS ("FP32 FP16 BF16"), NUM_TOKENS (32),
#   ITERATIONS (3), THREADS (2).
BASE=${BASE:?set BASE}; NEW=${NEW:?set NEW}
ROUNDS=${ROUNDS:-3}; ISLS=${ISLS:-512 16}; PRECS=${PRECS:-FP32 FP16 BF16}
NUM_TOKENS=${NUM_TOKENS:-32}; ITERATIONS=${ITERATIONS:-3}; THREADS=${THREADS:-2}
for rep in $(seq 1 "$ROUNDS"); do
  if [ $((rep % 2)) -eq 0 ]; then order="new base"; else order="base new"; fi
  for isl in $ISLS; do
    for prec in $PRECS; do
      for b in $order; do
        case $b in base) B=$BASE;; new) B=$NEW;; esac
        load=$(cut -d' ' -f1 /proc/loadavg)
        out=$("$B" --benchmark --isl "$isl" --num_tokens "$NUM_TOKENS" --iterations "$ITERATIONS" \
          --threads "$THREADS" --precision "$prec" 2>&1)
        ttft=$(echo "$out" | grep 'time to first token' | grep -oE '[0-9.]+ ms' | head -1)
        dec=$(echo "$out" | grep -E '^\s+decode ' | grep -oE '[0-9.]+ ms/token' | head -1)
        e2e=$(echo "$out" | grep 'end-to-end' | grep -oE 'median [0-9.]+ ms' | head -1)
        echo "rep=$rep prec=$prec isl=$isl build=$b load=$load ttft=$ttft decode=$dec e2e=$e2e $(date -u +%H:%M:%S)"
      done
    done
  done
done
