#!/bin/bash
# Prefill GEMM A/B (bench/RESULTS.md, CPU "prefill GEMM"): old vs new run_llm interleaved, 3 repeats,
# one line per run. NEW / OLD: the two release binaries (env overrides).
NEW=${NEW:-target/release/run_llm}
OLD=${OLD:?set OLD to the baseline run_llm}
for rep in 1 2 3; do
  for prec in FP32 FP16 BF16; do
    for isl in 16 512; do
      if [ $((rep % 2)) = 1 ]; then order="old new"; else order="new old"; fi
      for b in $order; do
        if [ $b = old ]; then B=$OLD; else B=$NEW; fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        out=$($B --benchmark --isl $isl --num_tokens 16 --iterations 3 --threads 2 --precision $prec 2>&1)
        ttft=$(echo "$out" | grep 'time to first token' | grep -oE '[0-9.]+ ms' | head -1)
        dec=$(echo "$out" | grep -E '^\s+decode ' | grep -oE '[0-9.]+ ms/token' | head -1)
        e2e=$(echo "$out" | grep 'end-to-end' | grep -oE 'median [0-9.]+ ms' | head -1)
        echo "rep=$rep prec=$prec isl=$isl build=$b load=$load ttft=$ttft decode=$dec e2e=$e2e $(date -u +%H:%M:%S)"
      done
    done
  done
done
