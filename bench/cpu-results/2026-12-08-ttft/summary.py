#!/usr/bin/env python3
"""Medians (and min-max) over rounds of raw/<file>-isl<N>-<before|after|llamacpp>-r<R>.json (ab.sh): TTFT (ms) and
decode tokens/s (1000 / the median decode ms per token, as bench/gguf_vs_llamacpp.py speed-line)."""
import collections, glob, json, os, re, statistics, sys

# Optional argument FIRST-LAST: only those rounds.
lo, hi = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "1-999").split("-"))

here = os.path.dirname(os.path.abspath(__file__))
runs = collections.defaultdict(list)
for f in sorted(glob.glob(os.path.join(here, "raw", "*.json"))):
    m = re.match(r"(.+)-isl(\d+)-(before|after|llamacpp)-r(\d+)\.json", os.path.basename(f))
    if not lo <= int(m.group(4)) <= hi:
        continue
    try:
        d = json.load(open(f))
    except (OSError, ValueError):
        continue
    if m.group(3) == "llamacpp":
        ttft, dec = statistics.median(d["ttft_ms"]), statistics.median(d["decode_ms_per_token"])
    else:
        ttft, dec = d["ttft_ms_median"], d["decode_ms_per_token_median"]
    runs[(m.group(1), int(m.group(2)), m.group(3))].append((int(m.group(4)), ttft, 1e3 / dec))

def cell(k, i):
    v = [r[i] for r in runs.get(k, [])]
    if not v:
        return "-"
    return f"{statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]"

print("| file | ISL | rounds | TTFT before | TTFT after | TTFT llama.cpp | decode before | decode after | decode llama.cpp |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for f, isl in sorted({(k[0], k[1]) for k in runs}, key=lambda t: (t[1], t[0])):
    ks = [(f, isl, e) for e in ("before", "after", "llamacpp")]
    n = min(len(runs.get(k, [])) for k in ks)
    print(f"| {f} | {isl} | {n} | " + " | ".join(cell(k, 1) for k in ks) + " | "
          + " | ".join(cell(k, 2) for k in ks) + " |")
