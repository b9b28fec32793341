#!/usr/bin/env python3
"""Python side of `bench/gguf_vs_llamacpp.sh`: GGUF conversion, llama.cpp's logits and tokens, the
tensor types of a file, and the comparison and summary of one output folder.

Commands (run with a Python that has llama-cpp-python, gguf and numpy):
  f32 --src IN.gguf --out OUT.gguf
        every tensor of IN dequantised by gguf-py (gguf.quants.dequantize) and written as F32 by
        GGUFWriter, every metadata key kept (general.file_type set to ALL_F32)
  quantize --src F32.gguf --ftype T --out OUT.gguf [--threads N]
        llama.cpp's own quantizer (llama_model_quantize, llama_model_quantize_default_params(): the
        mixture llama.cpp picks for T, token embeddings and output included), T one of FTYPES
  types --gguf FILE --label L
        one JSON line: the file's tensor types (gguf-py's GGUFReader), counted overall and per role
        (attn_q, ffn_down, token_embd, ...)
  llama --gguf FILE --prompt_ids 1,2,3 --num_tokens N --threads N --out STEM
        llama.cpp (llama-cpp-python's C API, greedy): STEM.logits.f32 (the last prompt position's
        logits, raw little-endian f32) and STEM.json (the N greedy tokens, not stopping at EOS, and
        the top-1 - top-2 logit gap of every step)
  speed-line --kind ours|llamacpp --json RUN.json --label L --quant Q --round R --load1 X
        one JSON line (speed.jsonl) from `run_llm --benchmark --json` or `bench/llamacpp_bench.py run`
  accuracy --raw RAW_DIR --labels "L1 L2" --prompts N
        the accuracy JSON lines (accuracy.jsonl) from RAW_DIR's outputs (see the .sh for the names)
  summary --out OUT_DIR
        Markdown tables (types, accuracy, speed) from OUT_DIR's JSON lines
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import sys

FTYPES = {
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "Q3_K_S": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q3_K_L": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("f32")
    c.add_argument("--src", required=True)
    c.add_argument("--out", required=True)
    c = sub.add_parser("quantize")
    c.add_argument("--src", required=True)
    c.add_argument("--ftype", required=True, choices=sorted(FTYPES))
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("types")
    c.add_argument("--gguf", required=True)
    c.add_argument("--label", required=True)
    c = sub.add_parser("llama")
    c.add_argument("--gguf", required=True)
    c.add_argument("--prompt_ids", required=True)
    c.add_argument("--num_tokens", type=int, required=True)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--out", required=True)
    c = sub.add_parser("speed-line")
    c.add_argument("--kind", required=True, choices=["ours", "llamacpp"])
    c.add_argument("--json", required=True)
    c.add_argument("--label", required=True)
    c.add_argument("--quant", default="")
    c.add_argument("--round", type=int, required=True)
    c.add_argument("--load1", type=float, required=True)
    c = sub.add_parser("accuracy")
    c.add_argument("--raw", required=True)
    c.add_argument("--labels", required=True)
    c.add_argument("--prompts", type=int, required=True)
    c = sub.add_parser("summary")
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    return globals()["cmd_" + a.cmd.replace("-", "_")](a)


def cmd_f32(a):
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    r = GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(a.out, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the header's own fields; the architecture is written by GGUFWriter
        if name == "general.file_type":
            w.add_file_type(LlamaFileType.ALL_F32)
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), vtype, sub_type=sub)
    for t in r.tensors:
        if t.tensor_type == GGMLQuantizationType.F32:
            data = np.array(t.data, dtype=np.float32)
        else:
            data = dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


def cmd_quantize(a):
    import llama_cpp as L

    L.llama_backend_init()
    params = L.llama_model_quantize_default_params()
    params.nthread = a.threads
    params.ftype = getattr(L, FTYPES[a.ftype])
    rc = L.llama_model_quantize(a.src.encode(), a.out.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"llama_model_quantize({a.src} -> {a.ftype}) failed with status {rc}", file=sys.stderr)
        return 1
    return 0


def cmd_types(a):
    from gguf import GGUFReader

    r = GGUFReader(a.gguf)
    overall, roles = {}, {}
    for t in r.tensors:
        ty = t.tensor_type.name
        overall[ty] = overall.get(ty, 0) + 1
        role = re.sub(r"^blk\.\d+\.", "", t.name).removesuffix(".weight")
        roles.setdefault(role, {})
        roles[role][ty] = roles[role].get(ty, 0) + 1
    ft = r.fields.get("general.file_type")
    print(json.dumps({
        "label": a.label,
        "file": os.path.basename(a.gguf),
        "bytes": os.path.getsize(a.gguf),
        "file_type": int(ft.contents()) if ft else None,
        "tensors": len(r.tensors),
        "types": overall,
        "roles": roles,
    }))
    return 0


def cmd_llama(a):
    import numpy as np
    import llama_cpp as L

    ids = np.array([int(x) for x in a.prompt_ids.split(",")], dtype=np.int32)
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    # As bench/llamacpp_bench.py: no extra CPU buffer types (AMX / REPACK), llama.cpp's plain CPU path.
    mparams.use_extra_bufts = False
    model = L.llama_model_load_from_file(a.gguf.encode(), mparams)
    if not model:
        print(f"llama.cpp could not load {a.gguf}", file=sys.stderr)
        return 1
    cparams = L.llama_context_default_params()
    cparams.n_ctx = len(ids) + a.num_tokens + 1
    cparams.n_batch = cparams.n_ubatch = len(ids)
    cparams.n_threads = cparams.n_threads_batch = a.threads
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))

    def step(ptr, count):
        rc = L.llama_decode(ctx, L.llama_batch_get_one(ptr, count))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with status {rc}")
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()

    logits = step(ids.ctypes.data_as(ctypes.POINTER(L.llama_token)), len(ids))
    logits.astype("<f4").tofile(a.out + ".logits.f32")
    tokens, gaps = [], []
    one = (L.llama_token * 1)()
    cur = logits
    while True:
        top2 = np.sort(cur)[-2:]
        tokens.append(int(cur.argmax()))
        gaps.append(float(top2[1] - top2[0]))
        if len(tokens) == a.num_tokens:
            break
        one[0] = tokens[-1]
        cur = step(one, 1)
    with open(a.out + ".json", "w") as f:
        json.dump({
            "engine": "llama.cpp (llama-cpp-python " + L.__version__ + ")",
            "gguf": a.gguf,
            "threads": a.threads,
            "prompt_ids": ids.tolist(),
            "vocab": n_vocab,
            "tokens": tokens,
            "top2_gaps": gaps,
            "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        }, f)
        f.write("\n")
    L.llama_free(ctx)
    L.llama_model_free(model)
    return 0


def cmd_speed_line(a):
    with open(a.json) as f:
        d = json.load(f)
    line = {"label": a.label, "engine": a.kind if a.kind == "llamacpp" else f"ours-{a.quant}",
            "round": a.round, "load1_before": a.load1}
    if a.kind == "ours":
        line.update({
            "decode_ms_per_token": d["decode_ms_per_token_median"],
            "ttft_ms": d["ttft_ms_median"],
            "iterations": d["iterations"],
            "isl": d["isl"],
            "num_tokens": d["num_tokens"],
            "weight_bytes_per_token": d["roofline"]["weight_bytes_per_token"],
            "device": d["run"]["device"],
            "notes": d["run"]["notes"],
        })
    else:
        line.update({
            "decode_ms_per_token": statistics.median(d["decode_ms_per_token"]),
            "ttft_ms": statistics.median(d["ttft_ms"]),
            "iterations": d["iterations"],
            "isl": d["isl"],
            "num_tokens": d["num_tokens"],
            "model_size_bytes": d["model_size_bytes"],
            "engine_version": d["engine"],
        })
    line["decode_tokens_per_s"] = 1e3 / line["decode_ms_per_token"]
    print(json.dumps(line))
    return 0


def leading_equal(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def cmd_accuracy(a):
    import numpy as np

    def load(stem):
        with open(stem + ".json") as f:
            d = json.load(f)
        return d, np.fromfile(stem + ".logits.f32", dtype="<f4")

    def run_llm_tokens(path):
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)["tokens"]

    def rel(got, want):
        return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())

    for label in a.labels.split():
        for p in range(a.prompts):
            base = os.path.join(a.raw, f"{label}-p{p}")
            line = {"label": label, "prompt": p}
            try:
                lj, ll = load(base + "-llamacpp")
                gj, gl = load(base + "-ours-gguf")
                nj, nl = load(base + "-ours-none")
            except FileNotFoundError as e:
                line["error"] = f"missing output: {e.filename}"
                print(json.dumps(line))
                continue
            n = len(lj["tokens"])
            lt, gt, nt = lj["tokens"], gj["tokens"], nj["tokens"]
            k = leading_equal(gt, lt)
            rg = run_llm_tokens(base + "-run_llm-gguf.json")
            rn = run_llm_tokens(base + "-run_llm-none.json")
            line.update({
                "prompt_len": len(lj["prompt_ids"]),
                "num_tokens": n,
                "gguf_vs_llamacpp_tokens_agree": k,
                "gguf_vs_llamacpp_logits_rel": rel(gl, ll),
                "gguf_vs_llamacpp_argmax_equal": int(gl.argmax()) == int(ll.argmax()),
                # Where the greedy runs part, how close llama.cpp's own top two were at that step.
                "llamacpp_top2_gap_at_divergence": lj["top2_gaps"][k] if k < n else None,
                "llamacpp_min_top2_gap": min(lj["top2_gaps"]),
                "none_vs_gguf_tokens_agree": leading_equal(nt, gt),
                "none_vs_gguf_logits_bit_identical": bool(
                    (nl.view(np.uint32) == gl.view(np.uint32)).all()),
                "none_vs_gguf_logits_max_abs": float(np.abs(nl - gl).max()),
                "none_vs_llamacpp_logits_rel": rel(nl, ll),
                # run_llm itself (stops at EOS): its tokens must be a prefix of the example's.
                "run_llm_gguf_tokens": len(rg) if rg is not None else None,
                "run_llm_gguf_equals_ours": rg is not None and rg == gt[: len(rg)],
                "run_llm_none_equals_run_llm_gguf": rg is not None and rn == rg,
                "tokens_llamacpp": lt,
                "tokens_ours_gguf": gt,
            })
            # Ours on the F32 file (the unquantized weights): the size of the quantization error itself.
            if label != "F32" and os.path.exists(os.path.join(a.raw, f"F32-p{p}-ours-none.json")):
                fj, fl = load(os.path.join(a.raw, f"F32-p{p}-ours-none"))
                line["gguf_vs_ours_f32_file_logits_rel"] = rel(gl, fl)
                line["gguf_vs_ours_f32_file_tokens_agree"] = leading_equal(gt, fj["tokens"])
            # The control: llama.cpp on this file's weights dequantised to F32 by gguf-py.
            if os.path.exists(base + "-llamacpp-deq.json"):
                dj, dl = load(base + "-llamacpp-deq")
                line.update({
                    "gguf_vs_llamacpp_deq_tokens_agree": leading_equal(gt, dj["tokens"]),
                    "gguf_vs_llamacpp_deq_logits_rel": rel(gl, dl),
                    "llamacpp_vs_llamacpp_deq_tokens_agree": leading_equal(lt, dj["tokens"]),
                    "llamacpp_vs_llamacpp_deq_logits_rel": rel(ll, dl),
                })
            print(json.dumps(line))
    return 0


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(s) for s in f if s.strip()]


def cmd_summary(a):
    out = []
    types = read_lines(os.path.join(a.out, "types.jsonl"))
    if types:
        out += ["## Tensor types per file (gguf-py GGUFReader)", "",
                "| file | MB | tensor types (count) | per role |", "|---|---|---|---|"]
        for t in types:
            overall = ", ".join(f"{k} {v}" for k, v in sorted(t["types"].items()))
            roles = "; ".join(f"{r}: " + "/".join(f"{k}×{v}" if v > 1 else k
                                                    for k, v in sorted(tys.items()))
                              for r, tys in t["roles"].items()
                              if not (r.endswith("norm") or r.endswith("norm.weight")))
            out.append(f"| {t['label']} | {t['bytes'] / 1e6:.0f} | {overall} | {roles} |")
        out.append("")
    acc = read_lines(os.path.join(a.out, "accuracy.jsonl"))
    if acc:
        out += ["## Accuracy (FP32 engine, greedy, last prompt position's logits)", "",
                "agree = equal leading greedy tokens (of N); rel = max |a - b| / max |b| over the last "
                "prompt position's logits, b the second engine; gap = llama.cpp's top-1 minus top-2 logit "
                "at the first step where the tokens differ. llama.cpp deq = llama.cpp on the same file's "
                "weights dequantised to F32 by gguf-py (no 8-bit activations). ours F32 file = our engine "
                "on the F32 file the other files were quantized from (the weights' own quantization "
                "error; 0 for Q4_1, which the F32 file is, dequantised). gguf = none: "
                "`--quant_format gguf` and `none` give equal tokens and bit-identical logits, and "
                "run_llm's tokens (to EOS) are the example's.", "",
                "| file | prompt | gguf vs llama.cpp: agree | rel | gap | gguf vs llama.cpp deq: agree | rel "
                "| llama.cpp vs llama.cpp deq: rel | gguf vs ours F32 file: rel | gguf = none |",
                "|---|---|---|---|---|---|---|---|---|---|"]

        def opt(r, k, fmt):
            return "-" if r.get(k) is None else format(r[k], fmt)

        for r in acc:
            if "error" in r:
                out.append(f"| {r['label']} | {r['prompt']} | {r['error']} |" + " |" * 7)
                continue
            n = r["num_tokens"]
            same = (r["none_vs_gguf_tokens_agree"] == n and r["none_vs_gguf_logits_bit_identical"]
                    and r["run_llm_gguf_equals_ours"] and r["run_llm_none_equals_run_llm_gguf"])
            deq_agree = r.get("gguf_vs_llamacpp_deq_tokens_agree")
            out.append(
                f"| {r['label']} | {r['prompt']} | {r['gguf_vs_llamacpp_tokens_agree']}/{n} "
                f"| {r['gguf_vs_llamacpp_logits_rel']:.2e} | {opt(r, 'llamacpp_top2_gap_at_divergence', '.3f')} "
                f"| {'-' if deq_agree is None else f'{deq_agree}/{n}'} "
                f"| {opt(r, 'gguf_vs_llamacpp_deq_logits_rel', '.2e')} "
                f"| {opt(r, 'llamacpp_vs_llamacpp_deq_logits_rel', '.2e')} "
                f"| {opt(r, 'gguf_vs_ours_f32_file_logits_rel', '.2e')} | {'yes' if same else 'NO'} |")
        out.append("")
    speed = read_lines(os.path.join(a.out, "speed.jsonl"))
    if speed:
        out += ["## Decode speed (tokens/s, median over rounds [min-max]; 2 threads, ISL 16, 64 tokens)", ""]
        labels = list(dict.fromkeys(s["label"] for s in speed))
        engines = ["ours-gguf", "ours-none", "llamacpp"]
        out += ["MB/token: weight bytes read per decode step by ours (gguf) and the GGUF's tensor bytes "
                "for llama.cpp (llama_model_size). 1-min load: before each run of that file.", "",
                "| file | " + " | ".join(engines) + " | gguf / none | gguf / llama.cpp "
                "| MB/token gguf / llama.cpp | 1-min load |",
                "|---" * (len(engines) + 5) + "|"]
        for lab in labels:
            cells, med = [], {}
            for e in engines:
                v = [s["decode_tokens_per_s"] for s in speed if s["label"] == lab and s["engine"] == e]
                if v:
                    med[e] = statistics.median(v)
                    cells.append(f"{med[e]:.1f} [{min(v):.1f}-{max(v):.1f}]")
                else:
                    cells.append("-")
            loads = [s["load1_before"] for s in speed if s["label"] == lab]
            ratio = lambda x, y: f"{med[x] / med[y]:.2f}" if x in med and y in med else "-"
            mb_ours = [s["weight_bytes_per_token"] for s in speed
                       if s["label"] == lab and s["engine"] == "ours-gguf"]
            mb_llama = [s["model_size_bytes"] for s in speed if s["label"] == lab and s["engine"] == "llamacpp"]
            mb = (f"{mb_ours[0] / 1e6:.0f}" if mb_ours else "-") + " / " + (
                f"{mb_llama[0] / 1e6:.0f}" if mb_llama else "-")
            out.append(f"| {lab} | " + " | ".join(cells) + f" | {ratio('ours-gguf', 'ours-none')} "
                       f"| {ratio('ours-gguf', 'llamacpp')} | {mb} | {min(loads):.2f}-{max(loads):.2f} |")
        out.append("")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
