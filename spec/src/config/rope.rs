//! Rotary embedding parameters in either layout: transformers 4 (`rope_theta` + `rope_scaling`) or
//! transformers 5 (`rope_parameters` holding `rope_theta`, `rope_type` and the scaling fields).

use super::ConfigError;
use super::fields::Fields;
use crate::spec::{Llama3Scaling, Positions, YarnScaling};
use serde_json::Value;

/// The default `rope_theta` of Llama and Qwen2 configs when none is written.
const DEFAULT_THETA: f64 = 10_000.0;

pub(super) fn parse(f: &Fields<'_>) -> Result<Positions, ConfigError> {
    if let Some(true) = f.opt_bool("rope_interleaved")? {
        return Err(f.unsupported(
            "rope_interleaved",
            &Value::Bool(true),
            "only the non-interleaved (rotate_half) rotary layout is implemented",
        ));
    }
    if let Some(p) = f.opt_f64("partial_rotary_factor")?
        && p != 1.0
    {
        return Err(f.unsupported(
            "partial_rotary_factor",
            &Value::from(p),
            "rotary embeddings must cover the whole head",
        ));
    }
    // transformers 5: everything inside `rope_parameters`.
    if let Some(params) = f.object("rope_parameters")? {
        let theta = match params.opt_f64("rope_theta")? {
            Some(t) => params.check_positive_f64("rope_theta", t)?,
            None => top_level_theta(f)?,
        };
        return scaling(&params, f)?.positions(theta);
    }
    // transformers 4: `rope_theta` at the top, optional `rope_scaling` object.
    let theta = top_level_theta(f)?;
    match f.object("rope_scaling")? {
        Some(s) => scaling(&s, f)?.positions(theta),
        None => Scaling::default().positions(theta),
    }
}

/// One rotary scaling of a config (at most one is set).
#[derive(Debug, Default)]
pub(super) struct Scaling {
    pub llama3: Option<Llama3Scaling>,
    pub linear: Option<f64>,
    pub yarn: Option<YarnScaling>,
}

impl Scaling {
    fn positions(self, theta: f64) -> Result<Positions, ConfigError> {
        Ok(Positions::Rope {
            theta,
            llama3: self.llama3,
            linear: self.linear,
            yarn: self.yarn,
        })
    }
}

/// The rotary embedding of one kind of layer from a transformers-5 `rope_parameters` entry `p` of the
/// config `top` (Gemma 3 keys them by layer type), its `rope_theta` defaulting to `default_theta`.
pub(super) fn parse_entry(
    p: &Fields<'_>,
    top: &Fields<'_>,
    default_theta: f64,
) -> Result<Positions, ConfigError> {
    let theta = match p.opt_f64("rope_theta")? {
        Some(t) => p.check_positive_f64("rope_theta", t)?,
        None => default_theta,
    };
    scaling(p, top)?.positions(theta)
}

fn top_level_theta(f: &Fields<'_>) -> Result<f64, ConfigError> {
    match f.opt_f64("rope_theta")? {
        Some(t) => f.check_positive_f64("rope_theta", t),
        None => Ok(DEFAULT_THETA),
    }
}

/// The scaling described by a `rope_scaling` / `rope_parameters` object `s` of the config `top`:
/// `default` (none), `linear` (the factor), `llama3` or `yarn`.
pub(super) fn scaling(s: &Fields<'_>, top: &Fields<'_>) -> Result<Scaling, ConfigError> {
    // transformers 4.3x wrote `type`, later versions `rope_type`.
    let (field, kind) = match s.opt_str("rope_type")? {
        Some(k) => ("rope_type", k),
        None => match s.opt_str("type")? {
            Some(k) => ("type", k),
            None => ("rope_type", "default"),
        },
    };
    match kind {
        "default" => Ok(Scaling::default()),
        "linear" => Ok(Scaling {
            linear: Some(s.positive_f64("factor")?),
            ..Scaling::default()
        }),
        "yarn" => Ok(Scaling {
            yarn: Some(yarn(s, top)?),
            ..Scaling::default()
        }),
        "llama3" => {
            let scaling = Llama3Scaling {
                factor: s.positive_f64("factor")?,
                low_freq_factor: s.positive_f64("low_freq_factor")?,
                high_freq_factor: s.positive_f64("high_freq_factor")?,
                original_max_position_embeddings: s.positive("original_max_position_embeddings")?,
            };
            // The smoothing between the two bands divides by their difference.
            if scaling.high_freq_factor <= scaling.low_freq_factor {
                return Err(s.invalid(
                    "high_freq_factor",
                    &Value::from(scaling.high_freq_factor),
                    "must be greater than `low_freq_factor`",
                ));
            }
            Ok(Scaling {
                llama3: Some(scaling),
                ..Scaling::default()
            })
        }
        other => Err(s.unsupported(
            field,
            &Value::from(other),
            "only `default`, `linear`, `llama3` and `yarn` rotary embeddings are implemented",
        )),
    }
}

/// YaRN's fields resolved as transformers' `_compute_yarn_parameters` and `standardize_rope_params`
/// resolve them: `original_max_position_embeddings` from the scaling object, else the config's top
/// level, else `max_position_embeddings`; a `factor` of null is `max_position_embeddings` over it;
/// `attention_factor` when absent from `mscale` and `mscale_all_dim` (when both are set and non-zero)
/// or from the factor (`0.1 ln(factor) + 1` above 1); `beta_fast` 32 and `beta_slow` 1 when absent
/// or zero; `truncate` true when absent.
fn yarn(s: &Fields<'_>, top: &Fields<'_>) -> Result<YarnScaling, ConfigError> {
    let original = match s.opt_usize("original_max_position_embeddings")? {
        Some(n) => s.check_positive("original_max_position_embeddings", n)?,
        None => match top.opt_usize("original_max_position_embeddings")? {
            Some(n) => top.check_positive("original_max_position_embeddings", n)?,
            None => top.positive("max_position_embeddings")?,
        },
    };
    let factor = match s.opt_f64("factor")? {
        Some(f) => s.check_positive_f64("factor", f)?,
        None if s.has_key("factor") => {
            top.positive("max_position_embeddings")? as f64 / original as f64
        }
        None => s.positive_f64("factor")?,
    };
    let mscale = |scale: f64, m: f64| match scale <= 1.0 {
        true => 1.0,
        false => 0.1 * m * scale.ln() + 1.0,
    };
    let attention_factor = match s.opt_f64("attention_factor")? {
        Some(a) => s.check_positive_f64("attention_factor", a)?,
        None => match (s.opt_f64("mscale")?, s.opt_f64("mscale_all_dim")?) {
            (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                mscale(factor, m) / mscale(factor, all)
            }
            _ => mscale(factor, 1.0),
        },
    };
    let nonzero = |v: Option<f64>, default: f64| v.filter(|&b| b != 0.0).unwrap_or(default);
    let beta_fast = nonzero(s.opt_f64("beta_fast")?, 32.0);
    let beta_slow = nonzero(s.opt_f64("beta_slow")?, 1.0);
    for (field, beta) in [("beta_fast", beta_fast), ("beta_slow", beta_slow)] {
        s.check_positive_f64(field, beta)?;
    }
    Ok(YarnScaling {
        factor,
        original_max_position_embeddings: original,
        attention_factor,
        beta_fast,
        beta_slow,
        truncate: s.opt_bool("truncate")?.unwrap_or(true),
    })
}
