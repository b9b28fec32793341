// A tiny-qwen2 cache handed to a tiny-llama engine.
use runtime::codegen::{GenerateOptions, NoProgress, WeightSource};

fn main() {
    let weights = WeightSource::Synthetic { seed: 1 };
    let mut llama =
        tiny_llama::Engine::<tiny_llama::Fp32>::build(&weights, tiny_llama::default_options(), &NoProgress)
            .unwrap();
    let qwen =
        tiny_qwen2::Engine::<tiny_qwen2::Fp32>::build(&weights, tiny_qwen2::default_options(), &NoProgress)
            .unwrap();
    let mut cache = qwen.new_cache(1).unwrap();
    let _ = llama.generate_with_static_cache(&mut cache, &[vec![1]], &GenerateOptions::default(), &mut |_, _| {});
}
