//! Typed access to the fields of one `config.json` object, every failure naming model, field and value.

use super::ConfigError;
use serde_json::{Map, Value};

/// The top-level object of a `config.json`, with the model name used in error messages.
pub(crate) struct Fields<'a> {
    pub model: &'a str,
    obj: &'a Map<String, Value>,
    /// Prefix for nested objects (`rope_scaling.`), empty at the top level.
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(model: &'a str, obj: &'a Map<String, Value>) -> Self {
        Fields {
            model,
            obj,
            prefix: String::new(),
        }
    }

    /// The full dotted name of `field` for messages.
    pub fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// Whether the config has the key `field` at all (`null` included).
    pub fn has_key(&self, field: &str) -> bool {
        self.obj.contains_key(field)
    }

    /// The raw value of `field`, `None` when absent or `null`.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// A nested object (`None` when absent or null).
    pub fn object(&self, field: &str) -> Result<Option<Fields<'a>>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Fields {
                model: self.model,
                obj,
                prefix: format!("{}{field}.", self.prefix),
            })),
            Some(other) => Err(self.invalid(field, other, "expected an object")),
        }
    }

    pub fn invalid(&self, field: &str, value: &Value, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            model: self.model.to_string(),
            field: self.path(field),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn unsupported(&self, field: &str, value: &Value, reason: &str) -> ConfigError {
        ConfigError::Unsupported {
            model: self.model.to_string(),
            field: self.path(field),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    fn missing(&self, field: &str) -> ConfigError {
        ConfigError::Missing {
            model: self.model.to_string(),
            field: self.path(field),
        }
    }

    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(field, v, "expected a non-negative integer")),
        }
    }

    pub fn usize(&self, field: &str) -> Result<usize, ConfigError> {
        self.opt_usize(field)?.ok_or_else(|| self.missing(field))
    }

    /// A required integer that must be at least 1.
    pub fn positive(&self, field: &str) -> Result<usize, ConfigError> {
        let n = self.usize(field)?;
        self.check_positive(field, n)
    }

    pub fn check_positive(&self, field: &str, n: usize) -> Result<usize, ConfigError> {
        if n == 0 {
            return Err(self.invalid(field, &Value::from(0), "must be at least 1"));
        }
        Ok(n)
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(self.invalid(field, v, "expected a finite number")),
            },
        }
    }

    pub fn f64(&self, field: &str) -> Result<f64, ConfigError> {
        self.opt_f64(field)?.ok_or_else(|| self.missing(field))
    }

    /// A required number that must be strictly positive.
    pub fn positive_f64(&self, field: &str) -> Result<f64, ConfigError> {
        let x = self.f64(field)?;
        self.check_positive_f64(field, x)
    }

    pub fn check_positive_f64(&self, field: &str, x: f64) -> Result<f64, ConfigError> {
        if x <= 0.0 {
            return Err(self.invalid(field, &Value::from(x), "must be greater than 0"));
        }
        Ok(x)
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.invalid(field, v, "expected true or false")),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.invalid(field, v, "expected a string")),
        }
    }

    pub fn opt_token(&self, field: &str) -> Result<Option<u32>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => token(v)
                .map(Some)
                .ok_or_else(|| self.invalid(field, v, "expected a token id")),
        }
    }

    /// A token id or a list of token ids (`eos_token_id`); absent or null is an empty list.
    pub fn token_list(&self, field: &str) -> Result<Vec<u32>, ConfigError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| token(v).ok_or_else(|| self.invalid(field, v, "expected token ids")))
                .collect(),
            Some(v) => token(v)
                .map(|t| vec![t])
                .ok_or_else(|| self.invalid(field, v, "expected a token id or a list of them")),
        }
    }
}

fn token(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}
