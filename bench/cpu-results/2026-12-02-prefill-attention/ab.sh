#!/bin/bash
# Prefill attention A/B (bench/RESULTS.md, CPU "Prefill attention"): three run_llm builds interleaved,
# order rotating per round, 3 rounds, one line per run. MAIN: /work/main's binary (the dot4 prefill,
# before the GEMM); GEMM: the prefill-GEMM build (old attention); NEW: the blocked attention build.
MAIN=${MAIN:?set MAIN}; GEMM=${GEMM:?set GEMM}; NEW=${NEW:-target/release/run_llm}
for rep in 1 2 3; do
  case $rep in 1) order="main gemm new";; 2) order="new main gemm";; 3) order="gemm new main";; esac
  for prec in FP32 FP16; do
    for b in $order; do
      case $b in main) B=$MAIN;; gemm) B=$GEMM;; new) B=$NEW;; esac
      load=$(cut -d' ' -f1 /proc/loadavg)
      out=$($B --benchmark --isl 512 --num_tokens 16 --iterations 3 --threads 2 --precision $prec 2>&1)
      ttft=$(echo "$out" | grep 'time to first token' | grep -oE '[0-9.]+ ms' | head -1)
      dec=$(echo "$out" | grep -E '^\s+decode ' | grep -oE '[0-9.]+ ms/token' | head -1)
      e2e=$(echo "$out" | grep 'end-to-end' | grep -oE 'median [0-9.]+ ms' | head -1)
      echo "rep=$rep prec=$prec isl=512 build=$b load=$load ttft=$ttft decode=$dec e2e=$e2e $(date -u +%H:%M:%S)"
    done
  done
done
