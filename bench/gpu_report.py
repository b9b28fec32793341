"""Markdown table of GPU benchmark JSON lines (bench/gpu_bench.sh output) for bench/RESULTS.md.

  python3 bench/gpu_report.py bench/gpu-results/h200-session3-bench.jsonl [more.jsonl ...]

Rows: one per (model, prompt length); for each implementation its TTFT and decode ms/token. The
roofline is the decode step's weight bytes (reported by our engine) over the measured copy bandwidth
of the same run; later files override earlier ones for the same (model, prompt, implementation).
"""
import json
import sys

rows, bw = {}, []
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "copy_bandwidth_GBps" in r:
            bw.append(r["copy_bandwidth_GBps"])
            continue
        impl = r.get("impl", "ours")
        rows.setdefault((r["model"], r["prompt_len"]), {})[impl] = r
bandwidth = sum(bw) / len(bw) * 1e9
print(f"Copy bandwidth (device-to-device, read + write): {bandwidth / 1e12:.2f} TB/s\n")
print("| model | prompt | ours TTFT ms | ours decode ms/tok | transformers eager TTFT / decode | "
      "transformers static+compile TTFT / decode | speed-up vs static | weights/step | "
      "roofline ms | fraction of roofline |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, prompt), impls in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    ours = impls.get("ours")
    if not ours:
        continue
    def pair(name):
        r = impls.get(name)
        return f"{r['ttft_ms']:.1f} / {r['decode_ms_per_token']:.2f}" if r else "not measured"
    static = impls.get("transformers-static")
    speed = f"{static['decode_ms_per_token'] / ours['decode_ms_per_token']:.2f}x" if static else "-"
    roof = ours["weight_bytes_per_step"] / bandwidth * 1e3
    print(f"| {model} | {prompt} | {ours['ttft_ms']:.2f} | {ours['decode_ms_per_token']:.3f} | "
          f"{pair('transformers-eager')} | {pair('transformers-static')} | {speed} | "
          f"{ours['weight_bytes_per_step'] / 1e9:.3f} GB | {roof:.3f} | "
          f"{roof / ours['decode_ms_per_token'] * 100:.0f}% |")
