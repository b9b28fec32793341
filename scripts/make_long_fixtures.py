#!/usr/bin/env python3
# Makes the long-context tiny random-weight fixtures: transformers' outputs on a prompt of more than a
# thousand positions, for models whose heads are 64, 96 and 128 wide (runtime/tests/long_context.rs on
# the CPU, runtime/tests/cuda_long_context.rs on the GPU compare against them).
#
# Pinned versions as for scripts/make_fixtures.py (scripts/requirements-fixtures.txt): torch==2.11.0,
# transformers==5.17.0, tokenizers==0.23.3, safetensors==0.8.0. Run from the repository root:
#
#     /opt/pyref/bin/python scripts/make_long_fixtures.py
#
# For each model in MODELS (config.json committed under models/<name>/ and never rewritten here: GQA,
# max_position_embeddings 2048, 2 layers, hidden size 64, vocabulary 256) it
#   * builds the model from its config with the fixed torch seed SEEDS[name] and perturbs every 1-D
#     parameter exactly as make_fixtures.py does, then writes models/<name>/model.safetensors (fp32, as
#     save_pretrained writes it) and the byte-level tokenizer.json of make_fixtures.py;
#   * draws one prompt of PROMPT_LEN ids: the BOS id, then ids drawn uniformly from 3..255 (no special
#     token) by a torch generator seeded with PROMPT_SEED + SEEDS[name];
#   * writes tests/fixtures/<name>/long_reference.json with, for the fp32 model and for the same model
#     with every 2-D weight rounded to fp16 and to bf16 (1-D parameters kept fp32, computed in fp32, as
#     make_fixtures.py's "rounded" references):
#       - "prefill_logits": the prefill logits (fp32, full vocabulary) at the prompt positions listed in
#         "positions" (every 128th position and the last 8), one row per listed position;
#       - "greedy": the NEW_TOKENS-token continuation of model.generate(do_sample=False);
#       - "step_logits": generate's logits for each of those tokens (row i is the distribution that
#         greedy[i] was chosen from: row 0 at the prompt's last position, row i > 0 after feeding
#         greedy[i - 1] through the cache at position PROMPT_LEN + i - 1);
#       - "min_margin": the smallest gap between the two largest logits of any step row, over the
#         largest |logit| of that row: the script refuses a model whose greedy choice is nearer a tie
#         than MIN_MARGIN (so an engine within the tests' error bounds must pick the same tokens), whose
#         continuation contains EOS (engines stop there) or repeats only one or two tokens.
import copy
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from make_fixtures import byte_tokenizer, f32, logits_json, is_repetitive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["tiny-llama-long-h128", "tiny-qwen2-long-h96", "tiny-llama-long-h64"]
SEEDS = {"tiny-llama-long-h128": 4570, "tiny-qwen2-long-h96": 5678, "tiny-llama-long-h64": 6791}
PROMPT_SEED = 100
PROMPT_LEN = 1100
NEW_TOKENS = 20
STRIDE = 128
LAST = 8
MIN_MARGIN = 1e-3


def build(name: str):
    model_dir = os.path.join(ROOT, "models", name)
    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(SEEDS[name])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if pname.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
    model.eval()
    return model_dir, model


def margin(row: torch.Tensor) -> float:
    top = torch.topk(row, 2).values
    return float((top[0] - top[1]) / row.abs().max())


def run(model, ids, positions):
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0].float()
    out = model.generate(
        x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=NEW_TOKENS,
        pad_token_id=0, return_dict_in_generate=True, output_logits=True,
    )
    greedy = out.sequences[0, len(ids):].tolist()
    steps = torch.stack([s[0].float() for s in out.logits])
    assert steps.argmax(-1).tolist() == greedy
    return {
        "prefill_logits": logits_json(logits[positions]),
        "greedy": greedy,
        "step_logits": logits_json(steps),
        "min_margin": f32(min(margin(r) for r in steps)),
    }


def check(name: str, label: str, r: dict, eos: int) -> bool:
    problems = []
    if eos in r["greedy"] or len(r["greedy"]) < NEW_TOKENS:
        problems.append("contains EOS")
    if is_repetitive(r["greedy"]):
        problems.append("is repetitive")
    if r["min_margin"] < MIN_MARGIN:
        problems.append(f"has a top-2 margin of {r['min_margin']:.2e}")
    for p in problems:
        print(f"{name} {label}: greedy continuation {p}: {r['greedy']}", file=sys.stderr)
    return not problems


def main() -> int:
    tok = byte_tokenizer()
    positions = sorted(set(range(0, PROMPT_LEN, STRIDE)) | set(range(PROMPT_LEN - LAST, PROMPT_LEN)))
    for name in MODELS:
        model_dir, model = build(name)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(model_dir, "model.safetensors"))
        tok.save(os.path.join(model_dir, "tokenizer.json"))

        cfg = model.config
        assert cfg.max_position_embeddings >= PROMPT_LEN + NEW_TOKENS
        assert cfg.num_key_value_heads < cfg.num_attention_heads
        eos = cfg.eos_token_id
        g = torch.Generator().manual_seed(PROMPT_SEED + SEEDS[name])
        ids = [cfg.bos_token_id] + torch.randint(3, cfg.vocab_size, (PROMPT_LEN - 1,), generator=g).tolist()
        ref = {
            "model": name,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "seed": SEEDS[name],
            "prompt_seed": PROMPT_SEED + SEEDS[name],
            "head_dim": model.model.layers[0].self_attn.head_dim,
            "eos_token_id": eos,
            "input_ids": ids,
            "positions": positions,
            "max_new_tokens": NEW_TOKENS,
        }
        ok = True
        with torch.no_grad():
            ref["FP32"] = run(model, ids, positions)
            ok &= check(name, "FP32", ref["FP32"], eos)
            for label, dtype in [("FP16", torch.float16), ("BF16", torch.bfloat16)]:
                rounded = copy.deepcopy(model)
                for p in rounded.parameters():
                    if p.ndim == 2:
                        p.copy_(p.to(dtype).float())
                ref[label] = run(rounded, ids, positions)
                ok &= check(name, label, ref[label], eos)
        if not ok:
            return 1
        fixture_dir = os.path.join(ROOT, "tests", "fixtures", name)
        os.makedirs(fixture_dir, exist_ok=True)
        with open(os.path.join(fixture_dir, "long_reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
            f.write("\n")
        print(name, "head_dim", ref["head_dim"], {k: (ref[k]["greedy"], ref[k]["min_margin"])
                                                  for k in ["FP32", "FP16", "BF16"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
