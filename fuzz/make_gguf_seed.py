"""Write fuzz/corpus/gguf/mini-llama.gguf with gguf-py: a one-layer Llama (hidden 8, 2 heads, 1 KV head,
vocabulary 8) with a byte-level BPE tokenizer in its metadata and small F32/F16 tensors, so that the
fuzzer reaches the spec, tokenizer and dequantisation code as well as the header reader.
Run from the repository root with an environment that has `gguf` and `numpy`:
    /opt/pyref/bin/python fuzz/make_gguf_seed.py"""
import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
rng = np.random.default_rng(0)
w = gguf.GGUFWriter("fuzz/corpus/gguf/mini-llama.gguf", "llama")
w.add_name("mini")
w.add_block_count(1)
w.add_context_length(16)
w.add_embedding_length(8)
w.add_feed_forward_length(16)
w.add_head_count(2)
w.add_head_count_kv(1)
w.add_rope_freq_base(10000.0)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_dimension_count(4)
w.add_vocab_size(8)
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("default")
w.add_token_list(["<s>", "</s>", "a", "b", "Ġ", "ab", "Ġa", "c"])
w.add_token_types([3, 3, 1, 1, 1, 1, 1, 1])
w.add_token_merges(["a b", "Ġ a"])
w.add_bos_token_id(0)
w.add_eos_token_id(1)


def add(name, shape, qtype=Q.F32):
    a = rng.standard_normal(shape).astype(np.float32)
    data = a if qtype == Q.F32 else gguf.quants.quantize(a, qtype)
    w.add_tensor(name, data, raw_dtype=qtype)


add("token_embd.weight", (8, 8), Q.F16)  # gguf-py takes numpy [rows, cols] = [out, in]
add("output_norm.weight", (8,))
add("blk.0.attn_norm.weight", (8,))
add("blk.0.ffn_norm.weight", (8,))
add("blk.0.attn_q.weight", (8, 8))
add("blk.0.attn_k.weight", (4, 8), Q.F16)
add("blk.0.attn_v.weight", (4, 8))
add("blk.0.attn_output.weight", (8, 8))
add("blk.0.ffn_gate.weight", (16, 8))
add("blk.0.ffn_up.weight", (16, 8), Q.F16)
add("blk.0.ffn_down.weight", (8, 16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
