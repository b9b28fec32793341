#!/usr/bin/env bash
# Run every fuzz target (or those named) for a bounded time each, with scratch corpora so that the
# committed seeds in fuzz/corpus/ stay small. Usage: fuzz/run.sh [seconds per target] [target...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Set FUZZ_SANITIZER=none where ASan does not work.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config manifest safetensors_header engine_file gguf tokenizer_json)
fi
scratch="${FUZZ_SCRATCH:-${TMPDIR:-/tmp}/llmforge-fuzz}"
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "== $t ($seconds s)"
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" "$t" \
        "$scratch/$t" "corpus/$t" -- -max_total_time="$seconds" -malloc_limit_mb=1024
done
