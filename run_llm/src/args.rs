//! Command-line flags. The seed's flags (`run_llm.py`) keep their names and meaning; every flag with a
//! fixed set of values is a `ValueEnum`, so an unknown value is an error that lists the valid ones.

use clap::{Parser, ValueEnum};
use runtime::Precision;
use runtime::backend::CacheMode;
use std::path::PathBuf;

/// `default_model` of models.toml, through the generated registry.
pub const DEFAULT_MODEL: &str = registry::DEFAULT_MODEL;

#[derive(Debug, Parser)]
#[command(
    name = "run_llm",
    rename_all = "snake_case",
    allow_negative_numbers = true,
    version,
    about = "Build, run and benchmark llmforge engines for Hugging Face decoder-only LLMs",
    long_about = "Build (or load) an engine for a model and generate text from a prompt, streaming it as \
it is produced; or, with --benchmark, time generation on random prompts and compare with the memory \
bandwidth roofline and, with --enable_pytorch_run, with Hugging Face transformers on the same weights; \
or, with --perplexity FILE, measure the model's perplexity on a text."
)]
pub struct Args {
    /// A model name from models.toml, a local Hugging Face model directory, or a GGUF file.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,

    /// Tokenizer to use instead of the model's: a tokenizer.json, a directory holding one, or a GGUF file.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,

    /// The prompt (generation mode).
    #[arg(long, default_value = "What is parallel programming?")]
    pub prompt: String,

    /// Prompt token ids, comma separated, instead of --prompt (no tokenizer needed).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["chat"])]
    pub prompt_ids: Option<Vec<u32>>,

    /// Weight precision of the engine [default: the model's precision in models.toml, else FP16].
    #[arg(long, value_enum, ignore_case = true)]
    pub precision: Option<PrecisionArg>,

    /// How linear layers' weights are stored [default: the model's quant_format in models.toml, else
    /// none]: none (dense at --precision; a quantized GGUF is dequantised at load); gguf (a GGUF
    /// file's block-quantized matrices kept as their blocks and dequantised inside the products);
    /// int8, int4 or fp8 (every layer's q/k/v, o, gate/up and down quantized at build: int8 and FP8
    /// E4M3 with a scale per output channel, int4 in groups of 128 inputs, a linear of another width
    /// staying dense; the embedding table and lm_head stay dense at --precision). CPU only.
    #[arg(long, value_enum)]
    pub quant_format: Option<QuantArg>,

    /// Number of tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub num_tokens: usize,

    /// KV cache: static_v1 (write, then attend over the cache), static_v2 (attend over cache + new,
    /// then write) or none (recompute the whole sequence every step).
    #[arg(long, value_enum, default_value_t = CacheArg::StaticV1)]
    pub cache: CacheArg,

    /// Time generation on random prompts of --isl tokens instead of answering --prompt.
    #[arg(long)]
    pub benchmark: bool,

    /// Also run Hugging Face transformers on the same weights and inputs (bench/pytorch_baseline.py).
    #[arg(long)]
    pub enable_pytorch_run: bool,

    /// Input sequence length of the benchmark's random prompts.
    #[arg(long, default_value_t = 2048)]
    pub isl: usize,

    /// Batch size of the benchmark.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,

    /// Timed benchmark iterations (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,

    /// Where to run [default: cuda when a usable GPU is present, else cpu].
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,

    /// CPU threads [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Engine file: loaded when it exists (and matches), else built and saved there.
    #[arg(long)]
    pub engine: Option<PathBuf>,

    /// Wrap the prompt in the model's chat template (as a user message).
    #[arg(long)]
    pub chat: bool,

    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,

    /// Sample from the k most likely tokens only.
    #[arg(long)]
    pub top_k: Option<usize>,

    /// Sample from the smallest set of tokens whose probability reaches p.
    #[arg(long)]
    pub top_p: Option<f32>,

    /// Seed of the sampler and of the benchmark's random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Allow positions past the model's max_position_embeddings (rotary models only): the cache is
    /// sized for the run, but the model was not trained on such positions.
    #[arg(long)]
    pub extend_context: bool,

    /// Accepted for the seed's command line: decode always runs as CUDA graphs on a GPU.
    #[arg(long)]
    pub cudagraph: bool,

    /// Accepted for the seed's command line (a TensorRT partitioning knob); no effect here.
    #[arg(long)]
    pub min_block_size: Option<usize>,

    /// Verbose diagnostics on stderr: how the model was resolved, phase timings, the engine's
    /// options, memory footprint, device and GEMM choices.
    #[arg(long)]
    pub debug: bool,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Measure the perplexity of the model on this UTF-8 text file instead of generating: the text's
    /// tokens are cut into windows of --ctx tokens that do not overlap, each evaluated on its own, and
    /// the second half of each window is scored (llama.cpp's perplexity convention).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["benchmark", "prompt_ids", "chat", "enable_pytorch_run"])]
    pub perplexity: Option<PathBuf>,

    /// Tokens per perplexity window.
    #[arg(long, default_value_t = 512, requires = "perplexity")]
    pub ctx: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    #[value(name = "FP16")]
    Fp16,
    #[value(name = "BF16")]
    Bf16,
    #[value(name = "FP32")]
    Fp32,
}

/// `--quant_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantArg {
    None,
    Gguf,
    Int8,
    Int4,
    Fp8,
}

impl From<QuantArg> for runtime::format::QuantFormat {
    fn from(q: QuantArg) -> Self {
        match q {
            QuantArg::None => runtime::format::QuantFormat::None,
            QuantArg::Gguf => runtime::format::QuantFormat::Gguf,
            QuantArg::Int8 => runtime::format::QuantFormat::Int8,
            QuantArg::Int4 => runtime::format::QuantFormat::Int4,
            QuantArg::Fp8 => runtime::format::QuantFormat::Fp8,
        }
    }
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::Fp32 => Precision::Fp32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheArg {
    #[value(name = "static_v1")]
    StaticV1,
    #[value(name = "static_v2")]
    StaticV2,
    /// The seed spells "no cache" as an empty string; `empty` is accepted too.
    #[value(name = "none", alias = "", alias = "empty")]
    None,
}

impl From<CacheArg> for CacheMode {
    fn from(c: CacheArg) -> CacheMode {
        match c {
            CacheArg::StaticV1 => CacheMode::StaticV1,
            CacheArg::StaticV2 => CacheMode::StaticV2,
            CacheArg::None => CacheMode::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

impl Args {
    /// Checks clap cannot express: counts that must be positive.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--num_tokens", self.num_tokens),
            ("--isl", self.isl),
            ("--batch_size", self.batch_size),
            ("--iterations", self.iterations),
        ];
        for (flag, v) in positive {
            if v == 0 {
                anyhow::bail!("{flag} must be at least 1");
            }
        }
        if self.ctx < runtime::perplexity::Windows::MIN_CTX {
            anyhow::bail!(
                "--ctx must be at least {} (a window scores the tokens after its first half)",
                runtime::perplexity::Windows::MIN_CTX
            );
        }
        if self.threads == Some(0) {
            anyhow::bail!("--threads must be at least 1");
        }
        if matches!(&self.prompt_ids, Some(ids) if ids.is_empty()) {
            anyhow::bail!("--prompt_ids must list at least one token id");
        }
        self.sampling().validate()?;
        Ok(())
    }

    pub fn sampling(&self) -> runtime::sample::Sampling {
        runtime::sample::Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        }
    }

    /// `--num_tokens`, the sampling flags and `--cache` as the runtime's generation options.
    pub fn generate_options(&self, stop_at_eos: bool) -> runtime::generate::GenerateOptions {
        runtime::generate::GenerateOptions {
            max_new_tokens: self.num_tokens,
            sampling: self.sampling(),
            mode: self.cache.into(),
            stop_at_eos,
        }
    }
}
