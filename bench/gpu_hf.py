"""transformers side of the GPU verification and benchmark (bench/gpu_verify.sh, bench/gpu_bench.sh).

  gpu_hf.py make NAME OUT_DIR [--dtype fp32|fp16|bf16] seeded HF model from models/NAME/config.json
  gpu_hf.py compare HF_DIR OURS.json [--dtype ...] [--oracle fp32]
                                                       HF logits/greedy on the same ids vs our dump
  gpu_hf.py bench NAME --prompt N --new M --mode eager|static [--dtype fp16]
  gpu_hf.py bandwidth                                  device-to-device copy bandwidth (GB/s)

Every result is printed as one JSON line. Runs on the GPU with torch 2.11 / transformers 5.17.
"""
import json
import os
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(os.environ.get("LLMFORGE_ROOT", Path(__file__).resolve().parent.parent))
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# `make` and `compare` also run on the CPU (LLMFORGE_TORCH_DEVICE=cpu) to check this script itself.
DEVICE = os.environ.get("LLMFORGE_TORCH_DEVICE", "cuda")


def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def config_of(name):
    cfg = AutoConfig.from_pretrained(ROOT / "models" / name)
    return cfg


def make(name, out_dir, dtype):
    torch.manual_seed(0)
    cfg = config_of(name)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype])
    model.save_pretrained(out_dir, safe_serialization=True)
    print(json.dumps({"made": name, "dir": str(out_dir), "dtype": dtype,
                      "params": sum(p.numel() for p in model.parameters())}))


@torch.no_grad()
def greedy(model, ids, n):
    out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         attention_mask=torch.ones_like(ids))
    return out[0, ids.shape[1]:].tolist()


def prefix_agreement(a, b):
    agree = 0
    for x, y in zip(a, b):
        if x != y:
            break
        agree += 1
    return agree


@torch.no_grad()
def teacher_forced(model, prompt, tokens):
    """The reference's logits for each of `tokens` given the prompt and the tokens before it (one
    forward over prompt + tokens[:-1]): for every token, how far its logit lies below the reference's
    largest, relative to that row's largest magnitude (0 where the token is the reference's argmax),
    and the gap between the reference's two best logits on the same scale."""
    ids = torch.tensor([prompt + tokens[:-1]], device=DEVICE)
    rows = model(ids).logits[0, len(prompt) - 1:].float()
    scale = rows.abs().max(dim=-1).values
    chosen = rows.gather(1, torch.tensor(tokens, device=DEVICE)[:, None])[:, 0]
    top2 = rows.topk(2, dim=-1).values
    return ((top2[:, 0] - chosen) / scale).tolist(), ((top2[:, 0] - top2[:, 1]) / scale).tolist()


@torch.no_grad()
def compare(hf_dir, ours_path, dtype, oracle):
    """Our dump (last-position logits and greedy tokens of one prompt) against transformers on the
    same weights: logits, greedy tokens, and — because near-ties let two correct implementations part
    ways in 16-bit arithmetic — each of our greedy tokens scored by the reference given our own
    prefix (teacher forcing). With `--oracle fp32` transformers also runs the same weights in FP32:
    how far its own greedy continuation at `dtype` follows the FP32 one is the yardstick for ours."""
    ours = json.loads(Path(ours_path).read_text())
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=DTYPES[dtype]).to(DEVICE).eval()
    prompt = ours["input_ids"]
    ids = torch.tensor([prompt], device=DEVICE)
    logits = model(ids).logits[0, -1].float().cpu()
    mine = torch.tensor(ours["last_logits"])
    rel = ((mine - logits).abs().max() / logits.abs().max()).item()
    n = len(ours["greedy"])
    if n == 0:
        sys.exit("compare: the dump holds no greedy tokens (run cuda_bench with --new-tokens 1 or more)")
    hf_greedy = greedy(model, ids, n)
    below, top_gap = teacher_forced(model, prompt, ours["greedy"])
    agree = prefix_agreement(hf_greedy, ours["greedy"])
    result = {"compare": str(hf_dir), "dtype": dtype, "last_logits_rel_err": rel,
              "argmax_equal": int(mine.argmax()) == int(logits.argmax()),
              "greedy_tokens": n, "greedy_prefix_agreement": agree,
              "greedy_equal": hf_greedy == ours["greedy"],
              # Teacher-forced: how many of our tokens are the reference's argmax given our prefix,
              # the largest relative shortfall of one that is not, and the reference's own top-2
              # gap where the two greedy runs part.
              "ours_ref_argmax": sum(b == 0.0 for b in below),
              "ours_worst_rel_shortfall": max(below),
              "ref_top2_rel_gap_at_split": top_gap[agree] if agree < n else None}
    if oracle == "fp32" and dtype != "fp32":
        del model
        ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).to(DEVICE).eval()
        exact = greedy(ref, ids, n)
        # Distance of each 16-bit run's last logits from the FP32 run's: max and RMS relative.
        truth = ref(ids).logits[0, -1].float().cpu()
        for who, got in (("hf", logits), ("ours", mine)):
            diff = got - truth
            result[f"fp32_vs_{who}_last_logits_rel_err"] = (diff.abs().max() / truth.abs().max()).item()
            result[f"fp32_vs_{who}_last_logits_rms_rel"] = (diff.norm() / truth.norm()).item()
        result["fp32_vs_hf_prefix_agreement"] = prefix_agreement(exact, hf_greedy)
        result["fp32_vs_ours_prefix_agreement"] = prefix_agreement(exact, ours["greedy"])
    print(json.dumps(result))


def timed_generate(model, ids, new, **kw):
    torch.cuda.synchronize()
    t = time.perf_counter()
    model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                   attention_mask=torch.ones_like(ids), **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t


@torch.no_grad()
def bench(name, prompt, new, mode, dtype):
    torch.manual_seed(0)
    cfg = config_of(name)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype]).eval()
    ids = (torch.arange(prompt, device="cuda") * 1009 + 17) % cfg.vocab_size
    ids = ids[None]
    kw = {}
    if mode == "static":
        kw = {"cache_implementation": "static",
              "compile_config": transformers.CompileConfig(fullgraph=True, mode="reduce-overhead")}
    # Warm-up (compilation for the static mode: prefill and decode shapes).
    timed_generate(model, ids, 1, **kw)
    timed_generate(model, ids, new, **kw)
    ttft = sorted(timed_generate(model, ids, 1, **kw) for _ in range(3))[1]
    total = sorted(timed_generate(model, ids, new, **kw) for _ in range(3))[1]
    print(json.dumps({"model": name, "impl": f"transformers-{mode}", "dtype": dtype,
                      "prompt_len": prompt, "new_tokens": new, "ttft_ms": ttft * 1e3,
                      "decode_ms_per_token": (total - ttft) * 1e3 / (new - 1)}))


def bandwidth():
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(20):
        b.copy_(a)
    e.record()
    torch.cuda.synchronize()
    sec = s.elapsed_time(e) / 1e3 / 20
    print(json.dumps({"copy_bandwidth_GBps": 2 * n / sec / 1e9,
                      "gpu": torch.cuda.get_device_name(0)}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    dtype = opt("--dtype", "fp16")
    if cmd == "make":
        make(sys.argv[2], Path(sys.argv[3]), dtype)
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3], dtype, opt("--oracle", None))
    elif cmd == "bench":
        bench(sys.argv[2], int(opt("--prompt", 16)), int(opt("--new", 128)), opt("--mode", "eager"), dtype)
    elif cmd == "bandwidth":
        bandwidth()
    else:
        sys.exit(f"unknown command {cmd}")
