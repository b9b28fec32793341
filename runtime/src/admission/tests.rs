//! The admission arithmetic against sizes worked out by hand from the published configs.

use super::*;
use crate::spec::ModelSpec;
use std::path::PathBuf;

fn model(dir: &str) -> ModelSpec {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    ModelSpec::from_dir(&root.join("models").join(dir)).expect("vendored config parses")
}

// SmolLM2-135M: 30 layers, 9 heads and 3 KV heads of 64 dims, hidden 576, intermediate 1536,
// vocabulary 49152, tied embeddings.

#[test]
fn kv_cache_per_precision_batch_and_positions() {
    let s = model("SmolLM2-135M-Instruct");
    // 2 (key, value) x 30 layers x 3 heads x 2048 positions x 64 dims x 4 bytes.
    assert_eq!(kv_cache_bytes(&s, 1, 2048, 4), 94_371_840);
    assert_eq!(kv_cache_bytes(&s, 1, 2048, 2), 47_185_920);
    assert_eq!(kv_cache_bytes(&s, 200, 2050, 4), 200 * 2050 * 46_080);
    // The issue's `--num_tokens 3000000` after the 6-token default prompt: 138 GB.
    assert_eq!(kv_cache_bytes(&s, 1, 3_000_006, 4), 138_240_276_480);
    // Llama-3.1-8B in FP16 on a GPU: 2 x 32 layers x 8 KV heads x 8192 positions x 128 dims x 2 bytes.
    let l = model("Llama-3.1-8B-Instruct");
    assert_eq!(kv_cache_bytes(&l, 1, 8192, 2), 1 << 30);
    // A product past 64 bits saturates (and so is refused anywhere).
    assert_eq!(kv_cache_bytes(&s, usize::MAX, 2, 4), u64::MAX);
}

#[test]
fn rotary_tables_and_learned_positions() {
    let s = model("SmolLM2-135M-Instruct");
    // cos and sin, 2048 positions x 32 frequencies x 4 bytes.
    assert_eq!(rotary_bytes(&s, 2048), 524_288);
    assert_eq!(rotary_bytes(&model("gpt2"), 1024), 0);
}

#[test]
fn weights_per_precision() {
    let s = model("SmolLM2-135M-Instruct");
    // transformers counts 134,515,008 parameters for SmolLM2-135M.
    assert_eq!(s.num_parameters(), 134_515_008);
    assert_eq!(weight_bytes(&s, Precision::Fp32), 538_060_032);
    assert_eq!(weight_bytes(&s, Precision::Fp16), 269_030_016);
    assert_eq!(weight_bytes(&s, Precision::Bf16), 269_030_016);
}

#[test]
fn activations_of_a_prefill() {
    let s = model("SmolLM2-135M-Instruct");
    // Per token row: 3 x 576 (stream, normed, projection) + 960 (QKV) + 576 (attention) + 3072 (gate
    // and up) + 1536 (SwiGLU) + 3072 (GEMM block) = 10944 values; 16 rows, and one logit row of
    // 576 + 49152; f32.
    assert_eq!(activation_bytes(&s, 16, 1, 4), (16 * 10_944 + 49_728) * 4);
    // The prefill attention's packed keys and values: 2 x 192 x 2048 x 4.
    assert_eq!(attention_bytes(&s, 1, 2048), 3_145_728);
    // GPT-2: GELU MLP of 3072, QKV 3 x 768, vocabulary 50257.
    let g = model("gpt2");
    let per_row = 3 * 768 + 2304 + 768 + 3072 + 3072 + 3072;
    assert_eq!(
        activation_bytes(&g, 8, 2, 2),
        (8 * per_row + 2 * (768 + 50_257)) * 2
    );
}

#[test]
fn footprint_sums_its_parts_per_memory() {
    let s = model("SmolLM2-135M-Instruct");
    let shape = RunShape {
        batch: 1,
        max_seq_len: 2048,
        rows: 16,
    };
    let host = footprint(&s, Precision::Fp16, Memory::Host, shape);
    assert_eq!(host.weights, 269_030_016);
    assert_eq!(host.kv_cache, 94_371_840);
    assert_eq!(host.rotary, 524_288);
    assert_eq!(host.activations, (16 * 10_944 + 49_728) * 4 + 3_145_728);
    assert_eq!(
        host.total(),
        269_030_016 + 94_371_840 + 524_288 + (16 * 10_944 + 49_728) * 4 + 3_145_728
    );
    let device = footprint(&s, Precision::Fp16, Memory::Device, shape);
    assert_eq!(device.kv_cache, 47_185_920);
    assert_eq!(device.activations, (16 * 10_944 + 49_728) * 2);
}

#[test]
fn admission_refuses_what_does_not_fit_and_names_the_knob() {
    let s = model("SmolLM2-135M-Instruct");
    let gib = |n: u64| Available {
        bytes: n << 30,
        source: "test memory".into(),
    };
    let shape = |batch, max_seq_len, rows| RunShape {
        batch,
        max_seq_len,
        rows,
    };
    // The default run fits in 1 GiB.
    assert!(
        admit(
            &s,
            Precision::Fp32,
            Memory::Host,
            shape(1, 2048, 6),
            Some(&gib(1))
        )
        .is_ok()
    );
    // 3M positions: the cache (138 GB) is what to lower.
    let e = admit(
        &s,
        Precision::Fp32,
        Memory::Host,
        shape(1, 3_000_006, 6),
        Some(&gib(22)),
    )
    .expect_err("138 GB cache");
    assert_eq!(e.knob, Knob::MaxSeqLen);
    assert_eq!(e.available, 22 << 30);
    assert!(e.need > 138_240_276_480);
    let msg = e.to_string();
    for part in [
        "SmolLM2",
        "3000006 positions",
        "22.0 GiB",
        "test memory",
        "cache length",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg:?}");
    }
    // 200 sequences of 2048-token prompts: the cache (18.9 GB) is larger than the prefill's
    // activations (18.5 GB), so the batch is what to lower.
    let e = admit(
        &s,
        Precision::Fp32,
        Memory::Host,
        shape(200, 2050, 409_600),
        Some(&gib(22)),
    )
    .expect_err("200 x 2048");
    assert_eq!(e.knob, Knob::Batch);
    // Llama-3.2-1B prefilling 131072 tokens at once: 208896 bytes of activations per row against
    // 65536 of cache per position, so the prompt is what to lower.
    let l = model("Llama-3.2-1B-Instruct");
    let e = admit(
        &l,
        Precision::Fp32,
        Memory::Host,
        shape(1, 131_072, 131_072),
        Some(&gib(22)),
    )
    .expect_err("131072 rows");
    assert_eq!(e.knob, Knob::PromptLen);
    // Weights alone too large: the model is named, not a flag.
    let e = admit(
        &s,
        Precision::Fp32,
        Memory::Host,
        shape(1, 16, 1),
        Some(&gib(0)),
    )
    .expect_err("no memory");
    assert_eq!(e.knob, Knob::Model);
    // Unknown availability refuses nothing.
    assert!(
        admit(
            &s,
            Precision::Fp32,
            Memory::Host,
            shape(1, 3_000_006, 6),
            None
        )
        .is_ok()
    );
}

#[test]
fn byte_counts_in_words_and_from_text() {
    assert_eq!(human(512), "512 B");
    assert_eq!(human(3 << 30), "3.0 GiB");
    assert_eq!(human(138_240_276_480), "128.7 GiB");
    assert_eq!(human(u64::MAX), "more than 16 EiB");
    assert_eq!(parse_bytes("123"), Some(123));
    assert_eq!(parse_bytes("512M"), Some(512 << 20));
    assert_eq!(parse_bytes("8GiB"), Some(8 << 30));
    assert_eq!(parse_bytes("1.5G"), Some(3 << 29));
    assert_eq!(parse_bytes("2T"), Some(2 << 40));
    assert_eq!(parse_bytes("lots"), None);
    assert_eq!(parse_bytes("-1G"), None);
}

#[test]
fn meminfo_and_the_machine() {
    let text = "MemTotal:       24000000 kB\nMemFree:  1000 kB\nMemAvailable:   23000000 kB\n";
    assert_eq!(parse_meminfo(text), Some(23_000_000 * 1024));
    assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    // On Linux the figure exists and is below the machine's total.
    if cfg!(target_os = "linux") {
        let a = host_available().expect("Linux reports MemAvailable");
        let total = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kb: u64 = total
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(a.bytes > 0 && a.bytes <= total_kb * 1024, "{a:?}");
    }
}

#[test]
fn dense_weights_are_every_parameter_at_the_precision_size() {
    // The plan walk (matrices by their weight format, vectors by the precision) counts each
    // parameter once: for dense formats it is the parameter count times the element size.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for entry in std::fs::read_dir(&dir).expect("models/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let s = model(&name);
        for p in Precision::ALL {
            let expected = (s.num_parameters() * p.bytes_per_element()) as u64;
            assert_eq!(weight_bytes(&s, p), expected, "{name} {p}");
        }
    }
}

/// The GPU's dense staging matrix for weights quantized at build is the largest quantized linear at
/// the engine precision: Llama-3.1-8B's fused gate/up in every format; int4 on SmolLM2 quantizes
/// only `down` (1536 inputs), whose 576 x 1536 is the staging size; none for dense weights.
#[test]
fn staging_holds_the_largest_quantized_linear() {
    let llama = model("Llama-3.1-8B-Instruct");
    for quant in [QuantFormat::Int8, QuantFormat::Int4, QuantFormat::Fp8] {
        assert_eq!(
            staging_bytes(&llama, Precision::Fp16, quant, &|_| None),
            2 * 14336 * 4096 * 2
        );
    }
    assert_eq!(
        staging_bytes(&llama, Precision::Fp16, QuantFormat::None, &|_| None),
        0
    );
    let smol = model("SmolLM2-135M-Instruct");
    assert_eq!(
        staging_bytes(&smol, Precision::Bf16, QuantFormat::Int4, &|_| None),
        576 * 1536 * 2
    );
    // Kept GGUF blocks: the largest linear with a kept part (here only SmolLM2's fused gate/up of
    // layer 0, 2 x 1536 rows of 576).
    let up = |name: &str| (name == "layers.0.up.weight").then_some(BlockType::Q8_0);
    assert_eq!(
        staging_bytes(&smol, Precision::Fp16, QuantFormat::Gguf, &up),
        2 * 1536 * 576 * 2
    );
}
