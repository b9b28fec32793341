#!/usr/bin/env python3
# Makes the GGUF tokenizer fixtures of tests/fixtures/gguf-tokenizers/ and the ids llama.cpp gives for a
# set of hard strings, for runtime/tests/gguf_tokenizers.rs to reproduce. Each file is also a one-layer
# model of random weights (hidden size 16), so that run_llm/tests/gguf_tokenizers.rs can run it end to
# end with the tokenizer it carries.
#
# Three tiny tokenizers are trained here on text this script generates (seeded, so reproducible):
#   * llama-bpe.gguf: byte-level BPE over Llama 3's split regex (tokenizer.ggml.model "gpt2", pre
#     "llama-bpe"), Llama 3's control tokens at the end, general.architecture "llama", no
#     tokenizer.ggml.add_bos_token (llama.cpp then adds BOS, as it does for every llama-bpe file);
#   * qwen2.gguf: byte-level BPE over Qwen2's split regex (model "gpt2", pre "qwen2"), Qwen2's control
#     tokens, general.architecture "qwen2", add_bos_token false as Qwen's converted files say;
#   * llama-spm.gguf: a SentencePiece BPE model with byte fallback (model "llama": pieces, scores and
#     token types as llama.cpp's converter writes a Llama-2 tokenizer), add_bos_token true, no
#     add_space_prefix (llama.cpp's default for "llama" is true).
# Both byte-level vocabularies also hold " supercalifragilistic" as a token no merge can reach: llama.cpp
# takes a whole pre-tokenized word that is in the vocabulary as one token for llama-bpe (it ignores the
# merges there) but not for qwen2.
#
# reference.json holds, for each fixture and string, llama.cpp's ids (llama-cpp-python, vocab only,
# special tokens parsed) without and with the file's special tokens (BOS where the file asks for it), and
# whether decoding must give the text back (it has no special tokens, which decoding skips).
# Where transformers' GGUF loader (AutoTokenizer.from_pretrained(dir, gguf_file=...)) gives other ids,
# they are kept beside llama.cpp's under "transformers_ids" / "transformers_ids_with_special", or its
# failure to load under "transformers_error"; the Rust tests follow llama.cpp.
#
# Pinned versions: tokenizers==0.23.3, sentencepiece==0.2.3, gguf==0.19.0 and numpy==2.4.6 for this
# script; llama-cpp-python==0.3.36 in the environment of $LLAMACPP_PYTHON (default
# ~/.cache/llmforge/llamacpp/bin/python); transformers==5.17.0 with torch and gguf==0.19.0
# (scripts/requirements-fixtures.txt) in that of $TRANSFORMERS_PYTHON (default /opt/pyref/bin/python).
# Run from the repository root:
#
#     python scripts/make_gguf_tokenizer_fixtures.py
import json
import os
import random
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import sentencepiece as spm
from gguf import GGMLQuantizationType as Q
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf-tokenizers")
LLAMACPP_PYTHON = os.environ.get(
    "LLAMACPP_PYTHON", os.path.expanduser("~/.cache/llmforge/llamacpp/bin/python")
)
TRANSFORMERS_PYTHON = os.environ.get("TRANSFORMERS_PYTHON", "/opt/pyref/bin/python")

# The split regexes llama.cpp runs for these `tokenizer.ggml.pre` names (the models' own case-insensitive
# contraction group written out case by case).
LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
UNREACHABLE = "supercalifragilistic"

# llama.cpp's token types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

STRINGS = [
    "Hello, world!",
    "What is parallel programming?",
    "don't I'll we've they're it's y'all",
    "DON'T I'LL WE'VE You'Re it'S",
    "Numbers 12345, 3.14159 and 2024-12-01; 1000000 and 7.",
    "١٢٣ ٤٥٦ and ①②③ and ¼",
    "  leading spaces",
    "trailing spaces   ",
    "multiple     spaces   in  between",
    " ",
    "\n",
    "tabs\tand\nnew lines\n\n and \r\n windows\r\n",
    "\t\tindented\n    code\n",
    "def square(x):\n    return x ** 2  # the square\n",
    "Ünïcödé façade — naïve café",
    "日本語のテキストと中文",
    "한국어 텍스트",
    "emoji 🚀🔥👍🏽 and a family 👨‍👩‍👧 ok",
    "a\u00a0non-breaking space, a\u3000wide one and a\u2009thin one",
    "zero\u200bwidth",
    "a supercalifragilistic day",
    "supercalifragilistic",
    "<0x41> is not a byte token in text",
    "the the the the the",
    "",
]

SPECIAL_STRINGS = {
    "llama-bpe": [
        "<|begin_of_text|>Hello<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nhi there<|eot_id|>",
        "text <|end_of_text|> more",
    ],
    "qwen2": [
        "<|im_start|>user\nhi<|im_end|>",
        "<|im_start|>assistant\n  two spaces<|im_end|>\n<|endoftext|>",
        "text <|endoftext|> more",
    ],
    "llama-spm": [
        "<s>hi</s> there",
        "[INST] hi [/INST] ok</s>",
        "a </s>  b",
        "unknown <unk>text",
    ],
}

WORDS = (
    "the of and to in is it that was for on are with as he she they we you be at by this have from "
    "or one had not but what all were when there can an your which their said if do will each about "
    "how up out them then many some so these would other into has more her two like him see time "
    "could no make than first been its who now people my made over did down only way find use may "
    "water long little very after words called just where most know get through back much before go "
    "good new write our used me man too any day same right look think also around another came come "
    "work three word must because does part even place well such here take why things help put years "
    "different away again off went old number great tell men say small every found still between name "
    "should home big give air line set own under read last never us left end along while might next "
    "sound below saw something thought both few those always looked show large often together asked "
    "house don't world going want school important until form food keep children feet land side "
    "without boy once animals life enough took sometimes four head above kind began almost live page "
    "got earth need far hand high year mother light parts country father let night following picture "
    "being study second eyes soon times story boys since white days ever paper hard near sentence "
    "better best across during today others however sure means knew it's try told young miles sun "
    "ways thing whole hear example heard several change answer room sea against top turned learn point "
    "city play toward five using himself usually parallel programming model kernel memory thread token "
    "I'll we've they're you'd she'll isn't can't won't couldn't"
).split()
UNICODE_WORDS = [
    "café", "naïve", "façade", "Ünïcödé", "über", "señor", "déjà", "vu", "coöperate", "résumé",
    "日本語", "テキスト", "中文", "汉字", "東京", "ひらがな", "한국어", "Привет", "мир", "Ελληνικά",
    "—", "–", "…", "«", "»", "€", "£", "°",
]


def corpus(seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(1500):
        n = rng.randint(4, 16)
        words = []
        for _ in range(n):
            r = rng.random()
            if r < 0.06:
                words.append(rng.choice(UNICODE_WORDS))
            elif r < 0.12:
                words.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            else:
                words.append(rng.choice(WORDS))
        if rng.random() < 0.5:
            words[0] = words[0].capitalize()
        sep = rng.choice([" ", " ", " ", " ", "  ", "\t"])
        line = sep.join(words) + rng.choice([".", ",", "!", "?", ":", ";", ""])
        if rng.random() < 0.15:
            line = "    " + line
        if rng.random() < 0.1:
            line = f"def {rng.choice(WORDS).replace(chr(39), '')}(x):\n    return x * {rng.randint(1, 99)}"
        lines.append(line)
    return lines


def train_byte_level(lines, regex, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    tokens = [t for t, _ in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    # " supercalifragilistic" in GPT-2's byte-to-unicode alphabet (space is "Ġ").
    tokens.append("\u0120" + UNREACHABLE)
    return tokens, merges


HIDDEN, HEADS, FFN = 16, 2, 32


def model(w, arch, n_vocab, seed):
    """A one-layer model of random weights, so the file also runs end to end: llama.cpp's
    hyperparameters and tensor names, matrices in F16, norms (and Qwen2's q/k/v biases) in F32, tied
    embeddings (no output.weight)."""
    w.add_context_length(64)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(1)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    rng = np.random.default_rng(seed)

    def add(name, *shape):
        values = (rng.standard_normal(shape) * 0.3).astype(np.float32)
        if len(shape) == 1 and not name.endswith(".bias"):
            values = 1.0 + values * 0.1
        qtype = Q.F16 if len(shape) == 2 else Q.F32
        w.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)

    add("token_embd.weight", n_vocab, HIDDEN)
    add("output_norm.weight", HIDDEN)
    add("blk.0.attn_norm.weight", HIDDEN)
    for m in ["q", "k", "v"]:
        add(f"blk.0.attn_{m}.weight", HIDDEN, HIDDEN)
        if arch == "qwen2":
            add(f"blk.0.attn_{m}.bias", HIDDEN)
    add("blk.0.attn_output.weight", HIDDEN, HIDDEN)
    add("blk.0.ffn_norm.weight", HIDDEN)
    add("blk.0.ffn_gate.weight", FFN, HIDDEN)
    add("blk.0.ffn_up.weight", FFN, HIDDEN)
    add("blk.0.ffn_down.weight", HIDDEN, FFN)


def write(path, arch, fill):
    w = gguf.GGUFWriter(path, arch=arch)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_byte_level(name, arch, pre, regex, specials, bos, eos, add_bos):
    tokens, merges = train_byte_level(corpus(hash_seed(name)), regex, 700)
    types = [NORMAL] * len(tokens) + [CONTROL] * len(specials)
    tokens = tokens + specials

    def fill(w):
        model(w, arch, len(tokens), hash_seed(name))
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(tokens.index(bos))
        w.add_eos_token_id(tokens.index(eos))
        if add_bos is not None:
            w.add_add_bos_token(add_bos)

    write(os.path.join(OUT, f"{name}.gguf"), arch, fill)


def write_spm(name):
    lines = corpus(hash_seed(name))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=prefix,
            model_type="bpe",
            vocab_size=700,
            byte_fallback=True,
            character_coverage=0.995,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            add_dummy_prefix=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            num_threads=1,
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(UNKNOWN)
        elif sp.is_control(i):
            types.append(CONTROL)
        elif sp.is_byte(i):
            types.append(BYTE)
        elif sp.is_unused(i):
            types.append(UNUSED)
        else:
            types.append(NORMAL)

    def fill(w):
        model(w, "llama", len(tokens), hash_seed(name))
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores([float(np.float32(s)) for s in scores])
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)

    write(os.path.join(OUT, f"{name}.gguf"), "llama", fill)


def hash_seed(name):
    return sum(ord(c) * (i + 1) for i, c in enumerate(name))


LLAMACPP_SCRIPT = r"""
import json, sys
import llama_cpp
job = json.load(sys.stdin)
llm = llama_cpp.Llama(model_path=job["path"], vocab_only=True, verbose=False)
out = []
for text in job["strings"]:
    b = text.encode("utf-8")
    out.append({
        "ids": llm.tokenize(b, add_bos=False, special=True),
        "ids_with_special": llm.tokenize(b, add_bos=True, special=True),
    })
json.dump(out, sys.stdout)
"""


def llamacpp_ids(path, strings):
    job = json.dumps({"path": path, "strings": strings})
    res = subprocess.run(
        [LLAMACPP_PYTHON, "-c", LLAMACPP_SCRIPT],
        input=job,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)


TRANSFORMERS_SCRIPT = r"""
import json, sys
from transformers import AutoTokenizer
job = json.load(sys.stdin)
try:
    tok = AutoTokenizer.from_pretrained(job["dir"], gguf_file=job["file"])
except Exception as e:  # the loader's refusal is the finding
    json.dump(f"{type(e).__name__}: {e}", sys.stdout)
    sys.exit(0)
json.dump(
    [
        (tok.encode(s, add_special_tokens=False), tok.encode(s, add_special_tokens=True))
        for s in job["strings"]
    ],
    sys.stdout,
)
"""


def transformers_ids(name, strings):
    job = json.dumps({"dir": OUT, "file": f"{name}.gguf", "strings": strings})
    res = subprocess.run(
        [TRANSFORMERS_PYTHON, "-c", TRANSFORMERS_SCRIPT],
        input=job,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout)


def main():
    os.makedirs(OUT, exist_ok=True)
    write_byte_level(
        "llama-bpe",
        "llama",
        "llama-bpe",
        LLAMA3_REGEX,
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        add_bos=None,
    )
    write_byte_level(
        "qwen2",
        "qwen2",
        "qwen2",
        QWEN2_REGEX,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos="<|endoftext|>",
        eos="<|im_end|>",
        add_bos=False,
    )
    write_spm("llama-spm")

    reference = {}
    for name in ["llama-bpe", "qwen2", "llama-spm"]:
        strings = STRINGS + SPECIAL_STRINGS[name]
        ours = llamacpp_ids(os.path.join(OUT, f"{name}.gguf"), strings)
        theirs = transformers_ids(name, strings)
        cases = []
        for i, (s, c) in enumerate(zip(strings, ours)):
            case = {
                "text": s,
                "ids": c["ids"],
                "ids_with_special": c["ids_with_special"],
                # Decoding skips special tokens, so only text without them comes back whole.
                "round_trip": s in STRINGS,
            }
            if not isinstance(theirs, str):
                plain, special = theirs[i]
                if plain != c["ids"]:
                    case["transformers_ids"] = plain
                if special != c["ids_with_special"]:
                    case["transformers_ids_with_special"] = special
            cases.append(case)
        entry = {"cases": cases}
        if isinstance(theirs, str):
            entry["transformers_error"] = theirs
        reference[name] = entry
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for name, entry in reference.items():
        differ = [c["text"] for c in entry["cases"] if any(k.startswith("transformers") for k in c)]
        print(name, entry.get("transformers_error", f"transformers differs on {differ!r}"))


if __name__ == "__main__":
    sys.exit(main())
