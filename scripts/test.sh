#!/usr/bin/env bash
# The project's tests, as CI runs them: generated crates are up to date with models.toml, then every
# test of the workspace in release mode (the numerics tests are slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p generator -- --check
cargo test --workspace --release --no-fail-fast "$@"
