#!/usr/bin/env bash
# The whole GPU session in one go (what produced bench/RESULTS.md), from the repository root:
#   bench/gpu_all.sh BIN_DIR OUT_DIR
# 1. the CUDA parity tests (with programmatic dependent launch; again without it if they fail),
# 2. our engine on every benchmark model and prompt length (+ Llama-3.2-1B with PDL off),
# 3. transformers eager and static-cache + torch.compile: Llama-3.2-1B at both prompt lengths, the
#    other models at the short prompt (compilation time bounds what one session can run).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
parity() {
    LLMFORGE_REQUIRE_CUDA=1 timeout 90 "$BIN/cuda_parity" --include-ignored --test-threads 1 --nocapture 2>&1 |
        grep -E "^test |panicked|result|agreement|relative error|left|right"
}
parity > "$OUT/parity.txt"
OURS=ours
if ! grep -q "test result: ok" "$OUT/parity.txt"; then
    LLMFORGE_CUDA_PDL=0 parity > "$OUT/parity_nopdl.txt"
    OURS=ours-nopdl
fi
B="$HERE/gpu_bench.sh"
BENCH_IMPLS="$OURS" timeout 170 bash "$B" "$BIN" "$OUT"
BENCH_IMPLS=ours-nopdl BENCH_MODELS=Llama-3.2-1B-Instruct BENCH_PROMPTS=16 timeout 30 bash "$B" "$BIN" "$OUT"
BENCH_IMPLS="static eager" BENCH_MODELS=Llama-3.2-1B-Instruct timeout 200 bash "$B" "$BIN" "$OUT"
BENCH_IMPLS="eager static" BENCH_MODELS="Qwen2.5-0.5B-Instruct gpt2 Llama-3.1-8B-Instruct" \
    BENCH_PROMPTS=16 timeout "${REST_S:-110}" bash "$B" "$BIN" "$OUT"
