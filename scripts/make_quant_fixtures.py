#!/usr/bin/env python3
# Reference data for build-time weight-only quantization (`--quant_format int8|int4|fp8`,
# spec/src/format.rs), from torchao's quant primitives and torch's float8 cast. Run from the
# repository root with the pinned torch + transformers environment plus torchao (0.18.0):
#
#     python -m pip install --no-deps torchao==0.18.0
#     python scripts/make_quant_fixtures.py
#
# It writes, under tests/fixtures/quant/:
#   * primitives.json: small f32 matrices (random rows of several magnitudes, an all-zero row, a
#     row with an outlier, rows whose values sit on rounding ties) and, for each format, the codes and
#     scales torchao/torch make of them:
#       int8: choose_qparams_affine(w, SYMMETRIC, (1, cols), int8, -128, 127, eps=f32 eps,
#             scale_dtype=f32) and quantize_affine: torchao's Int8WeightOnlyConfig (Int8Tensor.from_hp);
#       int4: choose_qparams_affine(w, SYMMETRIC, (1, 128), int8, -8, 7) and quantize_affine:
#             torchao's IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(128),
#             mapping_type=SYMMETRIC) (IntxUnpackedToInt8Tensor.from_hp, AFFINE);
#       fp8:  scale = max(amax / 448, f32 smallest normal) per row, in f32, then
#             w.div(scale).clamp(-448, 448).to(torch.float8_e4m3fn).
#     Values are f32 bit patterns (integers), codes the signed integers (int8, int4) or the E4M3 byte.
#   * tiny-llama-w128/: a seeded Llama of hidden 128 / intermediate 256 / one layer / untied lm_head
#     (config.json, model.safetensors in bf16), wide enough that int4 quantizes every linear.
#   * <model>.json for tiny-llama, tiny-qwen3 and tiny-llama-w128: a prompt's token ids and, for each
#     format, transformers' fp32 prefill logits at every position and 24 greedy tokens (argmax of a
#     full forward, EOS not stopping it) of the model whose layer linears (q, k, v, o, gate, up,
#     down) are replaced by their torchao-quantized-then-dequantised values (w = scale * q in f32),
#     the embedding and lm_head kept: the function our quantized engine computes.
import json
import os
import sys

import torch
from torchao.quantization.quant_primitives import (
    MappingType,
    choose_qparams_affine,
    quantize_affine,
)
import transformers
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def int_quant(w, group, qmin, qmax, eps):
    kw = dict(quant_min=qmin, quant_max=qmax, zero_point_dtype=torch.int8, keepdim=True)
    if eps is not None:
        kw["eps"] = eps
        kw["scale_dtype"] = torch.float32
    block = (1, group)
    scale, zp = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8, **kw)
    q = quantize_affine(w, block, scale, zp, torch.int8, quant_min=qmin, quant_max=qmax)
    return q, scale.float()


def quant(fmt, w):
    """(codes, scales, dequantised) of the f32 matrix w in `fmt`."""
    rows, cols = w.shape
    if fmt == "int8":
        q, s = int_quant(w, cols, -128, 127, torch.finfo(torch.float32).eps)
        deq = q.float() * s
    elif fmt == "int4":
        q, s = int_quant(w, 128, -8, 7, None)
        deq = (q.float().view(rows, cols // 128, 128) * s.view(rows, cols // 128, 1)).view(rows, cols)
    else:
        amax = w.abs().amax(dim=1, keepdim=True)
        s = torch.clamp(amax / 448.0, min=torch.finfo(torch.float32).smallest_normal)
        f8 = w.div(s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
        q = f8.view(torch.uint8)
        deq = f8.float() * s
    return q, s, deq


def bits(t):
    return t.contiguous().view(torch.int32).flatten().tolist()


def primitives():
    g = torch.Generator().manual_seed(20261208)
    cols = 256
    rows = [torch.randn(cols, generator=g) * m for m in (1.0, 0.02, 3e-5, 250.0)]
    rows.append(torch.zeros(cols))
    outlier = torch.randn(cols, generator=g) * 0.1
    outlier[77] = 9.0
    rows.append(outlier)
    # Ties: multiples of half a step of the grid each format draws from the row's largest value.
    ties = torch.arange(cols, dtype=torch.float32) % 32 - 16
    ties[0] = 16.0
    rows.append(ties / 2.0)
    rows.append(torch.randn(cols, generator=g).to(torch.bfloat16).float())
    w = torch.stack(rows).float()
    out = {"rows": w.shape[0], "cols": cols, "w": bits(w), "torchao": "0.18.0"}
    for fmt in ("int8", "int4", "fp8"):
        q, s, deq = quant(fmt, w)
        out[fmt] = {"codes": q.flatten().tolist(), "scales": bits(s), "dequantised": bits(deq)}
    with open(os.path.join(OUT, "primitives.json"), "w") as f:
        json.dump(out, f)


def wide_model():
    d = os.path.join(OUT, "tiny-llama-w128")
    os.makedirs(d, exist_ok=True)
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, initializer_range=0.2,
    )
    torch.manual_seed(128)
    m = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    tensors = {n: p.detach().to(torch.bfloat16).contiguous() for n, p in m.state_dict().items()}
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(d)
    return d


def load(dir_):
    m = transformers.AutoModelForCausalLM.from_pretrained(dir_, dtype=torch.float32)
    return m.eval()


def greedy(m, ids, n):
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            logits = m(torch.tensor([ids])).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[-n:]


def model_fixture(name, dir_):
    prompt = [1] + list(b"Quantized weights: int8, int4, fp8!")[:19]
    out = {"model": name, "prompt": prompt, "formats": {}}
    for fmt in ("int8", "int4", "fp8"):
        m = load(dir_)
        dense = []
        with torch.no_grad():
            for n, mod in m.named_modules():
                if n.split(".")[-1] in LINEARS:
                    w = mod.weight.data.float()
                    if fmt == "int4" and w.shape[1] % 128 != 0:
                        dense.append(n)
                        continue
                    mod.weight.data.copy_(quant(fmt, w)[2])
            logits = m(torch.tensor([prompt])).logits[0].float()
        out["formats"][fmt] = {
            "logits": bits(logits),
            "greedy": greedy(m, prompt, 24),
            "dense": dense,
        }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(out, f)


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    primitives()
    wide = wide_model()
    for name, d in (
        ("tiny-llama", os.path.join(ROOT, "models", "tiny-llama")),
        ("tiny-qwen3", os.path.join(ROOT, "models", "tiny-qwen3")),
        ("tiny-llama-w128", wide),
    ):
        model_fixture(name, d)
        print("wrote", name, file=sys.stderr)


if __name__ == "__main__":
    main()
