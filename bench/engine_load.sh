#!/bin/bash
# Engine build against engine-file load on the CPU, SmolLM2-135M-Instruct (the default model, from its
# GGUF): per round and precision, each run_llm build builds from the GGUF, then loads the engine file
# it saved; builds and rounds interleaved, their order alternating per round. One line per run: the
# figure run_llm prints ("engine built in X s (+ weights Y s)" or "engine loaded in X s"), TTFT,
# decode ms/token and the 1-min load average. Run on a quiet machine and compare within one output.
#   BASE=path/to/run_llm NEW=path/to/run_llm bench/engine_load.sh > runs.log   (BASE optional)
# Environment (defaults): ROUNDS (5), PRECS ("FP32 FP16"), NUM_TOKENS (8), DIR (/tmp).
NEW=${NEW:?set NEW}; BASE=${BASE:-}
ROUNDS=${ROUNDS:-5}; PRECS=${PRECS:-FP32 FP16}; NUM_TOKENS=${NUM_TOKENS:-8}; DIR=${DIR:-/tmp}
builds="new"; [ -n "$BASE" ] && builds="base new"
run() { # binary, label, extra args...
  local bin=$1 label=$2; shift 2
  local load out
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$("$bin" --device cpu --num_tokens "$NUM_TOKENS" "$@" 2>&1 | tail -1)
  echo "$label load=$load $(echo "$out" | sed 's/ · /; /g')"
}
for rep in $(seq 1 "$ROUNDS"); do
  order=$builds
  [ $((rep % 2)) -eq 0 ] && [ -n "$BASE" ] && order="new base"
  for prec in $PRECS; do
    for b in $order; do
      case $b in base) B=$BASE;; new) B=$NEW;; esac
      f="$DIR/llmforge-load-$b-$prec.engine"
      rm -f "$f"
      run "$B" "rep=$rep prec=$prec bin=$b build" --precision "$prec" --engine "$f"
      run "$B" "rep=$rep prec=$prec bin=$b load " --precision "$prec" --engine "$f"
    done
  done
done
