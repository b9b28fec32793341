//! `--quant_format gguf` on the CPU: a GGUF file's block-quantized matrices stay packed as blocks and
//! are dequantised inside the products. Each row is dequantised exactly as the GGUF loader does and
//! then multiplied as an f32 row is, so the engine must give the dense FP32 engine's logits (which
//! `gguf.rs` compares with transformers on the same files) bit for bit, in every cache mode, and its
//! greedy tokens. The fixtures (`scripts/make_gguf_fixtures.py`) hold Q8_0, Q4_0 and Q4_1 matrices.

mod common;

use common::{MAX_SEQ, gguf_fixture as fixture, gguf_spec as spec, prefill_logits, root};
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::format::QuantFormat;
use runtime::generate::{GenerateOptions, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::weights::gguf::GgufFile;
use runtime::weights::{self, TensorData, WeightSource};

const TINY: [&str; 2] = ["tiny-llama", "tiny-qwen2"];

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

/// An engine keeping blocks saves them as blocks and loads back to the same logits, bit for bit;
/// asked for as a `none` engine, the file is refused naming the quant format.
#[test]
fn an_engine_file_keeps_blocks_and_its_quant_format() {
    let ids: Vec<u32> = (0..12).map(|i| (i * 53 + 7) % 256).collect();
    for name in TINY {
        let mut built = engine(name, QuantFormat::Gguf);
        let path = std::env::temp_dir().join(format!(
            "llmforge-blocks-{name}-{}.engine",
            std::process::id()
        ));
        built.save(&path).expect("saves");
        let cpu = DeviceChoice::Cpu { threads: Some(2) };
        let mut loaded =
            Engine::load(&path, &spec(name), &options(QuantFormat::Gguf, cpu)).expect("loads");
        for mode in CacheMode::ALL {
            let want = prefill_logits(&mut built, &ids, mode);
            let got = prefill_logits(&mut loaded, &ids, mode);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&got) == bits(&want),
                "{name} {mode:?}: loaded logits differ"
            );
        }
        let err = match Engine::load(&path, &spec(name), &options(QuantFormat::None, cpu)) {
            Ok(_) => panic!("{name}: a gguf engine file loaded as a none engine"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("quant format") && err.contains("gguf"),
            "{err}"
        );
        // Smaller than the dense engine's file: the blocks are kept.
        let dense_path = path.with_extension("dense");
        engine(name, QuantFormat::None)
            .save(&dense_path)
            .expect("saves");
        let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        assert!(
            size(&path) < size(&dense_path),
            "{name}: no smaller than dense"
        );
        std::fs::remove_file(&path).ok();
        std::fs::remove_file(&dense_path).ok();
    }
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

/// A block record whose type code is no block type, whose rows are not whole blocks, or which is not
/// a matrix is refused naming the tensor; a well-formed one is indexed with its type.
#[test]
fn malformed_block_records_are_refused_by_name() {
    use runtime::backend::cpu::payload::{PayloadError, index};
    let record = |code: u8, dims: &[u64], data: usize| {
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&1u16.to_le_bytes());
        p.push(b'w');
        p.extend_from_slice(&[code, dims.len() as u8]);
        for d in dims {
            p.extend_from_slice(&d.to_le_bytes());
        }
        p.extend(std::iter::repeat_n(0u8, data));
        index(&p)
    };
    let q4_0 = 16 + 2;
    let ok = record(q4_0, &[2, 64], 2 * 2 * 18).expect("a Q4_0 matrix");
    assert_eq!(ok["w"].blocks, Some(runtime::format::BlockType::Q4_0));
    for (code, dims, data, says) in [
        (16 + 9, &[1u64, 32][..], 34, "unknown block type code"),
        (q4_0, &[1, 48][..], 27, "not whole blocks"),
        (q4_0, &[64][..], 36, "not a matrix"),
    ] {
        match record(code, dims, data) {
            Err(PayloadError::Corrupt(m)) => assert!(m.contains('w') && m.contains(says), "{m}"),
            other => panic!("code {code} {dims:?}: {other:?}"),
        }
    }
}

/// The memory check sizes a kept-blocks engine by what it keeps: the file's own bytes for every
/// matrix it holds as blocks, f32 for the rest (FP32 engine), each tensor once (a tied embedding
/// is the lm_head) — computed here from the GGUF header's tensor sizes.
#[test]
fn the_memory_check_sizes_kept_blocks_by_the_file() {
    use runtime::admission::{weight_bytes, weight_bytes_kept};
    use runtime::format::BlockType;
    use runtime::weights::names::gguf_to_canonical;
    for name in TINY {
        let file = GgufFile::open(&fixture(name)).unwrap();
        let s = spec(name);
        let mut kept = std::collections::BTreeMap::new();
        let mut want = 0u64;
        for info in file.tensor_infos() {
            let Some(canonical) = gguf_to_canonical(&info.name) else {
                continue;
            };
            let id = info.ty.as_ref().unwrap().id();
            let block = BlockType::from_ggml_id(id);
            match block {
                Some(b) if info.shape.len() == 2 => {
                    kept.insert(canonical, b);
                    want += info.len as u64;
                }
                _ => want += 4 * info.numel() as u64,
            }
        }
        let stored = |n: &str| kept.get(n).copied();
        assert_eq!(
            weight_bytes_kept(&s, Precision::Fp32, QuantFormat::Gguf, &stored),
            want,
            "{name}"
        );
        assert!(want < weight_bytes(&s, Precision::Fp32), "{name}");
    }
}
