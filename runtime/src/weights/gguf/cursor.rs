//! Bounds-checked little-endian reading of GGUF's primitive encodings: integers, strings (u64 length +
//! UTF-8 bytes), counts (checked against the bytes that remain before anything is allocated) and the
//! typed metadata values, arrays included.

use super::GgufValue;
use crate::weights::WeightsError;
use std::path::Path;

/// Arrays of arrays are legal GGUF; deeper nesting than this is refused (no model writes it).
const MAX_ARRAY_DEPTH: usize = 4;

pub fn bad(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::BadHeader {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

pub fn truncated(path: &Path, detail: impl Into<String>) -> WeightsError {
    WeightsError::Truncated {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
pub struct Cursor<'a> {
    pub path: &'a Path,
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], WeightsError> {
        if n > self.remaining() {
            return Err(truncated(
                self.path,
                format!(
                    "{} needs {n} bytes at offset {} but only {} remain",
                    what(),
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], WeightsError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit in memory: at least `min_each` bytes per item must remain.
    pub fn count(
        &mut self,
        min_each: usize,
        what: &dyn Fn() -> String,
    ) -> Result<usize, WeightsError> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_each))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(bad(
                self.path,
                format!(
                    "{} claims {n} items, which cannot fit in the {} bytes that remain",
                    what(),
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    pub fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, WeightsError> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|e| bad(self.path, format!("{} is not valid UTF-8: {e}", what())))
    }
}

/// Smallest encoded size of one value of GGUF type `ty` (for checking array counts).
fn min_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8,  // u64 length, possibly empty
        9 => 12, // u32 type + u64 count
        _ => return None,
    })
}

/// A FLOAT32 is widened through its shortest decimal form, so `1e-5` stored as f32 reads back as the
/// `1e-5` of the `config.json` it was converted from (and rounds to the same f32 again).
fn widen_f32(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

pub fn value(
    c: &mut Cursor<'_>,
    ty: u32,
    key: &str,
    depth: usize,
) -> Result<GgufValue, WeightsError> {
    let what = || format!("metadata value {key}");
    Ok(match ty {
        0 => GgufValue::U64(u8::from_le_bytes(c.array(&what)?) as u64),
        1 => GgufValue::I64(i8::from_le_bytes(c.array(&what)?) as i64),
        2 => GgufValue::U64(u16::from_le_bytes(c.array(&what)?) as u64),
        3 => GgufValue::I64(i16::from_le_bytes(c.array(&what)?) as i64),
        4 => GgufValue::U64(u32::from_le_bytes(c.array(&what)?) as u64),
        5 => GgufValue::I64(i32::from_le_bytes(c.array(&what)?) as i64),
        6 => GgufValue::F64(widen_f32(f32::from_le_bytes(c.array(&what)?))),
        7 => match c.array::<1>(&what)?[0] {
            0 => GgufValue::Bool(false),
            1 => GgufValue::Bool(true),
            b => {
                return Err(bad(
                    c.path,
                    format!("metadata {key}: bool byte {b} is not 0 or 1"),
                ));
            }
        },
        8 => GgufValue::Str(c.string(&what)?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(bad(
                    c.path,
                    format!("metadata {key}: arrays nested too deeply"),
                ));
            }
            let elem = c.u32(&what)?;
            let min = min_size(elem).ok_or_else(|| {
                bad(
                    c.path,
                    format!("metadata {key}: unknown array element type {elem}"),
                )
            })?;
            let n = c.count(min, &|| format!("metadata array {key}"))?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(c, elem, key, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::U64(u64::from_le_bytes(c.array(&what)?)),
        11 => GgufValue::I64(i64::from_le_bytes(c.array(&what)?)),
        12 => GgufValue::F64(f64::from_le_bytes(c.array(&what)?)),
        other => {
            return Err(bad(
                c.path,
                format!("metadata {key}: unknown value type {other}"),
            ));
        }
    })
}
