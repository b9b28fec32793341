#!/usr/bin/env python3
"""Makes tests/fixtures/perplexity/reference.json: transformers' perplexity of tiny test models on
tests/fixtures/perplexity/genesis-1-11.txt, computed the way `run_llm --perplexity` computes it
(runtime/src/perplexity.rs), for run_llm/tests/perplexity.rs to reproduce.

The convention (llama.cpp's perplexity tool's): the text is tokenized without special tokens (these
tokenizers add no BOS); its ids are cut into len // CTX windows of CTX ids that do not overlap; each
window is one forward from position 0 (float32 weights and compute); the logits at positions
CTX//2 ..= CTX-2 are scored against the next id, as -log_softmax in float64. Per model it records the
number of text tokens, the per-window sums of those negative log-likelihoods, their mean over every
scored token, the perplexity, and the largest |logit| met (for the test's bound).

Pinned versions (scripts/requirements-pyref.txt): torch 2.11.0 (CPU), transformers 5.17.0. Run from
anywhere with the pyref venv: `$(scripts/install-pyref.sh) scripts/make_perplexity_fixtures.py`.
"""

import json
import math
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "fixtures", "perplexity")
TEXT = os.path.join(DIR, "genesis-1-11.txt")
# tiny-gpt2 has 128 learned positions; the others take the same window.
MODELS = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]
CTX = 128


def windows_nll(model, ids, ctx):
    """Per-window sums of the scored tokens' negative log-likelihoods, and the largest |logit|."""
    first = ctx // 2
    sums, max_abs = [], 0.0
    for w in range(len(ids) // ctx):
        window = torch.tensor([ids[w * ctx:(w + 1) * ctx]])
        with torch.no_grad():
            logits = model(window).logits[0].to(torch.float64)
        max_abs = max(max_abs, logits.abs().max().item())
        logp = torch.log_softmax(logits[first:ctx - 1], dim=-1)
        targets = window[0, first + 1:ctx]
        sums.append(-logp.gather(1, targets[:, None]).sum().item())
    return sums, max_abs


def main():
    have = (torch.__version__.split("+")[0], transformers.__version__)
    if have != ("2.11.0", "5.17.0"):
        sys.exit(f"torch 2.11.0 and transformers 5.17.0 required, found {have}")
    torch.set_num_threads(2)
    with open(TEXT, encoding="utf-8") as f:
        text = f.read()
    out = {
        "text": "tests/fixtures/perplexity/genesis-1-11.txt",
        "ctx": CTX,
        "convention": "llama.cpp's: windows of ctx ids that do not overlap, each from position 0; "
        "logits at positions ctx//2..=ctx-2 scored against the next id, -log_softmax in float64",
        "made_by": f"scripts/make_perplexity_fixtures.py, torch {have[0]}, transformers {have[1]}",
        "models": {},
    }
    for name in MODELS:
        path = os.path.join(ROOT, "models", name)
        tok = AutoTokenizer.from_pretrained(path)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok(text, add_special_tokens=True)["input_ids"] == ids, f"{name} adds special tokens"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        sums, max_abs = windows_nll(model, ids, CTX)
        scored = len(sums) * (CTX - 1 - CTX // 2)
        mean = sum(sums) / scored
        out["models"][name] = {
            "text_tokens": len(ids),
            "windows": len(sums),
            "scored_tokens": scored,
            "window_nll": sums,
            "mean_nll": mean,
            "perplexity": math.exp(mean),
            "max_abs_logit": max_abs,
        }
        print(f"{name}: {len(ids)} tokens, {len(sums)} windows, perplexity {math.exp(mean):.6f}, "
              f"max |logit| {max_abs:.3f}")
    with open(os.path.join(DIR, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
