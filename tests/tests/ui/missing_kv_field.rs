// Inputs whose cache lacks a layer's value tensor: the seed's fixed signature needs every
// key_cache_i / value_cache_i.
use runtime::codegen::{NoProgress, WeightSource};
use tiny_llama::{Engine, Fp32, Inputs, KvCache};

fn main() {
    let weights = WeightSource::Synthetic { seed: 1 };
    let mut engine = Engine::<Fp32>::build(&weights, tiny_llama::default_options(), &NoProgress).unwrap();
    let full = engine.new_cache(1).unwrap();
    let mut partial = KvCache {
        key_cache_0: full.key_cache_0,
        value_cache_0: full.value_cache_0,
        key_cache_1: full.key_cache_1,
    };
    let _ = engine.forward(Inputs {
        input_ids: &[1],
        position_ids: &[0],
        cache: &mut partial,
        start_idx: 0,
        end_idx: 1,
    });
}
