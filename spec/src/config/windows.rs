//! Sliding-window layers from a config: HF's `layer_types` list (`full_attention` /
//! `sliding_attention`, one per layer) with `sliding_window`, or a family's own rule turned into the
//! same per-layer list. A window is positive and at least one layer uses it, else there is none.

use super::ConfigError;
use super::fields::Fields;
use serde_json::Value;

/// `(window, sliding layers)` as a spec holds them.
pub(super) type Sliding = (Option<usize>, Vec<bool>);

/// Every layer slides over `window` keys.
pub(super) fn every_layer(
    f: &Fields<'_>,
    window: usize,
    num_layers: usize,
) -> Result<Sliding, ConfigError> {
    checked(f, window, vec![true; num_layers])
}

/// A positive `window` over the layers marked in `layers`; no window when no layer is marked.
pub(super) fn checked(
    f: &Fields<'_>,
    window: usize,
    layers: Vec<bool>,
) -> Result<Sliding, ConfigError> {
    if !layers.contains(&true) {
        return Ok((None, Vec::new()));
    }
    if window == 0 {
        return Err(f.invalid(
            "sliding_window",
            &Value::from(window),
            "a sliding window must hold at least one key",
        ));
    }
    Ok((Some(window), layers))
}

/// The layers `layer_types` marks `sliding_attention`, over `sliding_window`; no window when the key
/// is absent or every layer is `full_attention`.
pub(super) fn from_layer_types(f: &Fields<'_>, num_layers: usize) -> Result<Sliding, ConfigError> {
    from_layer_types_or(f, num_layers, None)
}

/// [`from_layer_types`], with `default` as the window when the config has no `sliding_window` key.
pub(super) fn from_layer_types_or(
    f: &Fields<'_>,
    num_layers: usize,
    default: Option<usize>,
) -> Result<Sliding, ConfigError> {
    let types = match f.get("layer_types") {
        None | Some(Value::Null) => return Ok((None, Vec::new())),
        Some(Value::Array(types)) => types,
        Some(other) => {
            return Err(f.invalid("layer_types", other, "expected a list of layer types"));
        }
    };
    if types.len() != num_layers {
        return Err(f.invalid(
            "layer_types",
            &Value::from(types.len()),
            &format!("lists {} layers, the model has {num_layers}", types.len()),
        ));
    }
    let mut layers = Vec::with_capacity(num_layers);
    for (i, t) in types.iter().enumerate() {
        layers.push(match t.as_str() {
            Some("full_attention") => false,
            Some("sliding_attention") => true,
            _ => {
                return Err(f.unsupported(
                    &format!("layer_types[{i}]"),
                    t,
                    "only `full_attention` and `sliding_attention` layers are implemented",
                ));
            }
        });
    }
    if !layers.contains(&true) {
        return Ok((None, Vec::new()));
    }
    let window = match f.has_key("sliding_window") {
        true => f.opt_usize("sliding_window")?,
        false => default,
    };
    match window {
        Some(w) => checked(f, w, layers),
        None => Err(f.invalid(
            "sliding_window",
            f.get("sliding_window").unwrap_or(&Value::Null),
            "`layer_types` has sliding layers but no window is given",
        )),
    }
}
