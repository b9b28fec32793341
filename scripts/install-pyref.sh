#!/usr/bin/env bash
# Makes the reference Python for run_llm's transformers comparisons (run_llm/tests/pytorch.rs,
# `--enable_pytorch_run`): a virtual environment with torch and transformers on the CPU, every package
# pinned in scripts/requirements-pyref.txt and installed from PyPI with --no-deps (PyPI's torch wheel
# would otherwise pull triton and every CUDA library, several GB that a CPU run does not load).
# Prints the environment's python on stdout.
#
#   PY=$(scripts/install-pyref.sh)
#
# The environment is $LLMFORGE_PYREF_DIR, else a folder of the user's cache named after the pinned
# list's hash, so a changed list makes a new one. Nothing is installed when that folder holds a finished
# install (marked only after the check below passed); an unfinished one is removed and made anew.
# Needs python3 (3.11, which the pinned wheels are built for, or later) with venv and network access to
# PyPI the first time: about 2.2 GB downloaded, 4.5 GB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=scripts/requirements-pyref.txt
TAG=$(sha256sum "$REQ" | cut -c1-12)
DIR="${LLMFORGE_PYREF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llmforge/pyref-$TAG}"
PY="$DIR/bin/python"
DONE="$DIR/.llmforge-complete"

# torch and transformers import, and a two-layer Llama of random weights runs a forward pass.
check() {
    "$PY" - <<'EOF'
import torch, transformers, safetensors
assert torch.__version__.split("+")[0] == "2.11.0", torch.__version__
assert transformers.__version__ == "5.17.0", transformers.__version__
config = transformers.LlamaConfig(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(config).eval()
with torch.no_grad():
    logits = model(torch.tensor([[1, 5, 9, 2]])).logits
assert logits.shape == (1, 4, 64) and torch.isfinite(logits).all(), logits.shape
EOF
}

if [ -f "$DONE" ]; then
    echo "$PY"
    exit 0
fi
start=$SECONDS
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
echo "installing torch + transformers (CPU) into $DIR" >&2
"${PYTHON:-python3}" -m venv "$DIR"
"$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps -r "$REQ" >&2
check >&2 || {
    echo "the environment in $DIR does not run torch + transformers (see above)" >&2
    exit 1
}
touch "$DONE"
echo "installed $DIR in $((SECONDS - start)) s" >&2
echo "$PY"
