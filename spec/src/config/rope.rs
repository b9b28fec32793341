//! Rotary embedding parameters in either layout: transformers 4 (`rope_theta` + `rope_scaling`) or
//! transformers 5 (`rope_parameters` holding `rope_theta`, `rope_type` and the scaling fields).

use super::ConfigError;
use super::fields::Fields;
use crate::spec::{Llama3Scaling, Positions};
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
        let (llama3, linear) = scaling(&params)?;
        return Ok(Positions::Rope {
            theta,
            llama3,
            linear,
        });
    }
    // transformers 4: `rope_theta` at the top, optional `rope_scaling` object.
    let theta = top_level_theta(f)?;
    let (llama3, linear) = match f.object("rope_scaling")? {
        Some(s) => scaling(&s)?,
        None => (None, None),
    };
    Ok(Positions::Rope {
        theta,
        llama3,
        linear,
    })
}

/// The rotary embedding of one kind of layer from a transformers-5 `rope_parameters` entry (Gemma 3
/// keys them by layer type), its `rope_theta` defaulting to `default_theta`.
pub(super) fn parse_entry(p: &Fields<'_>, default_theta: f64) -> Result<Positions, ConfigError> {
    let theta = match p.opt_f64("rope_theta")? {
        Some(t) => p.check_positive_f64("rope_theta", t)?,
        None => default_theta,
    };
    let (llama3, linear) = scaling(p)?;
    Ok(Positions::Rope {
        theta,
        llama3,
        linear,
    })
}

fn top_level_theta(f: &Fields<'_>) -> Result<f64, ConfigError> {
    match f.opt_f64("rope_theta")? {
        Some(t) => f.check_positive_f64("rope_theta", t),
        None => Ok(DEFAULT_THETA),
    }
}

/// The scaling described by a `rope_scaling` / `rope_parameters` object: `default` (none), `linear`
/// (the factor) or `llama3`.
pub(super) fn scaling(s: &Fields<'_>) -> Result<(Option<Llama3Scaling>, Option<f64>), ConfigError> {
    // transformers 4.3x wrote `type`, later versions `rope_type`.
    let (field, kind) = match s.opt_str("rope_type")? {
        Some(k) => ("rope_type", k),
        None => match s.opt_str("type")? {
            Some(k) => ("type", k),
            None => ("rope_type", "default"),
        },
    };
    match kind {
        "default" => Ok((None, None)),
        "linear" => Ok((None, Some(s.positive_f64("factor")?))),
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
            Ok((Some(scaling), None))
        }
        other => Err(s.unsupported(
            field,
            &Value::from(other),
            "only `default`, `linear` and `llama3` rotary embeddings are implemented",
        )),
    }
}
