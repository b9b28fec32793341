//! Admission: what a run of an engine needs in memory, and whether the machine can give it.
//!
//! Every allocation whose size comes from a caller's number (cache length, batch, prompt length) is
//! checked here before it is made: against the host memory this process may still use (the kernel's
//! `MemAvailable`, a cgroup limit when one is set, and `LLMFORGE_MEMORY_LIMIT` when the user sets one)
//! or against the free memory of the GPU. A request that does not fit is refused with a [`TooLarge`]
//! error naming the need, the amount available and the [`Knob`] to lower, instead of being allocated
//! and touched until the kernel's OOM killer ends the process.
//!
//! [`footprint`] is the one place the sizes are computed (per precision, batch and positions), so a
//! caller serving several requests can ask whether one more fits without touching the running ones.

use crate::format::{BlockType, QuantFormat, WeightFormat};
use crate::plan::{LinearPlan, ModelPlan};
use crate::precision::Precision;
use crate::spec::{Mlp, ModelSpec};
use std::fmt;

/// Environment variable capping the host memory llmforge considers available (bytes, or a number
/// with a `K`/`M`/`G`/`T` suffix, binary: `8G` is 8 GiB).
pub const MEMORY_LIMIT_VAR: &str = "LLMFORGE_MEMORY_LIMIT";

/// What the caller can lower to make a request fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// The static cache length (prompt plus new tokens).
    MaxSeqLen,
    /// The number of sequences run at once.
    Batch,
    /// The number of token rows of one forward (batch times the step's new tokens).
    PromptLen,
    /// Nothing the caller sets: the model itself (its weights) does not fit at this precision.
    Model,
}

impl Knob {
    pub fn describe(self) -> &'static str {
        match self {
            Knob::MaxSeqLen => "the cache length (prompt + new tokens)",
            Knob::Batch => "the batch size",
            Knob::PromptLen => "the prompt length or the batch size",
            Knob::Model => "the precision, or use a smaller model",
        }
    }
}

/// Which memory a part of the footprint lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Host,
    Device,
}

/// How much memory can still be used, and where the figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    pub bytes: u64,
    /// E.g. "host memory (MemAvailable)", "host memory (cgroup limit)", "free memory of GPU 0".
    pub source: String,
}

/// A request that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe(self.knob.describe()))]
pub struct TooLarge {
    /// The allocation, in words (e.g. "the KV cache for 1 sequence of 3000128 positions").
    pub what: String,
    pub need: u64,
    pub available: u64,
    /// Where `available` comes from (the [`Available::source`]).
    pub memory: String,
    pub knob: Knob,
}

impl TooLarge {
    /// The refusal in words, with `lower` saying what to lower (the library names its [`Knob`]; a
    /// command line can name its flags instead).
    pub fn describe(&self, lower: &str) -> String {
        format!(
            "{} needs {}, but only {} of {} is available; lower {lower}",
            self.what,
            human(self.need),
            human(self.available),
            self.memory
        )
    }
}

/// The shape of a run: what the caller's numbers make of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// Sequences run at once (the cache's batch).
    pub batch: usize,
    /// Static cache length.
    pub max_seq_len: usize,
    /// Token rows of the largest forward: `batch * prompt length` for a static cache, `batch *
    /// max_seq_len` when every step recomputes the whole sequence.
    pub rows: usize,
}

/// Bytes a run needs, by part. Sizes saturate at `u64::MAX` (which no machine can give).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// The packed weights.
    pub weights: u64,
    /// Every layer's key and value cache.
    pub kv_cache: u64,
    /// Rotary cos/sin tables for `max_seq_len` positions.
    pub rotary: u64,
    /// Activations of the largest forward (and the prefill's attention working set).
    pub activations: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.kv_cache)
            .saturating_add(self.rotary)
            .saturating_add(self.activations)
    }
}

fn mul(parts: &[usize]) -> u64 {
    parts
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .unwrap_or(u64::MAX)
}

/// Bytes of every layer's key and value cache for `batch` sequences of `max_seq_len` positions, at
/// `elem_bytes` per value (4 on the CPU, which keeps its cache in f32; the precision's size on a GPU).
pub fn kv_cache_bytes(
    spec: &ModelSpec,
    batch: usize,
    max_seq_len: usize,
    elem_bytes: usize,
) -> u64 {
    (0..spec.num_layers)
        .map(|l| {
            let s = spec.kv_shape(l, batch, max_seq_len);
            mul(&[2, s[0], s[1], s[2], s[3], elem_bytes])
        })
        .fold(0u64, u64::saturating_add)
}

/// Bytes of the rotary cos and sin tables (f32, `[max_seq_len, head_dim / 2]` each); 0 for learned
/// positions.
pub fn rotary_bytes(spec: &ModelSpec, max_seq_len: usize) -> u64 {
    let tables = ModelPlan::new(spec).rotaries().len();
    mul(&[tables, 2, max_seq_len, spec.head_dim / 2, 4])
}

/// Bytes of the packed weights: every matrix of the layer plan (the linear layers, the embedding
/// tables, an untied lm_head) in the weight format the build stores it in, every vector (norms,
/// biases) at the precision's size.
pub fn weight_bytes(spec: &ModelSpec, precision: Precision) -> u64 {
    weight_bytes_kept(spec, precision, QuantFormat::None, &|_| None)
}

/// The GGML block type a source keeps a canonical tensor in (`--quant_format gguf`), if any.
pub type StoredBlocks<'a> = &'a dyn Fn(&str) -> Option<BlockType>;

/// The blocks an engine keeps part `name` of a linear of `cols` inputs in: the source's, where its
/// rows are whole blocks.
fn kept_block(stored: StoredBlocks<'_>, name: &str, cols: usize) -> Option<BlockType> {
    stored(name).filter(|t| t.row_bytes(cols).is_some())
}

/// [`weight_bytes`] of an engine built with `quant` whose source keeps some matrices as GGML blocks
/// (`stored`): each part of a linear the source holds as whole-row blocks is kept at their size (as
/// `model::linear` keeps it); the layers' other linears in `WeightFormat::of_linear_as` (quantized
/// at build where `quant` quantizes and the rows fit), the embedding and lm_head dense; a tied
/// embedding is the lm_head.
pub fn weight_bytes_kept(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    stored: StoredBlocks<'_>,
) -> u64 {
    let plan = ModelPlan::new(spec);
    let matrix = |format: WeightFormat, rows: usize, cols: usize| {
        format
            .checked_matrix_bytes(rows, cols)
            .map_or(u64::MAX, |b| b as u64)
    };
    // A linear, part by part: its blocks where the source keeps them, else dense.
    let linear = |lin: &LinearPlan, dense: WeightFormat| -> u64 {
        lin.weight_rows()
            .iter()
            .map(|(name, rows)| {
                let format =
                    kept_block(stored, name, lin.in_features).map_or(dense, WeightFormat::Blocks);
                matrix(format, *rows, lin.in_features)
            })
            .fold(0u64, u64::saturating_add)
    };
    let mut tables = Vec::new();
    if let Some(rows) = plan.learned_positions {
        tables.push(matrix(
            WeightFormat::of_table(precision),
            rows,
            plan.hidden_size,
        ));
    }
    // The token embedding sized as a linear (kept as blocks alike); untied, the lm_head besides.
    let mut embed = plan.lm_head.clone();
    embed.parts[0].name = "embed".into();
    let table = WeightFormat::of_table(precision);
    tables.push(linear(&embed, table));
    if !plan.tied {
        tables.push(linear(&plan.lm_head, table));
    }
    let tables = tables.into_iter();
    let linears = plan
        .layers
        .iter()
        .flat_map(|l| l.linears())
        .map(|lin| linear(lin, WeightFormat::of_linear_as(lin, precision, quant)));
    let vectors: usize = plan
        .tensors()
        .iter()
        .filter(|(_, shape)| shape.len() == 1)
        .map(|(_, shape)| shape[0])
        .sum();
    tables
        .chain(linears)
        .chain([mul(&[vectors, precision.bytes_per_element()])])
        .fold(0u64, u64::saturating_add)
}

/// Bytes of the dense staging matrix a GPU engine built with `quant` keeps for its prefill GEMMs:
/// the largest layer linear stored quantized at build or holding parts the source keeps as GGML
/// blocks (`stored`), in the engine precision (0 when none is).
pub fn staging_bytes(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    stored: StoredBlocks<'_>,
) -> u64 {
    let plan = ModelPlan::new(spec);
    let kept = |lin: &LinearPlan| {
        lin.weight_rows()
            .iter()
            .any(|(name, _)| kept_block(stored, name, lin.in_features).is_some())
    };
    plan.layers
        .iter()
        .flat_map(|l| l.linears())
        .filter(|lin| {
            kept(lin)
                || WeightFormat::of_linear_as(lin, precision, quant)
                    .dense()
                    .is_none()
        })
        .map(|lin| {
            mul(&[
                lin.out_features(),
                lin.in_features,
                precision.bytes_per_element(),
            ])
        })
        .max()
        .unwrap_or(0)
}

/// Bytes of the activations of one forward over `rows` token rows whose logits are taken for
/// `logit_rows` rows, at `elem_bytes` per value: the residual stream and its normed copy, the
/// projection output, the fused QKV, the attention output, the MLP's input and middle widths, the
/// GEMM's block buffer (as wide as the widest projection), the last hidden rows and the logits.
pub fn activation_bytes(
    spec: &ModelSpec,
    rows: usize,
    logit_rows: usize,
    elem_bytes: usize,
) -> u64 {
    let h = spec.hidden_size;
    let i = spec.intermediate_size;
    let (mlp_in, mlp_mid) = match spec.mlp {
        Mlp::SwiGlu | Mlp::GeGlu => (2 * i, i),
        Mlp::GeluNew => (i, i),
    };
    let qkv = spec.q_dim() + 2 * spec.kv_dim();
    let widest = mlp_in.max(qkv).max(h);
    let per_row = [3 * h, qkv, spec.q_dim(), mlp_in, mlp_mid, widest]
        .iter()
        .fold(0u64, |a, &w| a.saturating_add(w as u64));
    let token_part = per_row.saturating_mul(rows as u64);
    let logit_part = mul(&[logit_rows, h + spec.vocab_size]);
    token_part
        .saturating_add(logit_part)
        .saturating_mul(elem_bytes as u64)
}

/// Bytes of the prefill attention's working set on the CPU: a packed copy of one layer's keys and
/// values over `positions` for every sequence (cache modes that attend over cache + new rows).
pub fn attention_bytes(spec: &ModelSpec, batch: usize, positions: usize) -> u64 {
    mul(&[2, batch, spec.kv_dim(), positions, 4])
}

/// The footprint of `shape` on an engine of `precision`. On the CPU (`memory == Host`) the cache and
/// activations are f32; on a GPU they are in the engine's precision.
pub fn footprint(
    spec: &ModelSpec,
    precision: Precision,
    memory: Memory,
    shape: RunShape,
) -> Footprint {
    footprint_kept(spec, precision, QuantFormat::None, &|_| None, memory, shape)
}

/// [`footprint`] with the weights of [`weight_bytes_kept`].
pub fn footprint_kept(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    stored: StoredBlocks<'_>,
    memory: Memory,
    shape: RunShape,
) -> Footprint {
    let elem = match memory {
        Memory::Host => 4,
        Memory::Device => precision.bytes_per_element(),
    };
    let mut activations = activation_bytes(spec, shape.rows, shape.batch, elem);
    if memory == Memory::Host {
        activations =
            activations.saturating_add(attention_bytes(spec, shape.batch, shape.max_seq_len));
    }
    Footprint {
        weights: weight_bytes_kept(spec, precision, quant, stored),
        kv_cache: kv_cache_bytes(spec, shape.batch, shape.max_seq_len, elem),
        rotary: rotary_bytes(spec, shape.max_seq_len),
        activations,
    }
}

/// Refuse `need` bytes of `what` when `available` is known and smaller.
pub fn check(
    what: impl FnOnce() -> String,
    need: u64,
    available: Option<&Available>,
    knob: Knob,
) -> Result<(), TooLarge> {
    match available {
        Some(a) if need > a.bytes => Err(TooLarge {
            what: what(),
            need,
            available: a.bytes,
            memory: a.source.clone(),
            knob,
        }),
        _ => Ok(()),
    }
}

/// Whether `shape` fits: the whole footprint against `available`, naming the knob whose part is the
/// largest of those the caller sets (or the model, when the weights alone do not fit).
pub fn admit(
    spec: &ModelSpec,
    precision: Precision,
    memory: Memory,
    shape: RunShape,
    available: Option<&Available>,
) -> Result<Footprint, TooLarge> {
    admit_kept(
        spec,
        precision,
        QuantFormat::None,
        &|_| None,
        memory,
        shape,
        available,
    )
}

/// [`admit`] with the weights of [`weight_bytes_kept`].
pub fn admit_kept(
    spec: &ModelSpec,
    precision: Precision,
    quant: QuantFormat,
    stored: StoredBlocks<'_>,
    memory: Memory,
    shape: RunShape,
    available: Option<&Available>,
) -> Result<Footprint, TooLarge> {
    let f = footprint_kept(spec, precision, quant, stored, memory, shape);
    let knob = if available.is_some_and(|a| f.weights > a.bytes) {
        Knob::Model
    } else if f.activations > f.kv_cache.saturating_add(f.rotary) {
        Knob::PromptLen
    } else if shape.batch > 1 {
        Knob::Batch
    } else {
        Knob::MaxSeqLen
    };
    check(
        || {
            format!(
                "{} in {precision} for {} sequence(s) of {} positions ({} weights, {} KV cache, {} \
                 activations, {} rotary tables)",
                spec.name,
                shape.batch,
                shape.max_seq_len,
                human(f.weights),
                human(f.kv_cache),
                human(f.activations),
                human(f.rotary)
            )
        },
        f.total(),
        available,
        knob,
    )?;
    Ok(f)
}

/// Host memory this process may still use: the smallest of the kernel's `MemAvailable`, the room
/// left under every cgroup limit above this process, and [`MEMORY_LIMIT_VAR`]. `None` where none of
/// them can be read (not Linux), in which case nothing is refused.
pub fn host_available() -> Option<Available> {
    let mut best: Option<Available> = None;
    let mut offer = |bytes: u64, source: &str| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Available {
                bytes,
                source: source.to_string(),
            });
        }
    };
    if let Some(b) = mem_available() {
        offer(b, "host memory (MemAvailable)");
    }
    if let Some(b) = cgroup_room() {
        offer(b, "host memory (cgroup limit)");
    }
    if let Some(b) = std::env::var(MEMORY_LIMIT_VAR)
        .ok()
        .and_then(|v| parse_bytes(&v))
    {
        offer(b, &format!("host memory ({MEMORY_LIMIT_VAR})"));
    }
    best
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The least room (limit minus usage) of the cgroups this process is in, v2 or v1.
fn cgroup_room() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut room: Option<u64> = None;
    let mut take = |r: u64| room = Some(room.map_or(r, |x| x.min(r)));
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            // cgroup v2: every ancestor's limit applies.
            let mut dir =
                std::path::PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            loop {
                if let Some(r) = room_in(&dir, "memory.max", "memory.current") {
                    take(r);
                }
                if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = std::path::PathBuf::from("/sys/fs/cgroup/memory");
            for dir in [base.join(path.trim_start_matches('/')), base] {
                if let Some(r) = room_in(&dir, "memory.limit_in_bytes", "memory.usage_in_bytes") {
                    take(r);
                }
            }
        }
    }
    room
}

fn room_in(dir: &std::path::Path, limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = std::fs::read_to_string(dir.join(limit))
        .ok()?
        .trim()
        .parse()
        .ok()?; // "max" (no limit) does not parse
    let used: u64 = std::fs::read_to_string(dir.join(usage))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // cgroup v1 reports "no limit" as a number near 2^63.
    (limit < 1 << 60).then(|| limit.saturating_sub(used))
}

/// `"123"`, `"512M"`, `"8G"`, `"8GiB"`, `"1.5T"` as bytes (binary multiples).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 10),
        'M' | 'm' => (&t[..t.len() - 1], 20),
        'G' | 'g' => (&t[..t.len() - 1], 30),
        'T' | 't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * (1u64 << shift) as f64) as u64)
}

/// Bytes in words: "3.2 GiB", "640.0 MiB", "512 B".
pub fn human(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "more than 16 EiB".to_string();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Memory::Host => "host",
            Memory::Device => "device",
        })
    }
}

#[cfg(test)]
mod tests;
