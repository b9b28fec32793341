//! Hostile GGUF model metadata, beyond the reader's refusals in `gguf_errors.rs`: a block count no
//! runtime can hold. The file is the fuzz seed `fuzz/corpus/gguf/mini-llama.gguf` (a one-layer Llama
//! written by gguf-py, see `fuzz/make_gguf_seed.py`) with one metadata value patched.

mod hostile_common;

use hostile_common::{Scratch, assert_names, err_msg, root};
use runtime::weights::gguf::GgufFile;

fn seed() -> Vec<u8> {
    std::fs::read(root().join("fuzz/corpus/gguf/mini-llama.gguf")).expect("seed")
}

/// Offset of the value of UINT32 metadata `key` (after its length-prefixed name and type word).
fn u32_value_at(bytes: &[u8], key: &str) -> usize {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("key in the seed")
        + needle.len();
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")),
        4,
        "UINT32"
    );
    at + 4
}

#[test]
fn an_absurd_block_count_is_refused_naming_the_key() {
    let dir = Scratch::new("gguf-blocks");
    let path = dir.join("m.gguf");
    let mut bytes = seed();
    std::fs::write(&path, &bytes).expect("write");
    let file = GgufFile::open(&path).expect("the seed opens");
    assert_eq!(
        file.spec("m").expect("spec").num_layers,
        1,
        "positive control"
    );

    let at = u32_value_at(&bytes, "llama.block_count");
    for blocks in [4097u32, 26_666_666, u32::MAX] {
        bytes[at..at + 4].copy_from_slice(&blocks.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        let file = GgufFile::open(&path).expect("the header is still valid");
        let msg = err_msg("block_count", file.spec("m"));
        assert_names(
            "block_count",
            &msg,
            &[
                "m.gguf",
                "llama.block_count",
                &blocks.to_string(),
                "more than the 4096",
            ],
        );
    }
}
