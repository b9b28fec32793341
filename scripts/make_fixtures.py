#!/usr/bin/env python3
# Makes the tiny random-weight Hugging Face fixtures the runtime's parity tests compare against.
#
# Pinned versions (see scripts/requirements-fixtures.txt): torch==2.11.0, transformers==5.17.0,
# tokenizers==0.23.3, safetensors==0.8.0. Run from the repository root:
#
#     /opt/pyref/bin/python scripts/make_fixtures.py                   # every model below
#     /opt/pyref/bin/python scripts/make_fixtures.py tiny-llama-bias   # only the models named
#
# For each of models/tiny-{llama,llama-bias,qwen2,qwen3,mistral,gpt2} (config.json committed there and
# never rewritten here; tiny-llama-bias is tiny-llama with attention_bias and mlp_bias, so q/k/v/o and
# gate/up/down carry biases; tiny-qwen3 has per-head q/k RMSNorms and a head_dim of 32 beside a hidden size
# of 64 over 4 heads; tiny-mistral is a Mistral with sliding_window null and tied embeddings) it
#   * builds the model from its config with a fixed torch seed, then perturbs every 1-D parameter (norm
#     weights, including Qwen3's q_norm/k_norm, and biases) so that biases and norm gains are not the
#     trivial 0/1 of HF's initialiser (it refuses to write a model with a bias entry of 0 or a norm weight
#     entry of 1 left);
#   * writes models/<name>/model.safetensors (fp32, exactly the tensors and names save_pretrained writes;
#     GPT-2 keeps HF's Conv1D [in, out] layout and a tied lm_head is omitted, as HF does);
#   * writes models/<name>/tokenizer.json: a byte-level tokenizer of vocabulary 256 in which ids 0, 1, 2
#     are the special tokens <pad>, <s>, </s> and id b (3 <= b <= 255) is the byte b;
#   * writes tests/fixtures/<name>/reference.json: token ids of two prompts, prefill logits at every
#     position (fp32, full vocabulary), greedy continuations from model.generate(do_sample=False), and the
#     same for a batch of two equal-length prompts; and, for the first prompt, the logits and greedy
#     continuation of the same model with every 2-D weight rounded to fp16 and to bf16 (1-D norm weights and
#     biases kept fp32, computed in fp32): what an engine storing matrices in 16 bits must reproduce.
# The tests also read transformers' top 2 along each of those greedy continuations, from
# tests/fixtures/<name>/greedy_top2.json: run scripts/make_greedy_top2.py after this script.
import copy
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["tiny-llama", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-gpt2"]
SEEDS = {"tiny-llama": 1234, "tiny-llama-bias": 4567, "tiny-qwen2": 2345, "tiny-qwen3": 5678,
         "tiny-mistral": 6791, "tiny-gpt2": 3456}
NEW_TOKENS = 24
PROMPTS = ["Hello, tiny model. Once upon a", "The quick brown fox"]
BATCH_PROMPTS = ["Static caches are", "Rust compiles fast"]
SPECIALS = ["<pad>", "<s>", "</s>"]


def byte_tokenizer() -> Tokenizer:
    """Vocabulary 256: ids 0..2 special, id b = byte b for b >= 3 (bytes 0..2 are unrepresentable)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps each byte to one printable character; recover the byte order of those characters.
    byte_to_char = {}
    for b in range(256):
        ch = chr(b)
        if (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255):
            byte_to_char[b] = ch
    n = 0
    for b in range(256):
        if b not in byte_to_char:
            byte_to_char[b] = chr(256 + n)
            n += 1
    assert set(byte_to_char.values()) == set(alphabet)
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for b in range(3, 256):
        vocab[byte_to_char[b]] = b
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return tok


def f32(x: float) -> float:
    # 9 significant digits round-trip any float32 exactly and keep the JSON small.
    return float(f"{x:.9g}")


def logits_json(t: torch.Tensor):
    return [[f32(v) for v in row] for row in t.tolist()]


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
        zero = [n for n, p in model.named_parameters() if n.endswith("bias") and (p == 0).any()]
        if zero:
            sys.exit(f"{name}: biases with zero entries: {zero}")
        ones = [n for n, p in model.named_parameters() if p.ndim == 1 and n.endswith("weight") and (p == 1).any()]
        if ones:
            sys.exit(f"{name}: norm weights with entries left at the initialiser's 1: {ones}")
    model.eval()
    return model_dir, model


def is_repetitive(tokens) -> bool:
    return len(set(tokens)) <= 2


def main() -> int:
    names = sys.argv[1:] or MODELS
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown models {unknown}; known: {MODELS}", file=sys.stderr)
        return 2
    tok = byte_tokenizer()
    for name in names:
        model_dir, model = build(name)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(model_dir, "model.safetensors"))
        tok.save(os.path.join(model_dir, "tokenizer.json"))

        bos = model.config.bos_token_id
        ref = {
            "model": name,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "seed": SEEDS[name],
            "max_new_tokens": NEW_TOKENS,
            "eos_token_id": model.config.eos_token_id,
            "prompts": [],
            "batch": None,
        }
        with torch.no_grad():
            for text in PROMPTS:
                ids = [bos] + tok.encode(text, add_special_tokens=False).ids
                x = torch.tensor([ids])
                logits = model(input_ids=x).logits[0].float()
                out = model.generate(
                    x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=NEW_TOKENS,
                    pad_token_id=0,
                )
                new = out[0, len(ids):].tolist()
                if is_repetitive(new):
                    print(f"{name}: greedy output is repetitive: {new}", file=sys.stderr)
                    return 1
                ref["prompts"].append({"text": text, "input_ids": ids, "prefill_logits": logits_json(logits),
                                       "greedy": new})
            rows = [[bos] + tok.encode(t, add_special_tokens=False).ids for t in BATCH_PROMPTS]
            n = min(len(r) for r in rows)
            rows = [r[:n] for r in rows]
            x = torch.tensor(rows)
            logits = model(input_ids=x).logits.float()
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=NEW_TOKENS, pad_token_id=0)
            ref["batch"] = {
                "input_ids": rows,
                "last_logits": [[f32(v) for v in logits[b, -1].tolist()] for b in range(len(rows))],
                "greedy": [out[b, n:].tolist() for b in range(len(rows))],
            }
            ref["rounded"] = {}
            for label, dtype in [("FP16", torch.float16), ("BF16", torch.bfloat16)]:
                rounded = copy.deepcopy(model)
                for p in rounded.parameters():
                    if p.ndim == 2:
                        p.copy_(p.to(dtype).float())
                ids = ref["prompts"][0]["input_ids"]
                x = torch.tensor([ids])
                logits = rounded(input_ids=x).logits[0].float()
                out = rounded.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                       max_new_tokens=NEW_TOKENS, pad_token_id=0)
                ref["rounded"][label] = {"prefill_logits": logits_json(logits), "greedy": out[0, len(ids):].tolist()}
        fixture_dir = os.path.join(ROOT, "tests", "fixtures", name)
        os.makedirs(fixture_dir, exist_ok=True)
        with open(os.path.join(fixture_dir, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
            f.write("\n")
        print(name, [p["greedy"] for p in ref["prompts"]], ref["batch"]["greedy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
