#!/usr/bin/env bash
# Prepares the SmolLM2 GGUF (98 MB) for the GPU test `smollm2_greedy_cuda` on the lent device machine,
# whose calls carry at most 64 MiB: splits it into two halves in the git-ignored folders `.smol1/` and
# `.smol2/` of this checkout. Carried folders do not outlive their call: carry `.smol1` in one device
# call that copies it out (cp .smol1/part-00 /tmp/), then, while the machine is still warm, carry `.smol2`
# and join them: cat /tmp/part-00 .smol2/part-01 > /tmp/smol.gguf;
# LLMFORGE_SMOLLM2_GGUF=/tmp/smol.gguf bench/gpu_verify.sh ... (docs/cuda-backend.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-smollm2.sh
PY="${LLMFORGE_PYTHON:-python3}"
GGUF=$("$PY" scripts/smollm2_gguf.py)
exclude=.git/info/exclude
[ -d .git ] && mkdir -p .git/info && touch "$exclude"
for d in .smol1 .smol2; do
    rm -rf "$d" && mkdir -p "$d"
    [ -f "$exclude" ] && { grep -qx "/$d/" "$exclude" || echo "/$d/" >> "$exclude"; }
done
split -n 2 -d "$GGUF" part-
mv part-00 .smol1/ && mv part-01 .smol2/
sha256sum "$GGUF" | cut -d' ' -f1 > .smol2/sha256
du -sh .smol1 .smol2
echo "on the device: cp .smol1/part-00 /tmp/ (first call), cat /tmp/part-00 .smol2/part-01 > /tmp/smol.gguf (next call) and check .smol2/sha256" >&2
