#!/usr/bin/env python3
"""Python side of `bench/full_size_accuracy.sh`: the model's config, its F32 GGUF, llama.cpp's logits,
and the distances of every format's logits to the FP32 engine's.

Commands (run with a Python that has gguf, numpy and, for `llama`, llama-cpp-python):
  config --src CONFIG.json --out DIR
        DIR/config.json: the source config without `rope_scaling` (the GGUF loader refuses llama3's
        per-frequency rope factors, so the model is the config with plain rotary embeddings)
  gguf --hf HF_DIR --out F32.gguf
        HF_DIR (config.json, model.safetensors in f32, transformers' names) as llama.cpp's converter
        writes a `llama` model with --outtype f32: its metadata keys, llama.cpp's tensor names, q_proj and
        k_proj rows permuted per head (LlamaModel.permute), no output.weight for tied embeddings; and a
        made-up vocabulary of the config's size (byte-level BPE, `gpt2` with pre `default`: the 256
        byte tokens, then `<t{id}>`, the ids from bos_token_id on (past the bytes) typed CONTROL, one
        merge that never applies): the prompts are given as ids, never tokenized
  llama --gguf FILE --ids 1,2,3 --threads N [--flash_attn off|auto] --out OUT.f32
        llama.cpp (llama-cpp-python's C API, as bench/gguf_vs_llamacpp.py runs it: no extra CPU buffer
        types; f32 KV cache and, unless --flash_attn auto, flash attention off, so that only the weights
        and llama.cpp's products differ): one
        llama_decode of the prompt with the logits of every position, written as [n, vocab] f32, and
        OUT.json (engine version, system info, seconds)
  metrics --ref REF.f32 --vocab V --runs DIR [--pairs A=B ...]
        one JSON line per DIR/*.f32 against REF (the FP32 engine): max |d| / max |ref| over every
        position (runtime/tests/common's rel_err), the mean and largest over positions of
        KL(softmax(ref) || softmax(run)) in nats (float64), top-1 agreement over positions, and whether
        the logits equal REF's bit for bit; each A=B pair (file stems) adds B's rel_err to A and
        whether the two are bit-identical
  summary --out DIR
        summary.md's tables from DIR/metrics.jsonl, DIR/types.jsonl and DIR/runs.jsonl
"""

import argparse
import ctypes
import glob
import json
import os
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--src", required=True)
    c.add_argument("--out", required=True)
    c = sub.add_parser("gguf")
    c.add_argument("--hf", required=True)
    c.add_argument("--out", required=True)
    c = sub.add_parser("llama")
    c.add_argument("--gguf", required=True)
    c.add_argument("--ids", required=True)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--flash_attn", choices=["off", "auto"], default="off")
    c.add_argument("--out", required=True)
    c = sub.add_parser("metrics")
    c.add_argument("--ref", required=True)
    c.add_argument("--vocab", type=int, required=True)
    c.add_argument("--runs", required=True)
    c.add_argument("--pairs", nargs="*", default=[])
    c = sub.add_parser("summary")
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    return globals()["cmd_" + a.cmd](a)


def cmd_config(a):
    with open(a.src) as f:
        config = json.load(f)
    config.pop("rope_scaling", None)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return 0


def read_safetensors(path):
    """name -> read-only float32 array mapped from the file (every tensor must be F32)."""
    import numpy as np

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, not F32")
        a, _ = info["data_offsets"]
        out[name] = np.memmap(path, dtype="<f4", mode="r", offset=8 + n + a, shape=tuple(info["shape"]))
    return out


def llama_permute(w, n_head):
    """llama.cpp's converter: HF rotate-half rows -> interleaved pairs, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def byte_tokens():
    """GPT-2's bytes_to_unicode: the 256 byte tokens of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def cmd_gguf(a):
    import gguf
    import numpy as np

    with open(os.path.join(a.hf, "config.json")) as f:
        config = json.load(f)
    if config["model_type"] != "llama":
        sys.exit(f"model_type {config['model_type']}: only llama is written")
    if config.get("rope_scaling"):
        sys.exit("rope_scaling: llama3 rope factors are not written (see `config`)")
    sd = read_safetensors(os.path.join(a.hf, "model.safetensors"))
    n_layer = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_head)
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    n_vocab = config["vocab_size"]
    arch = gguf.MODEL_ARCH.LLAMA

    w = gguf.GGUFWriter(a.out, arch=gguf.MODEL_ARCH_NAMES[arch])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(os.path.basename(os.path.normpath(a.hf)))
    w.add_block_count(n_layer)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    if config.get("head_dim") is not None:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    bos = config["bos_token_id"]
    eos = config["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else eos
    special = range(max(bos, 256), n_vocab)
    tokens = (byte_tokens() + [f"<t{i}>" if i not in special else f"<|special_{i}|>"
                               for i in range(256, n_vocab)])[:n_vocab]
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(n_vocab)]
    assert len(tokens) == n_vocab and len(set(tokens)) == n_vocab
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    # llama.cpp refuses a BPE vocabulary without merges: one whose result is no token.
    w.add_token_merges(["Ā ā"])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)

    names = gguf.get_tensor_name_map(arch, n_layer)
    for hf in sorted(sd):
        t = sd[hf]
        base, suffix = hf.rsplit(".", 1)
        gname = names.get_name(base)
        if gname is None:
            sys.exit(f"no llama.cpp name for {hf}")
        if base.endswith("q_proj"):
            t = llama_permute(np.asarray(t), n_head)
        elif base.endswith("k_proj"):
            t = llama_permute(np.asarray(t), n_kv)
        w.add_tensor(f"{gname}.{suffix}", t, raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


def cmd_llama(a):
    import numpy as np
    import llama_cpp as L

    ids = [int(x) for x in a.ids.split(",")]
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.use_extra_bufts = False
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(a.gguf.encode(), mparams)
    if not model:
        print(f"llama.cpp could not load {a.gguf}", file=sys.stderr)
        return 1
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    cparams = L.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = max(64, len(ids))
    cparams.n_threads = cparams.n_threads_batch = a.threads
    cparams.type_k = cparams.type_v = 0  # GGML_TYPE_F32
    # Its CPU flash attention (on under llama.cpp's default, `auto`) is less exact: on the F32 file of
    # Llama-3.2-1B's config it moves the logits by 8.6e-4 of the largest, against 4.7e-6 with it off.
    if a.flash_attn == "off":
        cparams.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    batch = L.llama_batch_init(len(ids), 0, 1)
    for i, t in enumerate(ids):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(ids)
    t0 = time.perf_counter()
    rc = L.llama_decode(ctx, batch)
    forward_s = time.perf_counter() - t0
    if rc != 0:
        print(f"llama_decode failed with status {rc}", file=sys.stderr)
        return 1
    logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(len(ids), n_vocab))
    logits.astype("<f4").tofile(a.out)
    with open(a.out[:-len(".f32")] + ".json", "w") as f:
        json.dump({
            "engine": "llama.cpp (llama-cpp-python " + L.__version__ + ")",
            "gguf": a.gguf,
            "positions": len(ids),
            "vocab": n_vocab,
            "threads": a.threads,
            "kv_cache": "f32",
            "flash_attn": a.flash_attn,
            "load_s": load_s,
            "forward_s": forward_s,
            "model_size_bytes": L.llama_model_size(model),
            "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        }, f)
        f.write("\n")
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return 0


def cmd_metrics(a):
    import numpy as np

    def load(path):
        v = np.fromfile(path, dtype="<f4")
        if v.size % a.vocab:
            sys.exit(f"{path}: {v.size} values are not rows of {a.vocab}")
        return v.reshape(-1, a.vocab)

    def log_softmax(x):
        x = x.astype(np.float64)
        m = x.max(axis=1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))

    def rel(got, want):
        return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())

    ref = load(a.ref)
    ref_lp = log_softmax(ref)
    ref_p = np.exp(ref_lp)
    ref_top = ref.argmax(axis=1)
    pairs = dict(p.split("=", 1) for p in a.pairs)
    for path in sorted(glob.glob(os.path.join(a.runs, "*.f32"))):
        stem = os.path.basename(path)[:-4]
        got = load(path)
        if got.shape != ref.shape:
            print(json.dumps({"run": stem, "error": f"shape {got.shape} against {ref.shape}"}))
            continue
        kl = (ref_p * (ref_lp - log_softmax(got))).sum(axis=1)
        line = {
            "run": stem,
            "positions": got.shape[0],
            "rel_err": rel(got, ref),
            "max_abs": float(np.abs(got.astype(np.float64) - ref).max()),
            "kl_mean": float(kl.mean()),
            "kl_max": float(kl.max()),
            "top1_agree": int((got.argmax(axis=1) == ref_top).sum()),
            "bit_identical_to_ref": bool((got.view(np.uint32) == ref.view(np.uint32)).all()),
        }
        if stem in pairs:
            other = load(os.path.join(a.runs, pairs[stem] + ".f32"))
            line["pair"] = pairs[stem]
            line["pair_rel_err"] = rel(got, other)
            line["pair_bit_identical"] = bool((got.view(np.uint32) == other.view(np.uint32)).all())
        print(json.dumps(line))
    return 0


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(s) for s in f if s.strip()]


def cmd_summary(a):
    metrics = {m["run"]: m for m in read_lines(os.path.join(a.out, "metrics.jsonl"))}
    types = {t["label"]: t for t in read_lines(os.path.join(a.out, "types.jsonl"))}
    runs = {os.path.basename(r["logits"])[:-4]: r for r in read_lines(os.path.join(a.out, "runs.jsonl"))}
    out = ["rel = max |d| / max |ref| over every position's logits; KL = KL(softmax(ref) || "
           "softmax(run)) in nats, mean [max] over positions; top-1 = positions whose argmax is the "
           "reference's. ref = our FP32 engine on the f32 weights. MB: our engine's weight bytes read "
           "per decode step (linears and lm_head; the formats quantized at build keep the lm_head at the "
           "engine's precision, GGUF files hold it in token_embd's type, as llama.cpp quantized it).", ""]

    def cells(m):
        if m is None:
            return ["-", "-", "-"]
        if "error" in m:
            return [m["error"], "-", "-"]
        return [f"{m['rel_err']:.2e}", f"{m['kl_mean']:.2e} [{m['kl_max']:.1e}]",
                f"{m['top1_agree']}/{m['positions']}"]

    out += ["| format | weights MB | ours: rel | ours: KL | ours: top-1 | llama.cpp: rel | llama.cpp: KL "
            "| llama.cpp: top-1 | ours vs llama.cpp: rel |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    dense = [("FP32 (reference)", "fp32"), ("FP16 storage", "fp16"), ("BF16 storage", "bf16"),
             ("int8 (per channel)", "int8"), ("int4 (group 128)", "int4"), ("fp8 E4M3 (per channel)", "fp8")]
    for name, stem in dense:
        run = runs.get(f"{stem}__ours")
        mb = f"{run['weight_bytes'] / 1e6:.0f}" if run else "-"
        out.append(f"| {name} | {mb} | " + " | ".join(cells(metrics.get(f"{stem}__ours"))) +
                   " | | | | |")
    for label in types:
        ours = metrics.get(f"{label}__ours-gguf")
        llama = metrics.get(f"{label}__llamacpp")
        pair = "-" if ours is None or "pair_rel_err" not in ours else f"{ours['pair_rel_err']:.2e}"
        run = runs.get(f"{label}__ours-gguf")
        mb = f"{run['weight_bytes'] / 1e6:.0f}" if run else "-"
        out.append(f"| GGUF {label} | {mb} | " + " | ".join(cells(ours)) + " | " +
                   " | ".join(cells(llama)) + f" | {pair} |")
    out.append("")
    out += ["Checks:"]
    f32 = metrics.get("F32__ours-gguf")
    if f32:
        out.append(f"- ours on the F32 GGUF equals the FP32 engine bit for bit: "
                   f"{'yes' if f32['bit_identical_to_ref'] else 'NO'}")
    none_eq = [(label, metrics.get(f"{label}__ours-none")) for label in types]
    none_eq = [(label, m) for label, m in none_eq if m and "pair_bit_identical" in m]
    if none_eq:
        same = [label for label, m in none_eq if m["pair_bit_identical"]]
        differ = [label for label, m in none_eq if not m["pair_bit_identical"]]
        out.append(f"- `--quant_format none` equals `gguf` bit for bit on {len(same)} of {len(none_eq)} "
                   f"files" + (f" (differ: {', '.join(differ)})" if differ else ""))
    out.append("")
    out += ["## Tensor types per file (gguf-py GGUFReader)", "", "| file | MB | tensor types (count) | per role |",
            "|---|---:|---|---|"]
    for label, t in types.items():
        overall = ", ".join(f"{k} {v}" for k, v in sorted(t["types"].items()))
        roles = "; ".join(f"{r}: " + "/".join(sorted(tys)) for r, tys in t["roles"].items()
                          if not r.endswith("norm"))
        out.append(f"| {label} | {t['bytes'] / 1e6:.0f} | {overall} | {roles} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
