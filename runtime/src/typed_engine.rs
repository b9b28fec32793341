//! The typed engine every generated crate uses: one generic [`TypedEngine`] over a model marker `M`
//! (the generated crate's `Model`, implementing [`TypedModel`]), a precision marker `P` and a weight
//! format marker `Q` (`--quant_format`, [`Dense`] unless named). The model crate supplies only what
//! varies (its spec, its cache with one named field per layer, its defaults); everything the engine
//! does lives here, once. A cache of another model or precision is another type, so handing it to the
//! engine does not compile; an engine of another weight format is another type too, and loading an
//! engine file of another format is refused.

use crate::cache::LayerKvMut;
use crate::engine::{BuildOptions, Engine};
use crate::generate::{
    GenerateOptions, GenerateOutput, generate, generate_with_static_cache_layers,
};
use crate::manifest::{ModelEntry, resolve_weights};
use crate::options::DeviceChoice;
use crate::precision::PrecisionMarker;
use crate::progress::Progress;
use crate::spec::ModelSpec;
use crate::step::StepInputs;
use crate::step::{CacheMode, LogitRows, Logits};
use crate::weights::WeightSource;
use crate::{Error, Result};
use llmforge_spec::quant_marker::{Dense, QuantMarker};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// What a generated model crate supplies to the typed engine.
pub trait TypedModel: Sized + 'static {
    /// The model's static cache of precision `P`: one named key and value field per layer.
    type Cache<P: PrecisionMarker>: TypedCache;
    /// The precision of the model's `models.toml` entry.
    type DefaultPrecision: PrecisionMarker;
    /// The weight format of the model's `models.toml` entry (`quant_format`, `Dense` unless set).
    type DefaultQuant: QuantMarker;
    /// The `models.toml` name.
    const NAME: &'static str;
    /// The normalised spec the crate was generated from.
    fn spec() -> ModelSpec;
    /// The model seen through the registry's trait object (its `models.toml` entry).
    fn dyn_model() -> &'static dyn DynModel;
    /// The `models.toml` build defaults on the CPU.
    fn default_options() -> EngineOptions;
}

/// A generated cache: made by an engine, lent to it layer by layer.
pub trait TypedCache: Sized {
    /// A zeroed cache of `engine` for `batch` sequences.
    fn new(engine: &Engine, batch: usize) -> Result<Self>;
    /// Call `f` with the runtime's view of every layer, in order.
    fn with_layers<R>(&mut self, f: impl FnOnce(&mut [LayerKvMut<'_>]) -> R) -> R;
}

/// The inputs of one engine call: `input_ids` and `position_ids` are `[batch, seq_len]` row-major
/// with `seq_len = end_idx - start_idx`, and `cache` is the model's own cache type `C`.
#[derive(Debug)]
pub struct Inputs<'a, C> {
    pub input_ids: &'a [u32],
    pub position_ids: &'a [u32],
    pub cache: &'a mut C,
    pub start_idx: usize,
    pub end_idx: usize,
}

/// A built engine of model `M` whose weights (and, on a GPU, activations and cache) are stored in
/// precision `P`, its linear layers in weight format `Q`.
pub struct TypedEngine<M: TypedModel, P: PrecisionMarker, Q: QuantMarker = Dense> {
    inner: Engine,
    _marker: PhantomData<fn() -> (M, P, Q)>,
}

impl<M: TypedModel, P: PrecisionMarker, Q: QuantMarker> TypedEngine<M, P, Q> {
    fn wrap(inner: Engine) -> Self {
        TypedEngine {
            inner,
            _marker: PhantomData,
        }
    }

    /// The engine-build step: load `weights`, convert them to precision `P` and format `Q`, pack
    /// them for the backend and device of `options`.
    pub fn build(
        weights: &WeightSource,
        options: EngineOptions,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let options = options.with_format::<P, Q>();
        Engine::build(M::spec(), weights, options, progress).map(Self::wrap)
    }

    /// The engine-build step from the first weight source of the `models.toml` entry that is
    /// present on this machine.
    pub fn build_from_manifest(options: EngineOptions, progress: &dyn Progress) -> Result<Self> {
        let weights = entry_weights(M::dyn_model())?;
        Self::build(&weights, options, progress)
    }

    /// Load an engine file saved by [`TypedEngine::save`] for this model, precision and weight
    /// format; any other engine file is refused.
    pub fn load(path: &Path, options: EngineOptions) -> Result<Self> {
        Engine::load(path, &M::spec(), &options.with_format::<P, Q>()).map(Self::wrap)
    }

    /// Save the built engine (atomically) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path)
    }

    /// A zeroed static cache for `batch` sequences (at most the engine's `max_batch`).
    pub fn new_cache(&self, batch: usize) -> Result<M::Cache<P>> {
        M::Cache::<P>::new(&self.inner, batch)
    }

    /// The engine signature with the `static_v1` cache mode, returning the logits of every
    /// position `[batch, seq_len, vocab]`.
    pub fn forward(&mut self, inputs: Inputs<'_, M::Cache<P>>) -> Result<Logits> {
        self.forward_with(inputs, CacheMode::StaticV1, LogitRows::All)
    }

    /// The engine signature in cache mode `mode`, returning the logit rows `rows`.
    pub fn forward_with(
        &mut self,
        inputs: Inputs<'_, M::Cache<P>>,
        mode: CacheMode,
        rows: LogitRows,
    ) -> Result<Logits> {
        let step = step(
            inputs.input_ids,
            inputs.position_ids,
            inputs.start_idx,
            inputs.end_idx,
        )?;
        let inner = &mut self.inner;
        inputs
            .cache
            .with_layers(|layers| inner.forward(&step, layers, mode, rows))
    }

    /// The seed's `generate`: no cache, the whole sequence recomputed every step.
    pub fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        options: &GenerateOptions,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<GenerateOutput> {
        generate(&mut self.inner, prompts, options, on_token)
    }

    /// Prefill once, then one token per step through `cache` (`options.mode` picks `static_v1`
    /// or `static_v2`).
    pub fn generate_with_static_cache(
        &mut self,
        cache: &mut M::Cache<P>,
        prompts: &[Vec<u32>],
        options: &GenerateOptions,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<GenerateOutput> {
        let inner = &mut self.inner;
        cache.with_layers(|layers| {
            generate_with_static_cache_layers(inner, layers, prompts, options, on_token)
        })
    }

    /// The spec the engine was built for.
    pub fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &BuildOptions {
        self.inner.options()
    }

    /// The untyped runtime engine.
    pub fn into_inner(self) -> Engine {
        self.inner
    }
}

/// A generated model crate seen through a trait object (what the CLI needs to pick and build a model).
pub trait DynModel: Send + Sync {
    /// The `models.toml` name.
    fn name(&self) -> &'static str;
    /// The normalised spec the crate was generated from.
    fn spec(&self) -> ModelSpec;
    /// The `models.toml` entry (weight sources, build defaults).
    fn entry(&self) -> ModelEntry;
    /// The directory that the entry's relative paths resolve against (where `models.toml` is).
    fn manifest_dir(&self) -> PathBuf;
}

/// Build options of a typed engine: everything but the precision, which is its type parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Length of the static cache (prompt + generated tokens).
    pub max_seq_len: usize,
    /// Largest batch the engine accepts.
    pub max_batch: usize,
    /// The backend and device the engine runs on.
    pub device: DeviceChoice,
}

impl EngineOptions {
    /// The runtime's options for an engine of precision `P` with dense linear layers.
    pub fn with_precision<P: PrecisionMarker>(self) -> BuildOptions {
        self.with_format::<P, Dense>()
    }

    /// The runtime's options for an engine of precision `P` and weight format `Q`.
    pub fn with_format<P: PrecisionMarker, Q: QuantMarker>(self) -> BuildOptions {
        BuildOptions {
            precision: P::PRECISION,
            max_seq_len: self.max_seq_len,
            max_batch: self.max_batch,
            device: self.device,
            quant: Q::FORMAT,
        }
    }
}

/// The weights of a model as its `models.toml` entry names them (the first source present).
pub fn entry_weights(model: &dyn DynModel) -> Result<WeightSource> {
    let entry = model.entry();
    Ok(resolve_weights(
        &entry.name,
        &entry.hf_id,
        &entry.weights,
        &model.manifest_dir(),
    )?)
}

/// The runtime's view of one typed forward call: `input_ids` and `position_ids` are `[batch, seq_len]`
/// row-major with `seq_len = end_idx - start_idx`. Every other bound is checked by the engine.
pub fn step<'a>(
    input_ids: &'a [u32],
    position_ids: &'a [u32],
    start_idx: usize,
    end_idx: usize,
) -> Result<StepInputs<'a>> {
    let seq_len = end_idx
        .checked_sub(start_idx)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "end_idx {end_idx} must be greater than start_idx {start_idx}"
            ))
        })?;
    if input_ids.is_empty() || !input_ids.len().is_multiple_of(seq_len) {
        return Err(Error::invalid(format!(
            "input_ids has {} elements, not a positive multiple of seq_len {seq_len} \
             (end_idx {end_idx} - start_idx {start_idx})",
            input_ids.len()
        )));
    }
    Ok(StepInputs {
        input_ids,
        position_ids,
        batch: input_ids.len() / seq_len,
        seq_len,
        start_idx,
        end_idx,
    })
}
