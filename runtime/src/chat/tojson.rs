//! The `tojson` filter as transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`
//! — `", "` and `": "` between items and keys without an indent, `","` and `": "` with one, no HTML
//! escaping (minijinja's built-in `tojson` escapes `<`, `>`, `&` and `'`, and writes compact JSON).

use minijinja::value::Kwargs;
use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};
use serde_json::Value as Json;

pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ));
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let fmt = Format {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    fmt.write(value, 0, &mut out)?;
    Ok(out)
}

struct Format {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl Format {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    }

    /// Writes `v` the way Python's `json.dumps` writes the equivalent Python value. Maps keep their
    /// insertion order (minijinja's `preserve_order`), as Python dicts do.
    fn write(&self, v: &Value, level: usize, out: &mut String) -> Result<(), Error> {
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => match v.as_i64() {
                Some(i) if v.is_integer() => out.push_str(&i.to_string()),
                _ => match f64::try_from(v.clone()) {
                    Ok(f) => out.push_str(&python_float(f)),
                    Err(_) => out.push_str(&v.to_string()),
                },
            },
            // serde_json escapes exactly what Python's json does with ensure_ascii=False.
            ValueKind::String => out.push_str(&Json::String(v.to_string()).to_string()),
            ValueKind::Map => {
                let mut entries = Vec::new();
                for k in v.try_iter()? {
                    let item = v.get_item(&k)?;
                    entries.push((k.to_string(), item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.seq(
                    ('{', '}'),
                    entries.iter().map(|(k, x)| (Some(k), x)),
                    level,
                    out,
                )?;
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.seq(('[', ']'), items.iter().map(|x| (None, x)), level, out)?;
            }
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: cannot serialise a value of kind {other}"),
                ));
            }
        }
        Ok(())
    }

    fn seq<'a>(
        &self,
        (open, close): (char, char),
        items: impl ExactSizeIterator<Item = (Option<&'a String>, &'a Value)>,
        level: usize,
        out: &mut String,
    ) -> Result<(), Error> {
        out.push(open);
        if items.len() == 0 {
            out.push(close);
            return Ok(());
        }
        for (i, (key, item)) in items.enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            self.newline(level + 1, out);
            if let Some(k) = key {
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(&self.key_sep);
            }
            self.write(item, level + 1, out)?;
        }
        self.newline(level, out);
        out.push(close);
        Ok(())
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on integral values, exponent form
/// (`1e-05`, `1e+16`) outside `1e-4 <= |x| < 1e16`, `NaN` / `Infinity` as `json.dumps` writes them.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = x.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{x}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{x:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::python_float;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(1.5e16), "1.5e+16");
        assert_eq!(python_float(-2.5), "-2.5");
    }
}
