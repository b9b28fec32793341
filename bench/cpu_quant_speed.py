#!/usr/bin/env python3
"""Markdown tables from `bench/cpu_quant_speed.sh`'s speed.jsonl: per model/file and format, each
engine's decode tokens/s and time to first token as the median over rounds [min-max], with the
CPU's busy share and 1-minute load average before the runs and the largest share of the cores that
other processes used during one of them, and the range of run_llm's memory-bandwidth probe (a 256 MiB
copy before each run, GB/s).

Runs during which other processes used more than MAX_OTHERS percent of the cores are left out of the
figures (and counted in the last column). With two engines named A and B (RATIO="A/B", e.g.
"after/before"), a last figure gives the median of A/B over the rounds where both ran clean (the two
runs are seconds apart, so the ratio is steadier than either figure on a machine whose memory
bandwidth moves between runs).

Usage: bench/cpu_quant_speed.py OUT_DIR/speed.jsonl [MAX_OTHERS (10)] [RATIO]
"""

import json
import statistics
import sys


def span(v, fmt):
    if not v:
        return ""
    med = statistics.median(v)
    if len(v) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def main():
    every = [json.loads(s) for s in open(sys.argv[1]) if s.strip()]
    max_others = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    ratio = sys.argv[3].split("/") if len(sys.argv) > 3 else None
    clean = lambda s: s.get("others_pct") is None or s["others_pct"] <= max_others
    lines = [s for s in every if clean(s)]
    engines = list(dict.fromkeys(s["engine"] for s in every))
    rows = list(dict.fromkeys((s["label"], s["quant"]) for s in every))
    out = []
    for what, key, fmt in [("decode tokens/s", "decode_tokens_per_s", "{:.1f}"),
                           ("time to first token, ms", "ttft_ms", "{:.1f}")]:
        out += [f"### {what} (median over rounds [min-max])", ""]
        extra = [f"{ratio[0]} / {ratio[1]}"] if ratio else []
        out.append("| weights | format | " + " | ".join(engines + extra)
                   + " | CPU busy before, % | load1 before | others during, % (max) | probe GB/s |"
                   + " runs left out |")
        out.append("|---|---|" + "---:|" * len(engines + extra) + "---|---|---|---|---:|")
        for label, quant in rows:
            cells = []
            for e in engines:
                v = [s[key] for s in lines if (s["label"], s["quant"], s["engine"]) == (label, quant, e)]
                cells.append(span(v, fmt))
            if ratio:
                by = {e: {s["round"]: s[key] for s in lines
                          if (s["label"], s["quant"], s["engine"]) == (label, quant, e)} for e in ratio}
                rs = [by[ratio[0]][r] / by[ratio[1]][r] for r in by[ratio[0]] if r in by[ratio[1]]]
                cells.append(span(rs, "{:.2f}"))
            sel = [s for s in lines if (s["label"], s["quant"]) == (label, quant)]
            dropped = sum(1 for s in every if (s["label"], s["quant"]) == (label, quant) and not clean(s))
            if not sel:
                continue
            busy = [s["busy_pct"] for s in sel]
            load = [s["load1_before"] for s in sel]
            others = [s["others_pct"] for s in sel if s.get("others_pct") is not None]
            probe = [s["probe_gb_s"] for s in sel if "probe_gb_s" in s]
            out.append(f"| {label} | {quant} | " + " | ".join(cells)
                       + f" | {min(busy)}-{max(busy)} | {min(load):.2f}-{max(load):.2f} | "
                       + (f"{max(others):.1f}" if others else "") + " | "
                       + (f"{min(probe):.0f}-{max(probe):.0f}" if probe else "") + f" | {dropped} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
