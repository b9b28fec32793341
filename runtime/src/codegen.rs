//! The one curated surface that generated crates use (`::runtime::codegen::…`), so the runtime can change
//! inside without breaking emitted code.
//!
//! The generated registry that `run_llm` uses offers `registry::get(name) -> Option<&'static dyn
//! DynModel>`, `registry::all() -> &'static [&'static dyn DynModel]` and `registry::DEFAULT_MODEL:
//! &str`, over [`DynModel`].
//!
//! A generated crate holds its cache as named fields of [`Kv`] tensors typed by a precision marker; this
//! module turns them back into the runtime's per-layer views and checks what the types cannot.

use crate::cache::KvTensor;
use crate::{Error, Result};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

pub use crate::cache::LayerKvMut;
pub use crate::engine::{BuildOptions, DeviceChoice, Engine};
pub use crate::format::QuantFormat;
pub use crate::generate::{
    GenerateOptions, GenerateOutput, Timings, generate, generate_with_static_cache_layers,
};
pub use crate::manifest::ModelEntry;
pub use crate::manifest::{WeightEntry, resolve_weights};
pub use crate::precision::{Bf16, Fp16, Fp32, Precision, PrecisionMarker};
pub use crate::progress::{NoProgress, Progress};
pub use crate::sample::Sampling;
pub use crate::spec::ModelSpec;
pub use crate::spec::{Arch, Llama3Scaling, Mlp, NormKind, Positions, YarnScaling};
pub use crate::step::{BackendKind, CacheMode, LogitRows, Logits, StepInputs};
pub use crate::typed_engine::{
    DynModel, EngineOptions, Inputs, TypedCache, TypedEngine, TypedModel, entry_weights, step,
};
pub use crate::weights::WeightSource;
pub use crate::{Error as RuntimeError, Result as RuntimeResult};
pub use llmforge_spec::quant_marker::{
    Dense, Fp8Weights, GgufBlocks, Int4Weights, Int8Weights, QuantMarker,
};

/// One key or value cache tensor of model `M` (the generated crate's `Model` marker) and precision `P`,
/// `[batch, num_kv_heads, max_seq_len, head_dim]`. Only an engine of the same model and precision makes
/// one (see [`split_cache`]), so a tensor cannot be moved into another model's cache either.
pub struct Kv<M: 'static, P: PrecisionMarker> {
    tensor: KvTensor,
    _marker: PhantomData<fn() -> (M, P)>,
}

impl<M: 'static, P: PrecisionMarker> std::fmt::Debug for Kv<M, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("precision", &P::PRECISION)
            .field("tensor", &self.tensor)
            .finish()
    }
}

impl<M: 'static, P: PrecisionMarker> Kv<M, P> {
    /// `[batch, num_kv_heads, max_seq_len, head_dim]`.
    pub fn shape(&self) -> [usize; 4] {
        self.tensor.shape
    }

    /// The untyped tensor.
    pub fn tensor(&self) -> &KvTensor {
        &self.tensor
    }
}

/// The typed (key, value) pairs of a new cache, in layer order.
pub type LayerIter<M, P> = std::vec::IntoIter<(Kv<M, P>, Kv<M, P>)>;

/// One layer's view for the runtime, from the layer's typed key and value tensors.
pub fn layer<'a, M: 'static, P: PrecisionMarker>(
    key: &'a mut Kv<M, P>,
    value: &'a mut Kv<M, P>,
) -> LayerKvMut<'a> {
    LayerKvMut {
        key: &mut key.tensor,
        value: &mut value.tensor,
    }
}

/// A new zeroed cache of `engine` for `batch` sequences, as `num_layers` typed (key, value) pairs in
/// layer order (the generated `KvCache` moves them into its named fields).
pub fn split_cache<M: 'static, P: PrecisionMarker>(
    engine: &Engine,
    batch: usize,
) -> Result<LayerIter<M, P>> {
    check_precision::<P>(engine)?;
    let typed = |tensor| Kv {
        tensor,
        _marker: PhantomData,
    };
    let layers: Vec<(Kv<M, P>, Kv<M, P>)> = engine
        .new_cache(batch)?
        .layers
        .into_iter()
        .map(|(k, v)| (typed(k), typed(v)))
        .collect();
    Ok(layers.into_iter())
}

/// The next layer of a cache being split, or an error naming the layer the runtime did not allocate.
pub fn next_layer<M: 'static, P: PrecisionMarker>(
    layers: &mut LayerIter<M, P>,
    layer: usize,
) -> Result<(Kv<M, P>, Kv<M, P>)> {
    layers.next().ok_or_else(|| {
        Error::invalid(format!(
            "the runtime allocated no key/value cache for layer {layer}"
        ))
    })
}

/// The engine was built for precision `P` (typed engines are only made by [`build`] and [`load`],
/// which ensure it; this guards the invariant rather than trusting it).
fn check_precision<P: PrecisionMarker>(engine: &Engine) -> Result<()> {
    let built = engine.options().precision;
    if built != P::PRECISION {
        return Err(Error::invalid(format!(
            "engine was built for {built}, the typed API expects {}",
            P::PRECISION
        )));
    }
    Ok(())
}

/// The engine-build step for a typed engine of precision `P`.
pub fn build<P: PrecisionMarker>(
    spec: ModelSpec,
    weights: &WeightSource,
    options: EngineOptions,
    progress: &dyn Progress,
) -> Result<Engine> {
    Engine::build(spec, weights, options.with_precision::<P>(), progress)
}

/// Load an engine file saved by an engine of the same model and precision `P`.
pub fn load<P: PrecisionMarker>(
    path: &Path,
    spec: &ModelSpec,
    options: EngineOptions,
) -> Result<Engine> {
    Engine::load(path, spec, &options.with_precision::<P>())
}

/// The directory of `models.toml` seen from a generated crate's manifest directory
/// (`<root>/generated/<crate>`).
pub fn workspace_root(crate_manifest_dir: &str) -> PathBuf {
    Path::new(crate_manifest_dir).join("..").join("..")
}

#[cfg(test)]
mod tests {
    use super::step;

    #[test]
    fn step_derives_batch_and_seq_len_from_the_indices() {
        let ids = [1, 2, 3, 4, 5, 6];
        let s = step(&ids, &ids, 4, 7).expect("valid");
        assert_eq!((s.batch, s.seq_len, s.start_idx, s.end_idx), (2, 3, 4, 7));
    }

    #[test]
    fn step_refuses_empty_or_inverted_ranges_and_ragged_ids() {
        let ids = [1, 2, 3];
        for (start, end, needle) in [
            (2, 2, "greater than start_idx"),
            (3, 1, "greater than start_idx"),
            (0, 2, "not a positive multiple of seq_len 2"),
        ] {
            let err = step(&ids, &ids, start, end)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(needle), "{start}..{end}: {err}");
        }
        let err = step(&[], &[], 0, 1).expect_err("empty").to_string();
        assert!(err.contains("0 elements"), "{err}");
    }
}
