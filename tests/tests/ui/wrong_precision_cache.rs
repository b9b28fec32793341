// An FP16 cache handed to an FP32 engine of the same model.
use runtime::codegen::{GenerateOptions, NoProgress, WeightSource};
use tiny_llama::{Engine, Fp16, Fp32};

fn main() {
    let weights = WeightSource::Synthetic { seed: 1 };
    let mut fp32 = Engine::<Fp32>::build(&weights, tiny_llama::default_options(), &NoProgress).unwrap();
    let fp16 = Engine::<Fp16>::build(&weights, tiny_llama::default_options(), &NoProgress).unwrap();
    let mut cache = fp16.new_cache(1).unwrap();
    let _ = fp32.generate_with_static_cache(&mut cache, &[vec![1]], &GenerateOptions::default(), &mut |_, _| {});
}
