//! Hostile caller input to a built engine: prompts longer than the cache, token ids outside the
//! vocabulary, batches larger than the engine was built for, invalid sampling values, caches of another
//! geometry or device, impossible build options. Each is refused before any backend runs, with a
//! message that names the problem and the values. (`bounds.rs` checks that each is refused; this file
//! checks what the refusal says.)

mod common;
mod hostile_common;

use common::{MAX_SEQ, engine, options, spec};
use hostile_common::{assert_names, err_msg};
use runtime::Precision;
use runtime::backend::{CacheMode, LogitRows, StepInputs};
use runtime::cache::{KvStorage, KvTensor, LayerKvMut};
use runtime::engine::{BuildOptions, DeviceChoice, Engine};
use runtime::generate::{GenerateOptions, generate, generate_with_static_cache};
use runtime::progress::NoProgress;
use runtime::sample::Sampling;
use runtime::weights::{HostTensor, TensorData, WeightSource};

fn opts() -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 4,
        stop_at_eos: false,
        ..GenerateOptions::default()
    }
}

/// The message of a static-cache generation and of a recompute generation of `prompts`; both must fail
/// and say the same thing.
fn both_refuse(e: &mut Engine, prompts: &[Vec<u32>], o: &GenerateOptions) -> String {
    let batch = prompts.len().clamp(1, e.options().max_batch);
    let mut cache = e.new_cache(batch).expect("cache");
    let a = err_msg(
        "static",
        generate_with_static_cache(e, &mut cache, prompts, o, &mut |_, _| {}),
    );
    let b = err_msg("recompute", generate(e, prompts, o, &mut |_, _| {}));
    assert_eq!(a, b);
    a
}

#[test]
fn a_prompt_longer_than_the_cache() {
    let mut e = engine("tiny-llama", Precision::Fp32, 1);
    let msg = both_refuse(&mut e, &[vec![5; MAX_SEQ + 1]], &opts());
    assert_names(
        "long prompt",
        &msg,
        &["prompt of 65 tokens", "max_seq_len 64"],
    );
    // The same through the engine signature: a prefill whose end is past the cache.
    let ids = vec![5u32; MAX_SEQ + 1];
    let pos: Vec<u32> = (0..ids.len() as u32).collect();
    let mut cache = e.new_cache(1).expect("cache");
    let step = StepInputs {
        input_ids: &ids,
        position_ids: &pos,
        batch: 1,
        seq_len: ids.len(),
        start_idx: 0,
        end_idx: ids.len(),
    };
    let r = e.forward(
        &step,
        &mut cache.layers_mut(),
        CacheMode::StaticV1,
        LogitRows::Last,
    );
    assert_names(
        "long prefill",
        &err_msg("long prefill", r),
        &["end_idx 65", "max_seq_len = 64"],
    );
}

#[test]
fn a_token_id_outside_the_vocabulary() {
    let mut e = engine("tiny-llama", Precision::Fp32, 1);
    for bad in [256u32, 1000, u32::MAX] {
        let msg = both_refuse(&mut e, &[vec![5, bad, 7]], &opts());
        assert_names(
            "oov",
            &msg,
            &[&format!("token id {bad}"), "index 1", "vocabulary of 256"],
        );
    }
}

#[test]
fn a_batch_larger_than_the_engine() {
    let mut e = engine("tiny-llama", Precision::Fp32, 2);
    let msg = err_msg("new_cache(3)", e.new_cache(3));
    assert_names("new_cache(3)", &msg, &["batch size 3", "1..=2"]);
    let msg = both_refuse(&mut e, &[vec![1, 2], vec![3, 4], vec![5, 6]], &opts());
    assert_names("batch 3", &msg, &["batch 3", "max_batch 2"]);
    // A batch of 2 through a cache made for 1.
    let mut small = e.new_cache(1).expect("cache");
    let r = generate_with_static_cache(
        &mut e,
        &mut small,
        &[vec![1, 2], vec![3, 4]],
        &opts(),
        &mut |_, _| {},
    );
    assert_names(
        "cache too small",
        &err_msg("cache", r),
        &["cache batch 1", "step batch 2"],
    );
}

#[test]
fn invalid_sampling_values() {
    let mut e = engine("tiny-gpt2", Precision::Fp32, 1);
    let cases: [(Sampling, &[&str]); 8] = [
        (
            Sampling {
                temperature: -0.5,
                ..Sampling::default()
            },
            &["temperature", "-0.5"],
        ),
        (
            Sampling {
                temperature: f32::NAN,
                ..Sampling::default()
            },
            &["temperature", "NaN"],
        ),
        (
            Sampling {
                temperature: f32::INFINITY,
                ..Sampling::default()
            },
            &["temperature", "inf"],
        ),
        (
            Sampling {
                temperature: 1.0,
                top_k: Some(0),
                ..Sampling::default()
            },
            &["top_k", "0"],
        ),
        (
            Sampling {
                temperature: 1.0,
                top_p: Some(0.0),
                ..Sampling::default()
            },
            &["top_p", "0"],
        ),
        (
            Sampling {
                temperature: 1.0,
                top_p: Some(1.5),
                ..Sampling::default()
            },
            &["top_p", "1.5"],
        ),
        (
            Sampling {
                temperature: 1.0,
                top_p: Some(-0.1),
                ..Sampling::default()
            },
            &["top_p", "-0.1"],
        ),
        (
            Sampling {
                temperature: 1.0,
                top_p: Some(f32::NAN),
                ..Sampling::default()
            },
            &["top_p", "NaN"],
        ),
    ];
    for (sampling, want) in cases {
        let o = GenerateOptions { sampling, ..opts() };
        let msg = both_refuse(&mut e, &[vec![1, 2, 3]], &o);
        assert_names(&format!("{sampling:?}"), &msg, want);
    }
}

#[test]
fn empty_and_ragged_prompts() {
    let mut e = engine("tiny-gpt2", Precision::Fp32, 2);
    assert_names("none", &both_refuse(&mut e, &[], &opts()), &["no prompts"]);
    assert_names(
        "empty",
        &both_refuse(&mut e, &[vec![]], &opts()),
        &["must not be empty"],
    );
    let msg = both_refuse(&mut e, &[vec![1, 2, 3], vec![1]], &opts());
    assert_names(
        "ragged",
        &msg,
        &["equal length", "3 tokens", "prompt 1 has 1"],
    );
}

#[test]
fn caches_of_another_geometry_or_device() {
    let mut e = engine("tiny-llama", Precision::Fp32, 1);
    let ids = [1u32, 2, 3];
    let pos = [0u32, 1, 2];
    let step = StepInputs {
        input_ids: &ids,
        position_ids: &pos,
        batch: 1,
        seq_len: 3,
        start_idx: 0,
        end_idx: 3,
    };
    let mut other = engine("tiny-qwen2", Precision::Fp32, 1)
        .new_cache(1)
        .expect("cache");
    let r = e.forward(
        &step,
        &mut other.layers_mut(),
        CacheMode::StaticV1,
        LogitRows::Last,
    );
    assert_names(
        "foreign",
        &err_msg("foreign", r),
        &["key_cache_0", "[1, 1, 64, 16]", "[1, 2, 64, 16]"],
    );

    // Right shape, wrong amount of storage (a cache assembled by hand).
    let shape = spec("tiny-llama").kv_shape(0, 1, MAX_SEQ);
    let short = || KvTensor {
        shape,
        storage: KvStorage::Host(vec![0.0; 10]),
        written: 0,
    };
    let mut tensors: Vec<(KvTensor, KvTensor)> = (0..2).map(|_| (short(), short())).collect();
    let mut layers: Vec<LayerKvMut<'_>> = tensors
        .iter_mut()
        .map(|(key, value)| LayerKvMut { key, value })
        .collect();
    let r = e.forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::Last);
    assert_names(
        "short storage",
        &err_msg("short storage", r),
        &["holds 10 values"],
    );

    // Device storage handed to the CPU engine.
    let gpu = || KvTensor {
        shape,
        storage: KvStorage::Device(Box::new(0u8)),
        written: 0,
    };
    let mut tensors: Vec<(KvTensor, KvTensor)> = (0..2).map(|_| (gpu(), gpu())).collect();
    let mut layers: Vec<LayerKvMut<'_>> = tensors
        .iter_mut()
        .map(|(key, value)| LayerKvMut { key, value })
        .collect();
    let r = e.forward(&step, &mut layers, CacheMode::StaticV1, LogitRows::Last);
    assert_names(
        "device cache",
        &err_msg("device cache", r),
        &["GPU", "host cache"],
    );
}

#[test]
fn impossible_build_options() {
    let source = WeightSource::HfDir(common::root().join("models/tiny-gpt2"));
    let build = |o: BuildOptions| Engine::build(spec("tiny-gpt2"), &source, o, &NoProgress);
    let ok = options(Precision::Fp32, 1);
    let msg = err_msg(
        "seq 0",
        build(BuildOptions {
            max_seq_len: 0,
            ..ok
        }),
    );
    assert_names("seq 0", &msg, &["max_seq_len (0)", "at least 1"]);
    let msg = err_msg("batch 0", build(BuildOptions { max_batch: 0, ..ok }));
    assert_names("batch 0", &msg, &["max_batch (0)", "at least 1"]);
    // GPT-2 has 128 learned positions in the tiny config.
    let msg = err_msg(
        "positions",
        build(BuildOptions {
            max_seq_len: 129,
            ..ok
        }),
    );
    assert_names(
        "positions",
        &msg,
        &["max_seq_len 129", "128 learned positions"],
    );
    let threads = BuildOptions {
        device: DeviceChoice::Cpu { threads: Some(0) },
        ..ok
    };
    assert_names(
        "threads",
        &err_msg("threads", build(threads)),
        &["thread count"],
    );
}

#[test]
fn in_memory_weights_whose_data_disagree_with_their_shape() {
    // A converter that builds a WeightMap by hand can get a tensor's length wrong; the engine build
    // refuses it instead of reading past the data later.
    let s = spec("tiny-gpt2");
    let source = WeightSource::HfDir(common::root().join("models/tiny-gpt2"));
    let mut map = runtime::weights::load(&s, &source).expect("weights");
    let t = map.tensors.get_mut("layers.0.fc.weight").expect("fc");
    *t = HostTensor {
        shape: t.shape.clone(),
        data: TensorData::F32(vec![0.0; 10]),
    };
    let r = Engine::build_from_weights(s, &map, options(Precision::Fp32, 1), &NoProgress);
    assert_names(
        "short data",
        &err_msg("short data", r),
        &["layers.0.fc.weight", "10 values"],
    );
}

#[test]
fn cache_sizes_that_do_not_fit_in_memory() {
    // Beyond any 64-bit address space, or within it but beyond this machine: refused against the
    // memory available before anything is allocated, never an allocation abort or the OOM killer.
    let source = WeightSource::HfDir(common::root().join("models/tiny-llama"));
    let build = |o: BuildOptions| Engine::build(spec("tiny-llama"), &source, o, &NoProgress);
    let ok = options(Precision::Fp32, 1);
    let msg = err_msg(
        "positions",
        build(BuildOptions {
            max_seq_len: 1 << 50,
            ..ok
        }),
    );
    assert_names(
        "positions",
        &msg,
        &[
            "rotary tables for 1125899906842624 positions",
            "is available",
            "cache length",
        ],
    );
    let msg = err_msg(
        "positions overflow",
        build(BuildOptions {
            max_seq_len: usize::MAX,
            ..ok
        }),
    );
    assert_names(
        "positions overflow",
        &msg,
        &["rotary tables", "more than 16 EiB", "is available"],
    );
    let e = build(BuildOptions {
        max_batch: 1 << 50,
        ..ok
    })
    .expect("build");
    let msg = err_msg("cache", e.new_cache(1 << 50));
    assert_names(
        "cache",
        &msg,
        &[
            "KV cache for 1125899906842624 sequence(s)",
            "is available",
            "batch size",
        ],
    );
    // 2^24 sequences of 64 positions: 512 GiB, a size the kernel's overcommit would hand out.
    let msg = err_msg("cache 2^24", e.new_cache(1 << 24));
    assert_names(
        "cache 2^24",
        &msg,
        &[
            "KV cache for 16777216 sequence(s) of 64 positions",
            "512.0 GiB",
            "is available",
        ],
    );
}
