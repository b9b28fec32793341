#!/bin/bash
# Widened-block cap A/B (bench/RESULTS.md, CPU "FMA numerics and the lane tree"): two run_llm builds
# interleaved, order alternating per round, 3 rounds, one line per run. BASE: 16-bit weight blocks
# widened to at most 512 KiB of f32; NEW: at most 128 KiB.
BASE=${BASE:?set BASE}; NEW=${NEW:?set NEW}
for rep in 1 2 3; do
  case $rep in 2) order="new base";; *) order="base new";; esac
  for isl in 512 16; do
    for prec in FP16 BF16; do
      for b in $order; do
        case $b in base) B=$BASE;; new) B=$NEW;; esac
        load=$(cut -d' ' -f1 /proc/loadavg)
        out=$($B --benchmark --isl $isl --num_tokens 32 --iterations 3 --threads 2 --precision $prec 2>&1)
        ttft=$(echo "$out" | grep 'time to first token' | grep -oE '[0-9.]+ ms' | head -1)
        dec=$(echo "$out" | grep -E '^\s+decode ' | grep -oE '[0-9.]+ ms/token' | head -1)
        e2e=$(echo "$out" | grep 'end-to-end' | grep -oE 'median [0-9.]+ ms' | head -1)
        echo "rep=$rep prec=$prec isl=$isl build=$b load=$load ttft=$ttft decode=$dec e2e=$e2e $(date -u +%H:%M:%S)"
      done
    done
  done
done
