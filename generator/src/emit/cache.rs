//! `src/cache.rs` of a model crate: `KvCache<P>` with the seed's fixed field names `key_cache_0,
//! value_cache_0, …` (one typed tensor each) and `Inputs`, the engine signature as a struct.

use crate::ModelInput;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

pub fn cache_rs(m: &ModelInput) -> TokenStream {
    let s = &m.spec;
    let layers = 0..s.num_layers;
    let keys: Vec<_> = layers
        .clone()
        .map(|l| format_ident!("key_cache_{l}"))
        .collect();
    let values: Vec<_> = layers
        .clone()
        .map(|l| format_ident!("value_cache_{l}"))
        .collect();
    let shape = |what: &str, l: usize| match s.layer_window(l) {
        None => format!(
            " Layer {l} {what}, `[batch, {}, max_seq_len, {}]` (`[batch, NUM_KV_HEADS, max_seq_len, HEAD_DIM]`).",
            s.num_kv_heads, s.head_dim
        ),
        Some(w) => format!(
            " Layer {l} {what} (a local layer: it attends over the last {w} positions), `[batch, {}, \
             min({w}, max_seq_len), {}]`: a ring buffer, position `p` in slot `p % {w}` when the \
             window is the shorter.",
            s.num_kv_heads, s.head_dim
        ),
    };
    let key_docs = layers.clone().map(|l| shape("keys", l));
    let value_docs = layers.clone().map(|l| shape("values", l));
    let indices = layers.map(proc_macro2::Literal::usize_unsuffixed);
    let local = (0..s.num_layers)
        .filter(|&l| s.layer_window(l).is_some())
        .count();
    let rings = match (local, s.sliding_window) {
        (0, _) | (_, None) => String::new(),
        (n, Some(w)) => format!(
            " {n} of them are local layers (`config::SLIDING_LAYERS`), whose tensors hold only the last \
             {w} positions when `max_seq_len` is longer."
        ),
    };
    let doc = super::lit::doc_lines(&format!(
        "The static KV cache of `{}`: {} layers, each with a key and a value tensor of shape \
         `[batch, {}, max_seq_len, {}]`, allocated once by [`Engine::new_cache`](crate::Engine::new_cache) \
         for an engine of precision `P`.{rings}",
        m.entry.name, s.num_layers, s.num_kv_heads, s.head_dim
    ));
    quote! {
        //! The static KV cache and the inputs of one engine call.

        use crate::config::NUM_LAYERS;
        use crate::model::Model;
        use ::runtime::codegen as rt;

        #(#[doc = #doc])*
        #[derive(Debug)]
        pub struct KvCache<P: rt::PrecisionMarker> {
            #(
                #[doc = #key_docs]
                pub #keys: rt::Kv<Model, P>,
                #[doc = #value_docs]
                pub #values: rt::Kv<Model, P>,
            )*
        }

        impl<P: rt::PrecisionMarker> KvCache<P> {
            /// The runtime's per-layer views, in layer order.
            pub fn layers_mut(&mut self) -> [rt::LayerKvMut<'_>; NUM_LAYERS] {
                [#(rt::layer(&mut self.#keys, &mut self.#values)),*]
            }
        }

        impl<P: rt::PrecisionMarker> rt::TypedCache for KvCache<P> {
            /// A zeroed cache of `engine` (built for this model in precision `P`) for `batch` sequences.
            fn new(engine: &rt::Engine, batch: usize) -> rt::RuntimeResult<Self> {
                let mut layers = rt::split_cache::<Model, P>(engine, batch)?;
                #(
                    let (#keys, #values) = rt::next_layer(&mut layers, #indices)?;
                )*
                Ok(KvCache { #(#keys, #values),* })
            }

            fn with_layers<R>(&mut self, f: impl FnOnce(&mut [rt::LayerKvMut<'_>]) -> R) -> R {
                f(&mut self.layers_mut())
            }
        }

        /// One call of the engine signature `(input_ids, position_ids, key_cache_0, value_cache_0, …,
        /// start_idx, end_idx)`: `seq_len = end_idx - start_idx` new tokens for each of `batch` sequences,
        /// against this model's cache of precision `P`. Prefill uses `start_idx = 0, end_idx = prompt
        /// length`; each decode step `start_idx = end_idx`, `end_idx + 1`.
        pub type Inputs<'a, P> = rt::Inputs<'a, KvCache<P>>;
    }
}
