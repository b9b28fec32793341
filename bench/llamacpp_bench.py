#!/usr/bin/env python3
"""llama.cpp side of `bench/cpu_bench.sh`: time greedy generation through llama-cpp-python's C API.

The timing semantics match `run_llm --benchmark` and `bench/pytorch_baseline.py`: one untimed warm-up,
then `--iterations` timed generations of exactly `--num_tokens` tokens from a random prompt of `--isl`
ids; TTFT = prefill + first token selection, decode = every later step (one `llama_decode` of one
token + argmax of its logits). The KV cache is cleared before every generation.

Commands:
  convert --gguf IN --ftype T --out OUT
                                   rewrite IN with every 2-D weight in T (F32, F16, BF16) with
                                   llama.cpp's own quantizer (llama_model_quantize, requantizing allowed)
  run --gguf G --isl N --num_tokens N --iterations N --threads N --seed S --output OUT.json
      [--extra_bufts]              (see --help)

Needs llama-cpp-python (`pip install llama-cpp-python`); exits with status 3 and says so when absent.
"""

import argparse
import ctypes
import importlib.util
import json
import sys
import time

EXIT_MISSING = 3
MAX_RANDOM_ID = 10_000
FTYPES = {"F32": "LLAMA_FTYPE_ALL_F32", "F16": "LLAMA_FTYPE_MOSTLY_F16", "BF16": "LLAMA_FTYPE_MOSTLY_BF16"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--gguf", required=True)
    c.add_argument("--ftype", required=True, choices=sorted(FTYPES))
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("run")
    r.add_argument("--gguf", required=True)
    r.add_argument("--isl", type=int, required=True)
    r.add_argument("--num_tokens", type=int, required=True)
    r.add_argument("--iterations", type=int, default=3)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--output", required=True)
    r.add_argument("--extra_bufts", action="store_true",
                   help="let llama.cpp repack weights into its extra CPU buffer types (AMX, REPACK); "
                        "off by default: with AMX, prompts of more than one token crashed the "
                        "llama-cpp-python 0.3.36 build on the Xeon this was written on")
    a = ap.parse_args()
    if importlib.util.find_spec("llama_cpp") is None:
        print(f"llama-cpp-python is not installed for {sys.executable}: "
              "install it with `pip install llama-cpp-python`", file=sys.stderr)
        return EXIT_MISSING
    if a.cmd == "convert":
        return convert(a)
    return run(a)


def convert(a):
    import llama_cpp as L

    L.llama_backend_init()
    params = L.llama_model_quantize_default_params()
    params.nthread = a.threads
    params.ftype = getattr(L, FTYPES[a.ftype])
    params.allow_requantize = True
    params.pure = True  # the token embeddings / output too, so every matrix is in the target type
    rc = L.llama_model_quantize(a.gguf.encode(), a.out.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"llama_model_quantize({a.gguf} -> {a.ftype}) failed with status {rc}", file=sys.stderr)
        return 1
    return 0


def run(a):
    import numpy as np
    import llama_cpp as L

    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.use_extra_bufts = a.extra_bufts
    model = L.llama_model_load_from_file(a.gguf.encode(), mparams)
    if not model:
        print(f"llama.cpp could not load {a.gguf}", file=sys.stderr)
        return 1
    cparams = L.llama_context_default_params()
    cparams.n_ctx = a.isl + a.num_tokens
    cparams.n_batch = max(a.isl, 1)
    cparams.n_ubatch = max(a.isl, 1)
    cparams.n_threads = a.threads
    cparams.n_threads_batch = a.threads
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    rng = np.random.default_rng(a.seed)
    prompt = rng.integers(1, min(n_vocab, MAX_RANDOM_ID), size=a.isl).astype(np.int32)
    gen = Generator(L, np, ctx, n_vocab, prompt, a.num_tokens)

    gen.once()  # untimed warm-up
    e2e, ttft, per_tok, tokens = [], [], [], None
    for _ in range(a.iterations):
        tokens, t = gen.once()
        e2e.append(t["e2e"] * 1e3)
        ttft.append(t["ttft"] * 1e3)
        if t["steps"]:
            per_tok.append(t["decode"] * 1e3 / t["steps"])
    result = {
        "engine": "llama.cpp (llama-cpp-python " + L.__version__ + ")",
        "gguf": a.gguf,
        "model_size_bytes": L.llama_model_size(model),
        "n_params": L.llama_model_n_params(model),
        "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        "extra_bufts": a.extra_bufts,
        "threads": a.threads,
        "isl": a.isl,
        "num_tokens": a.num_tokens,
        "iterations": a.iterations,
        "e2e_ms": e2e,
        "ttft_ms": ttft,
        "decode_ms_per_token": per_tok,
        "tokens": tokens,
    }
    with open(a.output, "w") as f:
        json.dump(result, f)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return 0


class Generator:
    """Greedy generation of a fixed number of tokens from one prompt on one llama.cpp context."""

    def __init__(self, L, np, ctx, n_vocab, prompt, n):
        self.L, self.np, self.ctx, self.n_vocab, self.n = L, np, ctx, n_vocab, n
        self.prompt = prompt
        self.one = (L.llama_token * 1)()

    def step(self, ptr, count):
        rc = self.L.llama_decode(self.ctx, self.L.llama_batch_get_one(ptr, count))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with status {rc}")
        logits = self.L.llama_get_logits_ith(self.ctx, -1)
        return int(self.np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())

    def once(self):
        L = self.L
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        ptr = self.prompt.ctypes.data_as(ctypes.POINTER(L.llama_token))
        t0 = time.perf_counter()
        nxt = self.step(ptr, len(self.prompt))
        t1 = time.perf_counter()
        out = [nxt]
        while len(out) < self.n:
            self.one[0] = nxt
            nxt = self.step(self.one, 1)
            out.append(nxt)
        t2 = time.perf_counter()
        return out, {"e2e": t2 - t0, "ttft": t1 - t0, "decode": t2 - t1, "steps": len(out) - 1}


if __name__ == "__main__":
    sys.exit(main())
