// A tiny-qwen2 cache tensor moved into a tiny-llama cache (the tensors are typed by model too).
use runtime::codegen::{NoProgress, WeightSource};
use tiny_llama::{Fp32, KvCache};

fn main() {
    let weights = WeightSource::Synthetic { seed: 1 };
    let llama = tiny_llama::Engine::<Fp32>::build(&weights, tiny_llama::default_options(), &NoProgress).unwrap();
    let qwen = tiny_qwen2::Engine::<Fp32>::build(&weights, tiny_qwen2::default_options(), &NoProgress).unwrap();
    let l = llama.new_cache(1).unwrap();
    let q = qwen.new_cache(1).unwrap();
    let _mixed: KvCache<Fp32> = KvCache {
        key_cache_0: q.key_cache_0,
        value_cache_0: l.value_cache_0,
        key_cache_1: l.key_cache_1,
        value_cache_1: l.value_cache_1,
    };
}
