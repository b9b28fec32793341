// An engine of one weight format is not an engine of another: `--quant_format` is part of the type.
use runtime::codegen::{NoProgress, WeightSource};
use tiny_llama::{Engine, Fp32, GgufBlocks};

fn main() {
    let weights = WeightSource::Synthetic { seed: 1 };
    let options = tiny_llama::default_options();
    let _dense: Engine<Fp32> =
        Engine::<Fp32, GgufBlocks>::build(&weights, options, &NoProgress).unwrap();
}
