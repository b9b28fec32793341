#!/usr/bin/env python3
"""PyTorch baseline for `run_llm --enable_pytorch_run`.

Runs Hugging Face transformers on a model directory (the same weights the llmforge engine was built
from; run_llm writes one for GGUF and synthetic weights) with the same prompt ids, the same number of new
tokens and greedy selection, and reports the generated ids and timings for two loops:

  * "DynamicCache": transformers' growing KV cache, eager forward;
  * "StaticCache":  transformers' static cache of prompt + new tokens, with the decode step compiled by
    torch.compile(mode="reduce-overhead") on CUDA. On the CPU compilation is skipped (inductor's C++
    build takes minutes on small machines) unless LLMFORGE_TORCH_COMPILE=1; the report says which.

Timing semantics match run_llm's: TTFT = prefill + first token selection; decode = every later step.

Usage: pytorch_baseline.py --request REQUEST.json --output RESULT.json
REQUEST: {"model_dir", "precision": FP32|FP16|BF16, "device": cpu|cuda, "prompts": [[ids]],
          "num_tokens", "eos": [ids], "stop_at_eos", "warmup", "iterations"}
RESULT:  {"python", "versions", "notes": [...], "runs": [{"name", "compiled", "note", "tokens": [[ids]],
          "e2e_ms": [...], "ttft_ms": [...], "decode_ms_per_token": [...]}]}
         or {"python", "missing": [module names]} with exit status 3 when torch/transformers are absent.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

REQUIRED = ("torch", "transformers", "safetensors")
EXIT_MISSING = 3


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--request", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    with open(a.request) as f:
        req = json.load(f)
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        write(a.output, {"python": sys.executable, "missing": missing})
        return EXIT_MISSING
    if req.get("check_only"):
        write(a.output, {"python": sys.executable})
        return 0
    write(a.output, run(req))
    return 0


def run(req):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    dtype = {"FP32": torch.float32, "FP16": torch.float16, "BF16": torch.bfloat16}[req["precision"]]
    device = torch.device("cuda:0" if req["device"] == "cuda" else "cpu")
    torch.manual_seed(0)
    kwargs = {"attn_implementation": "sdpa"}
    major = int(transformers.__version__.split(".")[0])
    kwargs["dtype" if major >= 5 else "torch_dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(req["model_dir"], **kwargs).eval().to(device)
    ids = torch.tensor(req["prompts"], dtype=torch.long, device=device)
    notes = []
    loop = Loop(model, ids, req, device)
    runs = [loop.timed("DynamicCache", loop.dynamic(), compiled=False, note=None)]

    want_compile = device.type == "cuda" or os.environ.get("LLMFORGE_TORCH_COMPILE") == "1"
    note = None
    if not want_compile:
        note = "torch.compile skipped on the CPU (set LLMFORGE_TORCH_COMPILE=1 to compile)"
    static = loop.static(compile_decode=want_compile)
    try:
        runs.append(loop.timed("StaticCache", static, compiled=want_compile, note=note))
    except Exception as e:  # compilation is best effort: report eager instead
        if not want_compile:
            raise
        notes.append(f"torch.compile failed ({type(e).__name__}: {e}); StaticCache ran eager")
        static = loop.static(compile_decode=False)
        runs.append(loop.timed("StaticCache", static, compiled=False, note="eager: compile failed"))
    return {
        "python": sys.executable,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "device": str(device),
        "notes": notes,
        "runs": runs,
    }


class Loop:
    """Greedy generation loops over one model and one batch of equal-length prompts."""

    def __init__(self, model, ids, req, device):
        self.model, self.ids, self.device = model, ids, device
        self.n = req["num_tokens"]
        self.eos = req["eos"] if req["stop_at_eos"] else []
        self.warmup, self.iterations = req["warmup"], req["iterations"]

    def sync(self):
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def timed(self, name, step_fns, compiled, note):
        """Run the loop warmup + iterations times; the tokens are those of the last run."""
        e2e, ttft, per_tok, tokens = [], [], [], None
        warmup = max(self.warmup, 1 if compiled else 0)
        for i in range(warmup + self.iterations):
            tokens, t = self.generate(*step_fns)
            if i >= warmup:
                e2e.append(t["e2e"] * 1e3)
                ttft.append(t["ttft"] * 1e3)
                if t["steps"]:
                    per_tok.append(t["decode"] * 1e3 / t["steps"])
        return {"name": name, "compiled": compiled, "note": note, "tokens": tokens, "e2e_ms": e2e,
                "ttft_ms": ttft, "decode_ms_per_token": per_tok}

    def generate(self, prefill, decode):
        import torch

        with torch.inference_mode():
            batch, length = self.ids.shape
            self.sync()
            t0 = time.perf_counter()
            nxt = prefill(self.ids).argmax(-1)
            out = [nxt]
            self.sync()
            t1 = time.perf_counter()
            done = self.is_eos(nxt)
            pos = length
            while len(out) < self.n and not (self.eos and bool(done.all())):
                nxt = decode(nxt[:, None], pos).argmax(-1)
                out.append(nxt)
                done = done | self.is_eos(nxt)
                pos += 1
            self.sync()
            t2 = time.perf_counter()
        rows = torch.stack(out, dim=1).tolist()
        tokens = [self.until_eos(r) for r in rows]
        return tokens, {"e2e": t2 - t0, "ttft": t1 - t0, "decode": t2 - t1, "steps": len(out) - 1}

    def is_eos(self, nxt):
        import torch

        if not self.eos:
            return torch.zeros_like(nxt, dtype=torch.bool)
        return torch.isin(nxt, torch.tensor(self.eos, device=nxt.device))

    def until_eos(self, row):
        for i, t in enumerate(row):
            if t in self.eos:
                return row[: i + 1]
        return row

    def dynamic(self):
        from transformers import DynamicCache

        state = {}

        def prefill(ids):
            state["cache"] = DynamicCache(config=self.model.config)
            out = self.model(input_ids=ids, past_key_values=state["cache"], use_cache=True)
            return out.logits[:, -1, :]

        def decode(ids, pos):
            out = self.model(input_ids=ids, past_key_values=state["cache"], use_cache=True)
            return out.logits[:, -1, :]

        return prefill, decode

    def static(self, compile_decode):
        import torch
        from transformers import StaticCache

        batch, length = self.ids.shape
        cache = StaticCache(config=self.model.config, max_cache_len=length + self.n)
        forward = self.model.forward
        if compile_decode:
            forward = torch.compile(forward, mode="reduce-overhead", fullgraph=True)

        def prefill(ids):
            cache.reset()
            pos = torch.arange(length, device=ids.device)
            out = self.model(input_ids=ids, cache_position=pos, past_key_values=cache, use_cache=True)
            return out.logits[:, -1, :]

        def decode(ids, pos):
            p = torch.tensor([pos], device=ids.device)
            out = forward(input_ids=ids, cache_position=p, past_key_values=cache, use_cache=True)
            return out.logits[:, -1, :].clone()

        return prefill, decode


if __name__ == "__main__":
    sys.exit(main())
