//! The engine file's CPU payload: a saved engine's matrices are used in place from the mapped file
//! (every record aligned), a file written without alignment padding still loads (each matrix copied
//! once), and both compute exactly what the engine they were saved from computes, prefill and decode.

use super::*;
use crate::backend::cpu::{self, CpuBackend};
use crate::engine::{BuildOptions, DeviceChoice, Engine};
use crate::engine_file;
use crate::progress::NoProgress;
use crate::step::{CacheMode, LogitRows, StepInputs};
use crate::weights::WeightSource;
use std::path::PathBuf;

const MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"];

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
}

fn options(precision: Precision) -> BuildOptions {
    BuildOptions {
        precision,
        max_seq_len: 16,
        max_batch: 1,
        device: DeviceChoice::Cpu { threads: Some(2) },
        quant: crate::format::QuantFormat::None,
    }
}

fn built(name: &str, precision: Precision) -> Engine {
    let spec = ModelSpec::from_dir(&model_dir(name)).expect("tiny config");
    Engine::build(
        spec,
        &WeightSource::HfDir(model_dir(name)),
        options(precision),
        &NoProgress,
    )
    .expect("build")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmforge-payload-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// `path` loaded as a CPU backend.
fn load(path: &Path, engine: &Engine) -> CpuBackend {
    let opened = engine_file::open(path).expect("open");
    cpu::load(path, &opened, engine.spec(), engine.options()).expect("load")
}

/// Every packed matrix of a CPU engine.
fn matrices(b: &CpuBackend) -> Vec<&Matrix> {
    let w = &b.weights;
    let mut out = vec![&w.lm_head.weight];
    out.extend(&w.embed);
    out.extend(&w.pos_embed);
    for l in &w.layers {
        out.extend(l.linears().map(|lin| &lin.weight));
    }
    out
}

/// The logits of a 5-token prefill (every position, the GEMM) and of one decode step after it (the
/// matrix-vector product).
fn logits(e: &mut Engine) -> Vec<f32> {
    let mut cache = e.new_cache(1).expect("cache");
    let mut layers = cache.layers_mut();
    let ids = [1u32, 7, 3, 12, 5];
    let mut out = Vec::new();
    for (start, n, rows) in [(0, 5, LogitRows::All), (5, 1, LogitRows::Last)] {
        let positions: Vec<u32> = (start as u32..(start + n) as u32).collect();
        let step = StepInputs {
            input_ids: &ids[start.min(4)..start.min(4) + n],
            position_ids: &positions,
            batch: 1,
            seq_len: n,
            start_idx: start,
            end_idx: start + n,
        };
        let l = e
            .forward(&step, &mut layers, CacheMode::StaticV1, rows)
            .expect("forward");
        out.extend(l.data);
    }
    out
}

fn engine_of(b: CpuBackend, like: &Engine) -> Engine {
    Engine::from_parts(like.spec().clone(), *like.options(), Box::new(b))
}

/// The records of a saved engine file (its header's end, and the payload's records).
fn records(bytes: &[u8]) -> (usize, BTreeMap<String, Record>) {
    let (_, end) = engine_file::parse_header(bytes).expect("header");
    (end, index(&bytes[end..]).expect("payload"))
}

#[test]
fn a_saved_engine_is_used_in_place() {
    let dir = scratch("mapped");
    for precision in Precision::ALL {
        for name in MODELS {
            let mut engine = built(name, precision);
            let path = dir.join(format!("{name}-{precision}.engine"));
            engine.save(&path).expect("save");
            let (end, recs) = records(&std::fs::read(&path).expect("read"));
            assert_eq!(end % ALIGN, 0, "{name} {precision}: payload start {end}");
            for (n, r) in recs.iter().filter(|(n, _)| !n.starts_with("padding.")) {
                assert_eq!((end + r.data.start) % ALIGN, 0, "{name} {precision}: {n}");
            }
            let loaded = load(&path, &engine);
            for m in matrices(&loaded) {
                assert!(
                    matches!(m.store, Store::Mapped(_)),
                    "{name} {precision}: a {}x{} matrix was copied",
                    m.rows,
                    m.cols
                );
            }
            let mut loaded = engine_of(loaded, &engine);
            assert_eq!(
                logits(&mut engine),
                logits(&mut loaded),
                "{name} {precision}"
            );
            assert_eq!(
                engine.backend().weight_bytes(),
                loaded.backend().weight_bytes()
            );
            // Saving the loaded engine writes the same file (its matrices read back from the map).
            let again = dir.join(format!("{name}-{precision}-again.engine"));
            loaded.save(&again).expect("save the loaded engine");
            assert!(
                std::fs::read(&again).expect("read") == std::fs::read(&path).expect("read"),
                "{name} {precision}: the re-saved file differs"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `bytes` as the writer lays out a payload without alignment: no padding records, the header JSON
/// unpadded (the layout of files saved before the alignment; still format version 1).
fn unaligned(bytes: &[u8]) -> Vec<u8> {
    let (end, recs) = records(bytes);
    let payload = &bytes[end..];
    let json = std::str::from_utf8(&bytes[16..end])
        .expect("utf-8")
        .trim_end();
    let mut out = bytes[..8 + 4].to_vec();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    // Record order does not matter to a reader; by name, as `index` returns them.
    let kept: Vec<_> = recs
        .iter()
        .filter(|(n, _)| !n.starts_with("padding."))
        .collect();
    out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
    for (name, r) in kept {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let code = match r.dtype {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::Bf16 => 2,
        };
        out.extend_from_slice(&[code, r.shape.len() as u8]);
        for d in &r.shape {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&payload[r.data.clone()]);
    }
    out
}

#[test]
fn a_file_without_alignment_loads_by_copying() {
    let dir = scratch("copied");
    for precision in Precision::ALL {
        for name in MODELS {
            let mut engine = built(name, precision);
            let path = dir.join(format!("{name}-{precision}.engine"));
            engine.save(&path).expect("save");
            let old = unaligned(&std::fs::read(&path).expect("read"));
            let (end, recs) = records(&old);
            let misaligned = recs
                .values()
                .filter(|r| r.shape.len() == 2 && (end + r.data.start) % r.dtype.width() != 0)
                .count();
            std::fs::write(&path, &old).expect("write");
            let loaded = load(&path, &engine);
            let copied = matrices(&loaded)
                .iter()
                .filter(|m| !matches!(m.store, Store::Mapped(_)))
                .count();
            if misaligned > 0 {
                assert!(
                    copied > 0,
                    "{name} {precision}: {misaligned} misaligned, none copied"
                );
            }
            let mut loaded = engine_of(loaded, &engine);
            assert_eq!(
                logits(&mut engine),
                logits(&mut loaded),
                "{name} {precision}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn padding_records_take_every_gap() {
    for k in [0, 1, 9, 10, 99, 1000, 123_456] {
        for gap in 1..ALIGN {
            let (name, elements) = padding(k, gap);
            let size = header_len(&name, 1) + 4 * elements;
            assert_eq!(size % ALIGN, gap, "padding {k} for a gap of {gap}: {name}");
            assert!(
                size < 2 * ALIGN,
                "padding {k} for a gap of {gap}: {size} bytes"
            );
            assert_eq!(name.trim_start_matches("padding.").parse::<usize>(), Ok(k));
        }
    }
}
