//! Hostile engine files and hostile places to save them: saving is atomic (a failing or panicking
//! payload writer leaves neither the file nor a temporary behind, and keeps a previous engine intact),
//! no prefix of an engine file loads, and corrupt headers or payloads are errors naming the problem.
//! The refusals of another model, precision, format version, backend and shape are in `engine_file.rs`.

mod common;
mod hostile_common;

use common::{engine, options, spec};
use hostile_common::{Scratch, assert_names, err_msg};
use runtime::engine::Engine;
use runtime::engine_file::{self, EngineFileError, EngineHeader, FORMAT_VERSION, MAGIC};
use runtime::{Error, Precision};
use serde_json::Value;
use std::io::Write;

/// A saved tiny-gpt2 FP32 engine, as bytes.
fn saved(dir: &Scratch) -> Vec<u8> {
    let path = dir.join("good.engine");
    engine("tiny-gpt2", Precision::Fp32, 1)
        .save(&path)
        .expect("save");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::remove_file(&path).expect("rm");
    bytes
}

/// Split an engine file image into its header JSON and payload.
fn parts(bytes: &[u8]) -> (Value, Vec<u8>) {
    let len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[16..16 + len]).expect("header json");
    (header, bytes[16 + len..].to_vec())
}

/// An engine file image from a header (any JSON) and a payload.
fn image(header: &Value, payload: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("json");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

fn load_bytes(dir: &Scratch, bytes: &[u8]) -> runtime::Result<Engine> {
    let path = dir.join("test.engine");
    std::fs::write(&path, bytes).expect("write");
    Engine::load(&path, &spec("tiny-gpt2"), &options(Precision::Fp32, 1))
}

fn header_for(name: &str) -> EngineHeader {
    EngineHeader::new(&spec(name), &options(Precision::Fp32, 1), None)
}

/// A payload writer that writes `n` bytes and then fails, as a full disk would.
fn failing_after(n: usize) -> impl Fn(&mut dyn Write) -> runtime::Result<()> {
    move |w| {
        w.write_all(&vec![7u8; n])
            .map_err(|e| Error::invalid(e.to_string()))?;
        Err(Error::invalid("simulated: no space left on device"))
    }
}

#[test]
fn a_failing_payload_writer_leaves_nothing_behind() {
    let dir = Scratch::new("ef-fail");
    let path = dir.join("m.engine");
    // Past the writer's buffer, so bytes reach the temporary file before the failure.
    for n in [0, 10, 1 << 20] {
        let r = engine_file::save(&path, &header_for("tiny-gpt2"), &failing_after(n));
        let msg = err_msg("failing payload", r);
        assert_names("failing payload", &msg, &["simulated"]);
        assert_eq!(dir.entries(), Vec::<String>::new(), "after failing at {n}");
    }
}

#[test]
fn a_panicking_payload_writer_leaves_nothing_behind() {
    let dir = Scratch::new("ef-panic");
    let path = dir.join("m.engine");
    let r = std::panic::catch_unwind(|| {
        engine_file::save(&path, &header_for("tiny-gpt2"), &|w| {
            w.write_all(&[1u8; 1 << 20]).expect("write");
            panic!("simulated crash in the middle of a build")
        })
    });
    assert!(r.is_err(), "the writer's panic propagates");
    assert_eq!(dir.entries(), Vec::<String>::new());
}

#[test]
fn a_failed_save_keeps_the_previous_engine() {
    let dir = Scratch::new("ef-keep");
    let path = dir.join("m.engine");
    let e = engine("tiny-gpt2", Precision::Fp32, 1);
    e.save(&path).expect("save");
    let before = std::fs::read(&path).expect("read");
    let r = engine_file::save(&path, &header_for("tiny-gpt2"), &failing_after(1 << 20));
    assert!(r.is_err());
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(dir.entries(), vec!["m.engine".to_string()]);
    assert!(Engine::load(&path, &spec("tiny-gpt2"), &options(Precision::Fp32, 1)).is_ok());
}

#[test]
fn no_prefix_of_an_engine_file_loads() {
    // Whatever point a copy or a build was interrupted at, the partial file is refused as truncated.
    let dir = Scratch::new("ef-prefix");
    let bytes = saved(&dir);
    let (header, _) = parts(&bytes);
    let header_end = 16 + serde_json::to_vec(&header).expect("json").len();
    let lens = (0..header_end + 64).chain((header_end + 64..bytes.len()).step_by(997));
    for len in lens {
        match load_bytes(&dir, &bytes[..len]) {
            Err(Error::EngineFile(EngineFileError::Truncated { .. })) => {}
            Err(other) => panic!("prefix {len}: expected Truncated, got {other}"),
            Ok(_) => panic!("prefix {len} of {} loaded", bytes.len()),
        }
    }
    assert!(load_bytes(&dir, &bytes).is_ok(), "the whole file loads");
}

#[test]
fn saving_into_a_missing_directory() {
    let dir = Scratch::new("ef-missing");
    let path = dir.join("no/such/dir/m.engine");
    let e = engine("tiny-gpt2", Precision::Fp32, 1);
    let msg = err_msg("missing dir", e.save(&path));
    assert_names(
        "missing dir",
        &msg,
        &["no/such/dir", "No such file or directory"],
    );
    assert_eq!(dir.entries(), Vec::<String>::new());
}

/// A directory this process cannot create files in: a mode-555 directory, or (when running as root,
/// which ignores modes) `/sys`, which refuses new files to everyone.
fn read_only_dir(dir: &Scratch) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let probe = ro.join("probe");
    if std::fs::write(&probe, b"x").is_err() {
        return ro;
    }
    let _ = std::fs::remove_file(probe);
    std::path::PathBuf::from("/sys")
}

#[test]
fn saving_into_a_read_only_directory() {
    let dir = Scratch::new("ef-ro");
    let ro = read_only_dir(&dir);
    let path = ro.join("llmforge-test.engine");
    let e = engine("tiny-gpt2", Precision::Fp32, 1);
    let msg = err_msg("read-only dir", e.save(&path));
    assert_names("read-only dir", &msg, &[&ro.display().to_string()]);
    assert!(
        msg.contains("Permission denied") || msg.contains("Read-only"),
        "{msg}"
    );
    assert!(!path.exists());
    let leftovers = std::fs::read_dir(&ro)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("llmforge-test"))
        .count();
    assert_eq!(leftovers, 0);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir.join("ro"), std::fs::Permissions::from_mode(0o755));
}

#[test]
fn saving_over_a_directory_and_loading_one() {
    let dir = Scratch::new("ef-dir");
    let target = dir.join("engine-dir");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("keep"), b"x").expect("write");
    let e = engine("tiny-gpt2", Precision::Fp32, 1);
    let msg = err_msg("save over dir", e.save(&target));
    assert_names("save over dir", &msg, &["engine-dir"]);
    assert_eq!(dir.entries(), vec!["engine-dir".to_string()]);
    let r = Engine::load(&target, &spec("tiny-gpt2"), &options(Precision::Fp32, 1));
    let msg = err_msg("load a dir", r);
    assert_names("load a dir", &msg, &["engine-dir", "not a regular file"]);
}

#[test]
fn files_that_are_not_engines() {
    let dir = Scratch::new("ef-magic");
    for junk in [
        &b"GGUF"[..],
        b"{\"not\": \"an engine\"}",
        b"\x00",
        b"LLMFORGX........",
    ] {
        match load_bytes(&dir, junk) {
            Err(Error::EngineFile(EngineFileError::BadMagic { .. })) => {}
            other => panic!("{junk:?}: expected BadMagic, got {:?}", other.err()),
        }
    }
    let msg = err_msg("bad magic", load_bytes(&dir, b"PK\x03\x04 a zip file"));
    assert_names(
        "bad magic",
        &msg,
        &["test.engine", "not an llmforge engine file"],
    );
    let r = Engine::load(
        &dir.join("absent.engine"),
        &spec("tiny-gpt2"),
        &options(Precision::Fp32, 1),
    );
    assert_names(
        "absent",
        &err_msg("absent", r),
        &["absent.engine", "No such file"],
    );
}

#[test]
fn corrupt_headers() {
    let dir = Scratch::new("ef-header");
    let bytes = saved(&dir);
    let (header, payload) = parts(&bytes);

    let mut cut = bytes.clone();
    let len = u32::from_le_bytes(cut[12..16].try_into().expect("4 bytes")) as usize;
    cut[16 + len / 2] = b'\x01';
    let msg = err_msg("garbled json", load_bytes(&dir, &cut));
    assert_names("garbled json", &msg, &["corrupt engine file", "header"]);

    let mut huge = bytes.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let msg = err_msg("huge header", load_bytes(&dir, &huge));
    assert_names(
        "huge header",
        &msg,
        &["corrupt engine file", "header length 4294967295"],
    );

    let edits: [(&str, Value, &str); 5] = [
        ("format_version", Value::from(7), "says version 7"),
        ("precision", Value::from("FP8"), "header"),
        ("backend", Value::from("Tpu"), "header"),
        ("max_seq_len", Value::from(-1), "header"),
        ("model", Value::Null, "header"),
    ];
    for (field, value, want) in edits {
        let mut h = header.clone();
        h[field] = value;
        let msg = err_msg(field, load_bytes(&dir, &image(&h, &payload)));
        assert_names(field, &msg, &["corrupt engine file", want]);
    }
    let mut h = header.clone();
    if let Value::Object(m) = &mut h {
        m.remove("config_hash");
    }
    let msg = err_msg("no config hash", load_bytes(&dir, &image(&h, &payload)));
    assert_names("no config hash", &msg, &["config_hash"]);
}

/// Offsets of the first tensor record of a CPU payload: (name length, dtype code, ndim, first dim).
fn first_record(payload: &[u8]) -> (usize, usize, usize, usize) {
    let name_len = u16::from_le_bytes([payload[4], payload[5]]) as usize;
    let code = 6 + name_len;
    (4, code, code + 1, code + 2)
}

#[test]
fn corrupt_payloads() {
    let dir = Scratch::new("ef-payload");
    let bytes = saved(&dir);
    let (header, payload) = parts(&bytes);
    let (_, code, ndim, dim0) = first_record(&payload);
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = payload.clone();
        edit(&mut p);
        load_bytes(&dir, &image(&header, &p))
    };

    // An absurd tensor count is found short of data, not allocated.
    let msg = err_msg(
        "count",
        with(&|p| p[..4].copy_from_slice(&u32::MAX.to_le_bytes())),
    );
    assert_names("count", &msg, &["truncated engine file"]);
    // An absurd dimension: the size is checked against what is left before anything is allocated.
    let msg = err_msg(
        "dim",
        with(&|p| p[dim0..dim0 + 8].copy_from_slice(&(1u64 << 62).to_le_bytes())),
    );
    assert_names("dim", &msg, &["corrupt engine file", "overflows"]);
    // A large dimension whose size does not overflow is found short of data, not allocated.
    let msg = err_msg(
        "big dim",
        with(&|p| p[dim0..dim0 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes())),
    );
    assert_names("big dim", &msg, &["truncated engine file", "needs"]);
    let msg = err_msg("dtype code", with(&|p| p[code] = 9));
    assert_names(
        "dtype code",
        &msg,
        &["corrupt engine file", "unknown dtype code 9"],
    );
    let msg = err_msg("ndim", with(&|p| p[ndim] = 200));
    assert_names("ndim", &msg, &["corrupt engine file", "200 dimensions"]);
    let msg = err_msg("name utf-8", with(&|p| p[6] = 0xff));
    assert_names("name utf-8", &msg, &["corrupt engine file", "not UTF-8"]);
    // The same tensor twice (count + 1, first record repeated at the end).
    let msg = err_msg(
        "duplicate",
        with(&|p| {
            let count = u32::from_le_bytes(p[..4].try_into().expect("4")) + 1;
            p[..4].copy_from_slice(&count.to_le_bytes());
            let name_len = u16::from_le_bytes([p[4], p[5]]) as usize;
            let n: usize = (0..p[6 + name_len + 1] as usize)
                .map(|d| {
                    let at = 6 + name_len + 2 + 8 * d;
                    u64::from_le_bytes(p[at..at + 8].try_into().expect("8")) as usize
                })
                .product();
            let width = if p[6 + name_len] == 0 { 4 } else { 2 };
            let end = 6 + name_len + 2 + 8 * p[6 + name_len + 1] as usize + n * width;
            let record = p[4..end].to_vec();
            p.extend_from_slice(&record);
        }),
    );
    assert_names("duplicate", &msg, &["corrupt engine file", "appears twice"]);

    // A header claiming FP16 over FP32 tensors (and asked for as FP16).
    let mut h = header.clone();
    h["precision"] = Value::from("Fp16");
    let path = dir.join("fp16.engine");
    std::fs::write(&path, image(&h, &payload)).expect("write");
    let r = Engine::load(&path, &spec("tiny-gpt2"), &options(Precision::Fp16, 1));
    let msg = err_msg("precision lie", r);
    assert_names(
        "precision lie",
        &msg,
        &["stored in another precision", "FP16"],
    );
}

#[test]
fn payload_of_another_model_under_a_forged_header() {
    // A tiny-llama payload with a header rewritten to claim tiny-gpt2: the tensors do not fit.
    let dir = Scratch::new("ef-forged");
    let path = dir.join("llama.engine");
    engine("tiny-llama", Precision::Fp32, 1)
        .save(&path)
        .expect("save");
    let (_, payload) = parts(&std::fs::read(&path).expect("read"));
    let (header, _) = parts(&saved(&dir));
    let msg = err_msg("forged", load_bytes(&dir, &image(&header, &payload)));
    // GPT-2's LayerNorm biases are not in a Llama payload.
    assert_names(
        "forged",
        &msg,
        &["corrupt engine file", "layers.0.attn_norm.bias", "missing"],
    );
}

#[test]
fn parse_header_from_memory() {
    let dir = Scratch::new("ef-mem");
    let bytes = saved(&dir);
    let (h, end) = engine_file::parse_header(&bytes).expect("parses");
    assert_eq!(
        (h.model.as_str(), h.format_version),
        ("tiny-gpt2", FORMAT_VERSION)
    );
    assert_eq!(
        end,
        16 + u32::from_le_bytes(bytes[12..16].try_into().expect("4")) as usize
    );
    assert!(matches!(
        engine_file::parse_header(&bytes[..end - 1]),
        Err(EngineFileError::Truncated { .. })
    ));
}
