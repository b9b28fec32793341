//! How the layer plan (`crate::plan`) maps onto the CUDA kernels: one set of fused kernels is compiled
//! per model, so every layer must compute the same thing (the plan's uniform layer), and each of its
//! choices becomes a compile-time switch of the templates in `runtime/templates/kernels/`. Biases need
//! no switch: a linear without one passes a null bias to the same kernels.

use crate::Result;
use crate::backend_error::BackendError;
use crate::plan::{Activation, LayerPlan, ModelPlan, NormPlan, Residual, Window};
use crate::spec::NormKind;

/// The layer's choices, as the kernels' compile-time switches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedLayer {
    /// RMSNorm (else LayerNorm with a bias).
    pub rms: bool,
    /// Norm epsilon of every norm of the layer and the final norm.
    pub eps: f32,
    /// Rotary q and k (else positions are learned and added to the embedding).
    pub rope: bool,
    /// `silu(gate) * up` over `[gate | up]` (else `gelu_new` of `fc`).
    pub swiglu: bool,
    /// Per-head RMSNorm of q and k after the QKV projection (`head_norm.cu`).
    pub qk_norm: bool,
}

impl FusedLayer {
    /// The switches of `plan`, or why its layers cannot run on the fused kernels.
    pub fn of(name: &str, plan: &ModelPlan) -> Result<FusedLayer> {
        let unsupported = |what: String| {
            crate::Error::Backend(BackendError::Unsupported(format!(
                "the CUDA backend cannot run {name}: {what}"
            )))
        };
        let layer: &LayerPlan = match (plan.layers.is_empty(), plan.uniform_layer()) {
            (true, _) => return Err(unsupported("it has no layers".into())),
            (false, Some(l)) => l,
            (false, None) => {
                return Err(unsupported(
                    "its layers differ, and the fused kernels are compiled for one layer".into(),
                ));
            }
        };
        match layer.residual {
            Residual::PreNorm => {}
            Residual::Sandwich { .. } => {
                return Err(unsupported(
                    "its layers normalise each half's output before the residual add (sandwich \
                     norms), which the fused kernels do not"
                        .into(),
                ));
            }
        }
        match layer.attention.window {
            Window::Full => {}
            Window::Sliding(w) => {
                return Err(unsupported(format!(
                    "its attention slides over a window of {w} keys, shorter than the cache, and \
                     the CUDA attention kernels see every earlier key (a cache of at most {w} \
                     positions would do)"
                )));
            }
        }
        let default_scale = 1.0 / (layer.attention.head_dim as f64).sqrt();
        if layer.attention.scale != default_scale {
            return Err(unsupported(format!(
                "its attention scale {} is not 1/sqrt(head_dim)",
                layer.attention.scale
            )));
        }
        if let Some(s) = plan.embed_scale {
            return Err(unsupported(format!(
                "its embeddings are scaled by {s}, which the embedding kernel does not do"
            )));
        }
        if let Some(n) = &layer.attention.qk_norm {
            let rms = |p: &NormPlan| p.kind == NormKind::RmsNorm && p.eps == plan.final_norm.eps;
            if !rms(&n.q) || !rms(&n.k) {
                return Err(unsupported(
                    "its q/k norms (q_norm, k_norm) are not RMSNorms of the layer's epsilon".into(),
                ));
            }
            if layer.qkv.bias {
                return Err(unsupported(
                    "its q/k norms (q_norm, k_norm) follow biased projections, and the bias is \
                     added after the norm kernel"
                        .into(),
                ));
            }
        }
        let norms = [&layer.attn_norm, &layer.mlp_norm, &plan.final_norm];
        if norms
            .iter()
            .any(|n| (n.kind, n.eps) != (plan.final_norm.kind, plan.final_norm.eps))
        {
            return Err(unsupported(
                "its norms differ in kind or epsilon, and the kernels take one".into(),
            ));
        }
        Ok(FusedLayer {
            rms: plan.final_norm.kind == NormKind::RmsNorm,
            eps: plan.final_norm.eps as f32,
            rope: layer.attention.rotary.is_some(),
            swiglu: match layer.activation {
                Activation::SiluGated => true,
                Activation::GeluTanh => false,
                Activation::GeluTanhGated => {
                    return Err(unsupported(
                        "its MLP is GeGLU (gelu_tanh(gate) * up), which the MLP kernel does not \
                         implement"
                            .into(),
                    ));
                }
            },
            qk_norm: layer.attention.qk_norm.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelSpec;

    fn plan(model: &str) -> ModelPlan {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        ModelPlan::new(&ModelSpec::from_dir(&dir.join(model)).expect("config parses"))
    }

    #[test]
    fn families_map_to_their_switches() {
        let l = FusedLayer::of("llama", &plan("Llama-3.2-1B-Instruct")).unwrap();
        assert_eq!((l.rms, l.rope, l.swiglu), (true, true, true));
        assert_eq!(l.eps, 1e-5);
        let g = FusedLayer::of("gpt2", &plan("gpt2")).unwrap();
        assert_eq!((g.rms, g.rope, g.swiglu), (false, false, false));
    }

    #[test]
    fn layers_that_differ_are_refused_by_name() {
        let mut p = plan("tiny-llama");
        p.layers[1].activation = Activation::GeluTanh;
        let e = FusedLayer::of("tiny-llama", &p).unwrap_err().to_string();
        assert!(
            e.contains("tiny-llama") && e.contains("layers differ"),
            "{e}"
        );
        let mut p = plan("tiny-llama");
        for l in &mut p.layers {
            l.mlp_norm.eps = 1e-3;
        }
        let e = FusedLayer::of("tiny-llama", &p).unwrap_err().to_string();
        assert!(e.contains("epsilon"), "{e}");
    }

    #[test]
    fn per_head_q_k_norms_map_to_the_head_norm_kernel() {
        let q = FusedLayer::of("Qwen3-0.6B", &plan("Qwen3-0.6B")).unwrap();
        assert_eq!(
            (q.rms, q.rope, q.swiglu, q.qk_norm),
            (true, true, true, true)
        );
        assert!(
            !FusedLayer::of("llama", &plan("Llama-3.2-1B-Instruct"))
                .unwrap()
                .qk_norm
        );
        let mut p = plan("Qwen3-0.6B");
        for l in &mut p.layers {
            l.qkv.bias = true;
        }
        let e = FusedLayer::of("Qwen3-0.6B", &p).unwrap_err().to_string();
        assert!(e.contains("Qwen3-0.6B") && e.contains("biased"), "{e}");
    }

    /// A window is full attention over a cache no longer than it; over a longer cache it is refused
    /// naming the window. Gemma 3's local and global layers differ, which one set of kernels is not.
    #[test]
    fn windows_run_only_where_they_cover_the_cache() {
        let p = plan("tiny-mistral-window");
        assert!(FusedLayer::of("w", &p.clone().within(8)).is_ok());
        let e = FusedLayer::of("w", &p.within(9)).unwrap_err().to_string();
        assert!(e.contains("window of 8 keys"), "{e}");
        let e = FusedLayer::of("g", &plan("tiny-gemma3").within(64)).unwrap_err();
        assert!(e.to_string().contains("layers differ"), "{e}");
        // One Gemma layer alone is still refused by name, for its sandwich norms.
        let mut g = plan("tiny-gemma3").within(8);
        g.layers.truncate(1);
        let e = FusedLayer::of("g", &g).unwrap_err();
        assert!(e.to_string().contains("sandwich"), "{e}");
    }
}
