//! `src/engine.rs` of a model crate: `Engine<P>`, a typed wrapper over `runtime`'s engine that only
//! accepts this model's `KvCache<P>` of the same precision.

use crate::ModelInput;
use proc_macro2::TokenStream;
use quote::quote;

pub fn engine_rs(m: &ModelInput) -> TokenStream {
    let doc = super::lit::doc_lines(&format!(
        "A built `{}` engine whose weights (and, on GPU, activations and cache) are stored in precision \
         `P` ([`Fp32`](crate::Fp32), [`Fp16`](crate::Fp16) or [`Bf16`](crate::Bf16)).",
        m.entry.name
    ));
    quote! {
        //! The typed engine: build, save/load, forward and the generation loops, all delegating to
        //! `runtime`.

        use crate::cache::{Inputs, KvCache};
        use crate::config::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_SEQ_LEN, DefaultPrecision};
        use ::core::marker::PhantomData;
        use ::runtime::codegen as rt;
        use ::std::path::Path;

        #(#[doc = #doc])*
        pub struct Engine<P: rt::PrecisionMarker = DefaultPrecision> {
            inner: rt::Engine,
            _precision: PhantomData<P>,
        }

        /// The `models.toml` build defaults on the CPU: `DEFAULT_MAX_SEQ_LEN`, `DEFAULT_BATCH_SIZE`, every
        /// core.
        pub fn default_options() -> rt::EngineOptions {
            rt::EngineOptions {
                max_seq_len: DEFAULT_MAX_SEQ_LEN,
                max_batch: DEFAULT_BATCH_SIZE,
                device: rt::DeviceChoice::Cpu { threads: None },
            }
        }

        impl<P: rt::PrecisionMarker> Engine<P> {
            fn wrap(inner: rt::Engine) -> Self {
                Engine { inner, _precision: PhantomData }
            }

            /// The engine-build step: load `weights`, convert them to precision `P`, pack them for the
            /// backend and device of `options`.
            pub fn build(
                weights: &rt::WeightSource,
                options: rt::EngineOptions,
                progress: &dyn rt::Progress,
            ) -> rt::RuntimeResult<Self> {
                rt::build::<P>(crate::spec(), weights, options, progress).map(Self::wrap)
            }

            /// The engine-build step from the first weight source of the `models.toml` entry that is
            /// present on this machine.
            pub fn build_from_manifest(
                options: rt::EngineOptions,
                progress: &dyn rt::Progress,
            ) -> rt::RuntimeResult<Self> {
                let weights = rt::entry_weights(&crate::MODEL)?;
                Self::build(&weights, options, progress)
            }

            /// Load an engine file saved by [`Engine::save`] for this model and precision; any other
            /// engine file is refused.
            pub fn load(path: &Path, options: rt::EngineOptions) -> rt::RuntimeResult<Self> {
                rt::load::<P>(path, &crate::spec(), options).map(Self::wrap)
            }

            /// Save the built engine (atomically) to `path`.
            pub fn save(&self, path: &Path) -> rt::RuntimeResult<()> {
                self.inner.save(path)
            }

            /// A zeroed static cache for `batch` sequences (at most the engine's `max_batch`).
            pub fn new_cache(&self, batch: usize) -> rt::RuntimeResult<KvCache<P>> {
                KvCache::new(&self.inner, batch)
            }

            /// The engine signature with the `static_v1` cache mode, returning the logits of every
            /// position `[batch, seq_len, vocab]`.
            pub fn forward(&mut self, inputs: Inputs<'_, P>) -> rt::RuntimeResult<rt::Logits> {
                self.forward_with(inputs, rt::CacheMode::StaticV1, rt::LogitRows::All)
            }

            /// The engine signature in cache mode `mode`, returning the logit rows `rows`.
            pub fn forward_with(
                &mut self,
                inputs: Inputs<'_, P>,
                mode: rt::CacheMode,
                rows: rt::LogitRows,
            ) -> rt::RuntimeResult<rt::Logits> {
                let step = rt::step(
                    inputs.input_ids,
                    inputs.position_ids,
                    inputs.start_idx,
                    inputs.end_idx,
                )?;
                self.inner.forward(&step, &mut inputs.cache.layers_mut(), mode, rows)
            }

            /// The seed's `generate`: no cache, the whole sequence recomputed every step.
            pub fn generate(
                &mut self,
                prompts: &[Vec<u32>],
                options: &rt::GenerateOptions,
                on_token: &mut dyn FnMut(usize, u32),
            ) -> rt::RuntimeResult<rt::GenerateOutput> {
                rt::generate(&mut self.inner, prompts, options, on_token)
            }

            /// Prefill once, then one token per step through `cache` (`options.mode` picks `static_v1`
            /// or `static_v2`).
            pub fn generate_with_static_cache(
                &mut self,
                cache: &mut KvCache<P>,
                prompts: &[Vec<u32>],
                options: &rt::GenerateOptions,
                on_token: &mut dyn FnMut(usize, u32),
            ) -> rt::RuntimeResult<rt::GenerateOutput> {
                rt::generate_with_static_cache_layers(
                    &mut self.inner,
                    &mut cache.layers_mut(),
                    prompts,
                    options,
                    on_token,
                )
            }

            /// The spec the engine was built for.
            pub fn spec(&self) -> &rt::ModelSpec {
                self.inner.spec()
            }

            /// The options the engine was built with.
            pub fn options(&self) -> &rt::BuildOptions {
                self.inner.options()
            }

            /// The untyped runtime engine.
            pub fn into_inner(self) -> rt::Engine {
                self.inner
            }
        }
    }
}
