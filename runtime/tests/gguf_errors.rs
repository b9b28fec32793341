//! Damaged GGUF files are refused with an error naming the file and the problem — never a panic, never
//! an allocation sized by an unchecked count. Each case patches a gguf-py-written fixture:
//! `tests/fixtures/gguf/quants.gguf`, or `kquants.gguf` for the K-quant block geometry.

use runtime::weights::WeightsError;
use runtime::weights::gguf::GgufFile;
use std::path::PathBuf;

fn original() -> Vec<u8> {
    fixture("quants.gguf")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/gguf")
        .join(name);
    std::fs::read(path).expect("fixture (run scripts/make_gguf_fixtures.py)")
}

fn open_bytes(bytes: &[u8], tag: &str) -> (PathBuf, Result<GgufFile, WeightsError>) {
    let dir = std::env::temp_dir().join(format!("llmforge-gguf-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    let r = GgufFile::open(&path);
    (path, r)
}

/// Open patched bytes and return the error message, checking it names the file.
fn error_of(bytes: &[u8], tag: &str) -> String {
    let (path, r) = open_bytes(bytes, tag);
    let msg = match r {
        Ok(_) => panic!("{tag}: damaged file was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains(&path.display().to_string()),
        "{tag}: error does not name the file: {msg}"
    );
    msg
}

/// Byte offset of the tensor info of `name` (just after its name).
fn info_at(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("tensor name in fixture");
    at + needle.len()
}

/// Byte offset of the value type of metadata `key` (just after the key).
fn kv_at(bytes: &[u8], key: &str) -> usize {
    info_at(bytes, key)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn header_problems_are_named() {
    let o = original();
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch, &str)> = vec![
        ("magic", Box::new(|b| b[0] = b'X'), "not a GGUF file"),
        (
            "v1",
            Box::new(|b| put_u32(b, 4, 1)),
            "version 1 is not supported",
        ),
        (
            "v99",
            Box::new(|b| put_u32(b, 4, 99)),
            "unsupported GGUF version 99",
        ),
        (
            "big-endian",
            Box::new(|b| b[4..8].copy_from_slice(&[0, 0, 0, 3])),
            "big-endian",
        ),
        (
            "tensors",
            Box::new(|b| put_u64(b, 8, u64::MAX)),
            "tensor count claims",
        ),
        (
            "kvs",
            Box::new(|b| put_u64(b, 16, 1 << 40)),
            "metadata count claims",
        ),
        (
            "keylen",
            Box::new(|b| put_u64(b, 24, u64::MAX / 2)),
            "truncated",
        ),
        (
            "valuetype",
            Box::new(|b| {
                let at = kv_at(b, "test.u8");
                put_u32(b, at, 99)
            }),
            "unknown value type 99",
        ),
        (
            "bool",
            Box::new(|b| {
                let at = kv_at(b, "test.bool");
                b[at + 4] = 7
            }),
            "bool byte 7",
        ),
        (
            "array",
            Box::new(|b| {
                let at = kv_at(b, "test.array");
                put_u64(b, at + 8, u64::MAX)
            }),
            "metadata array test.array claims",
        ),
        (
            "duplicate",
            Box::new(|b| {
                let at = kv_at(b, "test.u8");
                b[at - 2] = b'i'
            }),
            "test.i8 appears twice",
        ),
        (
            "alignment",
            Box::new(|b| {
                let at = kv_at(b, "general.alignment");
                put_u32(b, at + 4, 48)
            }),
            "general.alignment",
        ),
    ];
    for (tag, patch, want) in cases {
        let mut b = o.clone();
        patch(&mut b);
        let msg = error_of(&b, tag);
        assert!(msg.contains(want), "{tag}: {msg:?} does not say {want:?}");
    }
}

#[test]
fn tensor_info_problems_are_named() {
    let o = original();
    // After the name: n_dims u32, dims u64 × n_dims (2 here), type u32, offset u64.
    let (dims, off) = (4, 24);
    type Patch = Box<dyn Fn(&mut Vec<u8>, usize)>;
    let cases: Vec<(&str, &str, Patch, &str)> = vec![
        (
            "ndims",
            "t.f32",
            Box::new(|b, at| put_u32(b, at, 5)),
            "5 dimensions",
        ),
        (
            "absurd",
            "t.f32",
            Box::new(move |b, at| put_u64(b, at + dims, u64::MAX)),
            "absurd",
        ),
        (
            "past-end",
            "t.f16",
            Box::new(move |b, at| put_u64(b, at + off, 1 << 40)),
            "tensor t.f16 occupies bytes",
        ),
        (
            "misaligned",
            "t.f16",
            Box::new(move |b, at| {
                let v = get_u64(b, at + off);
                put_u64(b, at + off, v + 4)
            }),
            "tensor t.f16: data offset",
        ),
        (
            "overlap",
            "t.f16",
            Box::new(move |b, at| put_u64(b, at + off, 0)),
            "overlap",
        ),
        (
            "block",
            "t.q8_0",
            Box::new(move |b, at| put_u64(b, at + dims, 48)),
            "row length 48 is not a multiple of the Q8_0 block size 32",
        ),
    ];
    for (tag, tensor, patch, want) in cases {
        let mut b = o.clone();
        let at = info_at(&b, tensor);
        patch(&mut b, at);
        let msg = error_of(&b, tag);
        assert!(msg.contains(want), "{tag}: {msg:?} does not say {want:?}");
    }
}

#[test]
fn unknown_quantisation_is_refused_when_read() {
    for (id, name) in [(23, "IQ4_XS"), (9, "Q8_1"), (15, "Q8_K"), (20, "IQ4_NL")] {
        let mut b = original();
        let at = info_at(&b, "t.q8_0");
        put_u32(&mut b, at + 20, id);
        let (_, r) = open_bytes(&b, name);
        let file = r.expect("the header is still valid");
        let Err(e) = file.tensor("t.q8_0") else {
            panic!("a {name} tensor was dequantised")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("t.q8_0") && msg.contains(&format!("{name} (type id {id}; supported: ")),
            "{msg}"
        );
        assert!(file.tensor("t.f32").is_ok(), "other tensors still read");
    }
}

/// K-quant tensors (super-blocks of 256): a row that is not whole super-blocks is refused naming the
/// type; each tensor's byte size is the one gguf-py laid out; a file cut inside a tensor's data — even
/// by a single byte — is refused naming that tensor.
#[test]
fn k_quant_geometry_is_checked() {
    let o = fixture("kquants.gguf");
    let mut b = o.clone();
    let at = info_at(&b, "t.q4_k");
    put_u64(&mut b, at + 4, 128);
    let msg = error_of(&b, "k-row");
    assert!(
        msg.contains("tensor t.q4_k: row length 128 is not a multiple of the Q4_K block size 256"),
        "{msg}"
    );

    let (_, r) = open_bytes(&o, "k-whole");
    let file = r.expect("original opens");
    let mut infos = file.tensor_infos().to_vec();
    infos.sort_by_key(|t| t.start);
    // gguf-py placed each tensor right after the previous one's bytes (padded to the alignment).
    for pair in infos.windows(2) {
        let end = (pair[0].start + pair[0].len).div_ceil(file.alignment()) * file.alignment();
        assert_eq!(end, pair[1].start, "{} size", pair[0].name);
    }
    for t in &infos {
        for cut in [t.start + 1, t.start + t.len - 1] {
            let msg = error_of(&o[..cut], "k-cut");
            let want = format!("tensor {} occupies bytes {}..", t.name, t.start);
            assert!(
                msg.contains(&want),
                "cut to {cut}: {msg:?} does not say {want:?}"
            );
        }
    }
    let end = infos.last().map(|t| t.start + t.len).unwrap();
    assert!(
        open_bytes(&o[..end], "k-end").1.is_ok(),
        "cut just after the data"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let o = original();
    let (_, r) = open_bytes(&o, "whole");
    let file = r.expect("original opens");
    let data_end = file
        .tensor_infos()
        .iter()
        .map(|t| t.start + t.len)
        .max()
        .unwrap();
    let data_start = file.tensor_infos().iter().map(|t| t.start).min().unwrap();
    // Every cut inside the header, a sample inside the data, and both sides of its end.
    let cuts = (0..data_start)
        .chain((data_start..o.len()).step_by(13))
        .chain([data_end - 1, data_end]);
    for cut in cuts {
        let (_, r) = open_bytes(&o[..cut], "cut");
        assert_eq!(r.is_ok(), cut >= data_end, "file cut to {cut} bytes");
    }
}
