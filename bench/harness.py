#!/usr/bin/env python3
"""Benchmark matrix over run_llm: one `run_llm --benchmark --json` per model x precision, results as a
Markdown table (for bench/RESULTS.md) and, with --json-out, the raw reports.

    bench/harness.py --models SmolLM2-135M-Instruct,Qwen2.5-0.5B-Instruct --precisions FP32,BF16 \
        --device cpu --isl 128 --num_tokens 32 --iterations 3 [--pytorch]

Every figure comes from run_llm itself (see its README section "Benchmarking"); this script only runs it
and tabulates. Uses the standard library alone.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_llm", default=os.path.join(ROOT, "target", "release", "run_llm"))
    ap.add_argument("--models", default="SmolLM2-135M-Instruct")
    ap.add_argument("--precisions", default="FP32")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: run_llm's choice)")
    ap.add_argument("--cache", default="static_v1")
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--num_tokens", type=int, default=32)
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--pytorch", action="store_true", help="add --enable_pytorch_run")
    ap.add_argument("--json-out", help="write every report to this file")
    a = ap.parse_args()

    reports, rows = [], []
    for model in a.models.split(","):
        for precision in a.precisions.split(","):
            cmd = [a.run_llm, "--model", model, "--precision", precision, "--benchmark", "--json",
                   "--cache", a.cache, "--isl", str(a.isl), "--num_tokens", str(a.num_tokens),
                   "--batch_size", str(a.batch_size), "--iterations", str(a.iterations)]
            if a.device:
                cmd += ["--device", a.device]
            if a.pytorch:
                cmd.append("--enable_pytorch_run")
            print("running:", " ".join(cmd), file=sys.stderr)
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                rows.append(f"| {model} | | {precision} | failed (exit {done.returncode}) |" + " |" * 8)
                continue
            r = json.loads(done.stdout)
            reports.append(r)
            rows.append(row(r))
    print(HEADER)
    print("\n".join(rows))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(reports, f, indent=1)


HEADER = (
    "| model | device | precision | weights | isl × batch → new | TTFT ms | decode ms/token | tokens/s "
    "| latency ms (median ± std) | roofline | PyTorch decode ms/token | tokens match |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(r):
    run, roof = r["run"], r["roofline"]
    weights = "synthetic" if run["synthetic_weights"] else "real"
    lat = r["latency_ms"]
    torch_ms, match = "", ""
    b = r.get("pytorch")
    if b and b["status"] == "ok":
        torch_ms = " / ".join(
            f"{x['name']}{' (compiled)' if x['compiled'] else ''} {x['decode_ms_per_token_median']:.2f}"
            for x in b["runs"])
        match = " / ".join("yes" if x["tokens_match"] else "no" for x in b["runs"])
    elif b:
        torch_ms = b["status"]
    return (f"| {run['model']} | {run['device']} | {run['precision']} | {weights} "
            f"| {r['isl']} × {r['batch_size']} → {r['num_tokens']} | {r['ttft_ms_median']:.1f} "
            f"| {r['decode_ms_per_token_median']:.2f} | {r['tokens_per_s']:.1f} "
            f"| {lat['median']:.1f} ± {lat['std']:.1f} "
            f"| {100 * roof['fraction']:.0f}% of {roof['measured_gb_s']:.1f} GB/s "
            f"| {torch_ms} | {match} |")


if __name__ == "__main__":
    main()
