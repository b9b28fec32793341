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
    /// A gated MLP, `act(gate) * up` over `[gate | up]` (else `gelu_new` of `fc`).
    pub gated: bool,
    /// The gate's activation is `gelu_tanh` (GeGLU) rather than `silu` (SwiGLU).
    pub gelu_gate: bool,
    /// Per-head RMSNorm of q and k after the QKV projection (`head_norm.cu`).
    pub qk_norm: bool,
    /// Each half's output is normalised again before the residual add (Gemma 3's sandwich norms).
    pub sandwich: bool,
    /// The factor on `q · k` (`1/sqrt(head_dim)` unless the config sets another).
    pub scale: f32,
    /// The factor on the token embeddings (Gemma's `sqrt(hidden)`), where the model has one.
    pub embed_scale: Option<f32>,
    /// The final soft cap of the logits, where the model has one (a run-time argument of the kernels
    /// that apply it, not a compile-time switch).
    pub final_softcap: Option<f32>,
}

/// What one layer's attention sees and how it rotates, where layers of one model differ (Gemma 3's
/// local and global layers): the kernels take it at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPositions {
    /// The sliding window (its cache is a ring of this many positions), or 0 for every earlier key.
    pub window: usize,
    /// Index of the layer's rotary embedding in `ModelPlan::rotaries` (absent for learned positions).
    pub rotary: Option<usize>,
}

/// Each layer's window and rotary embedding in `plan` (over the cache it runs on: see
/// `ModelPlan::within`).
pub fn layer_positions(plan: &ModelPlan) -> Vec<LayerPositions> {
    let rotaries = plan.rotaries();
    plan.layers
        .iter()
        .map(|l| LayerPositions {
            window: match l.attention.window {
                Window::Full => 0,
                Window::Sliding(w) => w,
            },
            rotary: l
                .attention
                .rotary
                .and_then(|r| rotaries.iter().position(|x| *x == r)),
        })
        .collect()
}

impl FusedLayer {
    /// The switches of `plan`, or why its layers cannot run on the fused kernels.
    pub fn of(name: &str, plan: &ModelPlan) -> Result<FusedLayer> {
        let unsupported = |what: String| {
            crate::Error::Backend(BackendError::Unsupported(format!(
                "the CUDA backend cannot run {name}: {what}"
            )))
        };
        let layer: &LayerPlan = match (plan.layers.is_empty(), plan.uniform_layer_but_positions()) {
            (true, _) => return Err(unsupported("it has no layers".into())),
            (false, Some(l)) => l,
            (false, None) => {
                return Err(unsupported(
                    "its layers differ in more than their window and rotary embedding, and the \
                     fused kernels are compiled for one layer"
                        .into(),
                ));
            }
        };
        let mut norms = vec![&layer.attn_norm, &layer.mlp_norm, &plan.final_norm];
        let sandwich = match &layer.residual {
            Residual::PreNorm => false,
            Residual::Sandwich {
                post_attn_norm,
                post_mlp_norm,
            } => {
                norms.extend([post_attn_norm, post_mlp_norm]);
                if layer.o.bias || layer.down.bias {
                    return Err(unsupported(
                        "its sandwich norms follow biased projections, and the kernels add the \
                         bias after the norm"
                            .into(),
                    ));
                }
                if post_attn_norm.kind != NormKind::RmsNorm {
                    return Err(unsupported(
                        "its sandwich norms are LayerNorms; the kernels normalise each half's \
                         output with RMSNorm"
                            .into(),
                    ));
                }
                true
            }
        };
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
        if norms
            .iter()
            .any(|n| (n.kind, n.eps) != (plan.final_norm.kind, plan.final_norm.eps))
        {
            return Err(unsupported(
                "its norms differ in kind or epsilon, and the kernels take one".into(),
            ));
        }
        let (gated, gelu_gate) = match layer.activation {
            Activation::SiluGated => (true, false),
            Activation::GeluTanhGated => (true, true),
            Activation::GeluTanh => (false, false),
        };
        Ok(FusedLayer {
            rms: plan.final_norm.kind == NormKind::RmsNorm,
            eps: plan.final_norm.eps as f32,
            rope: layer.attention.rotary.is_some(),
            gated,
            gelu_gate,
            qk_norm: layer.attention.qk_norm.is_some(),
            sandwich,
            scale: layer.attention.scale as f32,
            embed_scale: plan.embed_scale.map(|s| s as f32),
            final_softcap: plan.final_softcap.map(|c| c as f32),
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
        assert_eq!(
            (l.rms, l.rope, l.gated, l.gelu_gate),
            (true, true, true, false)
        );
        assert_eq!(l.eps, 1e-5);
        let g = FusedLayer::of("gpt2", &plan("gpt2")).unwrap();
        assert_eq!((g.rms, g.rope, g.gated), (false, false, false));
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
            (q.rms, q.rope, q.gated, q.qk_norm),
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

    /// A window is full attention over a cache no longer than it, and a ring with the window masked
    /// over a longer one; Gemma 3's local and global layers differ only in their window and rotary
    /// embedding, which the kernels take per layer.
    #[test]
    fn windows_and_rotaries_are_per_layer() {
        let p = plan("tiny-mistral-window");
        assert!(FusedLayer::of("w", &p.clone().within(8)).is_ok());
        assert!(
            layer_positions(&p.clone().within(8))
                .iter()
                .all(|l| l.window == 0 && l.rotary == Some(0))
        );
        assert!(FusedLayer::of("w", &p.clone().within(9)).is_ok());
        assert!(layer_positions(&p.within(9)).iter().all(|l| l.window == 8));

        let g = plan("tiny-gemma3").within(64);
        let l = FusedLayer::of("g", &g).unwrap();
        assert!(
            l.sandwich && l.gated && l.gelu_gate && l.rms && l.qk_norm,
            "{l:?}"
        );
        assert_eq!(l.embed_scale, g.embed_scale.map(|s| s as f32));
        let positions = layer_positions(&g);
        assert_eq!(g.rotaries().len(), 2);
        for (layer, at) in g.layers.iter().zip(&positions) {
            match layer.attention.window {
                Window::Sliding(w) => assert_eq!((at.window, at.rotary), (w, Some(1 - global(&g)))),
                Window::Full => assert_eq!((at.window, at.rotary), (0, Some(global(&g)))),
            }
        }
        assert!(positions.iter().any(|p| p.window == 0));
        assert!(positions.iter().any(|p| p.window > 0));
    }

    /// Index of the global (full-attention) layers' rotary in `g.rotaries()`.
    fn global(g: &ModelPlan) -> usize {
        let full = g
            .layers
            .iter()
            .find(|l| l.attention.window == Window::Full)
            .and_then(|l| l.attention.rotary)
            .unwrap();
        g.rotaries().iter().position(|r| *r == full).unwrap()
    }
}
