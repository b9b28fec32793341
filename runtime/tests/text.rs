//! Tokenizers and chat templates against transformers (`tests/fixtures/text/reference.json`, made by
//! `scripts/make_text_fixtures.py`): ids of the SmolLM2 GGUF tokenizer and of a `tokenizer.json`,
//! decoding, streaming decoding, and rendered chat templates (SmolLM2's, and one exercising Python
//! string methods, `tojson`, loop controls and `raise_exception`).

mod smollm2_common;

use runtime::chat::{ChatError, ChatTemplate, Message};
use runtime::tokenize::Tokenizer;
use runtime::weights::gguf::GgufFile;
use serde_json::Value;
use smollm2_common::root;

fn reference() -> Value {
    let path = root().join("tests/fixtures/text/reference.json");
    let text =
        std::fs::read_to_string(path).expect("reference (run scripts/make_text_fixtures.py)");
    serde_json::from_str(&text).expect("reference JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).expect("messages")
}

/// Ids, decoding and streaming of `tok` against one tokenizer's reference cases.
fn check_tokenizer(tok: &Tokenizer, cases: &Value, what: &str) {
    for case in cases.as_array().expect("cases") {
        let text = case["text"].as_str().unwrap();
        let plain = tok.encode(text, false).unwrap();
        assert_eq!(plain, ids(&case["ids"]), "{what}: ids of {text:?}");
        let special = tok.encode(text, true).unwrap();
        assert_eq!(
            special,
            ids(&case["ids_with_special"]),
            "{what}: ids+special of {text:?}"
        );
        let decoded = tok.decode(&plain).unwrap();
        assert_eq!(
            decoded,
            case["decoded"].as_str().unwrap(),
            "{what}: decode of {text:?}"
        );

        let mut stream = tok.stream();
        let mut streamed = String::new();
        for &id in &plain {
            let piece = stream.push(id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "{what}: {text:?} streamed a split character"
            );
            streamed.push_str(&piece);
        }
        streamed.push_str(&stream.finish().unwrap());
        assert_eq!(streamed, decoded, "{what}: streamed {text:?}");
    }
}

fn smollm2() -> GgufFile {
    GgufFile::open(&smollm2_common::gguf()).expect("SmolLM2 GGUF opens")
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    let file = smollm2();
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer from GGUF");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(
        tok.eos_ids(),
        &[2],
        "<|im_end|>, as generation_config.json says"
    );
    assert_eq!(tok.bos_id(), Some(1));
    check_tokenizer(&tok, &reference()["smollm2_tokenizer"], "SmolLM2 GGUF");
}

#[test]
fn tokenizer_json_matches_transformers() {
    let path = root().join("models/tiny-llama/tokenizer.json");
    let tok = Tokenizer::from_file(&path).expect("tokenizer.json loads");
    // From the sibling config.json.
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.bos_id(), Some(1));
    check_tokenizer(&tok, &reference()["tiny_tokenizer"], "tiny tokenizer.json");
}

#[test]
fn streaming_never_splits_a_character() {
    let path = root().join("models/tiny-llama/tokenizer.json");
    let tok = Tokenizer::from_file(&path).unwrap();
    // Byte-level ids: every byte of the rocket is its own token.
    let text = "a🚀b";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(ids.len(), 6);
    let mut stream = tok.stream();
    let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(pieces, ["a", "", "", "", "🚀", "b"]);
    // An unfinished character at the end comes out as U+FFFD.
    let mut stream = tok.stream();
    for &id in &ids[..3] {
        stream.push(id).unwrap();
    }
    assert_eq!(stream.finish().unwrap(), "\u{FFFD}");
}

#[test]
fn unknown_ids_are_refused() {
    let tok = Tokenizer::from_file(&root().join("models/tiny-llama/tokenizer.json")).unwrap();
    let e = tok.decode(&[70, 99_999]).unwrap_err().to_string();
    assert!(e.contains("99999"), "{e}");
    let missing = Tokenizer::from_file(&root().join("models/tiny-llama/nope.json"));
    assert!(missing.is_err());
}

#[test]
fn smollm2_chat_template_matches_transformers() {
    let file = smollm2();
    let r = reference();
    let template = ChatTemplate::from_gguf(&file)
        .unwrap()
        .expect("has a template");
    assert_eq!(
        template.source(),
        r["smollm2_chat_template"].as_str().unwrap()
    );
    let tok = Tokenizer::from_gguf(&file).unwrap();
    for case in r["smollm2_chat"].as_array().unwrap() {
        let generation = case["add_generation_prompt"].as_bool().unwrap();
        let text = template
            .render(&messages(&case["messages"]), generation)
            .unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text, false).unwrap(), ids(&case["ids"]));
    }
}

#[test]
fn python_flavoured_templates_render_like_transformers() {
    let r = reference();
    let source = r["pycompat_template"].as_str().unwrap().to_string();
    let template = ChatTemplate::new(source, None, None).unwrap();
    for case in r["pycompat_chat"].as_array().unwrap() {
        let text = template.render(&messages(&case["messages"]), true).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
    }
}

#[test]
fn raise_exception_becomes_a_render_error() {
    let r = reference();
    let source = r["raising_template"].as_str().unwrap().to_string();
    let template = ChatTemplate::new(source, None, None).unwrap();
    let err = template
        .render(
            &[Message {
                role: "assistant".into(),
                content: "hi".into(),
            }],
            false,
        )
        .unwrap_err();
    assert!(matches!(err, ChatError::Render(_)));
    let raised = r["raised"].as_str().unwrap();
    assert!(err.to_string().contains(raised), "{err}");
    assert!(template.render(&[Message::user("fine")], false).is_ok());
}

#[test]
fn templates_from_a_model_directory() {
    let dir = std::env::temp_dir().join(format!("llmforge-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(ChatTemplate::from_model_dir(&dir).unwrap().is_none());
    let config = serde_json::json!({
        "bos_token": {"content": "<s>"},
        "eos_token": "</s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
    assert_eq!(
        t.render(&[Message::user("hi")], false).unwrap(),
        "<s>hi</s>"
    );
    std::fs::write(
        dir.join("chat_template.jinja"),
        "[{{ messages[0].content }}]",
    )
    .unwrap();
    let t = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
    assert_eq!(t.render(&[Message::user("hi")], false).unwrap(), "[hi]");
    assert!(matches!(
        ChatTemplate::new("{% for %}".into(), None, None),
        Err(ChatError::Syntax(_))
    ));
}
