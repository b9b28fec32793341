//! The GEMM against a plain f64 reference, on shapes that are not multiples of the tiles.
//!
//! Error bound (relative, stated): for every output, `|got - exact| <= γ(k + 1) · Σ_k |x·w|` with
//! `γ(k) = k·u / (1 - k·u)`, `u = 2⁻²⁴` (the classical bound of an f32 dot product in any summation
//! order, one extra `u` covering the f64 reference's own rounding). `exact` sums the exact products
//! of the stored (already rounded) weights in f64.

use super::*;
use crate::backend::cpu::matrix::{self, Matrix};
use crate::backend::cpu::simd;
use crate::backend::cpu::test_data::lcg;
use half::{bf16, f16};

type MakeStore = fn(Vec<f32>) -> Store;

fn stores() -> [(&'static str, MakeStore); 3] {
    [
        ("f32", Store::F32),
        ("f16", |v| {
            Store::F16(v.into_iter().map(f16::from_f32).collect())
        }),
        ("bf16", |v| {
            Store::Bf16(v.into_iter().map(bf16::from_f32).collect())
        }),
    ]
}

fn gamma(k: usize) -> f64 {
    let u = f64::powi(2.0, -24);
    k as f64 * u / (1.0 - k as f64 * u)
}

/// Whether `kernel` adds its products with FMA (every SIMD kernel does).
fn fused_of(kernel: Kernel) -> bool {
    match kernel {
        Kernel::Portable { fused } => fused,
        #[allow(unreachable_patterns)]
        _ => true,
    }
}

/// The SIMD kernels compiled for this architecture, each with the CPU features it needs.
fn compiled_simd_kernels() -> Vec<(Kernel, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    return vec![
        (Kernel::Avx512, "AVX-512F, AVX2 and FMA"),
        (Kernel::Avx2, "AVX2 and FMA"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// The lines naming each compiled SIMD kernel that is missing from `available`, and so untested.
fn untested_notes(available: &[Kernel]) -> Vec<String> {
    compiled_simd_kernels()
        .into_iter()
        .filter(|(kernel, _)| !available.contains(kernel))
        .map(|(kernel, needs)| {
            format!(
                "NOT TESTED: the {kernel:?} GEMM kernel (it needs {needs}, which this CPU does \
                 not all have): the backend::cpu::gemm tests ran the other kernels only"
            )
        })
        .collect()
}

/// Writes [`untested_notes`] for this CPU to stderr once per test binary. Written to the stream
/// itself: the harness captures `eprintln!` (shown only for a failing test), not direct writes, so
/// the lines appear in the output of a passing run; each starts a line of its own, also when the
/// harness has begun a `test name ... ` line (.ci/run lists them in its summary).
fn report_untested_kernels() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        for line in untested_notes(&Kernel::available()) {
            let _ = write!(err, "\n{line}\n");
        }
    });
}

/// Every kernel this CPU has, and the portable one with the numerics this CPU does not use.
fn kernels() -> Vec<Kernel> {
    report_untested_kernels();
    let mut all = Kernel::available();
    all.push(Kernel::Portable {
        fused: !simd::fused(),
    });
    all
}

/// Runs one shape with every kernel of [`kernels`] and checks the bound, and that every value is
/// bit-identical to the portable dot product of its row with the kernel's numerics, and with this
/// CPU's numerics to the decode dot product.
fn check(n: usize, rows: usize, k: usize, name: &str, make: MakeStore, seed: u64) {
    let mut s = seed;
    let w: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s)).collect();
    // Token rows of different scales, so the relative bound is exercised away from 1.
    let x: Vec<f32> = (0..n * k)
        .map(|i| lcg(&mut s) * (1.0 + (i / k.max(1)) as f32 * 0.37))
        .collect();
    let m = Matrix {
        rows,
        cols: k,
        store: make(w),
    };
    let mut row = vec![0.0f32; k];
    for kernel in kernels() {
        let mut got = vec![f32::NAN; n * rows];
        gemm_with(kernel, &m, &x, n, &mut got);
        for j in 0..rows {
            m.row_into(j, &mut row);
            for i in 0..n {
                let xi = &x[i * k..(i + 1) * k];
                let exact: f64 = row.iter().zip(xi).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = row
                    .iter()
                    .zip(xi)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let g = got[i * rows + j];
                let err = (g as f64 - exact).abs();
                assert!(
                    err <= gamma(k + 1) * mag,
                    "{name} {kernel:?} n={n} rows={rows} k={k} [{i},{j}]: {g} vs {exact} (err {err}, bound {})",
                    gamma(k + 1) * mag
                );
                let dot = if fused_of(kernel) {
                    simd::dot_body::<f32, true>(&row, xi)
                } else {
                    simd::dot_body::<f32, false>(&row, xi)
                };
                assert_eq!(
                    g.to_bits(),
                    dot.to_bits(),
                    "{name} {kernel:?} n={n} rows={rows} k={k} [{i},{j}]: GEMM {g} vs dot {dot}"
                );
                if fused_of(kernel) == simd::fused() {
                    let decode = m.row_dot(j, xi);
                    assert_eq!(
                        g.to_bits(),
                        decode.to_bits(),
                        "{name} {kernel:?} n={n} rows={rows} k={k} [{i},{j}]: GEMM {g} vs decode {decode}"
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_matches_f64_reference_on_odd_shapes_every_storage() {
    // (tokens n, weight rows, k): m = 1, k = 1, k around the 16-lane width, n and rows not multiples of
    // MR / NR, n across two MC groups, rows across several parallel blocks.
    let shapes = [
        (1, 1, 1),
        (1, 7, 33),
        (2, 3, 16),
        (3, 4, 1),
        (5, 5, 15),
        (7, 11, 17),
        (9, 13, 100),
        (4, 64, 64),
        (MC + 3, 29, 47),
        (2 * MC + 1, 10, 200),
        (33, 131, 517),
    ];
    for (si, &(n, rows, k)) in shapes.iter().enumerate() {
        for (name, make) in stores() {
            check(n, rows, k, name, make, 11 + si as u64);
        }
    }
}

#[test]
fn weight_blocks_larger_than_the_cache_cap_split_correctly() {
    // k so large that a block holds only a few rows (BLOCK_BYTES / 4k), and rows not a multiple of it
    // (16-bit blocks have the smaller cap, so they split at least as finely).
    let k = BLOCK_BYTES / 4 / 5 + 9;
    assert!(block_rows(17, k, BLOCK_BYTES) < 17);
    assert!(block_rows(17, k, WIDENED_BLOCK_BYTES) < 17);
    check(3, 17, k, "f32", Store::F32, 5);
    check(2, 8, k, "bf16", stores()[2].1, 6);
}

#[test]
fn every_kernel_is_bit_identical_to_the_portable_one() {
    let mut s = 9u64;
    for k in [0, 1, 15, 16, 17, 31, 48, 577] {
        let (n, rows) = (7, 13);
        let w: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s)).collect();
        let x: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let m = Matrix {
            rows,
            cols: k,
            store: Store::F32(w),
        };
        let mut want = vec![0.0; n * rows];
        let portable = Kernel::Portable {
            fused: simd::fused(),
        };
        gemm_with(portable, &m, &x, n, &mut want);
        report_untested_kernels();
        for kernel in Kernel::available() {
            let mut got = vec![f32::NAN; n * rows];
            gemm_with(kernel, &m, &x, n, &mut got);
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "k={k}: {kernel:?} {a} vs portable {b}"
                );
            }
        }
    }
}

#[test]
fn f16_widening_is_exact() {
    let v: Vec<f16> = (0..37u16)
        .map(|i| f16::from_bits(i.wrapping_mul(1777)))
        .collect();
    let mut out = vec![0.0f32; v.len()];
    matrix::f16_to_f32(&v, &mut out);
    for (o, h) in out.iter().zip(&v) {
        assert!(o.to_bits() == h.to_f32().to_bits() || (o.is_nan() && h.is_nan()));
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn kernels_this_cpu_lacks_are_named_as_untested() {
    let portable = Kernel::Portable { fused: true };
    let notes = untested_notes(&[Kernel::Avx2, portable]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("NOT TESTED: the Avx512 GEMM kernel") && notes[0].contains("AVX-512F"),
        "{notes:?}"
    );
    let notes = untested_notes(&[portable]);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[1].contains("Avx2") && notes[1].contains("AVX2 and FMA"));
    assert!(untested_notes(&[Kernel::Avx512, Kernel::Avx2, portable]).is_empty());
}
