//! The CPU half of the op-by-op CUDA tests (`cuda_ops.rs` runs the cases on a GPU), run without a GPU:
//! the catalogue (`op_cases/mod.rs`) covers every kernel of `kernels::MODULES` at every precision, every
//! compile-time switch the kernel templates branch on and every runtime variant of each kernel (null
//! biases, cache modes, split counts, row counts); and the reference of every case runs and agrees
//! with an independent computation where one is cheap (the f64 norms against the CPU's f32 norm, the
//! rotary against `rotate_half` built literally, the f64 attention, windowed over a ring or not,
//! against the CPU engine's, the activations against the CPU kernels, the f64 dot products against
//! f32 sums, the scaled embedding within half an ulp of the exact product, the ring store against
//! the last position of the step that maps to each slot, sampled ids inside the top k, the GGUF
//! loader's dequantisation against the CPU engine's register kernels bit for bit and the block
//! GEMV's f64 reference against the CPU engine's own block dot products). The block cases cover
//! every GGML block type in every shape and row count. The wide specs' references are large for a
//! debug build and run in release only.
#![cfg(feature = "cuda")]

mod op_cases;

use op_cases::*;
use runtime::Precision;
use runtime::backend::CacheMode;
use runtime::backend::cpu::{attention, block_dot, kernels as cpu};
use runtime::backend::cuda::kernels::{self, GEMV_MAX_ROWS, KernelConsts, MODULES};
use runtime::backend::cuda::op_check::round;
use runtime::format::{BlockType, QuantFormat};
use runtime::spec::NormKind;
use std::collections::{BTreeMap, BTreeSet};

/// What each kernel's cases must include, beyond every precision: the model switches its template
/// branches on and its runtime variants (`Op::tags`).
fn required(kernel: &str) -> &'static [&'static str] {
    match kernel {
        "embed" => &["rope", "learned-pos", "embed-scale"],
        "add_norm" => &["rms", "layernorm", "delta", "no-delta", "bias", "no-bias"],
        "post_norm" | "add_post_norm" => &["rms", "sandwich"],
        "head_norm" => &["qk-norm"],
        "qkv_rope" => &[
            "rope",
            "learned-pos",
            "bias",
            "no-bias",
            "cache",
            "no-cache",
            "full",
            "window",
        ],
        "kv_ring_store" => &["within-window", "longer-than-window", "wraps", "no-wrap"],
        "attn_prefill" | "attn_prefill_tc" => &[
            "None", "StaticV1", "StaticV2", "prefix", "start-0", "full", "window",
        ],
        "attn_decode" => &[
            "StaticV1",
            "StaticV2",
            "splits",
            "one-split",
            "full",
            "window",
        ],
        "glu" => &["bias", "no-bias", "swiglu", "geglu"],
        "gelu_bias" => &["bias", "no-bias"],
        "gemv" => &[
            "rows",
            "one-row",
            "strided",
            "dense",
            "bias-accumulate",
            "plain",
        ],
        "dec_qkv_1" | "dec_qkv_n" => &[
            "rms",
            "layernorm",
            "rope",
            "learned-pos",
            "bias",
            "no-bias",
            "qk-norm",
            "full",
            "window",
        ],
        "dec_up_1" | "dec_up_n" => &[
            "rms",
            "layernorm",
            "swiglu",
            "geglu",
            "gelu",
            "bias",
            "no-bias",
        ],
        "dec_o_1" | "dec_o_n" | "dec_down_1" | "dec_down_n" => &["bias", "no-bias", "sandwich"],
        "dec_lm_1" | "dec_lm_n" => &[
            "rms",
            "layernorm",
            "argmax",
            "logits",
            "softcap",
            "no-softcap",
        ],
        "logit_softcap" => &[],
        "argmax" => &[],
        "sample_top_k" => &["top-k", "top-p"],
        "dequant" => &["int8", "int4", "fp8"],
        // Per block type: `block_cases_cover_every_type_shape_and_row_count`.
        "dequant_blocks" => &[
            "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
        ],
        "gemv_blocks" => &[
            "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
        ],
        _ => &["(a kernel the catalogue does not know)"],
    }
}

/// The precisions a kernel runs at: the tensor-core attention is a stub at FP32 (never launched).
fn precisions_of(kernel: &str) -> Vec<Precision> {
    if kernel == "attn_prefill_tc" {
        vec![Precision::Fp16, Precision::Bf16]
    } else {
        PRECISIONS.to_vec()
    }
}

#[test]
fn the_catalogue_covers_every_kernel_switch_and_variant() {
    let models = models();
    let cases = catalogue(&models);
    // Per (kernel, precision): every token its cases carry (model switches, runtime tags).
    let mut seen: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    for c in &cases {
        let m = &models[c.model];
        let tokens = seen
            .entry((c.op.kernel(), c.precision.as_str()))
            .or_default();
        tokens.extend(m.flags().split(',').map(str::to_string));
        tokens.extend(c.op.tags());
    }
    let mut missing = Vec::new();
    for (_, functions) in MODULES {
        for &f in functions {
            for p in precisions_of(f) {
                match seen.get(&(f, p.as_str())) {
                    None => missing.push(format!("{f} at {p}: no case")),
                    Some(tokens) => {
                        for want in required(f) {
                            if !tokens.contains(*want) {
                                missing.push(format!("{f} at {p}: no case with {want}"));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "uncovered:\n  {}", missing.join("\n  "));
    // Nothing in the catalogue launches a kernel the modules do not define.
    let all: BTreeSet<&str> = MODULES
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    for c in &cases {
        assert!(all.contains(c.op.kernel()), "{}: unknown kernel", c.name());
    }
    eprintln!("{} cases over {} kernels", cases.len(), all.len());
}

/// Every block type has, at every precision, dequantisation cases of one block, of rows of several
/// blocks and unaligned, and GEMV cases of every row count up to `GEMV_MAX_ROWS`, of one-block and
/// several-block rows, dense and strided inputs, and unaligned; and every case's shape is whole
/// blocks.
#[test]
fn block_cases_cover_every_type_shape_and_row_count() {
    let models = models();
    let cases = catalogue(&models);
    let mut missing = Vec::new();
    for p in PRECISIONS {
        for ty in BlockType::ALL {
            let tags = |kernel: &str| -> BTreeSet<String> {
                cases
                    .iter()
                    .filter(|c| c.precision == p && c.op.kernel() == kernel)
                    .filter(|c| c.op.tags().first().map(String::as_str) == Some(ty.name()))
                    .flat_map(|c| c.op.tags())
                    .collect()
            };
            let (dq, gv) = (tags("dequant_blocks"), tags("gemv_blocks"));
            let rows: Vec<String> = (1..=GEMV_MAX_ROWS).map(|m| format!("m{m}")).collect();
            for want in [
                "one-block",
                "several-blocks",
                "rows",
                "unaligned",
                "aligned",
            ] {
                if !dq.contains(want) {
                    missing.push(format!("dequant_blocks {} at {p}: {want}", ty.name()));
                }
            }
            let gemv_wants = [
                "one-block",
                "several-blocks",
                "dense",
                "strided",
                "unaligned",
                "aligned",
            ];
            for want in gemv_wants
                .iter()
                .copied()
                .chain(rows.iter().map(String::as_str))
            {
                if !gv.contains(want) {
                    missing.push(format!("gemv_blocks {} at {p}: {want}", ty.name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "uncovered:\n  {}", missing.join("\n  "));
    for c in &cases {
        match c.op {
            Op::DequantBlocks { ty, cols, .. } => {
                assert!(cols.is_multiple_of(ty.block_elems()), "{}", c.name())
            }
            Op::GemvBlocks { ty, m, k, ldx, .. } => {
                assert!(k.is_multiple_of(ty.block_elems()), "{}", c.name());
                assert!(m <= GEMV_MAX_ROWS && ldx >= k, "{}", c.name());
            }
            _ => {}
        }
    }
}

/// The test blocks: the fixture's first, then finite random scales (of both signs, zero and
/// subnormal ones among them), and their values finite.
#[test]
fn test_blocks_start_with_the_fixtures_and_have_finite_scales() {
    let mut r = Rng::new(3);
    for ty in BlockType::ALL {
        let fixture = fixture_blocks(ty);
        let bb = ty.block_bytes();
        assert_eq!(fixture.len(), 6 * bb, "{}", ty.name());
        let blocks = test_blocks(ty, 40, &mut r);
        assert_eq!(blocks.len(), 40 * bb);
        assert_eq!(&blocks[..fixture.len()], &fixture[..], "{}", ty.name());
        let d: Vec<f32> = blocks
            .chunks(bb)
            .map(|b| {
                let at = scale_offsets(ty)[0];
                half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
            })
            .collect();
        assert!(d.iter().all(|v| v.is_finite()), "{}", ty.name());
        assert!(d.contains(&0.0), "{}: a zero scale", ty.name());
        assert!(
            d.iter().any(|v| *v != 0.0 && v.abs() < 6.1e-5),
            "{}: a subnormal scale",
            ty.name()
        );
        assert!(d.iter().any(|v| *v < 0.0) && d.iter().any(|v| *v > 0.0));
        let values = runtime::weights::dequantize_blocks(ty, &blocks);
        assert!(values.iter().all(|v| v.is_finite()), "{}", ty.name());
    }
}

/// The compile-time switches of the templates (`{% if c.NAME ... %}`) and what covers each: a new
/// switch fails here until the catalogue covers it.
#[test]
fn every_template_switch_is_covered() {
    let known = [
        "rms",
        "rope",
        "gated",
        "gelu_gate",
        "qk_norm",
        "sandwich",
        "embed_scale",
        "tc_attn",
        "dtype",
    ];
    let dir = root().join("runtime/templates/kernels");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("templates") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("template");
        for tag in text.split("{%").skip(1) {
            let tag = tag.split("%}").next().unwrap_or("");
            let t = tag.trim_start();
            if !(t.starts_with("if") || t.starts_with("elif")) {
                continue;
            }
            for part in tag.split("c.").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
    }
    let unknown: Vec<&String> = found
        .iter()
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "template switches the op catalogue does not cover: {unknown:?}"
    );
    let models = models();
    let has = |f: &dyn Fn(&Model) -> bool| models.iter().any(f);
    assert!(has(&|m| m.layer.rms) && has(&|m| !m.layer.rms), "rms");
    assert!(has(&|m| m.layer.rope) && has(&|m| !m.layer.rope), "rope");
    assert!(has(&|m| m.layer.gated) && has(&|m| !m.layer.gated), "gated");
    assert!(
        has(&|m| m.layer.gated && m.layer.gelu_gate)
            && has(&|m| m.layer.gated && !m.layer.gelu_gate),
        "gelu_gate"
    );
    assert!(
        has(&|m| m.layer.qk_norm) && has(&|m| !m.layer.qk_norm),
        "qk_norm"
    );
    assert!(
        has(&|m| m.layer.sandwich) && has(&|m| !m.layer.sandwich),
        "sandwich"
    );
    assert!(
        has(&|m| m.layer.embed_scale.is_some()) && has(&|m| m.layer.embed_scale.is_none()),
        "embed_scale"
    );
    // An embedding scale the storage types round (not a power of two), and windowed cases on a
    // model without q/k norms (whose decode QKV kernel writes the ring).
    assert!(
        has(&|m| m.layer.embed_scale.is_some_and(|s| s.log2().fract() != 0.0)),
        "embed_scale that rounds"
    );
    assert!(
        has(&|m| !m.windows().is_empty() && !m.layer.qk_norm),
        "windowed dec_qkv"
    );
    for p in [Precision::Fp16, Precision::Bf16] {
        assert!(has(&|m| tc_attention(m, p)), "tc_attn at {p}");
    }
    // The decode GEMVs' depth (a template constant): 8 vectors per lane on the tiny models, 16 on
    // `wide` (unless a tuning run overrides it).
    if std::env::var_os("LLMFORGE_DECODE_VPS").is_none() {
        let vps = |m: &Model| {
            KernelConsts::new(
                &m.spec,
                Precision::Fp16,
                QuantFormat::None,
                m.spec.max_position_embeddings,
            )
            .expect("consts")
            .decode_vps
        };
        assert!(
            has(&|m| vps(m) == 8) && has(&|m| vps(m) == 16),
            "decode_vps"
        );
    }
}

/// Cases whose reference is cheap enough for this build (all in release).
fn runs_here(c: &Case) -> bool {
    !cfg!(debug_assertions) || !c.model_name().starts_with("wide")
}

fn close(what: &str, got: &[f32], want: &[f32], bound: f32) {
    let (abs, rel) = errors(got, want);
    assert!(
        rel <= bound,
        "{what}: {rel:.2e} (abs {abs:.2e}) > {bound:.1e}"
    );
}

#[test]
fn every_reference_runs_and_agrees_with_an_independent_computation() {
    let models = models();
    let mut ran = 0;
    for c in catalogue(&models).iter().filter(|c| runs_here(c)) {
        let m = &models[c.model];
        let prepared = prepare(m, c);
        let name = c.name();
        for e in &prepared.expect {
            assert!(
                e.want.iter().all(|v| v.is_finite()),
                "{name}: reference {} not finite",
                e.name
            );
        }
        independent(m, c, &prepared, &name);
        ran += 1;
    }
    eprintln!("{ran} references checked");
}

fn want<'a>(p: &'a Prepared, name: &str) -> &'a [f32] {
    &p.expect
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no expected {name}"))
        .want
}

/// The checks of one case's reference against another way of computing it.
fn independent(m: &Model, c: &Case, pr: &Prepared, name: &str) {
    let (h, d, vocab) = (m.h(), m.spec.head_dim, m.spec.vocab_size);
    match (&c.op, &pr.data) {
        (Op::Embed { .. }, Data::Embed { ids, table, .. }) => {
            // The scaled embedding within two roundings (the factor's and the product's, each half
            // an ulp of the storage type, or of f32 at FP32) of the exact product.
            let Some(scale) = m.spec.embed_scale else {
                return;
            };
            let u = store_unit(c.precision).max(f32::EPSILON / 2.0) as f64;
            for (i, got) in want(pr, "x").iter().enumerate() {
                let exact = table[ids[i / h] as usize * h + i % h] as f64 * scale;
                let err = (*got as f64 - exact).abs();
                assert!(
                    err <= (2.0 * u + u * u) * exact.abs() + 1e-30,
                    "{name}: element {i}: {got} against {exact}"
                );
            }
        }
        (Op::PostNorm { .. }, Data::PostNorm { x, w }) => {
            // The f64 reference against the CPU engine's f32 RMSNorm.
            let mut out = vec![0.0; x.len()];
            cpu::norm(NormKind::RmsNorm, m.layer.eps, x, h, w, None, &mut out);
            close(name, &out, want(pr, "x"), 1e-5);
        }
        (Op::AddPostNorm { .. }, Data::AddPostNorm { x, delta, w }) => {
            let mut out = vec![0.0; x.len()];
            cpu::norm(NormKind::RmsNorm, m.layer.eps, delta, h, w, None, &mut out);
            for (o, xv) in out.iter_mut().zip(x) {
                *o += xv;
            }
            close(name, &out, want(pr, "x"), 1e-5);
        }
        (
            Op::KvRingStore {
                batch,
                seq_len,
                start,
                window,
            },
            Data::Ring { nk, nv, cache },
        ) => {
            // Each slot holds the last position of the step that maps to it, or what it held.
            let kvh = m.spec.num_kv_heads;
            for (got, new, old) in [
                (want(pr, "cache_k"), nk, &cache.0),
                (want(pr, "cache_v"), nv, &cache.1),
            ] {
                for bh in 0..batch * kvh {
                    for slot in 0..*window {
                        let last = (0..*seq_len).rev().find(|s| (start + s) % window == slot);
                        let at = (bh * window + slot) * d;
                        let expected = match last {
                            Some(s) => &new[(bh * seq_len + s) * d..(bh * seq_len + s + 1) * d],
                            None => &old[at..at + d],
                        };
                        assert_eq!(&got[at..at + d], expected, "{name}: slot {slot}");
                    }
                }
            }
        }
        (Op::AddNorm { .. }, Data::AddNorm { w, b, .. }) => {
            // The f64 reference against the CPU engine's f32 norm of the same residual.
            let x1 = want(pr, "x");
            let mut out = vec![0.0; x1.len()];
            cpu::norm(m.norm_kind(), m.layer.eps, x1, h, w, b.as_deref(), &mut out);
            close(name, &out, want(pr, "out"), 1e-5);
        }
        (Op::HeadNorm { .. }, Data::HeadNorm { qkv, wq, wk }) => {
            // The CPU kernel's in-place f32 head norm against the f64 norm of each head.
            let got = want(pr, "qkv");
            let nh = m.spec.num_heads + m.spec.num_kv_heads;
            for (r, row) in qkv.chunks(m.qkv_dim()).enumerate() {
                for hh in 0..nh {
                    let w = if hh < m.spec.num_heads { wq } else { wk };
                    let head = &row[hh * d..(hh + 1) * d];
                    let f64_ref = cpu::reference::norm(
                        runtime::spec::NormKind::RmsNorm,
                        m.layer.eps as f64,
                        head,
                        w,
                        None,
                    );
                    let at = r * m.qkv_dim() + hh * d;
                    close(name, &got[at..at + d], &f64_ref, 1e-5);
                }
                let v0 = r * m.qkv_dim() + m.qd() + m.kvd();
                assert_eq!(
                    &got[v0..v0 + m.kvd()],
                    &row[m.qd() + m.kvd()..],
                    "{name}: v"
                );
            }
        }
        (Op::QkvRope { .. }, Data::QkvRope { qkv, bias, pos, .. }) => {
            // The CPU rotary against rotate_half built literally, per head, in f64.
            let Some(inv) = runtime::rope::inv_freq(&m.spec.positions, d) else {
                return;
            };
            let q = want(pr, "q");
            for (r, row) in qkv.chunks(m.qkv_dim()).enumerate() {
                for hh in 0..m.spec.num_heads {
                    let mut head = row[hh * d..(hh + 1) * d].to_vec();
                    if let Some(b) = bias {
                        for (i, v) in head.iter_mut().enumerate() {
                            *v += b[hh * d + i];
                        }
                    }
                    let lit = cpu::reference::rope_head(&head, &inv, pos[r]);
                    let at = r * m.qd() + hh * d;
                    close(name, &q[at..at + d], &lit, 1e-5);
                }
            }
        }
        (
            Op::AttnPrefill {
                batch,
                seq_len,
                start,
                mode,
                window,
                ..
            },
            Data::Attn { q, nk, nv, cache },
        ) => attn_fast(
            m,
            pr,
            name,
            (q, nk, nv, cache),
            (*batch, *seq_len, *start),
            *mode,
            *window,
        ),
        (
            Op::AttnDecode {
                batch,
                start,
                mode,
                window,
            },
            Data::Attn { q, nk, nv, cache },
        ) => attn_fast(
            m,
            pr,
            name,
            (q, nk, nv, cache),
            (*batch, 1, *start),
            *mode,
            *window,
        ),
        (Op::Glu { .. }, Data::Act { x, bias }) => {
            let inter = m.inter();
            let mut gu = x.clone();
            if let Some(b) = bias {
                for row in gu.chunks_mut(2 * inter) {
                    for (v, bv) in row.iter_mut().zip(b) {
                        *v += bv;
                    }
                }
            }
            let mut out = vec![0.0; x.len() / 2];
            if m.layer.gelu_gate {
                cpu::geglu(&gu, inter, &mut out);
            } else {
                cpu::swiglu(&gu, inter, &mut out);
            }
            close(name, &out, want(pr, "out"), 1e-5);
        }
        (Op::GeluBias { .. }, Data::Act { x, bias }) => {
            let inter = m.inter();
            let mut y: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| v + bias.as_ref().map_or(0.0, |b| b[i % inter]))
                .collect();
            cpu::gelu_new(&mut y);
            close(name, &y, want(pr, "out"), 1e-5);
        }
        (Op::Gemv { k, n, seq, .. }, Data::Gemv { w, x, y0, bias }) => {
            // f64 sums against plain f32 ones.
            let mut y = Vec::new();
            for (mi, g) in x.chunks(seq * k).enumerate() {
                let xr = &g[(seq - 1) * k..];
                for j in 0..*n {
                    let s: f32 = xr
                        .iter()
                        .zip(&w[j * k..(j + 1) * k])
                        .map(|(a, b)| a * b)
                        .sum();
                    y.push(y0[mi * n + j] + s + bias.as_ref().map_or(0.0, |b| b[j]));
                }
            }
            close(name, &y, want(pr, "y"), 1e-5);
        }
        (Op::DequantBlocks { ty, .. }, Data::Blocks { w, .. }) => {
            // The GGUF loader's values (the reference) against the CPU engine's register kernels,
            // rounded to the storage type alike: the same bits.
            let mut fast = vec![0.0; w.len() / ty.block_bytes() * ty.block_elems()];
            block_dot::dequantize(*ty, w, &mut fast);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let fast: Vec<f32> = fast.iter().map(|&v| round(c.precision, v)).collect();
            assert_eq!(bits(&fast), bits(want(pr, "out")), "{name}");
        }
        (
            Op::GemvBlocks {
                ty,
                m: mm,
                n,
                k,
                ldx,
                ..
            },
            Data::Blocks { w, x },
        ) => {
            // The f64 reference against the CPU engine's block dot products (f32, its own order).
            let mut y = vec![0.0; mm * n];
            for (r, out) in y.chunks_mut(*n).enumerate() {
                let xr = &x[r * ldx..r * ldx + k];
                block_dot::rows_dot(*ty, w, xr, out, &mut Vec::new());
            }
            close(name, &y, want(pr, "y"), RED);
        }
        (Op::LogitSoftcap { .. }, Data::Logits { logits, .. }) => {
            // f32 arithmetic, in the other grouping: cap * tanh(l / cap).
            let got: Vec<f32> = logits
                .iter()
                .map(|&l| LOGIT_CAP * (l / LOGIT_CAP).tanh())
                .collect();
            close(name, &got, want(pr, "logits"), 4.0 * f32::EPSILON);
        }
        (Op::Argmax { .. }, Data::Logits { logits, .. }) => {
            for (row, id) in logits.chunks(vocab).zip(want(pr, "best")) {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let first = row.iter().position(|&v| v == max).unwrap();
                assert_eq!(*id as usize, first, "{name}");
            }
        }
        (Op::SampleTopK { k, temperature, .. }, Data::Logits { logits, draws }) => {
            assert_eq!(
                draws.len(),
                logits.len() / vocab,
                "{name}: one draw per row"
            );
            for (row, id) in logits.chunks(vocab).zip(want(pr, "best")) {
                let v = row[*id as usize] / temperature;
                let above = row.iter().filter(|&&x| x / temperature > v).count();
                assert!(above < *k, "{name}: sampled id {id} is not in the top {k}");
            }
        }
        _ => {}
    }
}

/// The f64 attention reference against the CPU engine's attention (f32, its own loop order), over
/// a ring of `window` slots with the window masked where `window` > 0.
#[allow(clippy::type_complexity)]
fn attn_fast(
    m: &Model,
    pr: &Prepared,
    name: &str,
    (q, nk, nv, cache): (&[f32], &[f32], &[f32], &Option<(Vec<f32>, Vec<f32>)>),
    (batch, seq_len, start): (usize, usize, usize),
    mode: CacheMode,
    window: usize,
) {
    let qkv = join_qkv(m, q, nk, nv, batch, seq_len);
    let mut c = cache.clone();
    let kv = c.as_mut().map(|(k, v)| attention::KvView {
        key: k,
        value: v,
        max_seq: slots_of(window),
    });
    let st = attention::Step {
        batch,
        seq_len,
        start,
    };
    let mut out = vec![0.0; batch * seq_len * m.qd()];
    attention::attention(&qkv, m.geometry_in(window), st, kv, mode, &mut out);
    close(name, &out, want(pr, "out"), 1e-5);
}

/// The wide specs' kernels compile for every precision (the fixtures' are compiled by
/// `cuda_kernels.rs`). Needs NVRTC (`source .ci/nvrtc-setup.sh`), so `#[ignore]`d like those tests.
#[test]
#[ignore = "needs NVRTC (source .ci/nvrtc-setup.sh; run with --include-ignored)"]
fn the_wide_specs_compile_at_every_precision() {
    if let Err(e) = runtime::backend::cuda::device::check_nvrtc() {
        panic!("{e} (source .ci/nvrtc-setup.sh)");
    }
    for name in ["wide", "wide-gemma"] {
        let spec = spec(name);
        for p in PRECISIONS {
            let compiled = kernels::compile_all(
                &spec,
                p,
                QuantFormat::None,
                spec.max_position_embeddings,
                90,
            )
            .unwrap_or_else(|e| panic!("{name} {p}: {e}"));
            for (module, functions) in MODULES {
                let ptx = compiled.module(module).expect("module");
                for f in functions {
                    assert!(ptx.contains(&format!(".entry {f}(")), "{name} {p}: {f}");
                }
            }
        }
    }
}
