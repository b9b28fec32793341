//! A `tokenizers` pipeline from GGUF metadata (`tokenizer.ggml.model = "gpt2"`, byte-level BPE), built
//! as transformers builds it when it loads the same file (`GGUFLlamaConverter`, byte-level branch):
//!
//! - model: BPE over `tokenizer.ggml.tokens` (id = index) and `tokenizer.ggml.merges` (`"a b"`), unknown
//!   token `tokens[tokenizer.ggml.unknown_token_id]`, byte fallback, fused unknowns;
//! - special tokens: every token whose `tokenizer.ggml.token_type` is 3 (control), never split or
//!   normalised; user-defined ones (type 4) as ordinary added tokens;
//! - pre-tokenizer: chosen by `tokenizer.ggml.pre` (llama.cpp's name for the split regex), see [`pre`];
//! - post-processor: BOS in front when `tokenizer.ggml.add_bos_token` is true, nothing otherwise;
//! - decoder: byte fallback, fuse, `▁` → space, byte-level.
//!
//! The special ids come from `tokenizer.ggml.{bos,eos,eot,eom}_token_id`. Two deliberate differences
//! from transformers 5.17's GGUF path: it swaps the BOS and EOS *strings* in this converter (we use the
//! ids in the file, which agree with the model's `generation_config.json`), and it turns on
//! `clean_up_tokenization_spaces` for these tokenizers (we decode losslessly, as llama.cpp and the
//! model's own `tokenizer_config.json` do; the reference test decodes with the clean-up off).

use super::TokenizerError;
use crate::weights::WeightsError;
use crate::weights::gguf::GgufFile;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// llama.cpp's token types.
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

pub struct Built {
    pub tokenizer: Tokenizer,
    pub eos_ids: Vec<u32>,
    pub bos_id: Option<u32>,
}

fn meta(file: &GgufFile, key: &str, detail: impl Into<String>) -> TokenizerError {
    TokenizerError::Gguf(WeightsError::Metadata {
        path: file.path().to_path_buf(),
        key: key.to_string(),
        detail: detail.into(),
    })
}

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre`:
/// - `gpt2` / `default` (and absent): GPT-2's split regex, as `ByteLevel(use_regex)` applies it;
/// - `smollm`: every digit on its own (llama.cpp's `\p{N}` pass), then GPT-2's regex — the
///   `Digits(individual) + ByteLevel` of SmolLM's own `tokenizer.json`. (transformers' GGUF loader
///   uses the GPT-2 regex alone; SmolLM's vocabulary has no multi-digit tokens or digit merges, so
///   both give the same ids.)
fn pre(file: &GgufFile, byte_level: ByteLevel) -> Result<PreTokenizerWrapper, TokenizerError> {
    let key = "tokenizer.ggml.pre";
    match file.get_str(key)?.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" => Ok(byte_level.into()),
        "smollm" => Ok(PreSequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()),
        other => Err(meta(
            file,
            key,
            format!("pre-tokenizer {other:?} is not supported (supported: default, gpt2, smollm)"),
        )),
    }
}

fn token_id(file: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>, TokenizerError> {
    match file.get_u64(key)? {
        None => Ok(None),
        Some(id) if (id as usize) < vocab => Ok(Some(id as u32)),
        Some(id) => Err(meta(
            file,
            key,
            format!("id {id} is outside the {vocab} tokens"),
        )),
    }
}

pub fn build(file: &GgufFile) -> Result<Built, TokenizerError> {
    let model_key = "tokenizer.ggml.model";
    match file.required(model_key, file.get_str(model_key))? {
        "gpt2" => {}
        other => {
            return Err(meta(
                file,
                model_key,
                format!(
                    "tokenizer model {other:?} is not supported (only \"gpt2\", byte-level BPE)"
                ),
            ));
        }
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens = file.required(tokens_key, file.get_str_array(tokens_key))?;
    if tokens.is_empty() || tokens.len() > u32::MAX as usize {
        return Err(meta(file, tokens_key, format!("{} tokens", tokens.len())));
    }
    let merges_key = "tokenizer.ggml.merges";
    let merges = file
        .required(merges_key, file.get_str_array(merges_key))?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    meta(
                        file,
                        merges_key,
                        format!("merge {i} ({m:?}) is not \"a b\""),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let types_key = "tokenizer.ggml.token_type";
    let types = file.get_int_array(types_key)?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(meta(
            file,
            types_key,
            format!("{} types for {} tokens", types.len(), tokens.len()),
        ));
    }
    let n = tokens.len();
    let unk = token_id(file, "tokenizer.ggml.unknown_token_id", n)?;
    let bos = token_id(file, "tokenizer.ggml.bos_token_id", n)?;

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(u) = unk {
        bpe = bpe.unk_token(tokens[u as usize].to_string());
    }
    let bpe = bpe
        .build()
        .map_err(|e| meta(file, merges_key, format!("cannot build the BPE model: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, false, true);
    tokenizer.with_pre_tokenizer(Some(pre(file, byte_level)?));
    let replace =
        Replace::new("\u{2581}", " ").map_err(|e| TokenizerError::Other(e.to_string()))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteLevel(byte_level),
    ])));
    let added = |kind: i64, special: bool| {
        types
            .iter()
            .zip(&tokens)
            .filter(move |(t, _)| **t == kind)
            .map(move |(_, tok)| AddedToken::from(tok.to_string(), special).normalized(false))
            .collect::<Vec<_>>()
    };
    let adding = |e: tokenizers::Error| meta(file, types_key, format!("cannot add tokens: {e}"));
    tokenizer
        .add_special_tokens(added(TOKEN_CONTROL, true))
        .map_err(adding)?;
    tokenizer
        .add_tokens(added(TOKEN_USER_DEFINED, false))
        .map_err(adding)?;
    if file.get_bool("tokenizer.ggml.add_bos_token")? == Some(true) {
        let bos_id = bos.ok_or_else(|| {
            meta(
                file,
                "tokenizer.ggml.bos_token_id",
                "add_bos_token is set but there is no BOS",
            )
        })?;
        let b = tokens[bos_id as usize].to_string();
        let template = TemplateProcessing::builder()
            .try_single(vec![b.clone(), "$A".to_string()])
            .and_then(|t| t.try_pair(vec![b.clone(), "$A".into(), "$B:1".into()]))
            .map_err(|e| TokenizerError::Other(e.to_string()))?
            .special_tokens(vec![(b, bos_id)])
            .build()
            .map_err(|e| TokenizerError::Other(e.to_string()))?;
        tokenizer.with_post_processor(Some(template));
    }

    let mut eos_ids = Vec::new();
    for key in ["eos", "eot", "eom"] {
        let id = token_id(file, &format!("tokenizer.ggml.{key}_token_id"), n)?;
        if let Some(id) = id.filter(|id| !eos_ids.contains(id)) {
            eos_ids.push(id);
        }
    }
    Ok(Built {
        tokenizer,
        eos_ids,
        bos_id: bos,
    })
}
