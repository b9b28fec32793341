//! Every CUDA kernel against the CPU reference, op by op (the GPU half of the catalogue in
//! `op_cases/mod.rs`; `cuda_ops_catalogue.rs` is the half that runs without a GPU). Each case's
//! seeded inputs are uploaded, its kernel launched through its typed launcher with the grid the engine
//! gives it (`forward.rs`, `layers.rs`, `decode.rs`, `sampling.rs`), and every output read back and
//! compared with the reference under the case's bound; one line per output is printed (kernel, model,
//! switches, precision, variant, max abs and relative error, bound), and the test fails naming every
//! case out of bound. Windowed cases pass the window and a ring cache of that many slots, as the
//! engine does for a sliding-window layer. Beyond the references: the embedding clears exactly `nbest` argmax slots; the
//! decode attention leaves its split counters at zero, so a second launch on the same buffers gives the
//! same output; the fused decode GEMVs give bit-identical results on the engine's grid and on one
//! block (every warp then walks many units); the fused argmax is the first index of the largest of the
//! GPU's own logits; the block kernels give bit-identical results on the engine's grid and on one
//! block, and write nothing outside their output.
//!
//! Needs a CUDA GPU, so `#[ignore]`d like `cuda_parity.rs`; `bench/gpu_ops.sh` runs it with
//! `--include-ignored`, and then a machine without CUDA fails it.
#![cfg(feature = "cuda")]

mod op_cases;

use op_cases::*;
use runtime::backend::CacheMode;
use runtime::backend::cuda::device;
use runtime::backend::cuda::forward::norm_block;
use runtime::backend::cuda::kernels::{self, DECODE_CHUNK, decode_vps};
use runtime::backend::cuda::launch::{Function, Grid, Kernel};
use runtime::backend::cuda::launchers::{
    Activation, AddNorm, AddPostNorm, Argmax, AttnDecode, AttnPrefill, DecDown, DecLm, DecO,
    DecQkv, DecUp, Dequant, DequantBlocks, Embed, Gemv, GemvBlocks, HeadNorm, KvRingStore,
    LogitSoftcap, PostNorm, QkvRope, SampleTopK,
};
use runtime::backend::cuda::memory::{ArgmaxKey, DevBuf};
use runtime::backend::cuda::op_check::OpGpu;
use runtime::backend::cuda::scratch::{argmax_id, decode_splits};
use runtime::format::WeightFormat;

type Outputs = Vec<(&'static str, Vec<f32>)>;
type R<T> = runtime::Result<T>;

fn require_cuda() {
    if let Err(e) = device::check_libraries() {
        panic!("{e}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU (run with --include-ignored)"]
fn every_kernel_matches_the_cpu_reference() {
    require_cuda();
    let models = models();
    let cases = catalogue(&models);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (mi, m) in models.iter().enumerate() {
        for p in PRECISIONS {
            let mine: Vec<&Case> = cases
                .iter()
                .filter(|c| c.model == mi && c.precision == p)
                .collect();
            let g = match OpGpu::open(&m.spec, p) {
                Ok(g) => g,
                Err(e) => {
                    for c in &mine {
                        failures.push(format!("{}: kernels did not load: {e}", c.name()));
                    }
                    continue;
                }
            };
            for c in mine {
                if matches!(c.op, Op::AttnPrefill { tc: true, .. }) && g.gpu.sm < 80 {
                    eprintln!(
                        "{}: skipped (tensor cores need sm_80, this is sm_{})",
                        c.name(),
                        g.gpu.sm
                    );
                    continue;
                }
                let prepared = prepare(m, c);
                match run(&g, m, c, &prepared) {
                    Ok(out) => {
                        checked += 1;
                        compare(m, c, &prepared, &out, &mut failures);
                    }
                    Err(e) => failures.push(format!("{}: {e}", c.name())),
                }
            }
        }
    }
    eprintln!("{checked} cases run, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{} op case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Compare every expected output of a case with what the GPU gave, one printed line each.
fn compare(m: &Model, c: &Case, pr: &Prepared, out: &Outputs, failures: &mut Vec<String>) {
    let get = |name: &str| out.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
    let vocab = m.spec.vocab_size;
    for e in &pr.expect {
        let head = format!(
            "{:<15} {:<15} {:<44} {} {:?} {}",
            c.op.kernel(),
            c.model_name(),
            m.flags(),
            c.precision,
            c.op,
            e.name
        );
        let Some(got) = get(e.name) else {
            failures.push(format!("{head}: no output"));
            continue;
        };
        match e.bound {
            Bound::Rel(b) => {
                let (abs, rel) = errors(got, &e.want);
                let ok = rel <= b;
                eprintln!(
                    "{head}: max abs {abs:.2e} rel {rel:.2e} (bound {b:.1e}) {}",
                    if ok { "ok" } else { "FAIL" }
                );
                if !ok {
                    failures.push(format!("{head}: relative error {rel:.2e} > {b:.1e}"));
                }
            }
            Bound::Bits => {
                let bad = got
                    .iter()
                    .zip(&e.want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                let first = got
                    .iter()
                    .zip(&e.want)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                let ok = bad == 0 && got.len() == e.want.len();
                eprintln!(
                    "{head}: {bad} of {} elements differ in their bits {}",
                    e.want.len(),
                    if ok { "ok" } else { "FAIL" }
                );
                if let Some(i) = first {
                    failures.push(format!(
                        "{head}: {bad} elements differ, the first {i}: {:e} against {:e}",
                        got[i], e.want[i]
                    ));
                } else if !ok {
                    failures.push(format!(
                        "{head}: {} elements, expected {}",
                        got.len(),
                        e.want.len()
                    ));
                }
            }
            Bound::Ids => {
                // The fused lm_head argmax must pick the first largest of the GPU's own logits; the
                // reference's choice is printed (a near-tie of the reference may differ).
                let want: Vec<f32> = match (c.op, get("logits")) {
                    (Op::DecLm { .. }, Some(l)) => l
                        .chunks(vocab)
                        .map(|r| runtime::sample::argmax(r) as f32)
                        .collect(),
                    _ => e.want.clone(),
                };
                let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                let vs_ref = got.iter().zip(&e.want).filter(|(a, b)| a != b).count();
                eprintln!(
                    "{head}: ids {got:?}, expected {want:?} ({vs_ref} differ from the reference's) {}",
                    if bad == 0 { "ok" } else { "FAIL" }
                );
                if bad > 0 || got.len() != want.len() {
                    failures.push(format!("{head}: ids {got:?}, expected {want:?}"));
                }
            }
        }
    }
}

fn cache_mode(mode: CacheMode) -> i32 {
    match mode {
        CacheMode::StaticV1 => 0,
        CacheMode::StaticV2 => 1,
        CacheMode::None => 2,
    }
}

fn ids_of(g: &OpGpu, best: &DevBuf<ArgmaxKey>) -> R<Vec<f32>> {
    let mut keys = vec![0u64; best.len()];
    g.gpu.read(best, &mut keys, "argmax keys")?;
    Ok(keys.into_iter().map(|k| argmax_id(k) as f32).collect())
}

fn err(msg: String) -> runtime::Error {
    runtime::Error::invalid(msg)
}

/// A kernel of a weight-format module (`OpGpu` compiles every module).
fn opt<K>(f: &Option<Function<K>>) -> R<&Function<K>> {
    f.as_ref()
        .ok_or_else(|| err("a weight-format kernel was not compiled".into()))
}

/// `a` and `b` (one output on two grids) equal bit for bit.
fn same_bits(a: &[f32], b: &[f32], name: &str) -> R<()> {
    match a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(err(format!(
            "{name} on one block differs from the engine's grid first at element {i}: {:e} against {:e}",
            b[i], a[i]
        ))),
    }
}

/// Upload a case's inputs, launch its kernel as the engine does, read its outputs back.
fn run(g: &OpGpu, m: &Model, c: &Case, pr: &Prepared) -> R<Outputs> {
    let (gpu, k, p) = (&g.gpu, &g.kernels, g.precision);
    let st = g.stream();
    let s = &m.spec;
    let (h, qd, kvd, d) = (m.h(), m.qd(), m.kvd(), s.head_dim);
    let heads = s.num_heads;
    let max_seq = MAX_SEQ as i32;
    let rope = match &m.rope {
        Some((cs, sn)) => Some((g.f32s(cs, "rope cos")?, g.f32s(sn, "rope sin")?)),
        None => None,
    };
    let cos_t = rope.as_ref().map(|r| r.0.view());
    let sin_t = rope.as_ref().map(|r| r.1.view());
    let opt_f32 = |v: &Option<Vec<f32>>, what: &str| -> R<Option<DevBuf<f32>>> {
        v.as_ref().map(|v| g.f32s(v, what)).transpose()
    };
    let step_buf =
        |start: usize, end: usize| gpu.upload::<i32>(&[start as i32, end as i32], "step");
    match (c.op, &pr.data) {
        (
            Op::Embed { rows },
            Data::Embed {
                ids,
                pos,
                table,
                pos_table,
                best,
                nbest,
            },
        ) => {
            let ids_b = gpu.upload::<u32>(ids, "ids")?;
            let pos_b = gpu.upload::<u32>(pos, "positions")?;
            let table_b = g.stored(table, "embedding")?;
            let pt = pos_table
                .as_ref()
                .map(|t| g.stored(t, "position embedding"))
                .transpose()?;
            let x = gpu.zeros::<f32>(&[rows, h], "x")?;
            let best_b = gpu.upload::<ArgmaxKey>(best, "best")?;
            Embed {
                ids: ids_b.view(),
                pos: pos_b.view(),
                table: table_b.view(),
                pos_table: pt.as_ref().map(|t| t.view()),
                x: x.view_mut(),
                best: best_b.view_mut(),
                nbest: *nbest as i32,
                trace: None,
                slot: 0,
            }
            .launch(&st, &k.embed, Grid::new((rows as u32, 1, 1), 256))?;
            let mut keys = vec![0u64; best.len()];
            gpu.read(&best_b, &mut keys, "best")?;
            let want: Vec<u64> = (0..best.len())
                .map(|i| if i < *nbest { 0 } else { best[i] })
                .collect();
            if keys != want {
                return Err(err(format!("argmax slots {keys:x?}, expected {want:x?}")));
            }
            Ok(vec![("x", g.read_f32(&x, "x")?)])
        }
        (
            Op::AddNorm { rows, .. },
            Data::AddNorm {
                x,
                delta,
                bias,
                w,
                b,
            },
        ) => {
            let x_b = g.f32s(x, "x")?;
            let delta_b = opt_f32(delta, "delta")?;
            let bias_b = opt_f32(bias, "bias")?;
            let w_b = g.f32s(w, "norm weight")?;
            let b_b = opt_f32(b, "norm bias")?;
            let out = gpu.zeros_stored(p, &[rows, h], "out")?;
            AddNorm {
                x: x_b.view_mut(),
                delta: delta_b.as_ref().map(|v| v.view()),
                bias: bias_b.as_ref().map(|v| v.view()),
                w: w_b.view(),
                b: b_b.as_ref().map(|v| v.view()),
                out: out.view_mut(),
            }
            .launch(
                &st,
                &k.add_norm,
                Grid::new((rows as u32, 1, 1), norm_block(h)),
            )?;
            Ok(vec![
                ("x", g.read_f32(&x_b, "x")?),
                ("out", g.read_stored(&out, "out")?),
            ])
        }
        (Op::PostNorm { rows }, Data::PostNorm { x, w }) => {
            let x_b = g.f32s(x, "x")?;
            let w_b = g.f32s(w, "post norm weight")?;
            PostNorm {
                x: x_b.view_mut(),
                w: w_b.view(),
            }
            .launch(
                &st,
                &k.post_norm,
                Grid::new((rows as u32, 1, 1), norm_block(h)),
            )?;
            Ok(vec![("x", g.read_f32(&x_b, "x")?)])
        }
        (Op::AddPostNorm { rows }, Data::AddPostNorm { x, delta, w }) => {
            let x_b = g.f32s(x, "x")?;
            let delta_b = g.f32s(delta, "delta")?;
            let w_b = g.f32s(w, "post norm weight")?;
            AddPostNorm {
                x: x_b.view_mut(),
                delta: delta_b.view(),
                w: w_b.view(),
            }
            .launch(
                &st,
                &k.add_post_norm,
                Grid::new((rows as u32, 1, 1), norm_block(h)),
            )?;
            Ok(vec![("x", g.read_f32(&x_b, "x")?)])
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
            let nk_b = g.stored(nk, "new k")?;
            let nv_b = g.stored(nv, "new v")?;
            let ck = g.stored(&cache.0, "ring k")?;
            let cv = g.stored(&cache.1, "ring v")?;
            let step = step_buf(start, start + seq_len)?;
            let grid = ((batch * seq_len) as u32, kvd.div_ceil(256) as u32, 1);
            KvRingStore {
                new_k: nk_b.view(),
                new_v: nv_b.view(),
                step: step.view(),
                cache_k: ck.view_mut(),
                cache_v: cv.view_mut(),
                seq_len: seq_len as i32,
                window: window as i32,
            }
            .launch(&st, &k.kv_ring_store, Grid::new(grid, 256))?;
            Ok(vec![
                ("cache_k", g.read_stored(&ck, "ring k")?),
                ("cache_v", g.read_stored(&cv, "ring v")?),
            ])
        }
        (Op::HeadNorm { rows }, Data::HeadNorm { qkv, wq, wk }) => {
            let qkv_b = g.f32s(qkv, "qkv")?;
            let wq_b = g.f32s(wq, "q norm")?;
            let wk_b = g.f32s(wk, "k norm")?;
            let nh = (s.num_heads + s.num_kv_heads) as u32;
            HeadNorm {
                qkv: qkv_b.view_mut(),
                wq: wq_b.view(),
                wk: wk_b.view(),
            }
            .launch(&st, &k.head_norm, Grid::new((rows as u32, nh, 1), 32))?;
            Ok(vec![("qkv", g.read_f32(&qkv_b, "qkv")?)])
        }
        (
            Op::QkvRope {
                batch,
                seq_len,
                start,
                window,
                ..
            },
            Data::QkvRope {
                qkv,
                bias,
                pos,
                cache,
            },
        ) => {
            let rows = batch * seq_len;
            let qkv_b = g.f32s(qkv, "qkv")?;
            let bias_b = opt_f32(bias, "qkv bias")?;
            let pos_b = gpu.upload::<u32>(pos, "positions")?;
            let step = step_buf(start, start + seq_len)?;
            let q = gpu.zeros::<f32>(&[rows, qd], "q")?;
            let nk = gpu.zeros_stored(p, &[rows, kvd], "new k")?;
            let nv = gpu.zeros_stored(p, &[rows, kvd], "new v")?;
            let cache_b = match cache {
                Some((ck, cv)) => Some((g.stored(ck, "cache k")?, g.stored(cv, "cache v")?)),
                None => None,
            };
            let items = (s.num_heads + s.num_kv_heads) * d / 2 + kvd;
            QkvRope {
                qkv: qkv_b.view(),
                bias: bias_b.as_ref().map(|v| v.view()),
                pos: pos_b.view(),
                step: step.view(),
                cos_t,
                sin_t,
                q: q.view_mut(),
                new_k: nk.view_mut(),
                new_v: nv.view_mut(),
                cache_k: cache_b.as_ref().map(|c| c.0.view_mut()),
                cache_v: cache_b.as_ref().map(|c| c.1.view_mut()),
                seq_len: seq_len as i32,
                max_seq,
                write_cache: cache_b.is_some() as i32,
                window: window as i32,
            }
            .launch(
                &st,
                &k.qkv_rope,
                Grid::new((rows as u32, items.div_ceil(256) as u32, 1), 256),
            )?;
            let mut out = vec![
                ("q", g.read_f32(&q, "q")?),
                ("new_k", g.read_stored(&nk, "new k")?),
                ("new_v", g.read_stored(&nv, "new v")?),
            ];
            if let Some((ck, cv)) = &cache_b {
                out.push(("cache_k", g.read_stored(ck, "cache k")?));
                out.push(("cache_v", g.read_stored(cv, "cache v")?));
            }
            Ok(out)
        }
        (
            Op::AttnPrefill {
                tc,
                batch,
                seq_len,
                start,
                mode,
                window,
            },
            Data::Attn { q, nk, nv, cache },
        ) => {
            let rows = batch * seq_len;
            let q_b = g.f32s(q, "q")?;
            let nk_b = g.stored(nk, "new k")?;
            let nv_b = g.stored(nv, "new v")?;
            let cache_b = match cache {
                Some((ck, cv)) => Some((g.stored(ck, "cache k")?, g.stored(cv, "cache v")?)),
                None => None,
            };
            let step = step_buf(start, start + seq_len)?;
            let out = gpu.zeros_stored(p, &[rows, qd], "attention out")?;
            let a = AttnPrefill {
                q: q_b.view(),
                ck: cache_b.as_ref().map(|c| c.0.view()),
                cv: cache_b.as_ref().map(|c| c.1.view()),
                nk: nk_b.view(),
                nv: nv_b.view(),
                step: step.view(),
                out: out.view_mut(),
                seq_len: seq_len as i32,
                max_seq,
                mode: cache_mode(mode),
                window: window as i32,
            };
            let (hb, bb) = (heads as u32, batch as u32);
            if tc {
                let grid = (seq_len.div_ceil(64) as u32, hb, bb);
                a.launch(&st, &k.attn_prefill_tc, Grid::new(grid, 128))?;
            } else {
                let grid = (seq_len.div_ceil(16) as u32, hb, bb);
                a.launch(&st, &k.attn_prefill, Grid::new(grid, 128))?;
            }
            Ok(vec![("out", g.read_stored(&out, "attention out")?)])
        }
        (
            Op::AttnDecode {
                batch,
                start,
                mode,
                window,
            },
            Data::Attn { q, nk, nv, cache },
        ) => {
            let Some((ck, cv)) = cache else {
                return Err(err("decode attention without a cache".into()));
            };
            let splits = decode_splits(MAX_SEQ);
            let q_b = g.f32s(q, "q")?;
            let nk_b = g.stored(nk, "new k")?;
            let nv_b = g.stored(nv, "new v")?;
            let ck_b = g.stored(ck, "cache k")?;
            let cv_b = g.stored(cv, "cache v")?;
            let step = step_buf(start, start + 1)?;
            let part_o = gpu.zeros::<f32>(&[batch, heads, splits, d], "attention splits")?;
            let part_ml = gpu.zeros::<f32>(&[batch, heads, splits, 2], "attention splits")?;
            let counters = gpu.zeros::<u32>(&[batch, heads], "split counters")?;
            let out = gpu.zeros_stored(p, &[batch, qd], "attention out")?;
            let grid = (splits as u32, heads as u32, batch as u32);
            let mut outs = Vec::new();
            for _ in 0..2 {
                AttnDecode {
                    q: q_b.view(),
                    ck: ck_b.view(),
                    cv: cv_b.view(),
                    nk: nk_b.view(),
                    nv: nv_b.view(),
                    step: step.view(),
                    part_o: part_o.view_mut(),
                    part_ml: part_ml.view_mut(),
                    counters: counters.view_mut(),
                    out: out.view_mut(),
                    max_seq,
                    mode: cache_mode(mode),
                    window: window as i32,
                    trace: None,
                    slot: 0,
                }
                .launch(
                    &st,
                    &k.attn_decode,
                    Grid::new(grid, DECODE_CHUNK as u32),
                )?;
                outs.push(g.read_stored(&out, "attention out")?);
                let mut cnt = vec![0u32; batch * heads];
                gpu.read(&counters, &mut cnt, "split counters")?;
                if cnt.iter().any(|&c| c != 0) {
                    return Err(err(format!("split counters left at {cnt:?}")));
                }
            }
            if outs[0] != outs[1] {
                return Err(err("a second launch on the same buffers differs".into()));
            }
            Ok(vec![("out", outs.pop().unwrap_or_default())])
        }
        (Op::Glu { rows, .. } | Op::GeluBias { rows, .. }, Data::Act { x, bias }) => {
            let inter = m.inter();
            let x_b = g.f32s(x, "mlp activations")?;
            let bias_b = opt_f32(bias, "mlp bias")?;
            let out = gpu.zeros_stored(p, &[rows, inter], "mid")?;
            let f = match c.op {
                Op::Glu { .. } => &k.glu,
                _ => &k.gelu_bias,
            };
            let n = rows * inter;
            Activation {
                x: x_b.view(),
                bias: bias_b.as_ref().map(|v| v.view()),
                out: out.view_mut(),
                rows: rows as i32,
            }
            .launch(
                &st,
                f,
                Grid::new((n.div_ceil(256).min(1 << 20) as u32, 1, 1), 256),
            )?;
            Ok(vec![("out", g.read_stored(&out, "mid")?)])
        }
        (
            Op::Gemv {
                m: mm,
                n,
                k: kk,
                seq,
                accumulate,
                ..
            },
            Data::Gemv { w, x, y0, bias },
        ) => {
            let w_b = g.stored(w, "w")?;
            let x_b = g.stored(x, "x")?;
            let y = g.f32s(y0, "y")?;
            let bias_b = opt_f32(bias, "bias")?;
            let smem = mm * kk * p.bytes_per_element();
            if smem > k.gemv_smem_limit {
                return Err(err(format!(
                    "{smem} bytes of shared memory > {}",
                    k.gemv_smem_limit
                )));
            }
            // As forward::gemv_grid: at most one resident wave of 8-output blocks.
            let per_sm = k
                .gemv
                .cuda()
                .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
                .map_or(4, |b| b.max(1) as usize);
            let blocks = n.div_ceil(8).min(gpu.sms * per_sm).max(1) as u32;
            Gemv {
                w: w_b.view(),
                x: x_b.view().skip((seq - 1) * kk),
                y: y.view_mut(),
                bias: bias_b.as_ref().map(|v| v.view()),
                accumulate: accumulate as i32,
                n: n as i32,
                k: kk as i32,
                m: mm as i32,
                ldx: (seq * kk) as i32,
                ldy: n as i32,
            }
            .launch(&st, &k.gemv, Grid::new((blocks, 1, 1), 256).smem(smem))?;
            Ok(vec![("y", g.read_f32(&y, "y")?)])
        }
        (
            Op::DecQkv { .. }
            | Op::DecO { .. }
            | Op::DecUp { .. }
            | Op::DecDown { .. }
            | Op::DecLm { .. },
            Data::Dec { .. },
        ) => {
            // The engine's grid, then one block (every warp walks many units): bit-identical.
            let wide = run_dec(g, m, c, pr, None)?;
            let narrow = run_dec(g, m, c, pr, Some(1))?;
            for ((name, a), (_, b)) in wide.iter().zip(&narrow) {
                if a != b {
                    return Err(err(format!(
                        "{name} on one block differs from the engine's grid"
                    )));
                }
            }
            Ok(wide)
        }
        (Op::Dequant { quant, rows, cols }, Data::Packed { bytes }) => {
            let w = gpu.upload_bytes::<u8>(bytes, "packed matrix")?;
            let out = gpu.zeros_stored(p, &[rows * cols], "dense matrix")?;
            let fmt = kernels::format_code(WeightFormat::Quantized(quant)).map_err(err)?;
            let vecs = rows * cols / kernels::codes_per_vector(quant);
            Dequant {
                w: w.view(),
                out: out.view_mut(),
                rows: rows as i32,
                cols: cols as i32,
                fmt: fmt as i32,
            }
            .launch(
                &st,
                opt(&k.dequant)?,
                Grid::new((vecs.div_ceil(256) as u32, 1, 1), 256),
            )?;
            Ok(vec![("out", g.read_stored(&out, "out")?)])
        }
        (
            Op::DequantBlocks {
                ty,
                rows,
                cols,
                offset,
            },
            Data::Blocks { w, .. },
        ) => {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(w);
            let w_b = gpu.upload::<u8>(&bytes, "blocks")?;
            let per_sm = k
                .dequant_blocks
                .as_ref()
                .ok_or_else(|| err("dequant_blocks not compiled".into()))?
                .cuda()
                .occupancy_max_active_blocks_per_multiprocessor(256, 0, None)
                .map_or(4, |b| b.max(1) as usize);
            let wide = DequantBlocks::grid(rows, cols, gpu.sms * per_sm);
            // The engine's grid, then one block (every thread strides over many units): the same bits,
            // and the `offset` elements before the output untouched.
            let mut outs = Vec::new();
            for grid in [wide, Grid::new((1, 1, 1), wide.threads)] {
                let out = gpu.zeros_stored(p, &[offset + rows * cols], "dense weights")?;
                DequantBlocks {
                    w: w_b.view().skip(offset),
                    out: out.view_mut().skip(offset),
                    rows: rows as i32,
                    cols: cols as i32,
                    ty: ty.ggml_id() as i32,
                }
                .launch(&st, opt(&k.dequant_blocks)?, grid)?;
                let all = g.read_stored(&out, "dense weights")?;
                if all[..offset].iter().any(|v| v.to_bits() != 0) {
                    return Err(err("written before the output".into()));
                }
                outs.push(all[offset..].to_vec());
            }
            same_bits(&outs[0], &outs[1], "out")?;
            Ok(vec![("out", outs.swap_remove(0))])
        }
        (
            Op::GemvBlocks {
                ty,
                m: mm,
                n,
                k: kk,
                ldx,
                offset,
            },
            Data::Blocks { w, x },
        ) => {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(w);
            let w_b = gpu.upload::<u8>(&bytes, "blocks")?;
            let x_b = g.stored(x, "x")?;
            let smem = GemvBlocks::smem(mm, kk, p.bytes_per_element());
            if smem > k.gemv_smem_limit {
                return Err(err(format!(
                    "{smem} bytes of shared memory > {}",
                    k.gemv_smem_limit
                )));
            }
            let per_sm = k
                .gemv_blocks
                .as_ref()
                .ok_or_else(|| err("gemv_blocks not compiled".into()))?
                .cuda()
                .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
                .map_or(4, |b| b.max(1) as usize);
            let wide = GemvBlocks::grid(n, smem, gpu.sms * per_sm);
            // The engine's grid, then one block (each warp walks many rows): the same bits, and every
            // output written (y starts as NaN).
            let mut outs = Vec::new();
            for grid in [wide, Grid::new((1, 1, 1), wide.threads).smem(smem)] {
                let y = g.f32s(&vec![f32::NAN; mm * n], "y")?;
                GemvBlocks {
                    w: w_b.view().skip(offset),
                    x: x_b.view(),
                    y: y.view_mut(),
                    n: n as i32,
                    k: kk as i32,
                    m: mm as i32,
                    ldx: ldx as i32,
                    ldy: n as i32,
                    ty: ty.ggml_id() as i32,
                }
                .launch(&st, opt(&k.gemv_blocks)?, grid)?;
                outs.push(g.read_f32(&y, "y")?);
            }
            same_bits(&outs[0], &outs[1], "y")?;
            Ok(vec![("y", outs.swap_remove(0))])
        }
        (Op::LogitSoftcap { .. }, Data::Logits { logits, .. }) => {
            let l = g.f32s(logits, "logits")?;
            let n = logits.len();
            LogitSoftcap {
                logits: l.view_mut(),
                n: n as i32,
                cap: LOGIT_CAP,
            }
            .launch(
                &st,
                &k.logit_softcap,
                Grid::new((n.div_ceil(256) as u32, 1, 1), 256),
            )?;
            Ok(vec![("logits", g.read_f32(&l, "logits")?)])
        }
        (Op::Argmax { rows }, Data::Logits { logits, .. }) => {
            let l = g.f32s(logits, "logits")?;
            let best = gpu.zeros::<ArgmaxKey>(&[rows], "best")?;
            Argmax {
                logits: l.view(),
                best_out: best.view_mut(),
            }
            .launch(&st, &k.argmax, Grid::new((rows as u32, 1, 1), 1024))?;
            Ok(vec![("best", ids_of(g, &best)?)])
        }
        (
            Op::SampleTopK {
                rows,
                temperature,
                k: top_k,
                top_p,
            },
            Data::Logits { logits, draws },
        ) => {
            let l = g.f32s(logits, "logits")?;
            let dr = gpu.upload::<f64>(draws, "draws")?;
            let best = gpu.zeros::<ArgmaxKey>(&[rows], "best")?;
            SampleTopK {
                logits: l.view(),
                draws: dr.view(),
                inv_t: 1.0 / temperature,
                k: top_k.max(1) as i32,
                top_p: top_p.unwrap_or(2.0),
                out: best.view_mut(),
            }
            .launch(&st, &k.sample, Grid::new((rows as u32, 1, 1), 1024))?;
            Ok(vec![("best", ids_of(g, &best)?)])
        }
        (op, _) => Err(err(format!("{op:?}: inputs of another op"))),
    }
}

/// Blocks of a fused decode GEMV launch of `f` (as `decode.rs`: the SMs times the kernel's occupancy,
/// at most two blocks per SM with 8 vectors per lane, one with 16), or `blocks`.
fn dec_blocks<K>(g: &OpGpu, m: &Model, f: &Function<K>, smem: usize, blocks: Option<usize>) -> u32 {
    let per_sm_max = if decode_vps(&m.spec) >= 16 { 1 } else { 2 };
    blocks.unwrap_or_else(|| {
        let per_sm = f
            .cuda()
            .occupancy_max_active_blocks_per_multiprocessor(256, smem, None)
            .map_or(1, |b| (b.max(1) as usize).min(per_sm_max));
        g.gpu.sms * per_sm
    }) as u32
}

/// Launch one fused decode GEMV as `decode.rs` does: 256 threads, `rows * k` staged inputs in shared
/// memory.
fn dec_launch<K: Kernel>(
    g: &OpGpu,
    m: &Model,
    f: &Function<K>,
    kernel: &K,
    k: usize,
    rows: usize,
    blocks: Option<usize>,
) -> R<()> {
    let smem = rows * k * g.precision.bytes_per_element();
    if smem > g.kernels.gemv_smem_limit {
        return Err(err(format!(
            "{smem} bytes of shared memory > {}",
            g.kernels.gemv_smem_limit
        )));
    }
    let grid = (dec_blocks(g, m, f, smem, blocks), 1, 1);
    g.stream()
        .launch(f, Grid::new(grid, 256).smem(smem), kernel)
}

/// One fused decode case on fresh buffers, on the engine's grid or on `blocks` blocks.
fn run_dec(g: &OpGpu, m: &Model, c: &Case, pr: &Prepared, blocks: Option<usize>) -> R<Outputs> {
    let Data::Dec {
        w,
        x,
        nw,
        nb,
        bias,
        pos,
        cache,
        x0,
    } = &pr.data
    else {
        return Err(err("not a decode case".into()));
    };
    let (gpu, p) = (&g.gpu, g.precision);
    let s = &m.spec;
    let (h, qd, kvd, inter, vocab) = (m.h(), m.qd(), m.kvd(), m.inter(), s.vocab_size);
    let opt = |v: &Option<Vec<f32>>, what: &str| -> R<Option<DevBuf<f32>>> {
        v.as_ref().map(|v| g.f32s(v, what)).transpose()
    };
    let w_b = g.stored(w, "w")?;
    let bias_b = opt(bias, "bias")?;
    let bias_v = bias_b.as_ref().map(|v| v.view());
    let variant = |n: bool| if n { &g.kernels.decn } else { &g.kernels.dec1 };
    match c.op {
        Op::DecQkv {
            rows, n, window, ..
        } => {
            let rope = match &m.rope {
                Some((cs, sn)) => Some((g.f32s(cs, "rope cos")?, g.f32s(sn, "rope sin")?)),
                None => None,
            };
            let x_b = g.f32s(x, "x")?;
            let nw_b = g.f32s(nw, "norm weight")?;
            let nb_b = opt(nb, "norm bias")?;
            let pos_b = gpu.upload::<u32>(pos, "positions")?;
            let step = gpu.upload::<i32>(&[DEC_START as i32, DEC_START as i32 + 1], "step")?;
            // With q/k norms the whole unrotated QKV row.
            let q_cols = if m.layer.qk_norm { m.qkv_dim() } else { qd };
            let q = gpu.zeros::<f32>(&[rows, q_cols], "q")?;
            let nk = gpu.zeros_stored(p, &[rows, kvd], "new k")?;
            let nv = gpu.zeros_stored(p, &[rows, kvd], "new v")?;
            let Some((ck, cv)) = cache else {
                return Err(err("decode QKV without a cache".into()));
            };
            let ck_b = g.stored(ck, "cache k")?;
            let cv_b = g.stored(cv, "cache v")?;
            let kernel = DecQkv {
                w: w_b.byte_slice(0, w_b.bytes()),
                x: x_b.view(),
                nw: nw_b.view(),
                nb: nb_b.as_ref().map(|v| v.view()),
                bias: bias_v,
                pos: pos_b.view(),
                step: step.view(),
                cos_t: rope.as_ref().map(|r| r.0.view()),
                sin_t: rope.as_ref().map(|r| r.1.view()),
                q: q.view_mut(),
                new_k: nk.view_mut(),
                new_v: nv.view_mut(),
                cache_k: ck_b.view_mut(),
                cache_v: cv_b.view_mut(),
                max_seq: MAX_SEQ as i32,
                window: window as i32,
                m: rows as i32,
                trace: None,
                slot: 0,
            };
            dec_launch(g, m, &variant(n).qkv, &kernel, h, rows, blocks)?;
            Ok(vec![
                ("q", g.read_f32(&q, "q")?),
                ("new_k", g.read_stored(&nk, "new k")?),
                ("new_v", g.read_stored(&nv, "new v")?),
                ("cache_k", g.read_stored(&ck_b, "cache k")?),
                ("cache_v", g.read_stored(&cv_b, "cache v")?),
            ])
        }
        Op::DecO { rows, n, .. } | Op::DecDown { rows, n, .. } => {
            let is_o = matches!(c.op, Op::DecO { .. });
            let kk = if is_o { qd } else { inter };
            let a = g.stored(x, "input rows")?;
            let res = g.f32s(x0, "x")?;
            if is_o {
                let kernel = DecO {
                    w: w_b.byte_slice(0, w_b.bytes()),
                    a: a.view(),
                    x: res.view_mut(),
                    bias: bias_v,
                    m: rows as i32,
                    trace: None,
                    slot: 0,
                };
                dec_launch(g, m, &variant(n).o, &kernel, kk, rows, blocks)?;
            } else {
                let kernel = DecDown {
                    w: w_b.byte_slice(0, w_b.bytes()),
                    mid: a.view(),
                    x: res.view_mut(),
                    bias: bias_v,
                    m: rows as i32,
                    trace: None,
                    slot: 0,
                };
                dec_launch(g, m, &variant(n).down, &kernel, kk, rows, blocks)?;
            }
            Ok(vec![("x", g.read_f32(&res, "x")?)])
        }
        Op::DecUp { rows, n, .. } => {
            let x_b = g.f32s(x, "x")?;
            let nw_b = g.f32s(nw, "norm weight")?;
            let nb_b = opt(nb, "norm bias")?;
            let mid = gpu.zeros_stored(p, &[rows, inter], "mid")?;
            let kernel = DecUp {
                w: w_b.byte_slice(0, w_b.bytes()),
                x: x_b.view(),
                nw: nw_b.view(),
                nb: nb_b.as_ref().map(|v| v.view()),
                bias: bias_v,
                mid: mid.view_mut(),
                m: rows as i32,
                trace: None,
                slot: 0,
            };
            dec_launch(g, m, &variant(n).up, &kernel, h, rows, blocks)?;
            Ok(vec![("mid", g.read_stored(&mid, "mid")?)])
        }
        Op::DecLm {
            rows,
            n,
            argmax,
            cap,
        } => {
            let x_b = g.f32s(x, "x")?;
            let nw_b = g.f32s(nw, "norm weight")?;
            let nb_b = opt(nb, "norm bias")?;
            let logits = gpu.zeros::<f32>(&[rows, vocab], "logits")?;
            // Zeroed, as the embedding leaves the slots before a decode step.
            let best = gpu.zeros::<ArgmaxKey>(&[rows], "best")?;
            let kernel = DecLm {
                w: w_b.view(),
                x: x_b.view(),
                nw: nw_b.view(),
                nb: nb_b.as_ref().map(|v| v.view()),
                logits: logits.view_mut(),
                best: argmax.then(|| best.view_mut()),
                n: vocab as i32,
                cap: if cap { LOGIT_CAP } else { 0.0 },
                m: rows as i32,
                trace: None,
                slot: 0,
            };
            dec_launch(g, m, &variant(n).lm, &kernel, h, rows, blocks)?;
            let mut out = vec![("logits", g.read_f32(&logits, "logits")?)];
            if argmax {
                out.push(("best", ids_of(g, &best)?));
            }
            Ok(out)
        }
        op => Err(err(format!("{op:?} is not a decode kernel"))),
    }
}
