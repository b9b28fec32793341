#!/usr/bin/env bash
# Interleaved before/after/llama.cpp TTFT and decode on SmolLM2-135M GGUF files (kept blocks), 2 threads.
set -u
D="$1"; ROUNDS="${ROUNDS:-3}"; FIRST="${FIRST:-1}"
Q=/tmp/llmforge-gguf-quants; LP=$HOME/.cache/llmforge/llamacpp/bin/python
for r in $(seq $FIRST $ROUNDS); do
  for isl in 16 64; do
    for t in Q8_0 Q4_0 Q5_0 Q4_K_M; do
      [[ $isl == 64 && $t != Q8_0 && $t != Q4_K_M ]] && continue
      f=$Q/SmolLM2-135M-Instruct.$t.gguf
      for b in before after; do
        j=$D/raw/$t-isl$isl-$b-r$r.json
        echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg) $t isl$isl $b r$r" >> $D/run.log
        OMP_NUM_THREADS=2 /tmp/ttft-bin/run_llm.$b --model $f --quant_format gguf --benchmark --json --device cpu \
          --threads 2 --precision FP32 --isl $isl --num_tokens 64 --iterations 3 --seed $r > $j 2> ${j%.json}.log
      done
      j=$D/raw/$t-isl$isl-llamacpp-r$r.json
      echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg) $t isl$isl llamacpp r$r" >> $D/run.log
      $LP /work/main/bench/llamacpp_bench.py run --gguf $f --isl $isl --num_tokens 64 --iterations 3 --threads 2 \
        --seed $r --output $j > ${j%.json}.log 2>&1
    done
  done
done
echo finished >> $D/run.log
