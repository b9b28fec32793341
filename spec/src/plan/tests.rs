//! The plans of the vendored models: what each family's layer computes, and the tensor list checked
//! against the spec's own parameter count (computed separately, in `spec.rs`).

use super::*;
use crate::config::load_config_file;
use std::path::Path;

fn plan(name: &str) -> (ModelSpec, ModelPlan) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name)
        .join("config.json");
    let spec = load_config_file(name, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let plan = ModelPlan::new(&spec);
    (spec, plan)
}

/// Every model vendored under `models/`.
fn vendored() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("models/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 20, "models/ holds {names:?}");
    names
}

#[test]
fn tensor_sizes_add_up_to_the_parameter_count() {
    for name in vendored() {
        let name = name.as_str();
        let (spec, plan) = plan(name);
        let mut total: usize = plan
            .tensors()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum();
        if plan.tied {
            total -= spec.vocab_size * spec.hidden_size;
        }
        assert_eq!(total, spec.num_parameters(), "{name}");
        let mut names: Vec<_> = plan.tensors().into_iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            plan.tensors().len(),
            "{name}: a tensor listed twice"
        );
    }
}

#[test]
fn llama_layer() {
    let (spec, plan) = plan("Llama-3.1-8B-Instruct");
    let l = plan
        .uniform_layer()
        .expect("every Llama layer computes the same");
    assert_eq!(plan.layers.len(), 32);
    assert_eq!(l.residual, Residual::PreNorm);
    assert_eq!(
        (l.attn_norm.kind, l.attn_norm.width),
        (NormKind::RmsNorm, 4096)
    );
    let rows = |lin: &LinearPlan| lin.parts.iter().map(|p| p.rows).collect::<Vec<_>>();
    assert_eq!(rows(&l.qkv), [4096, 1024, 1024]);
    assert_eq!(rows(&l.up), [14336, 14336]);
    assert_eq!((l.down.in_features, l.mlp_width()), (14336, 14336));
    assert!(!l.qkv.bias && !l.o.bias && !l.up.bias && !l.down.bias);
    assert_eq!(l.activation, Activation::SiluGated);
    assert_eq!(l.attention.window, Window::Full);
    let rotary = l.attention.rotary.expect("rotary positions");
    assert_eq!(rotary.theta, 500000.0);
    assert!(rotary.llama3.is_some());
    assert_eq!(plan.learned_positions, None);
    assert!(!plan.tied);
    assert_eq!(l.qkv.parts[1].name, "layers.0.k");
    assert_eq!(plan.layers[31].down.parts[0].name, "layers.31.down");
    assert_eq!(spec.num_layers, plan.layers.len());
}

#[test]
fn qwen2_layer_has_qkv_biases_only() {
    let (_, plan) = plan("Qwen2.5-0.5B-Instruct");
    let l = plan.uniform_layer().unwrap();
    assert!(l.qkv.bias && !l.o.bias && !l.up.bias && !l.down.bias);
    assert!(plan.tied);
    let t = l.tensors();
    assert!(t.iter().any(|(n, s)| n == "layers.0.k.bias" && s == &[128]));
}

#[test]
fn gpt2_layer() {
    let (_, plan) = plan("gpt2");
    let l = plan.uniform_layer().unwrap();
    assert_eq!(l.attn_norm.kind, NormKind::LayerNorm);
    assert!(l.attn_norm.has_bias());
    assert_eq!(l.attention.rotary, None);
    assert_eq!(l.activation, Activation::GeluTanh);
    assert_eq!(l.up.parts[0].name, "layers.0.fc");
    assert_eq!(l.down.parts[0].name, "layers.0.proj");
    assert!(l.qkv.bias && l.o.bias && l.up.bias && l.down.bias);
    assert_eq!(plan.learned_positions, Some(1024));
    // The MLP's biases follow its weights.
    let names: Vec<_> = l.tensors().into_iter().map(|(n, _)| n).collect();
    let tail = &names[names.len() - 4..];
    assert_eq!(
        tail,
        [
            "layers.0.fc.weight",
            "layers.0.proj.weight",
            "layers.0.fc.bias",
            "layers.0.proj.bias"
        ]
    );
}

#[test]
fn layers_that_differ_are_not_uniform() {
    let (_, mut plan) = plan("tiny-llama");
    assert!(plan.uniform_layer().is_some());
    plan.layers[1].attn_norm.eps *= 2.0;
    assert!(plan.uniform_layer().is_none());
    let (_, mut plan) = self::plan("tiny-llama");
    plan.layers[0].qkv.bias = true;
    assert!(plan.uniform_layer().is_none());
}

#[test]
fn qwen3_layer_norms_q_and_k_per_head() {
    let (_, plan) = plan("Qwen3-0.6B");
    let l = plan.uniform_layer().unwrap();
    let n = l.attention.qk_norm.as_ref().expect("q/k norms");
    assert_eq!(
        (n.q.name.as_str(), n.k.name.as_str()),
        ("layers.0.q_norm", "layers.0.k_norm")
    );
    assert_eq!(
        (n.q.width, n.q.kind, n.q.eps),
        (128, NormKind::RmsNorm, 1e-6)
    );
    assert_eq!(l.qkv.out_features(), 16 * 128 + 2 * 8 * 128);
    assert_eq!(l.o.in_features, 2048);
    let names: Vec<_> = l.tensors().into_iter().map(|(n, _)| n).collect();
    let at = |t: &str| names.iter().position(|n| n == t).unwrap();
    assert!(at("layers.0.v.weight") < at("layers.0.q_norm.weight"));
    assert!(at("layers.0.k_norm.weight") < at("layers.0.o.weight"));
    let (_, llama) = self::plan("tiny-llama");
    assert!(llama.layers.iter().all(|l| l.attention.qk_norm.is_none()));
}

#[test]
fn layers_differing_in_their_q_k_norms_are_not_uniform() {
    let (_, mut plan) = plan("Qwen3-0.6B");
    assert!(plan.uniform_layer().is_some());
    plan.layers[3].attention.qk_norm.as_mut().unwrap().k.eps = 1e-5;
    assert!(plan.uniform_layer().is_none());
}

/// Gemma 3's local and global layers differ in their window and rotary base only: not uniform, but
/// uniform but for positions; a layer that differs in anything else, or rotates where others do not,
/// is neither.
#[test]
fn layers_differing_only_in_positions_are_uniform_but_for_them() {
    let (_, plan) = plan("gemma-3-1b-it");
    assert!(plan.uniform_layer().is_none());
    assert!(plan.uniform_layer_but_positions().is_some());
    let mut windows: Vec<_> = plan.layers.iter().map(|l| l.attention.window).collect();
    windows.dedup();
    assert!(windows.contains(&Window::Full) && windows.contains(&Window::Sliding(512)));
    assert_eq!(plan.rotaries().len(), 2);
    let (_, mut other) = self::plan("gemma-3-1b-it");
    other.layers[2].mlp_norm.eps = 1e-3;
    assert!(other.uniform_layer_but_positions().is_none());
    let (_, mut unrotated) = self::plan("gemma-3-1b-it");
    unrotated.layers[4].attention.rotary = None;
    assert!(unrotated.uniform_layer_but_positions().is_none());
}
