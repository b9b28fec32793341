#!/usr/bin/env bash
# Prepares the SmolLM2 GGUF (97 MB) for the GPU test `smollm2_greedy_cuda` on the lent device machine,
# whose calls carry at most 64 MiB: splits it into two halves in the git-ignored folders `.smol1/` and
# `.smol2/` of this checkout. Then carry `.smol1` in one device call and `.smol2` (with the binaries) in
# the next while the machine is still warm (ignored paths not named in `carry` stay there), and on the
# device: cat .smol1/* .smol2/* > /tmp/smol.gguf; LLMFORGE_SMOLLM2_GGUF=/tmp/smol.gguf bench/gpu_verify.sh ...
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
echo "on the device: cat .smol1/part-00 .smol2/part-01 > /tmp/smol.gguf and check .smol2/sha256" >&2
