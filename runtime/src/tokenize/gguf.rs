//! A `tokenizers` pipeline from GGUF metadata, reproducing the ids llama.cpp gives for the same file.
//! Two tokenizer models (`tokenizer.ggml.model`):
//!
//! - `"gpt2"`, byte-level BPE over `tokenizer.ggml.tokens` (id = index) and `tokenizer.ggml.merges`
//!   (`"a b"`), built as transformers builds it (`GGUFLlamaConverter`, byte-level branch): unknown token
//!   `tokens[tokenizer.ggml.unknown_token_id]`, byte fallback, fused unknowns; the pre-tokenizer chosen
//!   by `tokenizer.ggml.pre` (llama.cpp's name for the split regex, see [`pre`]); decoder byte fallback,
//!   fuse, `▁` → space, byte-level;
//! - `"llama"`, SentencePiece BPE as llama.cpp runs a Llama-2 file: see [`sentencepiece`].
//!
//! For both:
//! - special tokens: every token whose `tokenizer.ggml.token_type` is 3 (control) or 2 (unknown, which
//!   llama.cpp also matches in text), never split or normalised; user-defined ones (type 4) as ordinary
//!   added tokens;
//! - post-processor: BOS in front when `tokenizer.ggml.add_bos_token` says so, EOS behind when
//!   `tokenizer.ggml.add_eos_token` does; absent, llama.cpp's defaults: BOS for `"llama"` and for the
//!   `llama-bpe` pre-tokenizer, never EOS.
//!
//! The special ids come from `tokenizer.ggml.{bos,eos,eot,eom}_token_id`. Deliberate differences from
//! transformers 5.17's GGUF path, where llama.cpp (the engine these files are made for) does otherwise:
//! it swaps the BOS and EOS *strings* for byte-level files (we use the ids in the file, which agree with
//! the model's `generation_config.json`); it adds no BOS to any of these files; for `llama-bpe` it
//! splits with GPT-2's regex and applies every merge (llama.cpp splits with Llama 3's regex and takes a
//! word that is itself a token whole). One difference from both: they clean up spaces before
//! punctuation when decoding some of these files (transformers all, llama.cpp those whose pre-tokenizer
//! it does not mark otherwise, `llama-bpe` among them); we decode losslessly, so the text encoded comes
//! back. `tests/fixtures/gguf-tokenizers/reference.json` records where transformers' ids differ.

use super::TokenizerError;
use crate::weights::WeightsError;
use crate::weights::gguf::{GgufFile, GgufValue};
use std::collections::HashMap;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types.
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark, standing for a space.
const SPACE_MARK: &str = "\u{2581}";

/// The split regexes llama.cpp runs for `tokenizer.ggml.pre = "llama-bpe"` (Llama 3) and `"qwen2"`
/// (Qwen2, Qwen2.5, Qwen3). The models' own `tokenizer.json` writes the contractions as
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)`; llama.cpp spells the case-insensitivity out letter by letter, which
/// differs where Unicode case folding would match more (`'ſ` is not `'s` here).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values understood, for error messages.
const SUPPORTED_PRE: &str = "default, gpt2, gpt-2, smollm, llama-bpe, llama3, llama-v3, qwen2";

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

/// A byte-level pre-tokenizer and what llama.cpp does differently for it.
struct Pre {
    pre_tokenizer: PreTokenizerWrapper,
    /// A pre-tokenized word that is itself a token is taken whole, whatever the merges would make of it.
    ignore_merges: bool,
    /// Whether BOS is added when the file has no `tokenizer.ggml.add_bos_token`.
    add_bos: bool,
}

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre`:
/// - `gpt2` / `gpt-2` / `default` (and absent): GPT-2's split regex, as `ByteLevel(use_regex)` applies
///   it;
/// - `smollm`: every digit on its own (llama.cpp's `\p{N}` pass), then GPT-2's regex — the
///   `Digits(individual) + ByteLevel` of SmolLM's own `tokenizer.json`. (transformers' GGUF loader
///   uses the GPT-2 regex alone; SmolLM's vocabulary has no multi-digit tokens or digit merges, so
///   both give the same ids.)
/// - `llama-bpe` (and its other names `llama3`, `llama-v3`): [`LLAMA3_SPLIT`], whole-word tokens before
///   merges, BOS by default;
/// - `qwen2`: [`QWEN2_SPLIT`]. (Qwen2's `tokenizer.json` also NFC-normalises; llama.cpp does not.)
fn pre(file: &GgufFile) -> Result<Pre, TokenizerError> {
    let key = "tokenizer.ggml.pre";
    let split = |regex: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Other(format!("the {key} regex: {e}")))?;
        let bytes = ByteLevel::new(false, false, false);
        Ok(PreSequence::new(vec![split.into(), bytes.into()]).into())
    };
    let gpt2 = ByteLevel::new(false, false, true);
    let plain = |pre_tokenizer| Pre {
        pre_tokenizer,
        ignore_merges: false,
        add_bos: false,
    };
    match file.get_str(key)?.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" => Ok(plain(gpt2.into())),
        "smollm" => Ok(plain(
            PreSequence::new(vec![Digits::new(true).into(), gpt2.into()]).into(),
        )),
        "llama-bpe" | "llama3" | "llama-v3" => Ok(Pre {
            pre_tokenizer: split(LLAMA3_SPLIT)?,
            ignore_merges: true,
            add_bos: true,
        }),
        "qwen2" => Ok(plain(split(QWEN2_SPLIT)?)),
        other => Err(meta(
            file,
            key,
            format!("pre-tokenizer {other:?} is not supported (supported: {SUPPORTED_PRE})"),
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

/// The tokenizer's model, normaliser, pre-tokenizer and decoder for `tokenizer.ggml.model = "gpt2"`;
/// returns whether BOS is added by default.
fn byte_level(
    file: &GgufFile,
    tokens: &[&str],
    unk: Option<u32>,
) -> Result<(Tokenizer, bool), TokenizerError> {
    let pre = pre(file)?;
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
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .ignore_merges(pre.ignore_merges);
    if let Some(u) = unk {
        bpe = bpe.unk_token(tokens[u as usize].to_string());
    }
    let bpe = bpe
        .build()
        .map_err(|e| meta(file, merges_key, format!("cannot build the BPE model: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre.pre_tokenizer));
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Replace(replace(SPACE_MARK, " ")?),
        DecoderWrapper::ByteLevel(ByteLevel::new(false, false, true)),
    ])));
    Ok((tokenizer, pre.add_bos))
}

/// `tokenizer.ggml.model = "llama"`: SentencePiece BPE as llama.cpp runs it. Spaces become `▁` and, with
/// `tokenizer.ggml.add_space_prefix` (default true), every run of text between special tokens gets one
/// in front; the text is then split into characters and the adjacent pair whose joined text is the
/// highest-scoring token (`tokenizer.ggml.scores`) merged, again and again; characters no token covers
/// become their bytes' `<0xNN>` tokens. The same as a BPE whose merges are every way of cutting a token
/// into two tokens, ranked by the whole token's score (what transformers' GGUF converter builds); the
/// two differ only where two overlapping pairs make the same token, which llama.cpp breaks leftmost
/// first. Decoding turns `▁` back into spaces, the `<0xNN>` tokens into bytes, and drops the one added
/// space, so it gives back the text encoded. BOS is added by default.
fn sentencepiece(
    file: &GgufFile,
    tokens: &[&str],
    unk: Option<u32>,
) -> Result<(Tokenizer, bool), TokenizerError> {
    let scores_key = "tokenizer.ggml.scores";
    let scores = file
        .required(scores_key, file.get_array(scores_key))?
        .iter()
        .enumerate()
        .map(|(i, v)| match *v {
            GgufValue::F64(x) if !x.is_nan() => Ok(x),
            GgufValue::U64(x) => Ok(x as f64),
            GgufValue::I64(x) => Ok(x as f64),
            ref other => Err(meta(
                file,
                scores_key,
                format!("element {i} should be a number, found {other:?}"),
            )),
        })
        .collect::<Result<Vec<f64>, _>>()?;
    if scores.len() != tokens.len() {
        return Err(meta(
            file,
            scores_key,
            format!("{} scores for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges_from_scores(tokens, &scores))
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(u) = unk {
        bpe = bpe.unk_token(tokens[u as usize].to_string());
    }
    let bpe = bpe
        .build()
        .map_err(|e| meta(file, scores_key, format!("cannot build the BPE model: {e}")))?;

    let prefix = file
        .get_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let mut tokenizer = Tokenizer::new(bpe);
    let spaces = replace(" ", SPACE_MARK)?;
    let normalizer = if prefix {
        NormalizerSequence::new(vec![
            Prepend::new(SPACE_MARK.to_string()).into(),
            spaces.into(),
        ])
    } else {
        NormalizerSequence::new(vec![spaces.into()])
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| TokenizerError::Other(e.to_string()))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(replace(SPACE_MARK, " ")?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok((tokenizer, true))
}

/// Every `(left, right)` pair of tokens whose concatenation is a token, best-scoring concatenation first
/// (ties by the lower id, then the shorter left part).
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut ranked = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            if ids.contains_key(left) && ids.contains_key(right) {
                ranked.push((id, cut, left, right));
            }
        }
    }
    ranked.sort_by(|a, b| {
        scores[b.0]
            .total_cmp(&scores[a.0])
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    ranked
        .into_iter()
        .map(|(_, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}

fn vocab(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect()
}

fn replace(from: &str, to: &str) -> Result<Replace, TokenizerError> {
    Replace::new(from, to).map_err(|e| TokenizerError::Other(e.to_string()))
}

pub fn build(file: &GgufFile) -> Result<Built, TokenizerError> {
    let model_key = "tokenizer.ggml.model";
    let model = file.required(model_key, file.get_str(model_key))?;
    if !matches!(model, "gpt2" | "llama") {
        return Err(meta(
            file,
            model_key,
            format!(
                "tokenizer model {model:?} is not supported (supported: \"gpt2\", byte-level BPE; \
                 \"llama\", SentencePiece BPE)"
            ),
        ));
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens = file.required(tokens_key, file.get_str_array(tokens_key))?;
    if tokens.is_empty() || tokens.len() > u32::MAX as usize {
        return Err(meta(file, tokens_key, format!("{} tokens", tokens.len())));
    }
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
    let (mut tokenizer, add_bos_default) = match model {
        "llama" => sentencepiece(file, &tokens, unk)?,
        _ => byte_level(file, &tokens, unk)?,
    };

    let added = |kinds: &'static [i64], special: bool| {
        types
            .iter()
            .zip(&tokens)
            .filter(move |(t, _)| kinds.contains(t))
            .map(move |(_, tok)| AddedToken::from(tok.to_string(), special).normalized(false))
            .collect::<Vec<_>>()
    };
    let adding = |e: tokenizers::Error| meta(file, types_key, format!("cannot add tokens: {e}"));
    tokenizer
        .add_special_tokens(added(&[TOKEN_UNKNOWN, TOKEN_CONTROL], true))
        .map_err(adding)?;
    tokenizer
        .add_tokens(added(&[TOKEN_USER_DEFINED], false))
        .map_err(adding)?;

    let mut eos_ids = Vec::new();
    for key in ["eos", "eot", "eom"] {
        let id = token_id(file, &format!("tokenizer.ggml.{key}_token_id"), n)?;
        if let Some(id) = id.filter(|id| !eos_ids.contains(id)) {
            eos_ids.push(id);
        }
    }

    let add_bos = file
        .get_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(add_bos_default);
    let add_eos = file
        .get_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let bos_added = add_bos
        .then(|| {
            bos.ok_or_else(|| {
                meta(
                    file,
                    "tokenizer.ggml.bos_token_id",
                    "BOS is to be added but there is no BOS",
                )
            })
        })
        .transpose()?;
    let eos_added = add_eos
        .then(|| {
            eos_ids.first().copied().ok_or_else(|| {
                meta(
                    file,
                    "tokenizer.ggml.eos_token_id",
                    "add_eos_token is set but there is no EOS",
                )
            })
        })
        .transpose()?;
    if bos_added.is_some() || eos_added.is_some() {
        tokenizer.with_post_processor(Some(framing(&tokens, bos_added, eos_added)?));
    }
    Ok(Built {
        tokenizer,
        eos_ids,
        bos_id: bos,
    })
}

/// BOS before and EOS after the text (a second text of a pair follows the first's EOS).
fn framing(
    tokens: &[&str],
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<TemplateProcessing, TokenizerError> {
    let name = |id: Option<u32>| id.map(|id| (tokens[id as usize].to_string(), id));
    let (bos, eos) = (name(bos), name(eos));
    let mut single: Vec<String> = bos.iter().map(|(b, _)| b.clone()).collect();
    single.push("$A".into());
    single.extend(eos.iter().map(|(e, _)| e.clone()));
    let mut pair = single.clone();
    pair.push("$B:1".into());
    pair.extend(eos.iter().map(|(e, _)| format!("{e}:1")));
    let other = |e: String| TokenizerError::Other(e);
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|t| t.try_pair(pair))
        .map_err(other)?
        .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
        .build()
        .map_err(|e| other(e.to_string()))
}
