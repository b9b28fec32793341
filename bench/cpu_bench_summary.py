#!/usr/bin/env python3
"""Summarise a `bench/cpu_bench.sh` output folder as Markdown tables.

Reads, from DIR:
  ours-<PRECISION>-isl<N>-r<K>.json      `run_llm --benchmark --json` (FP32 ones may carry "pytorch")
  llamacpp-<TYPE>-isl<N>-r<K>.json       `bench/llamacpp_bench.py run`
  meta.txt                               lines written by the script (CPU, commit, load per round)

Every file holds the medians of one round's timed iterations; a table cell is the median over rounds,
with the range [min-max] over rounds for the decode time so the noise is visible. The roofline fraction
is (weight bytes read per decode step / decode time) / bandwidth, with one bandwidth for every engine:
the median of run_llm's copy probe over all of this folder's runs.

Usage: cpu_bench_summary.py DIR
"""

import json
import os
import re
import statistics
import sys

NAME = re.compile(r"^(ours|llamacpp)-([A-Za-z0-9_]+)-isl(\d+)-r(\d+)\.json$")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("Usage: ")[1])
    d = sys.argv[1]
    rows = {}  # (engine label, weights label, isl) -> list of per-round dicts
    probes = []
    for f in sorted(os.listdir(d)):
        m = NAME.match(f)
        if not m:
            continue
        kind, variant, isl = m.group(1), m.group(2), int(m.group(3))
        with open(os.path.join(d, f)) as fh:
            data = json.load(fh)
        if kind == "ours":
            ours(data, variant, isl, rows, probes)
        else:
            llamacpp(data, variant, isl, rows)
    if not rows:
        sys.exit(f"no benchmark results in {d}")
    bw = statistics.median(probes) if probes else float("nan")
    print(meta(d))
    print(f"Bandwidth (run_llm's probe: 256 MiB copy on 2 threads, read + write, best of 5 per run): "
          f"median {bw:.2f} GB/s over {len(probes)} runs, range {min(probes):.2f}-{max(probes):.2f}.\n")
    print(table(rows, bw))


def ours(data, precision, isl, rows, probes):
    r = data["roofline"]
    probes.append(r["measured_gb_s"])
    add(rows, ("llmforge", f"{precision} (dequantised from Q4_1)", isl), {
        "bytes": r["weight_bytes_per_token"],
        "decode_ms": data["decode_ms_per_token_median"],
        "ttft_ms": data["ttft_ms_median"],
        "e2e_tok_s": data["tokens_per_s"],
    })
    pt = data.get("pytorch")
    if not pt or pt.get("status") != "ok":
        return
    for run in pt["runs"]:
        add(rows, (f"HF transformers {pt['versions']['transformers']} ({run['name']}, eager)",
                   f"{precision} (same dequantised weights)", isl), {
            "bytes": r["weight_bytes_per_token"],
            "decode_ms": run["decode_ms_per_token_median"],
            "ttft_ms": run["ttft_ms_median"],
            "e2e_tok_s": run["tokens_per_s"],
            "match": run.get("tokens_match"),
        })


def llamacpp(data, wtype, isl, rows):
    note = "GGUF as shipped: Q4_1 + Q8_0 embeddings" if wtype == "Q4_1" else \
        f"{wtype} GGUF requantised from the Q4_1 one"
    med = statistics.median
    generated = data["num_tokens"]
    add(rows, (data["engine"], note, isl), {
        "bytes": data["model_size_bytes"],
        "decode_ms": med(data["decode_ms_per_token"]),
        "ttft_ms": med(data["ttft_ms"]),
        "e2e_tok_s": generated / (med(data["e2e_ms"]) / 1e3),
    })


def add(rows, key, values):
    rows.setdefault(key, []).append(values)


def table(rows, bw):
    med = statistics.median
    out = ["| engine | weights | bytes/token | ISL | decode ms/token [range] | decode tok/s | "
           "end-to-end tok/s | TTFT ms | achieved GB/s | roofline | rounds |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (engine, weights, isl), rs in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        dec = [r["decode_ms"] for r in rs]
        d = med(dec)
        achieved = rs[0]["bytes"] / (d / 1e3) / 1e9
        match = [r.get("match") for r in rs if r.get("match") is not None]
        tag = "" if not match else (" (tokens = ours)" if all(match) else " (tokens differ)")
        out.append(
            f"| {engine}{tag} | {weights} | {rs[0]['bytes'] / 1e6:.1f} MB | {isl} | "
            f"{d:.2f} [{min(dec):.2f}-{max(dec):.2f}] | {1e3 / d:.1f} | "
            f"{med(r['e2e_tok_s'] for r in rs):.1f} | {med(r['ttft_ms'] for r in rs):.1f} | "
            f"{achieved:.2f} | {achieved / bw:.0%} | {len(rs)} |")
    return "\n".join(out)


def meta(d):
    p = os.path.join(d, "meta.txt")
    if not os.path.exists(p):
        return ""
    with open(p) as f:
        return "".join(f"    {line}" for line in f) + "\n"


if __name__ == "__main__":
    main()
