#!/usr/bin/env python3
# Makes the small GGUF fixtures the runtime's GGUF tests read, with gguf-py (the `gguf` package that
# llama.cpp publishes) and transformers' own GGUF loader as the references.
#
# Pinned versions (scripts/requirements-fixtures.txt): gguf==0.19.0, torch==2.11.0, transformers==5.17.0,
# numpy==2.4.6. Run from the repository root:
#
#     /opt/pyref/bin/python scripts/make_gguf_fixtures.py              # every fixture below
#     /opt/pyref/bin/python scripts/make_gguf_fixtures.py tiny-qwen3   # only those named (quants,
#                                                                      # kquants, tiny-llama, tiny-qwen2,
#                                                                      # tiny-qwen3)
#
# Writes tests/fixtures/gguf/:
#   * quants.gguf: one [3, 64] tensor of each of F32, F16, BF16, Q8_0, Q4_0 and Q4_1, quantised by
#     gguf.quants.quantize from seeded normal values, with general.alignment = 64 and a few metadata
#     values of every scalar type and an array;
#   * quants.json: gguf.quants.dequantize of each tensor as GGUFReader reads it back (the values our
#     dequantiser must reproduce bit for bit), their shapes, and the metadata values written;
#   * kquants.gguf: for each of Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, a tensor of 3 rows of two
#     blocks (two 256-element super-blocks per row for the K-quants) made of random bytes, written raw —
#     every bit pattern is a valid block except that the f16 scales (d, dmin, Q5_1's m) must be finite,
#     so those are random f16s of magnitude 1e-4..1e-1 with either sign;
#   * kquants.json: gguf.quants.dequantize of each tensor as GGUFReader reads it back, and their shapes;
#   * tiny-llama.gguf: a random 2-layer Llama (GQA 4/2 heads, untied output) converted as llama.cpp's
#     converter does (Q/K rows permuted, llama.* metadata), its matrices stored in a mix of Q8_0, Q4_0,
#     Q4_1, F16 and BF16, norms in F32;
#   * tiny-llama.json: what transformers makes of that file with
#     AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) (it dequantises with gguf-py and undoes the
#     permutation): the config values it derived, the prompt's logits at every position and the greedy
#     continuation;
#   * tiny-qwen2.gguf / tiny-qwen2.json: the same for a random 2-layer Qwen2 (q/k/v biases, tied
#     embeddings so no output.weight, no Q/K permutation — llama.cpp permutes only `llama`).
#   * tiny-qwen3.gguf: the committed models/tiny-qwen3 (scripts/make_fixtures.py) converted as llama.cpp's
#     converter writes a Qwen3: qwen3.* metadata with head_dim as attention.key_length/value_length, the
#     per-head q/k norms as blk.N.attn_q_norm.weight / attn_k_norm.weight, no Q/K permutation, untied
#     output.weight; matrices in F16, norms in F32. So it holds exactly the model whose logits and greedy
#     continuation tests/fixtures/tiny-qwen3/reference.json keeps under rounded.FP16 (every 2-D weight
#     rounded to fp16, 1-D ones kept), and the script refuses to finish unless transformers, loading this
#     file, reproduces them. transformers' GGUF loader maps no qwen3 key to head_dim (it would take
#     Qwen3Config's default of 128), so it is given models/tiny-qwen3/config.json; the file's tensors are
#     what it reads from the GGUF.
import json
import os
import shutil
import sys
import tempfile

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")
QUANT_TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1]
PROMPT_IDS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]
NEW_TOKENS = 16

METADATA = {
    "test.u8": (gguf.GGUFValueType.UINT8, 200),
    "test.i8": (gguf.GGUFValueType.INT8, -100),
    "test.u16": (gguf.GGUFValueType.UINT16, 60000),
    "test.i16": (gguf.GGUFValueType.INT16, -30000),
    "test.u32": (gguf.GGUFValueType.UINT32, 4000000000),
    "test.i32": (gguf.GGUFValueType.INT32, -2000000000),
    "test.u64": (gguf.GGUFValueType.UINT64, 2**63 + 5),
    "test.i64": (gguf.GGUFValueType.INT64, -(2**62)),
    "test.f32": (gguf.GGUFValueType.FLOAT32, 1e-5),
    "test.f64": (gguf.GGUFValueType.FLOAT64, 0.1),
    "test.bool": (gguf.GGUFValueType.BOOL, True),
    "test.str": (gguf.GGUFValueType.STRING, "héllo ✓"),
}


def check_versions():
    want = {"gguf": "0.19.0", "torch": "2.11.0", "transformers": "5.17.0"}
    have = {
        "gguf": __import__("importlib.metadata").metadata.version("gguf"),
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }
    if have != want:
        sys.exit(f"pinned versions {want} required, found {have}")


def write_quants():
    rng = np.random.default_rng(20261201)
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, arch="test")
    w.add_custom_alignment(64)
    for key, (vtype, value) in METADATA.items():
        w.add_key_value(key, value, vtype)
    w.add_array("test.array", [1, 2, 3])
    for qtype in QUANT_TYPES:
        data = rng.standard_normal((3, 64)).astype(np.float32)
        w.add_tensor(f"t.{qtype.name.lower()}", gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = gguf.GGUFReader(path)
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = {
            "type": t.tensor_type.name,
            "shape": list(values.shape),
            # float32 → Python float is exact; JSON keeps it exactly (repr round-trips).
            "values": [float(x) for x in values.reshape(-1)],
        }
    meta = {k: v for k, (_, v) in METADATA.items()}
    meta["test.f32"] = float(np.float32(meta["test.f32"]))
    with open(os.path.join(OUT, "quants.json"), "w") as f:
        json.dump({"alignment": 64, "metadata": meta, "tensors": tensors}, f)


# Byte offsets of the f16 scale fields in one block of each randomly filled type (gguf-py's and
# GGML's layouts; everything else in the block is codes and packed integer scales).
RANDOM_BLOCK_SCALES = {
    Q.Q5_0: [0],  # d, qh, qs
    Q.Q5_1: [0, 2],  # d, m, qh, qs
    Q.Q2_K: [80, 82],  # scales, qs, d, dmin
    Q.Q3_K: [108],  # hmask, qs, scales, d
    Q.Q4_K: [0, 2],  # d, dmin, scales, qs
    Q.Q5_K: [0, 2],  # d, dmin, scales, qh, qs
    Q.Q6_K: [208],  # ql, qh, scales, d
}


def write_kquants():
    rng = np.random.default_rng(20261207)
    path = os.path.join(OUT, "kquants.gguf")
    w = gguf.GGUFWriter(path, arch="test")
    rows, blocks_per_row = 3, 2
    for qtype, scale_at in RANDOM_BLOCK_SCALES.items():
        _, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(rows, blocks_per_row, block_bytes), dtype=np.uint8)
        for at in scale_at:
            n = rows * blocks_per_row
            magnitude = 10.0 ** rng.uniform(-4, -1, size=n)
            sign = rng.choice([-1.0, 1.0], size=n)
            scale = (sign * magnitude).astype(np.float16).reshape(rows, blocks_per_row, 1)
            raw[:, :, at:at + 2] = scale.view(np.uint8)
        data = raw.reshape(rows, blocks_per_row * block_bytes)
        w.add_tensor(f"t.{qtype.name.lower()}", data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    reader = gguf.GGUFReader(path)
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        assert values.dtype == np.float32 and np.isfinite(values).all(), t.name
        tensors[t.name] = {
            "type": t.tensor_type.name,
            "shape": list(values.shape),
            "values": [float(x) for x in values.reshape(-1)],
        }
    with open(os.path.join(OUT, "kquants.json"), "w") as f:
        json.dump({"tensors": tensors}, f)


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter: HF rotate-half rows → interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny(arch: str):
    """arch "llama": untied, Q/K permuted; arch "qwen2": q/k/v biases, tied, nothing permuted."""
    llama = arch == "llama"
    torch.manual_seed(4242 if llama else 5353)
    shape = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=not llama,
        initializer_range=0.2,
    )
    if llama:
        model = LlamaForCausalLM(LlamaConfig(**shape)).eval()
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape, use_sliding_window=False)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}

    name = f"tiny-{arch}"
    path = os.path.join(OUT, f"{name}.gguf")
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(name)
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    w.add_vocab_size(256)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)

    def add(name, array, qtype):
        w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(array), qtype), raw_dtype=qtype)

    add("token_embd.weight", sd["model.embed_tokens.weight"], Q.Q8_0)
    add("output_norm.weight", sd["model.norm.weight"], Q.F32)
    if llama:
        add("output.weight", sd["lm_head.weight"], Q.F16)
    layer_types = {
        "attn_q": ("self_attn.q_proj", Q.Q4_0),
        "attn_k": ("self_attn.k_proj", Q.Q4_1),
        "attn_v": ("self_attn.v_proj", Q.F16),
        "attn_output": ("self_attn.o_proj", Q.BF16),
        "ffn_gate": ("mlp.gate_proj", Q.Q8_0),
        "ffn_up": ("mlp.up_proj", Q.Q4_1),
        "ffn_down": ("mlp.down_proj", Q.Q4_0),
    }
    for i in range(2):
        hf = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", sd[hf + "input_layernorm.weight"], Q.F32)
        add(f"blk.{i}.ffn_norm.weight", sd[hf + "post_attention_layernorm.weight"], Q.F32)
        for gname, (hname, qtype) in layer_types.items():
            weight = sd[hf + hname + ".weight"]
            if llama and gname == "attn_q":
                weight = llama_permute(weight, 4)
            elif llama and gname == "attn_k":
                weight = llama_permute(weight, 2)
            add(f"blk.{i}.{gname}.weight", weight, qtype)
            if hf + hname + ".bias" in sd:
                add(f"blk.{i}.{gname}.bias", sd[hf + hname + ".bias"], Q.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, os.path.join(tmp, f"{name}.gguf"))
        loaded = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=f"{name}.gguf", dtype=torch.float32
        ).eval()
    c = loaded.config
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        logits = loaded(ids).logits[0]
        out = loaded.generate(
            ids,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    reference = {
        "config": {
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads,
            "max_position_embeddings": c.max_position_embeddings,
            "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_parameters["rope_theta"],
            "tie_word_embeddings": c.tie_word_embeddings,
        },
        "prompt_ids": PROMPT_IDS,
        "logits": [[float(x) for x in row] for row in logits],
        "greedy": out[0, len(PROMPT_IDS):].tolist(),
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(reference, f)


def write_tiny_qwen3():
    """models/tiny-qwen3 as llama.cpp writes a Qwen3, matrices in F16 and norms in F32, checked against
    transformers loading the file (see the header)."""
    name = "tiny-qwen3"
    model_dir = os.path.join(ROOT, "models", name)
    config = AutoConfig.from_pretrained(model_dir)
    sd = {k: v.numpy() for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}

    path = os.path.join(OUT, f"{name}.gguf")
    w = gguf.GGUFWriter(path, arch="qwen3")
    w.add_name(name)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_freq_base(config.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_bos_token_id(config.bos_token_id)
    w.add_eos_token_id(config.eos_token_id)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    written = set()

    def add(gname, hname):
        array = sd[hname]
        qtype = Q.F16 if array.ndim == 2 else Q.F32
        w.add_tensor(gname, gguf.quants.quantize(np.ascontiguousarray(array), qtype), raw_dtype=qtype)
        written.add(hname)

    add("token_embd.weight", "model.embed_tokens.weight")
    add("output_norm.weight", "model.norm.weight")
    add("output.weight", "lm_head.weight")
    layer = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for i in range(config.num_hidden_layers):
        for gname, hname in layer.items():
            add(f"blk.{i}.{gname}.weight", f"model.layers.{i}.{hname}.weight")
    if written != set(sd):
        sys.exit(f"{name}: tensors not written: {sorted(set(sd) - written)}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(os.path.join(ROOT, "tests", "fixtures", name, "reference.json")) as f:
        ref = json.load(f)
    want = ref["rounded"]["FP16"]
    ids = ref["prompts"][0]["input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, os.path.join(tmp, f"{name}.gguf"))
        loaded = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=f"{name}.gguf", config=config, dtype=torch.float32
        ).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = loaded(x).logits[0]
        out = loaded.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=False,
            max_new_tokens=ref["max_new_tokens"],
            pad_token_id=0,
        )
    expected = torch.tensor(want["prefill_logits"])
    rel = ((logits - expected).abs().max() / expected.abs().max()).item()
    greedy = out[0, len(ids):].tolist()
    if rel > 1e-6 or greedy != want["greedy"]:
        os.remove(path)
        sys.exit(f"{name}: transformers on the GGUF differs from reference.json's rounded.FP16 "
                 f"(logits {rel:.2e}, greedy {greedy} vs {want['greedy']}); removed {path}")
    print(f"{name}: transformers on the GGUF: logits within {rel:.2e} of rounded.FP16, greedy equal")


FIXTURES = {
    "quants": write_quants,
    "kquants": write_kquants,
    "tiny-llama": lambda: write_tiny("llama"),
    "tiny-qwen2": lambda: write_tiny("qwen2"),
    "tiny-qwen3": write_tiny_qwen3,
}


def main():
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixtures {unknown}; known: {list(FIXTURES)}")
    check_versions()
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        FIXTURES[name]()


if __name__ == "__main__":
    main()
