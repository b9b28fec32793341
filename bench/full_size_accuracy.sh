#!/usr/bin/env bash
# Logit distance of every weight format to the FP32 engine on a full-size model config with seeded
# synthetic weights, on the CPU backend, ours beside llama.cpp on the same GGUF files:
#   1. the model: MODEL_DIR's config.json without rope_scaling (the GGUF loader refuses llama3's rope
#      factors; bench/full_size_accuracy.py config), weights N(0, 0.02²) in f32 from SEED, norm gains 1
#      (runtime/examples/full_size_accuracy.rs), written as a Hugging Face directory (f32 safetensors),
#      then as an F32 GGUF the way llama.cpp's converter writes `llama` (bench/full_size_accuracy.py
#      gguf), then quantized to each of TYPES by llama.cpp's own quantizer (llama_model_quantize with
#      its default mixture, as bench/gguf_vs_llamacpp.sh makes its files); tensor types per file in
#      types.jsonl;
#   2. our logits of every position of a fixed prompt of 64 ids (PROMPT_IDS: BOS, then 63 ids drawn
#      once from Python's random.Random(20261208)), FP32 engine unless said: dense FP32 (the
#      reference), FP16 and BF16 storage, --quant_format int8 / int4 / fp8 (quantized at build), and each
#      GGUF file with --quant_format gguf and none (runs.jsonl, one JSON line per engine);
#   3. llama.cpp's logits of the same prompt on each GGUF file (f32 KV cache, flash attention off);
#   4. metrics.jsonl: each run against the FP32 engine (max |d| / max |ref|, mean and largest KL over
#      positions, top-1 agreement; bench/full_size_accuracy.py metrics), gguf against none and against
#      llama.cpp on the same file; summary.md: the tables.
#
# Usage: bench/full_size_accuracy.sh [OUT_DIR]   (default: $TMPDIR/llmforge-full-size-<UTC time>)
# OUT_DIR gets meta.txt, errors.txt, runs.jsonl, types.jsonl, metrics.jsonl, summary.md and logs/ (all
# small); the weights, GGUF files and logits (22 GB on Llama-3.2-1B) go under WORK. About half an hour
# from nothing on 2 cores (Llama-3.2-1B), 10-12 minutes with WORK's files kept.
# Environment (defaults): MODEL_DIR (models/Llama-3.2-1B-Instruct), SEED (0), THREADS (2), TYPES ("Q8_0
#   Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K": every legacy and
#   K-quant type our loader reads), FORMATS ("fp32 fp16 bf16 int8 int4 fp8"), WORK
#   ($TMPDIR/llmforge-full-size-work: kept between runs, files already there are reused), LLAMA_PYTHON
#   (~/.cache/llmforge/llamacpp/bin/python, with llama-cpp-python, gguf and numpy: see
#   bench/gguf_vs_llamacpp.sh), SKIP_LLAMA=1, SKIP_NONE=1 (no --quant_format none runs), NICE (19: every
#   heavy step runs under `nice -n NICE`), WAIT_FOR (a pgrep -f pattern: before each heavy step, wait
#   while a process matches it, polling every 30 s, up to 20 min), EXAMPLE (the full_size_accuracy
#   binary, else built with cargo in this checkout; either way copied into WORK/bin) with SOURCE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="${TMPDIR:-/tmp}"
OUT="${1:-$TMP/llmforge-full-size-$(date -u +%Y%m%dT%H%M%SZ)}"
MODEL_DIR="${MODEL_DIR:-$ROOT/models/Llama-3.2-1B-Instruct}"
SEED="${SEED:-0}"
THREADS="${THREADS:-2}"
TYPES="${TYPES:-Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_L Q3_K_M Q3_K_S Q2_K}"
FORMATS="${FORMATS:-fp32 fp16 bf16 int8 int4 fp8}"
WORK="${WORK:-$TMP/llmforge-full-size-work}"
LLAMA_PYTHON="${LLAMA_PYTHON:-$HOME/.cache/llmforge/llamacpp/bin/python}"
NICE="${NICE:-19}"
PY="$ROOT/bench/full_size_accuracy.py"
GV="$ROOT/bench/gguf_vs_llamacpp.py"
PROMPT_IDS="128000,66982,21909,88224,4126,70215,109700,88509,47808,41472,15361,80877,58729,30661,78762,\
67912,69179,78576,112943,84497,85860,81224,34656,74798,115416,57355,119053,77805,122666,82832,51403,48471,\
8717,7531,67849,27041,62596,16894,93874,43236,12028,111335,91069,9204,58515,101884,41657,77801,93229,\
86203,20384,7325,22827,3804,22555,44433,28377,95745,20079,108381,24592,11299,111770,22387"

log() { echo "[full_size_accuracy $(date -u +%H:%M:%S)] $*" >&2; }
# Before a heavy step: wait while WAIT_FOR matches a process (another job's timings), at most 20 min.
polite() {
    [[ -z "${WAIT_FOR:-}" ]] && return 0
    local waited=0
    while pgrep -f "$WAIT_FOR" > /dev/null && ((waited < 1200)); do
        ((waited == 0)) && log "waiting while '$WAIT_FOR' runs"
        sleep 30
        waited=$((waited + 30))
    done
}
heavy() { polite; nice -n "$NICE" "$@"; }

if ! "$LLAMA_PYTHON" -c 'import llama_cpp, gguf, numpy' 2>/dev/null; then
    log "$LLAMA_PYTHON lacks llama-cpp-python, gguf or numpy (see bench/gguf_vs_llamacpp.sh; or set LLAMA_PYTHON)"
    exit 3
fi
NAME="$(basename "$MODEL_DIR")-synthetic-seed$SEED"
CONFIG="$WORK/$NAME"
HF="$WORK/hf-$NAME"
GGUF_DIR="$WORK/gguf"
LOGITS="$WORK/logits"
mkdir -p "$OUT/logs" "$WORK/bin" "$GGUF_DIR" "$LOGITS"
touch "$OUT/errors.txt"

if [[ -z "${EXAMPLE:-}" ]]; then
    log "building the full_size_accuracy example (cargo build --release, CPU only)"
    (cd "$ROOT" && heavy cargo build --release -q -p runtime --no-default-features --example full_size_accuracy)
    EXAMPLE="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/full_size_accuracy"
    SOURCE="${SOURCE:-$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- runtime spec Cargo.lock || echo ' + uncommitted changes')}"
fi
# A run copy: a checkout shared with others may rebuild its target directory during the run.
cp "$EXAMPLE" "$WORK/bin/full_size_accuracy"
EXAMPLE="$WORK/bin/full_size_accuracy"

# 1. The model and its files.
"$LLAMA_PYTHON" "$PY" config --src "$MODEL_DIR/config.json" --out "$CONFIG"
if [[ ! -s "$HF/model.safetensors" ]] || ! cmp -s "$HF/config.json" "$CONFIG/config.json"; then
    log "weights (seed $SEED) -> $HF"
    heavy "$EXAMPLE" weights "$CONFIG" "$HF" --seed "$SEED" | tee "$OUT/logs/weights.log"
    rm -f "$GGUF_DIR/$NAME".*.gguf
fi
file_of() { echo "$GGUF_DIR/$NAME.$1.gguf"; }
F32="$(file_of F32)"
if [[ ! -s "$F32" ]]; then
    log "F32 GGUF (gguf-py)"
    heavy "$LLAMA_PYTHON" "$PY" gguf --hf "$HF" --out "$F32.part" && mv "$F32.part" "$F32"
fi
for t in $TYPES; do
    f="$(file_of "$t")"
    [[ -s "$f" ]] && continue
    log "$t with llama.cpp's quantizer"
    if heavy "$LLAMA_PYTHON" "$GV" quantize --src "$F32" --ftype "$t" --out "$f.part" --threads "$THREADS" \
        > "$OUT/logs/quantize-$t.log" 2>&1; then
        mv "$f.part" "$f"
    else
        echo "quantize $t: $(tail -n 3 "$OUT/logs/quantize-$t.log")" >> "$OUT/errors.txt"
    fi
done
LABELS="F32"
for t in $TYPES; do [[ -s "$(file_of "$t")" ]] && LABELS="$LABELS $t"; done
: > "$OUT/types.jsonl"
for l in $LABELS; do "$LLAMA_PYTHON" "$GV" types --gguf "$(file_of "$l")" --label "$l" >> "$OUT/types.jsonl"; done

{
    echo "--- run of $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores online, $THREADS threads used," \
        "$(free -g | awk '/^Mem:/ {print $2}') GiB memory"
    echo "example built from: ${SOURCE:-not said (set SOURCE when passing EXAMPLE)};" \
        "sha256 $(sha256sum < "$EXAMPLE" | cut -c1-16)"
    echo "llama.cpp python: $("$LLAMA_PYTHON" -c 'import llama_cpp, gguf, numpy, importlib.metadata as m; print("llama-cpp-python", llama_cpp.__version__, "| gguf", m.version("gguf"), "| numpy", numpy.__version__)')"
    echo "model: $MODEL_DIR/config.json without rope_scaling ($CONFIG), seed $SEED; files in $GGUF_DIR: $LABELS"
    echo "prompt ids ($(tr ',' '\n' <<< "$PROMPT_IDS" | wc -l)): $PROMPT_IDS"
} >> "$OUT/meta.txt"

# 2. Ours.
: > "$OUT/runs.jsonl"
ours() {
    local format="$1" stem="$2"
    log "ours: $format (load $(cut -d' ' -f1 /proc/loadavg))"
    if heavy "$EXAMPLE" logits "$CONFIG" "$format" "$LOGITS/$stem.f32" --ids "$PROMPT_IDS" --seed "$SEED" \
        --threads "$THREADS" > "$OUT/logs/$stem.json" 2> "$OUT/logs/$stem.log"; then
        cat "$OUT/logs/$stem.json" >> "$OUT/runs.jsonl"
    else
        echo "ours $format: $(tail -n 3 "$OUT/logs/$stem.log")" >> "$OUT/errors.txt"
        rm -f "$LOGITS/$stem.f32"
    fi
}
rm -f "$LOGITS"/*.f32 "$LOGITS"/*.json
for q in $FORMATS; do ours "$q" "${q}__ours"; done
PAIRS=()
for l in $LABELS; do
    ours "gguf:$(file_of "$l")" "${l}__ours-gguf"
    if [[ "${SKIP_NONE:-0}" != 1 ]]; then
        ours "gguf-none:$(file_of "$l")" "${l}__ours-none"
        PAIRS+=("${l}__ours-none=${l}__ours-gguf")
    fi
done

# 3. llama.cpp.
for l in $LABELS; do
    [[ "${SKIP_LLAMA:-0}" == 1 ]] && break
    log "llama.cpp: $l (load $(cut -d' ' -f1 /proc/loadavg))"
    # llama.cpp's log less its ~1000 lines of graph input tensor names.
    heavy "$LLAMA_PYTHON" "$PY" llama --gguf "$(file_of "$l")" --ids "$PROMPT_IDS" --threads "$THREADS" \
        --out "$LOGITS/${l}__llamacpp.f32" 2>&1 | grep -v '^llama_graph_n_input_tensors: input tensor' \
        > "$OUT/logs/${l}__llamacpp.log" ||
        echo "llama.cpp $l: $(tail -n 3 "$OUT/logs/${l}__llamacpp.log")" >> "$OUT/errors.txt"
    [[ -s "$LOGITS/${l}__llamacpp.json" ]] && cp "$LOGITS/${l}__llamacpp.json" "$OUT/logs/"
    PAIRS+=("${l}__ours-gguf=${l}__llamacpp")
done

# 4. Metrics against the FP32 engine.
VOCAB="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$CONFIG/config.json")"
"$LLAMA_PYTHON" "$PY" metrics --ref "$LOGITS/fp32__ours.f32" --vocab "$VOCAB" --runs "$LOGITS" \
    --pairs "${PAIRS[@]}" > "$OUT/metrics.jsonl"
"$LLAMA_PYTHON" "$PY" summary --out "$OUT" | tee "$OUT/summary.md"
log "results in $OUT (errors: $(wc -l < "$OUT/errors.txt"))"
