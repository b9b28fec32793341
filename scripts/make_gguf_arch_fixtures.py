#!/usr/bin/env python3
# Makes the GGUF files of the tiny Gemma 3, Phi-3, Qwen3 and sliding-window Mistral of models/ that
# runtime/tests/gguf_archs.rs and run_llm/tests/generate.rs read, quantises them with llama.cpp's own
# quantizer and measures llama.cpp's logits on them against transformers' (tests/fixtures/<model>/
# reference.json).
#
# Pinned versions: gguf==0.19.0, llama-cpp-python==0.3.36 (its bundled llama.cpp), numpy. torch and
# transformers are not needed: the safetensors files are read with numpy. Run from the repository root
# with the venv that holds llama-cpp-python (scripts/setup-and-run.sh installs it under
# ~/.cache/llmforge/llamacpp):
#
#     ~/.cache/llmforge/llamacpp/bin/python scripts/make_gguf_arch_fixtures.py            # all four
#     ~/.cache/llmforge/llamacpp/bin/python scripts/make_gguf_arch_fixtures.py tiny-phi3  # only those named
#
# llama.cpp's converter (convert_hf_to_gguf.py) cannot convert these models itself: it names the
# tokenizer's pre-tokenizer by hashing what it makes of a test text and refuses the tiny models' made-up
# byte-level tokenizer. So each file is written here with gguf-py as the converter writes that
# architecture with `--outtype f32`:
#   * metadata: block_count, context_length, embedding_length, feed_forward_length,
#     attention.head_count(_kv), attention.layer_norm_rms_epsilon, rope.freq_base, general.file_type;
#     attention.key_length / value_length when the config has head_dim; rope.scaling.type `linear` and
#     rope.scaling.factor when the (global) rotary embedding is linearly scaled;
#     - llama (MistralForCausalLM is converted as llama): vocab_size and rope.dimension_count;
#     - phi3: rope.dimension_count, rope.scaling.original_context_length and attention.sliding_window
#       (0 when the config has none); no key_length;
#     - gemma3: rope.freq_base_swa (the sliding layers' base) and attention.sliding_window;
#   * tensors: llama.cpp's names (gguf.get_tensor_name_map), 1-D tensors and norms in F32, the rest in F32
#     too (`--outtype f32`), so the stored values are the safetensors ones;
#     - llama: q_proj and k_proj rows permuted per head (LlamaModel.permute; k with the KV heads);
#     - phi3: qkv_proj and gate_up_proj kept fused as attn_qkv and ffn_up;
#     - gemma3: every `*norm.weight` stored as `w + 1` (in f32), no lm_head (the embedding is tied);
#     - nothing else is permuted (qwen3, phi3 and gemma3 use NEOX rotary);
#   * tokenizer: the tiny byte-level BPE as tokenizer.ggml.model `gpt2` with pre `default` (tokens in id
#     order, added special tokens typed CONTROL, its merges), bos/eos/pad ids from config.json as
#     gguf.SpecialVocab takes them (the tiny tokenizer has no merges; one that never applies is
#     written, as llama.cpp needs some).
# What the converter would not write, and is written because the file would otherwise describe another
# model than config.json does:
#   * tiny-mistral-window: llama.attention.sliding_window = 8 (the converter drops Mistral's window and
#     llama.cpp's `llama` ignores it);
#   * tiny-gemma3: attention.sliding_window_pattern = 3 (llama.cpp reads it, defaulting to 6; the
#     converter leaves it out) and attention.scale = query_pre_attn_scalar^-1/2 = 24^-1/2 (llama.cpp's
#     gemma3 scales by head_dim^-1/2 = 32^-1/2 and reads no key for it).
#
# Writes tests/fixtures/gguf/<model>-f32.gguf, <model>-q8_0.gguf (llama_model_quantize, Q8_0: every
# matrix in Q8_0, norms in F32) and tests/fixtures/gguf/llamacpp.json: for each model and file, the
# largest absolute difference and the relative error (max |a - b| / max |b|) of llama.cpp's prefill
# logits of reference.json's first prompt against transformers' (and, for a model with a window, over
# the positions the window hides nothing from), and llama.cpp's greedy tokens.
import ctypes
import json
import os
import struct
import sys

import gguf
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")
MODELS = ["tiny-gemma3", "tiny-phi3", "tiny-qwen3", "tiny-mistral-window"]
GGUF_ARCH = {
    "gemma3_text": gguf.MODEL_ARCH.GEMMA3,
    "phi3": gguf.MODEL_ARCH.PHI3,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "mistral": gguf.MODEL_ARCH.LLAMA,
}
DTYPES = {"F32": np.float32, "F16": np.float16}


def check_versions():
    from importlib.metadata import version

    have = {"gguf": version("gguf"), "llama_cpp_python": version("llama_cpp_python")}
    want = {"gguf": "0.19.0", "llama_cpp_python": "0.3.36"}
    if have != want:
        sys.exit(f"pinned versions {want} required, found {have}")


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).astype(np.float32)
    return out


def llama_permute(w, n_head):
    """llama.cpp's converter: HF rotate-half rows → interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope(config):
    """(theta, linear factor or None, local theta or None) of a transformers 5 config."""
    params = config.get("rope_parameters")
    if params is None:
        scaling = config.get("rope_scaling") or {}
        factor = scaling.get("factor") if scaling.get("rope_type", scaling.get("type")) == "linear" else None
        return config.get("rope_theta", 10000.0), factor, config.get("rope_local_base_freq")
    full = params.get("full_attention", params)
    factor = full.get("factor") if full.get("rope_type") == "linear" else None
    local = params.get("sliding_attention", {}).get("rope_theta")
    return full["rope_theta"], factor, local


def add_tokenizer(w, model_dir, config):
    with open(os.path.join(model_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    added = {t["id"]: t for t in tok["added_tokens"]}
    n = config["vocab_size"]
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    if not merges:
        # gguf-py writes no empty array and llama.cpp refuses a BPE vocabulary without merges: one
        # merge of two byte tokens whose result is no token, so it never applies.
        first = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.NORMAL][:2]
        assert "".join(first) not in vocab
        merges = [" ".join(first)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eos = config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    for value, add in [
        (config.get("bos_token_id"), w.add_bos_token_id),
        (eos, w.add_eos_token_id),
        (config.get("pad_token_id"), w.add_pad_token_id),
    ]:
        if value is not None:
            add(value)


def write(name):
    model_dir = os.path.join(ROOT, "models", name)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    model_type = config["model_type"]
    arch = GGUF_ARCH[model_type]
    sd = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    n_layer = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_head)
    head_dim = config.get("head_dim")
    theta, linear, local = rope(config)

    path = os.path.join(OUT, f"{name}-f32.gguf")
    w = gguf.GGUFWriter(path, arch=gguf.MODEL_ARCH_NAMES[arch])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_block_count(n_layer)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(theta)
    if linear is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(linear)
    if head_dim is not None and model_type != "phi3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if model_type == "mistral":
        w.add_vocab_size(config["vocab_size"])
        w.add_rope_dimension_count(head_dim or config["hidden_size"] // n_head)
        w.add_sliding_window(config["sliding_window"])
    elif model_type == "phi3":
        w.add_rope_dimension_count(config["hidden_size"] // n_head)
        w.add_rope_scaling_orig_ctx_len(config["original_max_position_embeddings"])
        w.add_sliding_window(config.get("sliding_window") or 0)
    elif model_type == "gemma3_text":
        w.add_rope_freq_base_swa(local)
        w.add_sliding_window(config["sliding_window"])
        w.add_sliding_window_pattern(config["sliding_window_pattern"])
        w.add_attention_scale(config["query_pre_attn_scalar"] ** -0.5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_tokenizer(w, model_dir, config)

    names = gguf.get_tensor_name_map(arch, n_layer)
    for hf, t in sd.items():
        if model_type == "gemma3_text" and hf == "lm_head.weight":
            continue
        base, suffix = hf.rsplit(".", 1)
        gname = names.get_name(base)
        if gname is None:
            sys.exit(f"{name}: no llama.cpp name for {hf}")
        if model_type == "mistral" and base.endswith("q_proj"):
            t = llama_permute(t, n_head)
        elif model_type == "mistral" and base.endswith("k_proj"):
            t = llama_permute(t, n_kv)
        if model_type == "gemma3_text" and hf.endswith("norm.weight"):
            t = t + np.float32(1.0)
        w.add_tensor(f"{gname}.{suffix}", np.ascontiguousarray(t, dtype=np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def quantize(src, dst):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src}) failed: {rc}")


def llamacpp_logits(path, ids, new_tokens):
    from llama_cpp import Llama

    # An f32 KV cache (GGML_TYPE_F32 = 0), not llama.cpp's default f16, so only the model differs.
    llm = Llama(model_path=path, logits_all=True, n_ctx=256, n_threads=2, type_k=0, type_v=0,
                verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    greedy = []
    for _ in range(new_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(nxt)
        llm.eval([nxt])
    return logits, greedy


def config_window(name):
    with open(os.path.join(ROOT, "models", name, "config.json")) as f:
        config = json.load(f)
    return config.get("sliding_window")


def main():
    names = sys.argv[1:] or MODELS
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown models {unknown}; known: {MODELS}")
    check_versions()
    report_path = os.path.join(OUT, "llamacpp.json")
    report = {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    for name in names:
        f32 = write(name)
        q8 = os.path.join(OUT, f"{name}-q8_0.gguf")
        quantize(f32, q8)
        with open(os.path.join(ROOT, "tests", "fixtures", name, "reference.json")) as f:
            ref = json.load(f)
        p = ref["prompts"][0]
        want = np.array(p["prefill_logits"], dtype=np.float32)
        entry = {"prompt_tokens": len(p["input_ids"]), "transformers_greedy": p["greedy"]}
        for tag, path in [("f32", f32), ("q8_0", q8)]:
            try:
                got, greedy = llamacpp_logits(path, p["input_ids"], len(p["greedy"]))
            except ValueError as e:
                entry[tag] = {"error": str(e).replace(ROOT + "/", "")}
                print(f"{name} {tag}: llama.cpp: {e}")
                continue
            diff = float(np.abs(got - want).max())
            entry[tag] = {
                "max_abs_diff": diff,
                "rel_err": diff / float(np.abs(want).max()),
                "greedy": greedy,
            }
            window = config_window(name)
            if window is not None:
                # Before the first position the window hides a key from, llama.cpp's full attention
                # computes what the window does.
                head = float(np.abs(got[:window] - want[:window]).max())
                entry[tag]["rel_err_within_window"] = head / float(np.abs(want[:window]).max())
            print(f"{name} {tag}: llama.cpp vs transformers max |d| {diff:.3e}, "
                  f"rel {entry[tag]['rel_err']:.3e}, greedy equal: {greedy == p['greedy']}")
        report[name] = entry
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
