#!/usr/bin/env bash
# The whole GPU benchmark session in one go (what produced bench/RESULTS.md), from the repository root:
#   bench/gpu_all.sh BIN_DIR OUT_DIR
# BIN_DIR holds `cuda_bench` and the test binaries `cuda_parity`, `cuda_prefill_attention` (and
# `cuda_long_context`, `cuda_sampling`, where carried).
# 1. the CUDA parity tests (the decode kernels, tensor-core prefill and device sampling on this card),
# 2. our engine on every benchmark model at both prompt lengths,
# 3. transformers eager and static cache + torch.compile for Llama-3.2-1B at both prompt lengths,
# 4. transformers static + compile for the other models at the short prompt (then eager where time is
#    left): compilation time bounds what one 10-minute device call can run.
# What part 1 has no time for takes two more device calls, each with our engine again: PART=2,
# transformers static + compile for GPT-2, Qwen2.5-0.5B and Llama-3.1-8B at both prompt lengths
# (about 300 s on an H200); PART=3, transformers eager for the same (longer: the 8B's eager decode
# at 2048 may not fit in one 10-minute call after our engine's 130 s; REST_S sets the budget).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/gpu_env.sh"
B="$HERE/gpu_bench.sh"
REST="gpt2 Qwen2.5-0.5B-Instruct Llama-3.1-8B-Instruct"
case "${PART:-1}" in
2 | 3)
    BENCH_IMPLS=ours timeout 130 bash "$B" "$BIN" "$OUT"
    impl=static
    [ "$PART" = 3 ] && impl=eager
    BENCH_IMPLS="$impl" BENCH_MODELS="$REST" timeout "${REST_S:-420}" bash "$B" "$BIN" "$OUT"
    exit 0 ;;
esac
(LLMFORGE_REQUIRE_CUDA=1 timeout 60 "$BIN/cuda_parity" --include-ignored --test-threads 1 --nocapture
    timeout 150 "$BIN/cuda_prefill_attention" --include-ignored --nocapture
    [ -x "$BIN/cuda_long_context" ] && timeout 150 "$BIN/cuda_long_context" --include-ignored --nocapture
    [ -x "$BIN/cuda_sampling" ] && timeout 60 "$BIN/cuda_sampling" --include-ignored --nocapture) 2>&1 |
    grep -E "^test |panicked|result|agreement|relative error|left|right|distinct tokens|sampled" > "$OUT/parity.txt"
BENCH_IMPLS=ours timeout 150 bash "$B" "$BIN" "$OUT"
BENCH_IMPLS="static eager" BENCH_MODELS=Llama-3.2-1B-Instruct timeout 200 bash "$B" "$BIN" "$OUT"
BENCH_IMPLS="static" BENCH_MODELS="$REST" BENCH_PROMPTS=16 timeout "${REST_S:-150}" bash "$B" "$BIN" "$OUT"
BENCH_IMPLS="eager" BENCH_MODELS="$REST" BENCH_PROMPTS=16 timeout "${EAGER_S:-60}" bash "$B" "$BIN" "$OUT"
