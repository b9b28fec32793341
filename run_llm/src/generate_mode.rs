//! Generation mode: encode the prompt (through the chat template with `--chat`), stream the answer to
//! stdout as tokens arrive, then print one line of figures.

use crate::args::Args;
use crate::engine_setup::{self, Need};
use crate::progress::Bars;
use crate::pytorch;
use crate::report::{self, GenerateReport};
use crate::resolve::Model;
use anyhow::{Context, Result};
use runtime::chat::Message;
use runtime::generate::generate_with_static_cache;
use runtime::tokenize::Tokenizer;
use std::io::Write;

pub fn run(args: &Args, model: &Model, need: Need) -> Result<()> {
    let (tokenizer, prompt) = prompt_ids(args, model)?;
    let need = Need {
        seq_len: prompt.len().saturating_add(args.num_tokens),
        prompt_len: prompt.len(),
        batch: 1,
        keep_weights: args.enable_pytorch_run,
        ..need
    };
    let bars = Bars::new(args.json);
    let got = engine_setup::obtain(model, &need, args.engine.as_deref(), &bars)?;
    let mut run = crate::run_info(args, model, &need, &got);
    let mut engine = got.engine;
    if !args.json {
        report::say_err(report::header_text(&run))?;
    }
    let mut cache = engine.new_cache(1)?;
    let opts = args.generate_options(true);
    let mut stream = tokenizer.as_ref().map(Tokenizer::stream);
    let mut stream_err = None;
    let stdout = std::io::stdout();
    let mut on_token = |_: usize, id: u32| {
        if args.json {
            return;
        }
        let piece = match stream.as_mut() {
            Some(s) => s.push(id).unwrap_or_else(|e| {
                stream_err.get_or_insert(e.to_string());
                String::new()
            }),
            None => format!("{id} "),
        };
        let mut out = stdout.lock();
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    };
    let out = generate_with_static_cache(
        &mut engine,
        &mut cache,
        std::slice::from_ref(&prompt),
        &opts,
        &mut on_token,
    )
    .context("generation failed")?;
    if let Some(s) = stream
        && !args.json
    {
        report::write(&s.finish().unwrap_or_default())?;
    }
    if !args.json {
        report::write("\n")?;
    }
    if let Some(e) = stream_err {
        run.notes
            .push(format!("decoding the streamed text failed: {e}"));
    }
    let tokens = out.tokens.into_iter().next().unwrap_or_default();
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&tokens).context("decoding the generated tokens")?),
        None => None,
    };
    let t = out.timings;
    crate::debug::debug!(
        "prefill of {} tokens and the first token: {:.3} ms; {} decode steps in {:.3} ms",
        t.prefill_tokens,
        t.time_to_first_token.as_secs_f64() * 1e3,
        t.decode_steps,
        t.decode_time.as_secs_f64() * 1e3
    );
    let ttft_ms = t.time_to_first_token.as_secs_f64() * 1e3;
    let decode_ms = t.decode_time.as_secs_f64() * 1e3;
    let total_s = (ttft_ms + decode_ms) / 1e3;
    let pytorch = pytorch::compare(
        args,
        model,
        &need,
        got.weights.as_ref(),
        std::slice::from_ref(&prompt),
        std::slice::from_ref(&tokens),
        pytorch::Mode::Generate,
    )?;
    let report = GenerateReport {
        mode: "generate",
        run,
        prompt_tokens: prompt.len(),
        prompt_ids: prompt,
        text,
        ttft_ms,
        decode_ms_per_token: if t.decode_steps > 0 {
            decode_ms / t.decode_steps as f64
        } else {
            0.0
        },
        tokens_per_s: if total_s > 0.0 {
            tokens.len() as f64 / total_s
        } else {
            0.0
        },
        tokens,
        peak_rss_bytes: crate::limits::peak_rss(),
        pytorch,
    };
    let baseline = report
        .pytorch
        .as_ref()
        .map(|b| pytorch::text(b, tokenizer.as_ref()));
    report::emit(
        args.json,
        &report,
        report::generate_figures(&report),
        baseline,
        report::TextTo::Stderr,
    )
}

/// The tokenizer (when the prompt is text) and the prompt's ids.
fn prompt_ids(args: &Args, model: &Model) -> Result<(Option<Tokenizer>, Vec<u32>)> {
    let tokenizer = match (&args.prompt_ids, model.tokenizer(args.tokenizer.as_deref())) {
        (Some(ids), tok) => return Ok((tok.ok(), ids.clone())),
        (None, tok) => tok?,
    };
    let ids = if args.chat {
        let template = model.chat_template(args.tokenizer.as_deref())?;
        let text = template
            .render(&[Message::user(args.prompt.clone())], true)
            .context("rendering the chat template")?;
        // The template writes BOS itself where the model wants one.
        tokenizer.encode(&text, false)?
    } else {
        tokenizer.encode(&args.prompt, true)?
    };
    if ids.is_empty() {
        anyhow::bail!("the prompt encodes to no tokens; give a non-empty --prompt");
    }
    Ok((Some(tokenizer), ids))
}
