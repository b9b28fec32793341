//! Source tensor names ↔ canonical names (see the table in `weights/mod.rs`), per architecture.
//!
//! - Llama / Mistral / Qwen2 / Qwen3 (HF): `model.layers.N.self_attn.q_proj.weight` …,
//!   `model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight` (absent when tied).
//! - Gemma 3 (HF): the same, with four norms per layer (`input_layernorm`, `post_attention_layernorm`,
//!   `pre_feedforward_layernorm`, `post_feedforward_layernorm`), each stored as `gain - 1`: the
//!   loader adds the one (in f32, as transformers computes `1 + w`) and the writer takes it away.
//! - Phi-3 (HF): Llama's names, but each layer's q, k and v are one tensor fused along its rows,
//!   `self_attn.qkv_proj.weight` = `[q | k | v]`, and gate and up another, `mlp.gate_up_proj.weight` =
//!   `[gate | up]`: the loader splits them, the writer fuses them back.
//! - GPT-2 (HF): with or without the `transformer.` prefix; Conv1D weights are `[in, out]` and are
//!   transposed; `attn.c_attn` holds q, k and v fused along its output dimension and is split.
//!   The `attn.bias` / `attn.masked_bias` buffers are not weights and are ignored.
//! - llama.cpp (GGUF): `token_embd`, `blk.N.attn_q` …, `output_norm`, `output`.
//!
//! One table per family serves both directions, so the safetensors writer produces exactly what the
//! loader reads.

use super::{HostTensor, TensorData, WeightMap, WeightsError};
use crate::spec::{Arch, ModelSpec};
use std::collections::BTreeMap;

/// `(hf suffix, canonical suffix)` of the norms inside one Llama/Mistral/Qwen layer
/// `model.layers.N.` (transformers' `post_attention_layernorm` is the MLP's pre-norm there).
const LLAMA_NORMS: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "mlp_norm.weight"),
];

/// The norms inside one Gemma 3 layer: a pre- and a post-norm around each half.
const GEMMA3_NORMS: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "post_attn_norm.weight"),
    ("pre_feedforward_layernorm.weight", "mlp_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_mlp_norm.weight"),
];

/// The projections and per-head norms inside one layer `model.layers.N.` of every family but GPT-2.
const LLAMA_LAYER: &[(&str, &str)] = &[
    ("self_attn.q_proj.weight", "q.weight"),
    ("self_attn.k_proj.weight", "k.weight"),
    ("self_attn.v_proj.weight", "v.weight"),
    ("self_attn.q_proj.bias", "q.bias"),
    ("self_attn.k_proj.bias", "k.bias"),
    ("self_attn.v_proj.bias", "v.bias"),
    ("self_attn.o_proj.weight", "o.weight"),
    ("self_attn.o_proj.bias", "o.bias"),
    ("self_attn.q_norm.weight", "q_norm.weight"),
    ("self_attn.k_norm.weight", "k_norm.weight"),
    ("mlp.gate_proj.weight", "gate.weight"),
    ("mlp.up_proj.weight", "up.weight"),
    ("mlp.down_proj.weight", "down.weight"),
    ("mlp.gate_proj.bias", "gate.bias"),
    ("mlp.up_proj.bias", "up.bias"),
    ("mlp.down_proj.bias", "down.bias"),
];

const LLAMA_GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "embed.weight"),
    ("model.norm.weight", "final_norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
];

const LLAMA_LAYER_PREFIX: &str = "model.layers.";

/// The unfused projections inside one Phi-3 layer `model.layers.N.` (its norms are Llama's).
const PHI3_LAYER: &[(&str, &str)] = &[
    ("self_attn.o_proj.weight", "o.weight"),
    ("mlp.down_proj.weight", "down.weight"),
];

/// `(hf suffix, canonical parts in fused order)` of the tensors a Phi-3 layer stores fused along
/// their rows; the first part carries the fused tensor on the way back.
const PHI3_FUSED: &[(&str, &[&str])] = &[
    (
        "self_attn.qkv_proj.weight",
        &["q.weight", "k.weight", "v.weight"],
    ),
    ("mlp.gate_up_proj.weight", &["gate.weight", "up.weight"]),
];

/// The `(hf suffix, canonical suffix)` tables of one layer of `arch` (not GPT-2).
fn layer_tables(arch: Arch) -> [&'static [(&'static str, &'static str)]; 2] {
    match arch {
        Arch::Gemma3 => [GEMMA3_NORMS, LLAMA_LAYER],
        _ => [LLAMA_NORMS, LLAMA_LAYER],
    }
}

/// A canonical norm gain, for a checkpoint storing `gain - 1` (`spec.norm_gain_offset`): the gain
/// in f32, `1 + w` computed as transformers does.
fn is_norm_gain(canonical: &str) -> bool {
    canonical.ends_with("norm.weight")
}

fn add_one(t: HostTensor) -> HostTensor {
    let data = t.to_f32().into_iter().map(|w| 1.0 + w).collect();
    HostTensor {
        shape: t.shape,
        data: TensorData::F32(data),
    }
}

fn sub_one(t: &HostTensor) -> HostTensor {
    let data = t.to_f32().into_iter().map(|g| g - 1.0).collect();
    HostTensor {
        shape: t.shape.clone(),
        data: TensorData::F32(data),
    }
}

/// `(hf suffix, canonical suffix, Conv1D-transposed)` inside one GPT-2 block `h.N.`; `c_attn` is
/// handled separately.
const GPT2_LAYER: &[(&str, &str, bool)] = &[
    ("ln_1.weight", "attn_norm.weight", false),
    ("ln_1.bias", "attn_norm.bias", false),
    ("attn.c_proj.weight", "o.weight", true),
    ("attn.c_proj.bias", "o.bias", false),
    ("ln_2.weight", "mlp_norm.weight", false),
    ("ln_2.bias", "mlp_norm.bias", false),
    ("mlp.c_fc.weight", "fc.weight", true),
    ("mlp.c_fc.bias", "fc.bias", false),
    ("mlp.c_proj.weight", "proj.weight", true),
    ("mlp.c_proj.bias", "proj.bias", false),
];

/// Global GPT-2 names, without the optional `transformer.` prefix (`lm_head` never has it).
const GPT2_GLOBAL: &[(&str, &str)] = &[
    ("wte.weight", "embed.weight"),
    ("wpe.weight", "pos_embed.weight"),
    ("ln_f.weight", "final_norm.weight"),
    ("ln_f.bias", "final_norm.bias"),
];

const GPT2_C_ATTN_W: &str = "attn.c_attn.weight";
const GPT2_C_ATTN_B: &str = "attn.c_attn.bias";

/// `(llama.cpp suffix, canonical suffix)` inside one block `blk.N.`. Gemma 3's four norms are
/// `attn_norm`, `post_attention_norm`, `ffn_norm` (before the MLP, as in every family) and
/// `post_ffw_norm`.
const GGUF_LAYER: &[(&str, &str)] = &[
    ("attn_norm.weight", "attn_norm.weight"),
    ("ffn_norm.weight", "mlp_norm.weight"),
    ("attn_q.weight", "q.weight"),
    ("attn_k.weight", "k.weight"),
    ("attn_v.weight", "v.weight"),
    ("attn_q.bias", "q.bias"),
    ("attn_k.bias", "k.bias"),
    ("attn_v.bias", "v.bias"),
    ("attn_output.weight", "o.weight"),
    ("attn_output.bias", "o.bias"),
    ("attn_q_norm.weight", "q_norm.weight"),
    ("attn_k_norm.weight", "k_norm.weight"),
    ("post_attention_norm.weight", "post_attn_norm.weight"),
    ("post_ffw_norm.weight", "post_mlp_norm.weight"),
    ("ffn_gate.weight", "gate.weight"),
    ("ffn_up.weight", "up.weight"),
    ("ffn_down.weight", "down.weight"),
    ("ffn_gate.bias", "gate.bias"),
    ("ffn_up.bias", "up.bias"),
    ("ffn_down.bias", "down.bias"),
];

const GGUF_GLOBAL: &[(&str, &str)] = &[
    ("token_embd.weight", "embed.weight"),
    ("output_norm.weight", "final_norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// `"<prefix>N.<rest>"` → `(N, rest)`.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

fn lookup<'a>(table: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `(llama.cpp suffix, canonical parts in fused order)` of the tensors llama.cpp's `phi3` files
/// store fused along their rows, as Phi-3's checkpoints do: `attn_qkv` = `[q | k | v]`, `ffn_up` =
/// `[gate | up]` (llama.cpp's SwiGLU takes the first half through the activation).
const GGUF_PHI3_FUSED: &[(&str, &[&str])] = &[
    ("attn_qkv.weight", &["q.weight", "k.weight", "v.weight"]),
    ("ffn_up.weight", &["gate.weight", "up.weight"]),
];

/// The canonical name of a llama.cpp tensor name, or `None` for tensors we do not use or that hold
/// several canonical tensors (see [`gguf_to_canonical_parts`]).
pub fn gguf_to_canonical(name: &str) -> Option<String> {
    if let Some(c) = lookup(GGUF_GLOBAL, name) {
        return Some(c.to_string());
    }
    let (i, rest) = split_layer(name, "blk.")?;
    lookup(GGUF_LAYER, rest).map(|c| format!("layers.{i}.{c}"))
}

/// The canonical tensors a llama.cpp tensor of a `general.architecture = arch` file holds, in the
/// order they are stacked along its rows: one for most, several for Phi-3's fused `attn_qkv` and
/// `ffn_up`; empty for tensors we do not use.
pub fn gguf_to_canonical_parts(arch: Arch, name: &str) -> Vec<String> {
    if arch == Arch::Phi3
        && let Some((i, rest)) = split_layer(name, "blk.")
        && let Some((_, parts)) = GGUF_PHI3_FUSED.iter().find(|(k, _)| *k == rest)
    {
        return parts.iter().map(|p| format!("layers.{i}.{p}")).collect();
    }
    gguf_to_canonical(name).into_iter().collect()
}

/// Rows of each canonical part of a fused Phi-3 tensor, in order.
pub fn phi3_parts_rows(spec: &ModelSpec, parts: &[String]) -> Vec<usize> {
    parts
        .iter()
        .map(|p| {
            phi3_part_rows(
                spec,
                split_layer(p, "layers.").map_or(p.as_str(), |(_, r)| r),
            )
        })
        .collect()
}

/// Map HF-named tensors to canonical ones. `names` lists every tensor of the source, `load` reads one.
/// Unknown names (buffers such as `rotary_emb.inv_freq`, `attn.bias`) are skipped; `weights::load`
/// then checks that everything the spec needs is present.
pub fn hf_to_canonical<'a>(
    spec: &ModelSpec,
    names: impl Iterator<Item = &'a str>,
    load: &dyn Fn(&str) -> Result<HostTensor, WeightsError>,
) -> Result<WeightMap, WeightsError> {
    let mut out = WeightMap::default();
    for hf in names {
        match spec.arch {
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
                let canonical = if let Some(c) = lookup(LLAMA_GLOBAL, hf) {
                    Some(c.to_string())
                } else if let Some((i, rest)) = split_layer(hf, LLAMA_LAYER_PREFIX) {
                    layer_tables(spec.arch)
                        .iter()
                        .find_map(|t| lookup(t, rest))
                        .map(|c| format!("layers.{i}.{c}"))
                } else {
                    None
                };
                if let Some(c) = canonical {
                    let t = load(hf)?;
                    let t = match spec.norm_gain_offset && is_norm_gain(&c) {
                        true => add_one(t),
                        false => t,
                    };
                    out.tensors.insert(c, t);
                }
            }
            Arch::Phi3 => phi3_one(spec, hf, load, &mut out)?,
            Arch::Gpt2 => gpt2_one(spec, hf, load, &mut out)?,
        }
    }
    Ok(out)
}

/// Rows of the canonical part `part` (`q.weight`, `gate.weight`, …) of a fused Phi-3 tensor.
fn phi3_part_rows(spec: &ModelSpec, part: &str) -> usize {
    match part {
        "q.weight" => spec.q_dim(),
        "k.weight" | "v.weight" => spec.kv_dim(),
        _ => spec.intermediate_size,
    }
}

fn phi3_one(
    spec: &ModelSpec,
    hf: &str,
    load: &dyn Fn(&str) -> Result<HostTensor, WeightsError>,
    out: &mut WeightMap,
) -> Result<(), WeightsError> {
    if let Some(c) = lookup(LLAMA_GLOBAL, hf) {
        out.tensors.insert(c.to_string(), load(hf)?);
        return Ok(());
    }
    let Some((i, rest)) = split_layer(hf, LLAMA_LAYER_PREFIX) else {
        return Ok(());
    };
    if let Some(c) = lookup(LLAMA_NORMS, rest).or_else(|| lookup(PHI3_LAYER, rest)) {
        out.tensors.insert(format!("layers.{i}.{c}"), load(hf)?);
        return Ok(());
    }
    let Some((_, parts)) = PHI3_FUSED.iter().find(|(k, _)| *k == rest) else {
        return Ok(());
    };
    let t = load(hf)?;
    let rows: Vec<usize> = parts.iter().map(|p| phi3_part_rows(spec, p)).collect();
    let want = [rows.iter().sum(), spec.hidden_size];
    if t.shape != want {
        return Err(shape_err(hf, &want, &t.shape));
    }
    let mut start = 0;
    for (part, n) in parts.iter().zip(rows) {
        out.tensors
            .insert(format!("layers.{i}.{part}"), t.rows(start, start + n)?);
        start += n;
    }
    Ok(())
}

fn gpt2_one(
    spec: &ModelSpec,
    hf: &str,
    load: &dyn Fn(&str) -> Result<HostTensor, WeightsError>,
    out: &mut WeightMap,
) -> Result<(), WeightsError> {
    let name = hf.strip_prefix("transformer.").unwrap_or(hf);
    if name == "lm_head.weight" {
        out.tensors.insert(name.to_string(), load(hf)?);
        return Ok(());
    }
    if let Some(c) = lookup(GPT2_GLOBAL, name) {
        out.tensors.insert(c.to_string(), load(hf)?);
        return Ok(());
    }
    let Some((i, rest)) = split_layer(name, "h.") else {
        return Ok(());
    };
    if let Some((_, c, transposed)) = GPT2_LAYER.iter().find(|(k, _, _)| *k == rest) {
        let t = load(hf)?;
        let t = if *transposed { conv1d(hf, &t)? } else { t };
        out.tensors.insert(format!("layers.{i}.{c}"), t);
        return Ok(());
    }
    let (q, kv) = (spec.q_dim(), spec.kv_dim());
    let (fused, suffix) = match rest {
        GPT2_C_ATTN_W => {
            let t = load(hf)?;
            let want = [spec.hidden_size, q + 2 * kv];
            if t.shape != want {
                return Err(shape_err(hf, &want, &t.shape));
            }
            (t.transpose2d()?, "weight")
        }
        GPT2_C_ATTN_B => {
            let t = load(hf)?;
            if t.shape != [q + 2 * kv] {
                return Err(shape_err(hf, &[q + 2 * kv], &t.shape));
            }
            (t, "bias")
        }
        _ => return Ok(()),
    };
    for (part, start, end) in [("q", 0, q), ("k", q, q + kv), ("v", q + kv, q + 2 * kv)] {
        out.tensors.insert(
            format!("layers.{i}.{part}.{suffix}"),
            fused.rows(start, end)?,
        );
    }
    Ok(())
}

fn shape_err(name: &str, want: &[usize], found: &[usize]) -> WeightsError {
    WeightsError::Shape {
        name: name.to_string(),
        expected: want.to_vec(),
        found: found.to_vec(),
    }
}

fn conv1d(hf: &str, t: &HostTensor) -> Result<HostTensor, WeightsError> {
    if t.shape.len() != 2 {
        return Err(WeightsError::Other(format!(
            "Conv1D weight {hf} has shape {:?}, expected 2-D [in, out]",
            t.shape
        )));
    }
    t.transpose2d()
}

/// The reverse mapping: canonical tensors under the names transformers writes for `spec.arch`
/// (GPT-2 with the `transformer.` prefix, Conv1D layout and fused `c_attn`). A tied `lm_head` is left
/// out, as transformers' `save_pretrained` does.
pub fn canonical_to_hf(
    spec: &ModelSpec,
    map: &WeightMap,
) -> Result<BTreeMap<String, HostTensor>, WeightsError> {
    let mut out = BTreeMap::new();
    for (c, t) in &map.tensors {
        if c == "lm_head.weight" && spec.tie_word_embeddings {
            continue;
        }
        match spec.arch {
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => {
                let hf = if let Some((hf, _)) = LLAMA_GLOBAL.iter().find(|(_, v)| v == c) {
                    hf.to_string()
                } else {
                    let (i, rest) = split_layer(c, "layers.").ok_or_else(|| unmapped(c))?;
                    let (hf, _) = layer_tables(spec.arch)
                        .iter()
                        .find_map(|t| t.iter().find(|(_, v)| *v == rest))
                        .ok_or_else(|| unmapped(c))?;
                    format!("{LLAMA_LAYER_PREFIX}{i}.{hf}")
                };
                let t = match spec.norm_gain_offset && is_norm_gain(c) {
                    true => sub_one(t),
                    false => t.clone(),
                };
                out.insert(hf, t);
            }
            Arch::Phi3 => phi3_reverse(spec, map, c, t, &mut out)?,
            Arch::Gpt2 => gpt2_reverse(map, c, t, &mut out)?,
        }
    }
    Ok(out)
}

fn phi3_reverse(
    spec: &ModelSpec,
    map: &WeightMap,
    c: &str,
    t: &HostTensor,
    out: &mut BTreeMap<String, HostTensor>,
) -> Result<(), WeightsError> {
    if let Some((hf, _)) = LLAMA_GLOBAL.iter().find(|(_, v)| *v == c) {
        out.insert(hf.to_string(), t.clone());
        return Ok(());
    }
    let (i, rest) = split_layer(c, "layers.").ok_or_else(|| unmapped(c))?;
    let plain = LLAMA_NORMS.iter().chain(PHI3_LAYER);
    if let Some((hf, _)) = plain.clone().find(|(_, v)| *v == rest) {
        out.insert(format!("{LLAMA_LAYER_PREFIX}{i}.{hf}"), t.clone());
        return Ok(());
    }
    let (hf, parts) = PHI3_FUSED
        .iter()
        .find(|(_, parts)| parts.contains(&rest))
        .ok_or_else(|| unmapped(c))?;
    // The first part carries the fused tensor; the others are folded into it.
    if parts[0] != rest {
        return Ok(());
    }
    let hf = format!("{LLAMA_LAYER_PREFIX}{i}.{hf}");
    let mut tensors = Vec::with_capacity(parts.len());
    for p in *parts {
        let name = format!("layers.{i}.{p}");
        let t = map
            .tensors
            .get(&name)
            .ok_or_else(|| WeightsError::Missing { name: name.clone() })?;
        let want = [phi3_part_rows(spec, p), spec.hidden_size];
        if t.shape != want {
            return Err(shape_err(&name, &want, &t.shape));
        }
        tensors.push(t);
    }
    let fused =
        HostTensor::concat_rows(&tensors).map_err(|e| WeightsError::Other(format!("{hf}: {e}")))?;
    out.insert(hf, fused);
    Ok(())
}

fn unmapped(c: &str) -> WeightsError {
    WeightsError::Other(format!("canonical tensor {c} has no Hugging Face name"))
}

fn gpt2_reverse(
    map: &WeightMap,
    c: &str,
    t: &HostTensor,
    out: &mut BTreeMap<String, HostTensor>,
) -> Result<(), WeightsError> {
    if c == "lm_head.weight" {
        out.insert(c.to_string(), t.clone());
        return Ok(());
    }
    if let Some((hf, _)) = GPT2_GLOBAL.iter().find(|(_, v)| *v == c) {
        out.insert(format!("transformer.{hf}"), t.clone());
        return Ok(());
    }
    let (i, rest) = split_layer(c, "layers.").ok_or_else(|| unmapped(c))?;
    if let Some((hf, _, transposed)) = GPT2_LAYER.iter().find(|(_, v, _)| *v == rest) {
        let t = if *transposed {
            t.transpose2d()?
        } else {
            t.clone()
        };
        out.insert(format!("transformer.h.{i}.{hf}"), t);
        return Ok(());
    }
    match rest {
        // q carries the fused tensor; k and v are folded into it.
        "q.weight" | "q.bias" => {
            let suffix = &rest[2..];
            let get = |p: &str| {
                let name = format!("layers.{i}.{p}.{suffix}");
                map.tensors.get(&name).ok_or(WeightsError::Missing { name })
            };
            let fused = HostTensor::concat_rows(&[get("q")?, get("k")?, get("v")?])?;
            let (name, fused) = if suffix == "weight" {
                (GPT2_C_ATTN_W, fused.transpose2d()?)
            } else {
                (GPT2_C_ATTN_B, fused)
            };
            out.insert(format!("transformer.h.{i}.{name}"), fused);
            Ok(())
        }
        "k.weight" | "v.weight" | "k.bias" | "v.bias" => Ok(()),
        _ => Err(unmapped(c)),
    }
}
