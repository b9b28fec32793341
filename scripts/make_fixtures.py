#!/usr/bin/env python3
# Makes the tiny random-weight Hugging Face fixtures the runtime's parity tests compare against.
#
# Pinned versions (see scripts/requirements-fixtures.txt): torch==2.11.0, transformers==5.17.0,
# tokenizers==0.23.3, safetensors==0.8.0. Run from the repository root:
#
#     /opt/pyref/bin/python scripts/make_fixtures.py                   # every model below
#     /opt/pyref/bin/python scripts/make_fixtures.py tiny-llama-bias   # only the models named
#
# For each of models/tiny-{llama,llama-bias,qwen2,qwen3,mistral,mistral-window,gemma3,gemma3-softcap,phi3,gpt2} (config.json
# committed there and never rewritten here; tiny-llama-bias is tiny-llama with attention_bias and mlp_bias,
# so q/k/v/o and gate/up/down carry biases; tiny-qwen3 has per-head q/k RMSNorms and a head_dim of 32 beside
# a hidden size of 64 over 4 heads; tiny-mistral is a Mistral with sliding_window null and tied embeddings;
# tiny-mistral-window, tiny-gemma3 and tiny-phi3 are described below) it
#   * builds the model from its config with a fixed torch seed, then perturbs every 1-D parameter (norm
#     weights, including Qwen3's and Gemma 3's q_norm/k_norm, and biases) so that biases and norm gains are
#     not the trivial values of HF's initialiser (it refuses to write a model with a bias entry of 0 or a
#     norm weight entry left at the trivial value: 1, or 0 for Gemma 3, whose RMSNorm multiplies by 1 + w);
#   * writes models/<name>/model.safetensors (fp32, exactly the tensors and names save_pretrained writes;
#     GPT-2 keeps HF's Conv1D [in, out] layout and a tied lm_head is omitted, as HF does);
#   * writes models/<name>/tokenizer.json: a byte-level tokenizer of vocabulary 256 in which ids 0, 1, 2
#     are the special tokens <pad>, <s>, </s> and id b (3 <= b <= 255) is the byte b;
#   * writes tests/fixtures/<name>/reference.json: token ids of two prompts, prefill logits at every
#     position (fp32, full vocabulary), greedy continuations from model.generate(do_sample=False), and the
#     same for a batch of two equal-length prompts; and, for the first prompt, the logits and greedy
#     continuation of the same model with every 2-D weight rounded to fp16 and to bf16 (1-D norm weights and
#     biases kept fp32, computed in fp32; for Gemma 3 the 2-D tied embedding, and so the lm_head, is
#     rounded too): what an engine storing matrices in 16 bits must reproduce.
#
# Sliding-window attention (tiny-mistral-window, tiny-phi3, and tiny-gemma3's local layers), as transformers
# 5.17.0 computes it (masking_utils.sliding_window_overlay: kv_idx > q_idx - sliding_window): a query at position p
# attends to the keys j with j <= p and p - j < sliding_window, i.e. to itself and the sliding_window - 1
# positions before it (8 keys with sliding_window 8). The same holds while decoding: the dynamic cache keeps
# the last sliding_window - 1 keys of a sliding layer. For the windowed models this script checks, on the
# first prompt and before writing the model, that (a) the last position's logits differ from those of the
# same weights with the window off, while the first sliding_window positions agree; (b) in the first layer
# alone (eager and sdpa attention), changing the token at j changes the output at p exactly when j <= p and
# p - j < sliding_window; (d) a plain-torch forward (plain_forward) written from config.json as published and
# the semantics below reproduces transformers' prefill logits; and, before writing the reference, that (c)
# every greedy token of the cached generate() is the argmax of a full-sequence forward without a cache.
#
# tiny-mistral-window: tiny-mistral's config (MistralForCausalLM, 2 layers, GQA 4/2, head_dim 16, tied)
# with "sliding_window": 8 in every layer; the prompts (31 and 20 tokens with BOS) and the 24 greedy tokens
# run far past the window. Tensors as tiny-mistral.
#
# tiny-gemma3: Gemma3ForCausalLM ("model_type": "gemma3_text"), its config.json in the key style of the
# published google/gemma-3-1b-it config (rope_theta, rope_local_base_freq, rope_scaling,
# sliding_window_pattern, query_pre_attn_scalar, no tie_word_embeddings key: tied), tiny: vocabulary 256,
# hidden 64, intermediate 128, 6 layers, 4 query heads over 2 KV heads of head_dim 32 (not 64 / 4),
# sliding_window 8, sliding_window_pattern 3, eos_token_id [2], pad 0, and the published initializer_range
# 0.02 (with 0.2, as the other tiny models, the tied embedding scaled by 8 dominates the residual stream and
# greedy decoding repeats one token). What transformers 5.17.0 makes of it:
#   * config.layer_types = [sliding, sliding, full, sliding, sliding, full] (layer i is full attention when
#     (i + 1) % sliding_window_pattern == 0: layers 2 and 5);
#   * RoPE per layer type (rotate-half, over the whole head_dim): the sliding layers use base
#     rope_local_base_freq 10000 unscaled, inv_freq[i] = 10000^(-2i/32); the full layers use base rope_theta
#     1e6 with rope_scaling {"rope_type": "linear", "factor": 8.0} (the legacy rope_scaling key lands on the
#     full-attention layers only), inv_freq[i] = 1e6^(-2i/32) / 8, i.e. position p rotated as p / 8; the cos/sin
#     attention scaling is 1 for both;
#   * the embedding output is multiplied by sqrt(hidden_size) = 8 (exact in fp32 and bf16);
#   * attention scores are scaled by query_pre_attn_scalar^-0.5 = 24^-0.5 (not head_dim^-0.5); no softcapping
#     (attn_logit_softcapping and final_logit_softcapping null);
#   * every RMSNorm computes x / sqrt(mean(x^2) + 1e-6) * (1 + w) in fp32, w initialised to 0 (perturbed here);
#     per layer: h += post_attention_layernorm(attn(input_layernorm(h))), then
#     h += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))); q_norm and k_norm (over head_dim,
#     per head) are applied to q and k before RoPE; the final norm precedes the tied lm_head;
#   * the MLP is down(gelu_tanh(gate(x)) * up(x)) (hidden_activation gelu_pytorch_tanh, GELU's tanh
#     approximation); no biases anywhere;
#   * the embedding row of pad id 0 is zero (HF's initialiser zeroes padding_idx), so, tied, logit 0 is 0.
#   Tensors save_pretrained writes (lm_head.weight omitted, tied to the embedding): model.embed_tokens.weight
#   [256, 64], model.norm.weight [64], and for each layer L in 0..5, model.layers.L.
#   {input_layernorm, post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm}.weight
#   [64], self_attn.q_proj.weight [128, 64], self_attn.k_proj.weight [64, 64], self_attn.v_proj.weight
#   [64, 64], self_attn.o_proj.weight [64, 128], self_attn.q_norm.weight [32], self_attn.k_norm.weight [32],
#   mlp.gate_proj.weight [128, 64], mlp.up_proj.weight [128, 64], mlp.down_proj.weight [64, 128].
#   transformers ignores the config's "cache_implementation": "hybrid" in generate() (it falls back to its
#   dynamic cache, sliding layers keeping sliding_window - 1 keys).
# tiny-phi3: Phi3ForCausalLM ("model_type": "phi3"), its config.json in the key style of the published
# microsoft/Phi-3-mini-4k-instruct config (rope_theta, "rope_scaling": null, original_max_position_embeddings,
# resid_pdrop, embd_pdrop, attention_bias, no head_dim key), tiny: vocabulary 256, hidden 64, intermediate 128,
# 2 layers, 4 query heads over 2 KV heads (head_dim 64 / 4 = 16), sliding_window 8, untied, rope_theta 10000,
# eos 2, pad 0. What transformers 5.17.0 makes of it:
#   * every layer attends over the window (Phi3Model takes create_sliding_window_causal_mask for all layers
#     whenever config.sliding_window is not None; the dynamic cache infers every layer "sliding_attention"
#     from sliding_window when the config has no layer_types);
#   * RoPE over the whole head (rope_type default, partial_rotary_factor 1), inv_freq[i] = 10000^(-2i/16),
#     attention scaling 1; scores scaled by head_dim^-0.5;
#   * each layer: h += o_proj(attn(input_layernorm(h))), then h += down_proj(silu(gate) * up) of
#     post_attention_layernorm(h), where self_attn.qkv_proj's output is [q | k | v] (64, 32, 32 rows) and
#     mlp.gate_up_proj's is [gate | up] (128 rows each, gate first: up_states.chunk(2)); no biases anywhere;
#     dropout (resid_pdrop, embd_pdrop, attention_dropout) is 0 and off in eval;
#   * the embedding row of pad id 0 is zero (HF's initialiser zeroes padding_idx).
#   Tensors save_pretrained writes: model.embed_tokens.weight [256, 64], model.norm.weight [64], lm_head.weight
#   [256, 64], and for each layer L in 0..1, model.layers.L.{input_layernorm, post_attention_layernorm}.weight
#   [64], self_attn.qkv_proj.weight [128, 64], self_attn.o_proj.weight [64, 64], mlp.gate_up_proj.weight
#   [256, 64], mlp.down_proj.weight [64, 128].
# The tests also read transformers' top 2 along each of those greedy continuations, from
# tests/fixtures/<name>/greedy_top2.json: run scripts/make_greedy_top2.py after this script.
import copy
import json
import math
import os
import shutil
import sys
import tempfile

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["tiny-llama", "tiny-llama-bias", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-mistral-window",
          "tiny-gemma3", "tiny-gemma3-softcap", "tiny-phi3", "tiny-gpt2", "tiny-qwen2-yarn"]
SEEDS = {"tiny-llama": 1234, "tiny-llama-bias": 4567, "tiny-qwen2": 2345, "tiny-qwen3": 5678,
         "tiny-mistral": 6791, "tiny-mistral-window": 6802, "tiny-gemma3": 7901, "tiny-gemma3-softcap": 7903,
         "tiny-phi3": 8102, "tiny-qwen2-yarn": 2346,
         "tiny-gpt2": 3456}
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


def trivial_norm_weight(config) -> float:
    """The norm gain HF initialises to: 0 for Gemma 3 (its RMSNorm multiplies by 1 + w), 1 otherwise."""
    return 0.0 if config.model_type == "gemma3_text" else 1.0


def build(name: str):
    model_dir = os.path.join(ROOT, "models", name)
    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(SEEDS[name])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    trivial = trivial_norm_weight(config)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                base = trivial if pname.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
        zero = [n for n, p in model.named_parameters() if n.endswith("bias") and (p == 0).any()]
        if zero:
            sys.exit(f"{name}: biases with zero entries: {zero}")
        left = [n for n, p in model.named_parameters()
                if p.ndim == 1 and n.endswith("weight") and (p == trivial).any()]
        if left:
            sys.exit(f"{name}: norm weights with entries left at the initialiser's {trivial:g}: {left}")
    model.eval()
    return model_dir, model


# The models with sliding-window attention, checked by check_window before their references are written.
WINDOWED = {"tiny-mistral-window", "tiny-gemma3", "tiny-phi3"}
# The models with soft-capping, checked by check_softcaps.
SOFTCAPPED = {"tiny-gemma3-softcap"}


def check_softcaps(name: str, model, ids):
    """tiny-gemma3-softcap sets final_logit_softcapping 0.5 and attn_logit_softcapping 1.0. The final cap
    changes the logits (by more than 1e-3 of the largest, without it), so the fixture tests it;
    transformers 5.17.0's Gemma 3 reads the attention cap but never applies it (its attention passes no
    softcap to the kernel), checked here as logits equal with the key removed, so the fixture also
    pins that an engine ignores it."""
    x = torch.tensor([ids])
    with torch.no_grad():
        capped = model(input_ids=x).logits[0].float()
        for field, changes in (("final_logit_softcapping", True), ("attn_logit_softcapping", False)):
            other = copy.deepcopy(model)
            setattr(other.config, field, None)
            for layer in other.model.layers:
                layer.self_attn.config = other.config
                layer.self_attn.attn_logit_softcapping = other.config.attn_logit_softcapping
            uncapped = other(input_ids=x).logits[0].float()
            diff = (capped - uncapped).abs().max().item() / capped.abs().max().item()
            if changes and not diff > 1e-3:
                sys.exit(f"{name}: {field} changes the logits by only {diff:.2e}")
            if not changes and diff != 0.0:
                sys.exit(f"{name}: {field} was expected to have no effect, it changes the logits by {diff:.2e}")
            print(f"{name}: {field} changes the prefill logits by {diff:.3g} of the largest")


# The models with YaRN rotary scaling, checked by check_yarn.
YARN = {"tiny-qwen2-yarn"}


def check_yarn(name: str, model):
    """tiny-qwen2-yarn is tiny-qwen2's config with YaRN (factor 4 over 4096 original positions), chosen so
    that the ramp between extrapolated and interpolated frequencies falls inside the head (dimensions 1 to
    4 of 8): some frequencies must equal the unscaled ones, some the ones divided by the factor, some lie
    between, and cos/sin carry an attention factor other than 1."""
    rotary = model.model.rotary_emb
    cfg = model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    base = cfg.rope_parameters["rope_theta"]
    plain = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    factor = cfg.rope_parameters["factor"]
    inv = rotary.inv_freq.float()
    same = torch.isclose(inv, plain, rtol=1e-6)
    divided = torch.isclose(inv, plain / factor, rtol=1e-6)
    between = ~(same | divided)
    if not (same.any() and divided.any() and between.any()):
        sys.exit(f"{name}: YaRN ramp not inside the head: {inv.tolist()} against {plain.tolist()}")
    if rotary.attention_scaling == 1.0:
        sys.exit(f"{name}: YaRN attention factor is 1")
    print(f"{name}: YaRN inv_freq {inv.tolist()}, attention factor {rotary.attention_scaling}")


def raw_config(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def layer_plan(raw: dict):
    """Per layer (window or None, rope base, rope position divisor), read from config.json as published."""
    n = raw["num_hidden_layers"]
    if raw["model_type"] == "gemma3_text":
        factor = (raw.get("rope_scaling") or {}).get("factor", 1.0)
        full = [(i + 1) % raw["sliding_window_pattern"] == 0 for i in range(n)]
        return [(None, raw["rope_theta"], factor) if f else (raw["sliding_window"], raw["rope_local_base_freq"], 1.0)
                for f in full]
    if raw["model_type"] == "phi3":
        return [(raw["sliding_window"], raw["rope_theta"], 1.0)] * n
    return [(raw["sliding_window"], raw["rope_parameters"]["rope_theta"], 1.0)] * n


@torch.no_grad()
def plain_forward(model, raw: dict, ids) -> torch.Tensor:
    """Prefill logits of a Mistral, Gemma 3 or Phi-3 computed from the state dict and config.json alone, in
    plain torch, with the semantics stated in the header."""
    sd = model.state_dict()
    gemma = raw["model_type"] == "gemma3_text"
    phi3 = raw["model_type"] == "phi3"
    nh, nkv, eps = raw["num_attention_heads"], raw["num_key_value_heads"], raw["rms_norm_eps"]
    hd = raw.get("head_dim") or raw["hidden_size"] // nh
    n = len(ids)
    pos = torch.arange(n, dtype=torch.float64)
    q_idx, k_idx = torch.arange(n)[:, None], torch.arange(n)[None, :]

    def norm(x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * (1.0 + w) if gemma else y * w

    def rope(x, base, divisor):
        inv = 1.0 / base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = (pos / divisor)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1).float(), torch.cat([ang.sin()] * 2, -1).float()
        return x * cos + torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1) * sin

    def act(x):
        if gemma:
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        return x * torch.sigmoid(x)

    emb = sd["model.embed_tokens.weight"]
    h = emb[torch.tensor(ids)] * (raw["hidden_size"] ** 0.5 if gemma else 1.0)
    scale = raw["query_pre_attn_scalar"] ** -0.5 if gemma else hd ** -0.5
    for i, (window, base, divisor) in enumerate(layer_plan(raw)):
        w = lambda t: sd[f"model.layers.{i}.{t}.weight"]
        if phi3:
            # Phi-3's fused rows: qkv_proj = [q | k | v], gate_up_proj = [gate | up].
            qkv, gate_up = w("self_attn.qkv_proj"), w("mlp.gate_up_proj")
            wq, wk, wv = qkv[:nh * hd], qkv[nh * hd:(nh + nkv) * hd], qkv[(nh + nkv) * hd:]
            assert qkv.shape[0] == (nh + 2 * nkv) * hd
            inter = raw["intermediate_size"]
            wg, wu = gate_up[:inter], gate_up[inter:]
            assert gate_up.shape[0] == 2 * inter
        else:
            wq, wk, wv = w("self_attn.q_proj"), w("self_attn.k_proj"), w("self_attn.v_proj")
            wg, wu = w("mlp.gate_proj"), w("mlp.up_proj")
        x = norm(h, w("input_layernorm"))
        q = (x @ wq.T).view(n, nh, hd).transpose(0, 1)
        k = (x @ wk.T).view(n, nkv, hd).transpose(0, 1)
        v = (x @ wv.T).view(n, nkv, hd).transpose(0, 1)
        if gemma:
            q, k = norm(q, w("self_attn.q_norm")), norm(k, w("self_attn.k_norm"))
        q, k = rope(q, base, divisor), rope(k, base, divisor)
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        allowed = k_idx <= q_idx
        if window is not None:
            allowed &= q_idx - k_idx < window
        s = (q @ k.transpose(1, 2) * scale).masked_fill(~allowed, float("-inf"))
        a = (s.softmax(-1) @ v).transpose(0, 1).reshape(n, nh * hd) @ w("self_attn.o_proj").T
        if gemma:
            h = h + norm(a, w("post_attention_layernorm"))
            x = norm(h, w("pre_feedforward_layernorm"))
        else:
            h = h + a
            x = norm(h, w("post_attention_layernorm"))
        m = (act(x @ wg.T) * (x @ wu.T)) @ w("mlp.down_proj").T
        h = h + (norm(m, w("post_feedforward_layernorm")) if gemma else m)
    h = norm(h, sd["model.norm.weight"])
    head = emb if raw.get("tie_word_embeddings", gemma) else sd["lm_head.weight"]
    return h @ head.T


def check_phi3(name: str, raw: dict, model):
    """What transformers 5.17.0 builds from tiny-phi3's published-style config (see the header)."""
    cfg = model.config
    hd = raw["hidden_size"] // raw["num_attention_heads"]
    if cfg.sliding_window != raw["sliding_window"] or getattr(cfg, "layer_types", None) is not None:
        sys.exit(f"{name}: sliding_window {cfg.sliding_window}, layer_types {getattr(cfg, 'layer_types', None)}")
    rope = cfg.rope_parameters
    if rope.get("rope_type") != "default" or rope.get("partial_rotary_factor", 1.0) != 1.0:
        sys.exit(f"{name}: rope_parameters {rope}")
    rot = model.model.rotary_emb
    inv = rot.inv_freq.double()
    want = raw["rope_theta"] ** -(torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    if not torch.allclose(inv, want, rtol=1e-6, atol=0) or rot.attention_scaling != 1.0:
        sys.exit(f"{name}: inv_freq {inv.tolist()} (scaling {rot.attention_scaling}) is not "
                 f"{raw['rope_theta']}^(-2i/{hd}) over the whole head")
    q, kv = raw["num_attention_heads"] * hd, raw["num_key_value_heads"] * hd
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        shapes = (tuple(attn.qkv_proj.weight.shape), tuple(layer.mlp.gate_up_proj.weight.shape))
        if shapes != ((q + 2 * kv, raw["hidden_size"]), (2 * raw["intermediate_size"], raw["hidden_size"])):
            sys.exit(f"{name}: layer {i} fused shapes {shapes}")
        if attn.scaling != hd ** -0.5 or attn.head_dim != hd:
            sys.exit(f"{name}: layer {i} attention scale {attn.scaling}, head_dim {attn.head_dim}")
    biases = [n for n, _ in model.named_parameters() if n.endswith("bias")]
    if biases:
        sys.exit(f"{name}: biases {biases}")
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        sys.exit(f"{name}: lm_head is tied to the embedding")


@torch.no_grad()
def check_window(name: str, model_dir: str, model, ids):
    """Checks (a), (b), (d) of the header and, for Gemma 3 and Phi-3, the layer types, RoPE tables and scales
    that transformers builds from the published-style config; exits on a failure."""
    raw = raw_config(model_dir)
    cfg = model.config
    window = raw["sliding_window"]
    assert len(ids) > 2 * window, "the prompt must run well past the window"
    x = torch.tensor([ids])
    if raw["model_type"] == "gemma3_text":
        want = ["full_attention" if w is None else "sliding_attention" for w, _, _ in layer_plan(raw)]
        if cfg.layer_types != want:
            sys.exit(f"{name}: layer_types {cfg.layer_types}, expected {want}")
        rot = model.model.rotary_emb
        hd = raw["head_dim"]
        expo = torch.arange(0, hd, 2, dtype=torch.float64) / hd
        for kind, base, div in [("sliding_attention", raw["rope_local_base_freq"], 1.0),
                                ("full_attention", raw["rope_theta"], raw["rope_scaling"]["factor"])]:
            inv = getattr(rot, f"{kind}_inv_freq").double()
            if not torch.allclose(inv, base ** -expo / div, rtol=1e-6, atol=0):
                sys.exit(f"{name}: {kind} inv_freq {inv.tolist()} is not {base}^(-2i/{hd}) / {div}")
            if getattr(rot, f"{kind}_attention_scaling") != 1.0:
                sys.exit(f"{name}: {kind} RoPE attention scaling is not 1")
        if model.model.embed_tokens.embed_scale.item() != raw["hidden_size"] ** 0.5:
            sys.exit(f"{name}: embedding scale {model.model.embed_tokens.embed_scale.item()}")
        for i, layer in enumerate(model.model.layers):
            attn = layer.self_attn
            if attn.scaling != raw["query_pre_attn_scalar"] ** -0.5 or attn.sliding_window != (
                    window if want[i] == "sliding_attention" else None):
                sys.exit(f"{name}: layer {i} attention scale {attn.scaling} window {attn.sliding_window}")
        if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
            sys.exit(f"{name}: lm_head is not tied to the embedding")
    if raw["model_type"] == "phi3":
        check_phi3(name, raw, model)
    # (a) the window is applied: with it off, the first `window` positions agree and the last does not.
    logits = model(input_ids=x).logits[0]
    off = copy.deepcopy(model)
    if raw["model_type"] == "gemma3_text":
        off.config.sliding_window = 1 << 20
        for layer in off.model.layers:
            if layer.self_attn.sliding_window is not None:
                layer.self_attn.sliding_window = 1 << 20
    else:
        off.config.sliding_window = None
    unwindowed = off(input_ids=x).logits[0]
    head_diff = (logits[:window] - unwindowed[:window]).abs().max().item()
    last_diff = (logits[-1] - unwindowed[-1]).abs().max().item()
    if head_diff > 1e-5 or last_diff < 1e-2:
        sys.exit(f"{name}: window off changes the first {window} positions by {head_diff:.2e} and the last by "
                 f"{last_diff:.2e}")
    # (b) in the first layer alone, the token at j reaches position p exactly when j <= p and p - j < window.
    for impl in ["eager", "sdpa"]:
        one = copy.deepcopy(model)
        one.model.layers = one.model.layers[:1]
        one.config.num_hidden_layers = 1
        one.set_attn_implementation(impl)
        if raw["model_type"] == "gemma3_text" and one.config.layer_types[0] != "sliding_attention":
            sys.exit(f"{name}: layer 0 is not a sliding layer")
        base = one(input_ids=x).logits[0]
        for j in range(len(ids)):
            y = x.clone()
            y[0, j] = 3 + (ids[j] - 3 + 1) % 253
            reached = ((one(input_ids=y).logits[0] - base).abs().amax(-1) > 0).tolist()
            want = [j <= p and p - j < window for p in range(len(ids))]
            if reached != want:
                sys.exit(f"{name} ({impl}): token {j} reaches positions "
                         f"{[p for p, r in enumerate(reached) if r]}, expected {[p for p, r in enumerate(want) if r]}")
    # (d) the plain-torch forward reproduces transformers' prefill logits.
    plain = plain_forward(model, raw, ids)
    rel = ((plain - logits).abs().max() / logits.abs().max()).item()
    if rel > 1e-5:
        sys.exit(f"{name}: plain-torch forward differs from transformers by {rel:.2e} (relative)")
    print(f"{name}: window {window} checked; plain-torch forward matches to {rel:.1e}")


@torch.no_grad()
def check_cached_greedy(name: str, model, ids, new):
    """(c): every cached greedy token is the argmax of a forward over the whole sequence without a cache."""
    full = model(input_ids=torch.tensor([ids + new]), use_cache=False).logits[0]
    argmax = full[len(ids) - 1:len(ids) + len(new) - 1].argmax(-1).tolist()
    if argmax != new:
        sys.exit(f"{name}: cached greedy {new} differs from the uncached argmax {argmax}")


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
        if name in WINDOWED:
            check_window(name, model_dir, model, [model.config.bos_token_id]
                         + tok.encode(PROMPTS[0], add_special_tokens=False).ids)
        if name in YARN:
            check_yarn(name, model)
        if name in SOFTCAPPED:
            check_softcaps(name, model, [model.config.bos_token_id]
                           + tok.encode(PROMPTS[0], add_special_tokens=False).ids)
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
                if name in WINDOWED:
                    check_cached_greedy(name, model, ids, new)
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
