//! `--quant_format gguf` on the CPU: a GGUF file's block-quantized matrices stay packed as blocks and
//! are dequantised inside the products. Each row is dequantised exactly as the GGUF loader does and
//! then multiplied as an f32 row is, so the engine must give the dense FP32 engine's logits (which
//! `gguf.rs` compares with transformers on the same files) bit for bit, in every cache mode, and its
//! greedy tokens. The fixtures (`scripts/make_gguf_fixtures.py`) hold Q8_0, Q4_0 and Q4_1 matrices.

mod common;

use common::{MAX_SEQ, prefill_logits, root};
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::gguf::GgufFile;
use runtime::weights::{self, TensorData, WeightSource};
use runtime::{ModelSpec, Precision};
use std::path::PathBuf;

const TINY: [&str; 2] = ["tiny-llama", "tiny-qwen2"];

fn fixture(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/gguf")
        .join(format!("{name}.gguf"))
}

fn spec(name: &str) -> ModelSpec {
    GgufFile::open(&fixture(name))
        .expect("opens")
        .spec(name)
        .expect("spec")
}

fn options(quant: QuantFormat, device: DeviceChoice) -> BuildOptions {
    BuildOptions {
        precision: Precision::Fp32,
        max_seq_len: MAX_SEQ,
        max_batch: 1,
        device,
        quant,
    }
}

fn engine(name: &str, quant: QuantFormat) -> Engine {
    let o = options(quant, DeviceChoice::Cpu { threads: Some(2) });
    let source = WeightSource::Gguf(fixture(name));
    Engine::build(spec(name), &source, o, &NoProgress).expect("engine builds")
}

/// The source really keeps blocks: every quantized matrix of the file arrives as its blocks.
#[test]
fn the_loader_keeps_block_types_as_blocks() {
    for name in TINY {
        let s = spec(name);
        let source = WeightSource::Gguf(fixture(name));
        let kept = weights::load_as(&s, &source, QuantFormat::Gguf).expect("loads");
        let dense = weights::load(&s, &source).expect("loads");
        let mut blocks = 0;
        for (n, t) in &kept.tensors {
            if let TensorData::Blocks { .. } = t.data {
                blocks += 1;
                // The same values as the dequantising loader (Q/K rows moved alike).
                assert_eq!(t.to_f32(), dense.tensors[n].to_f32(), "{name} {n}");
            }
        }
        assert!(blocks >= 4, "{name}: only {blocks} tensors kept as blocks");
    }
}

#[test]
fn kept_blocks_give_the_dense_engines_logits_bit_for_bit() {
    let ids: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % 256).collect();
    for name in TINY {
        let (mut dense, mut packed) = (
            engine(name, QuantFormat::None),
            engine(name, QuantFormat::Gguf),
        );
        for mode in CacheMode::ALL {
            let want = prefill_logits(&mut dense, &ids, mode);
            let got = prefill_logits(&mut packed, &ids, mode);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want), "{name} {mode:?}: logits differ");
        }
        let opts = GenerateOptions {
            max_new_tokens: 24,
            stop_at_eos: false,
            ..GenerateOptions::default()
        };
        let run = |e: &mut Engine| {
            let mut cache = e.new_cache(1).expect("cache");
            let prompts = std::slice::from_ref(&ids);
            generate_with_static_cache(e, &mut cache, prompts, &opts, &mut |_, _| {})
                .expect("generates")
                .tokens
        };
        assert_eq!(run(&mut packed), run(&mut dense), "{name}: greedy tokens");
    }
}

#[test]
fn an_engine_file_of_blocks_is_refused_before_anything_is_written() {
    let e = engine("tiny-llama", QuantFormat::Gguf);
    let path = std::env::temp_dir().join(format!("llmforge-blocks-{}.engine", std::process::id()));
    let err = e.save(&path).expect_err("refused").to_string();
    assert!(
        err.contains("GGUF") && err.contains("quant_format"),
        "{err}"
    );
    assert!(!path.exists(), "{} was written", path.display());
}

#[cfg(feature = "cuda")]
#[test]
fn a_cuda_engine_refuses_kept_blocks_by_name() {
    let o = options(QuantFormat::Gguf, DeviceChoice::Cuda { ordinal: 0 });
    let source = WeightSource::Gguf(fixture("tiny-llama"));
    let err = match Engine::build(spec("tiny-llama"), &source, o, &NoProgress) {
        Ok(_) => panic!("a CUDA engine kept GGUF blocks"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("--quant_format gguf") && err.contains("CUDA"),
        "{err}"
    );
}

/// Every block type the fixtures hold (the legacy types of `quants.gguf`, Q5_0/Q5_1 and the K-quants
/// of `kquants.gguf`, random-byte blocks checked against gguf-py in `gguf.rs`) as a kept-blocks
/// matrix multiplies exactly as the dense f32 matrix of its dequantised values: one input (decode)
/// and three (prefill), bit for bit.
#[test]
fn every_block_type_multiplies_as_its_dequantised_matrix() {
    use runtime::backend::cpu::matrix::{Matrix, Store, matmul};
    let mut seen = Vec::new();
    for file in ["quants", "kquants"] {
        let f = GgufFile::open(&root().join(format!("tests/fixtures/gguf/{file}.gguf"))).unwrap();
        for info in f.tensor_infos() {
            let kept = f.tensor_as(&info.name, true).expect("reads");
            let TensorData::Blocks { ty, bytes } = &kept.data else {
                continue;
            };
            let [rows, cols] = kept.shape[..] else {
                continue;
            };
            seen.push(*ty);
            let blocks = Matrix {
                rows,
                cols,
                store: Store::Blocks(*ty, bytes.clone()),
            };
            let dense = Matrix {
                rows,
                cols,
                store: Store::F32(kept.to_f32()),
            };
            for n in [1, 3] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 7919) % 199) as f32 / 99.0 - 1.0)
                    .collect();
                let run = |m: &Matrix| {
                    let mut out = vec![0.0; n * rows];
                    matmul(m, &x, n, None, &mut out, &mut Vec::new());
                    out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(
                    run(&blocks),
                    run(&dense),
                    "{} ({}) n={n}",
                    info.name,
                    ty.name()
                );
            }
        }
    }
    for t in runtime::format::BlockType::ALL {
        assert!(seen.contains(&t), "no fixture tensor of {}", t.name());
    }
}
