//! Rotary position tables, computed exactly as transformers does (f32 throughout): the default
//! `inv_freq = 1 / theta^(2i/d)`, its linear interpolation (`inv_freq / factor`), the llama3
//! frequency-dependent rescaling of it, and YaRN's blend of interpolated and extrapolated
//! frequencies with its attention factor on cos and sin.

use crate::plan::Rotary;
use crate::spec::{Llama3Scaling, Positions, YarnScaling};

/// HF's `inv_freq` for `head_dim` (length `head_dim / 2`) of the spec's positions (the rotary of
/// its layers that do not slide), or `None` for learned positions.
pub fn inv_freq(positions: &Positions, head_dim: usize) -> Option<Vec<f32>> {
    let Positions::Rope {
        theta,
        llama3,
        linear,
        yarn,
    } = *positions
    else {
        return None;
    };
    let rotary = Rotary {
        theta,
        llama3,
        linear,
        yarn,
    };
    Some(rotary_inv_freq(&rotary, head_dim))
}

/// HF's `inv_freq` of one rotary embedding over `head_dim`.
pub fn rotary_inv_freq(rotary: &Rotary, head_dim: usize) -> Vec<f32> {
    let base = rotary.theta as f32;
    let dim = head_dim as f32;
    if let Some(y) = &rotary.yarn {
        return yarn_inv_freq(y, base, head_dim);
    }
    let plain = (0..head_dim / 2).map(|i| 1.0f32 / base.powf((2 * i) as f32 / dim));
    match (&rotary.llama3, rotary.linear) {
        (Some(s), _) => plain.map(|f| llama3_scale(f, s)).collect(),
        (None, Some(factor)) => plain.map(|f| f / factor as f32).collect(),
        (None, None) => plain.collect(),
    }
}

/// The factor on cos and sin of one rotary embedding: YaRN's attention factor, else 1.
pub fn attention_scale(rotary: &Rotary) -> f32 {
    rotary.yarn.map_or(1.0, |y| y.attention_factor as f32)
}

/// transformers' `_compute_yarn_parameters`: the correction range in f64 (`math`), the ramp and the
/// blend in f32 (torch).
fn yarn_inv_freq(y: &YarnScaling, base: f32, head_dim: usize) -> Vec<f32> {
    let dim = head_dim as f64;
    let correction = |rotations: f64| {
        let max = y.original_max_position_embeddings as f64;
        dim * (max / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * (base as f64).ln())
    };
    let (mut low, mut high) = (correction(y.beta_fast), correction(y.beta_slow));
    if y.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, high) = (low.max(0.0), high.min(dim - 1.0));
    let (low, high) = (
        low as f32,
        if low == high { high + 0.001 } else { high } as f32,
    );
    let factor = y.factor as f32;
    (0..head_dim / 2)
        .map(|i| {
            let pos_freq = base.powf((2 * i) as f32 / head_dim as f32);
            let extrapolation = 1.0 / pos_freq;
            let interpolation = 1.0 / (factor * pos_freq);
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect()
}

/// transformers' `_compute_llama3_parameters` applied to one frequency.
fn llama3_scale(inv_freq: f32, s: &Llama3Scaling) -> f32 {
    let old_context = s.original_max_position_embeddings as f32;
    let factor = s.factor as f32;
    let low = s.low_freq_factor as f32;
    let high = s.high_freq_factor as f32;
    let low_freq_wavelen = old_context / low;
    let high_freq_wavelen = old_context / high;
    let wavelen = (2.0 * std::f64::consts::PI) as f32 / inv_freq;
    let scaled = if wavelen > low_freq_wavelen {
        inv_freq / factor
    } else {
        inv_freq
    };
    // HF: `~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)` (wavelen is never NaN).
    let is_medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
    if is_medium {
        let smooth = (old_context / wavelen - low) / (high - low);
        (1.0 - smooth) * scaled / factor + smooth * scaled
    } else {
        scaled
    }
}

/// `cos` and `sin` tables `[positions, head_dim / 2]` for positions `0..positions`
/// (HF: `freqs = pos * inv_freq` in f32, then cos/sin of that f32 angle).
pub fn tables(inv_freq: &[f32], positions: usize) -> (Vec<f32>, Vec<f32>) {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    fill(inv_freq, positions, &mut cos, &mut sin);
    (cos, sin)
}

/// [`tables`] for a `positions` that comes from the user: a size that overflows or cannot be allocated
/// is an error naming it, not a panic or an abort.
pub fn try_tables(inv_freq: &[f32], positions: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    try_scaled_tables(inv_freq, 1.0, positions)
}

/// The tables of one rotary embedding of the plan: [`try_tables`] of its frequencies, times its
/// [`attention_scale`] (transformers: `cos() * attention_scaling` in f32).
pub fn rotary_tables(
    rotary: &Rotary,
    head_dim: usize,
    positions: usize,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    try_scaled_tables(
        &rotary_inv_freq(rotary, head_dim),
        attention_scale(rotary),
        positions,
    )
}

fn try_scaled_tables(
    inv_freq: &[f32],
    scale: f32,
    positions: usize,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let n = positions.checked_mul(inv_freq.len());
    let fail = || {
        format!(
            "rotary tables for {positions} positions of {} frequencies do not fit in memory",
            inv_freq.len()
        )
    };
    let n = n.ok_or_else(fail)?;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    cos.try_reserve_exact(n).map_err(|_| fail())?;
    sin.try_reserve_exact(n).map_err(|_| fail())?;
    fill(inv_freq, positions, &mut cos, &mut sin);
    if scale != 1.0 {
        cos.iter_mut()
            .chain(sin.iter_mut())
            .for_each(|v| *v *= scale);
    }
    Ok((cos, sin))
}

fn fill(inv_freq: &[f32], positions: usize, cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    for p in 0..positions {
        for &f in inv_freq {
            let angle = (p as f32 * f) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by transformers 5.17 `_compute_llama3_parameters` for head_dim 16, theta 1e4,
    /// factor 8, low 1, high 4, original 32 (the tiny-llama fixture's config).
    #[test]
    fn llama3_matches_transformers() {
        let p = Positions::Rope {
            theta: 10000.0,
            llama3: Some(Llama3Scaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 32,
            }),
            linear: None,
            yarn: None,
        };
        let got = inv_freq(&p, 16).unwrap_or_default();
        let hf: [f32; 8] = HF_LLAMA3_INV_FREQ;
        assert_eq!(got.len(), 8);
        for (g, h) in got.iter().zip(hf) {
            assert!(
                (g - h).abs() <= 1e-7 * h.abs().max(1e-30),
                "{got:?} vs {hf:?}"
            );
        }
    }

    /// YaRN against transformers 5.17's `_compute_yarn_parameters` (every 8th frequency of a head of
    /// 128, as f32 bits, and the attention factor): Qwen2.5's published long-context setting (theta
    /// 1e6, factor 4 over 32768 original positions; defaults for the rest), and one with `mscale`,
    /// `mscale_all_dim`, `beta_fast` 16 and no truncation.
    #[test]
    fn yarn_matches_transformers() {
        let yarn = |factor, original, attention_factor, beta_fast, truncate| YarnScaling {
            factor,
            original_max_position_embeddings: original,
            attention_factor,
            beta_fast,
            beta_slow: 1.0,
            truncate,
        };
        let cases = [
            (
                1e6,
                yarn(4.0, 32768, 0.1 * 4f64.ln() + 1.0, 32.0, true),
                [
                    1065353216u32,
                    1043732615,
                    1023510243,
                    1001399159,
                    975048370,
                    943355731,
                    923050674,
                    901558465,
                ],
                1.138629436111989f32,
            ),
            (
                1e4,
                yarn(
                    8.0,
                    4096,
                    (0.1 * 8f64.ln() + 1.0) / (0.05 * 8f64.ln() + 1.0),
                    16.0,
                    false,
                ),
                [
                    1065353216, 1050798235, 1036831949, 1023510243, 1005245507, 982675643,
                    956502639, 942000992,
                ],
                1.094179988101349,
            ),
        ];
        for (theta, y, hf, attention) in cases {
            let rotary = Rotary {
                theta,
                llama3: None,
                linear: None,
                yarn: Some(y),
            };
            let got = rotary_inv_freq(&rotary, 128);
            assert_eq!(got.len(), 64);
            for (g, h) in got.iter().step_by(8).zip(hf) {
                let h = f32::from_bits(h);
                assert!(
                    (g - h).abs() <= 2.0 * f32::EPSILON * h,
                    "{g:e} vs {h:e} ({y:?})"
                );
            }
            assert!((attention_scale(&rotary) - attention).abs() <= f32::EPSILON);
            // The tables carry the attention factor.
            let (c, s) = rotary_tables(&rotary, 128, 3).expect("tables");
            assert_eq!(c[0], attention_scale(&rotary));
            let angle = (2.0 * got[1]) as f64;
            assert_eq!(
                s[64 + 64 + 1],
                (angle.sin() as f32) * attention_scale(&rotary)
            );
        }
    }

    // Printed by transformers 5.17 `_compute_llama3_parameters` for the config above.
    #[allow(clippy::excessive_precision)]
    const HF_LLAMA3_INV_FREQ: [f32; 8] = [
        1.000000000e+00,
        9.583997726e-02,
        1.250000019e-02,
        3.952847328e-03,
        1.249999972e-03,
        3.952847328e-04,
        1.250000059e-04,
        3.952847328e-05,
    ];
}
