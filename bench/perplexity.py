#!/usr/bin/env python3
"""Python side of `bench/perplexity.sh`: llama.cpp's and transformers' perplexity of a GGUF file on a
text, computed the way `run_llm --perplexity` computes it (runtime/src/perplexity.rs), and the summary
table of one output folder.

The convention (llama.cpp's perplexity tool's): the text is tokenized without special tokens, after a
BOS when the tokenizer adds one; the ids are cut into len // CTX windows of CTX ids that do not
overlap, each evaluated alone from position 0 with a BOS in place of its first id when the tokenizer
adds one; the logits at positions CTX//2 ..= CTX-2 are scored against the next id, -log_softmax in
float64; perplexity = exp(mean over every scored id).

Commands:
  llama --gguf FILE --text TXT --ctx N --threads N --out OUT.json
        llama.cpp (llama-cpp-python's C API; its tokenizer; one llama_decode of CTX ids per window with
        the logits of every position; the context's memory cleared between windows)
  hf --gguf FILE --text TXT --ctx N --threads N --out OUT.json
        transformers (AutoModelForCausalLM.from_pretrained(gguf_file=..., dtype=float32): every tensor
        dequantised by gguf-py; AutoTokenizer from the same file)
  summary --out DIR
        the Markdown table of DIR/raw/*.json (the output of run_llm --perplexity --json and of the
        two commands above), with DIR/skipped.txt
Each writes one JSON object with the keys run_llm --perplexity --json uses for the figures (text_tokens,
bos, ctx, windows, scored_tokens, window_nll, mean_nll, perplexity, forward_s, tokens_per_s), plus
ids_sha256 (of the ids as little-endian u32) and the engine's name and version.
"""

import argparse
import ctypes
import glob
import hashlib
import json
import math
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("llama", "hf"):
        c = sub.add_parser(name)
        c.add_argument("--gguf", required=True)
        c.add_argument("--text", required=True)
        c.add_argument("--ctx", type=int, default=512)
        c.add_argument("--threads", type=int, default=2)
        c.add_argument("--out", required=True)
    c = sub.add_parser("summary")
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    return globals()["cmd_" + a.cmd](a)


def windows(ids, ctx, bos):
    """The input ids of each window."""
    out = []
    for w in range(len(ids) // ctx):
        window = list(ids[w * ctx:(w + 1) * ctx])
        if bos is not None:
            window[0] = bos
        out.append(window)
    return out


def window_nll(logits, window, ctx):
    """Sum of -log_softmax over the scored positions; `logits` is [ctx, vocab], any float type."""
    import numpy as np

    first = ctx // 2
    z = np.asarray(logits[first:ctx - 1], dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
    targets = np.asarray(window[first + 1:ctx])
    return float((lse - z[np.arange(len(targets)), targets]).sum())


def result(engine, gguf, ids, bos, ctx, sums, forward_s, threads):
    import numpy as np

    scored = len(sums) * (ctx - 1 - ctx // 2)
    mean = sum(sums) / scored
    return {
        "engine": engine,
        "gguf": gguf,
        "threads": threads,
        "text_tokens": len(ids),
        "ids_sha256": hashlib.sha256(np.asarray(ids, dtype="<u4").tobytes()).hexdigest(),
        "bos": bos,
        "ctx": ctx,
        "windows": len(sums),
        "scored_tokens": scored,
        "window_nll": sums,
        "mean_nll": mean,
        "perplexity": math.exp(mean),
        "forward_s": forward_s,
        "tokens_per_s": len(sums) * ctx / forward_s if forward_s > 0 else 0.0,
    }


def cmd_llama(a):
    import numpy as np
    import llama_cpp as L

    text = open(a.text, encoding="utf-8").read().encode()
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    # As bench/gguf_vs_llamacpp.py: no extra CPU buffer types (AMX / REPACK), llama.cpp's plain CPU path.
    mparams.use_extra_bufts = False
    model = L.llama_model_load_from_file(a.gguf.encode(), mparams)
    if not model:
        print(f"llama.cpp could not load {a.gguf}", file=sys.stderr)
        return 1
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    add_bos = bool(L.llama_vocab_get_add_bos(vocab))
    bos = int(L.llama_vocab_bos(vocab)) if add_bos else None
    buf = (L.llama_token * (len(text) + 8))()
    n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), add_bos, False)
    if n < 0:
        print(f"llama_tokenize needs {-n} tokens", file=sys.stderr)
        return 1
    ids = [int(buf[i]) for i in range(n)]
    cparams = L.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = a.ctx
    cparams.n_threads = cparams.n_threads_batch = a.threads
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    batch = L.llama_batch_init(a.ctx, 0, 1)
    sums, forward_s = [], 0.0
    for window in windows(ids, a.ctx, bos):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        for i, t in enumerate(window):
            batch.token[i] = t
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        batch.n_tokens = a.ctx
        t0 = time.perf_counter()
        rc = L.llama_decode(ctx, batch)
        forward_s += time.perf_counter() - t0
        if rc != 0:
            print(f"llama_decode failed with status {rc}", file=sys.stderr)
            return 1
        logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(a.ctx, n_vocab))
        sums.append(window_nll(logits, window, a.ctx))
    r = result("llama.cpp (llama-cpp-python " + L.__version__ + ")", a.gguf, ids, bos, a.ctx, sums,
               forward_s, a.threads)
    r["system_info"] = L.llama_print_system_info().decode(errors="replace").strip()
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    write(a.out, r)
    return 0


def cmd_hf(a):
    import shutil
    import tempfile

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    text = open(a.text, encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(a.gguf, os.path.join(tmp, "model.gguf"))
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file="model.gguf", dtype=torch.float32)
    model = model.eval()
    plain = tok(text, add_special_tokens=False)["input_ids"]
    special = tok(text, add_special_tokens=True)["input_ids"]
    adds_bos = tok.bos_token_id is not None and special[:1] == [tok.bos_token_id] and plain[:1] != special[:1]
    bos = tok.bos_token_id if adds_bos else None
    ids = ([bos] if adds_bos else []) + plain
    sums, forward_s = [], 0.0
    for window in windows(ids, a.ctx, bos):
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = model(torch.tensor([window])).logits[0]
        forward_s += time.perf_counter() - t0
        sums.append(window_nll(logits.numpy(), window, a.ctx))
    r = result(f"transformers {transformers.__version__} (torch {torch.__version__}, float32)", a.gguf, ids,
               bos, a.ctx, sums, forward_s, a.threads)
    write(a.out, r)
    return 0


def write(path, r):
    with open(path, "w") as f:
        json.dump(r, f)
        f.write("\n")


def cmd_summary(a):
    """One row per (weights, engine) from raw/<label>__<engine>.json."""
    rows = []
    for path in sorted(glob.glob(os.path.join(a.out, "raw", "*.json"))):
        stem = os.path.basename(path)[:-5]
        if "__" not in stem:
            continue
        label, engine = stem.split("__", 1)
        with open(path) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError:
                continue
        if "perplexity" not in d:
            continue
        rows.append((label, engine, d))
    by_label = {}
    for label, engine, d in rows:
        by_label.setdefault(label, {})[engine] = d
    print("| weights | engine | perplexity | mean NLL (nats) | vs llama.cpp, same file | tokens scored | "
          "windows × ctx | tokens/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, engine, d in rows:
        ref = by_label[label].get("llamacpp")
        diff = ""
        if ref is not None and engine != "llamacpp":
            diff = f"{100 * (d['perplexity'] / ref['perplexity'] - 1):+.3f}%"
            if ref.get("text_tokens") != d.get("text_tokens"):
                diff += f" (text tokens {d.get('text_tokens')} vs {ref.get('text_tokens')})"
        print(f"| {label} | {engine} | {d['perplexity']:.4f} | {d['mean_nll']:.5f} | {diff} | "
              f"{d['scored_tokens']} | {d['windows']} × {d['ctx']} | {d['tokens_per_s']:.0f} |")
    ids = {}
    for label, engine, d in rows:
        if "ids_sha256" in d:
            ids.setdefault(d["ids_sha256"], []).append(f"{label}/{engine}")
    if ids:
        print()
        print("Token ids of the text (SHA-256 of the ids, by the runs that report it): " +
              "; ".join(f"{h[:16]}: {', '.join(v)}" for h, v in ids.items()))
    skipped = os.path.join(a.out, "skipped.txt")
    if os.path.exists(skipped) and os.path.getsize(skipped) > 0:
        print()
        print("Skipped:")
        for line in open(skipped):
            print(f"- {line.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
