//! Images attached to a user message, through the real providers to the fake server: the exact request
//! body of each format, and the note line models that do not see images get instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chatbox::llm::{Attachment, IMAGE_NOT_SEEN_NOTE};
use serde_json::json;

use super::*;

/// A tiny PNG-like payload and its base64 form.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_B64: &str = "iVBORw0KGgo=";
/// A JPEG-like payload and its base64 form.
const JPEG: &[u8] = b"\xff\xd8\xff\xe0";
const JPEG_B64: &str = "/9j/4A==";

fn image(media_type: &str, data: &'static [u8]) -> Attachment {
    Attachment::Image {
        media_type: media_type.to_string(),
        data: bytes::Bytes::from_static(data),
    }
}

/// A conversation whose last user message carries a PNG and a JPEG.
fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello!"),
        ChatMessage::user("What is in these pictures?")
            .with_attachments(vec![image("image/png", PNG), image("image/jpeg", JPEG)]),
    ]
}

/// Runs one turn of `model` on `messages` to its end.
async fn run_messages(llm: &Llm, model: &str, messages: Vec<ChatMessage>) -> Outcome {
    collect(llm.stream_turn(model, messages, CancellationToken::new())).await
}

#[tokio::test]
async fn openai_gets_a_text_part_then_data_url_image_parts() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider(
        "gpt",
        "openai",
        &fake,
        "system_prompt = \"Be kind.\"",
    ));
    assert!(llm.accepts_images("gpt"));
    let out = run_messages(&llm, "gpt", conversation()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(
        requests[0].body,
        json!({
            "model": "up-gpt",
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these pictures?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}},
                    {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{JPEG_B64}")}}
                ]}
            ],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[tokio::test]
async fn anthropic_gets_base64_image_blocks_then_the_text_block() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider(
        "claude",
        "anthropic",
        &fake,
        "system_prompt = \"Be kind.\"",
    ));
    assert!(llm.accepts_images("claude"));
    let out = run_messages(&llm, "claude", conversation()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(
        requests[0].body,
        json!({
            "model": "up-claude",
            "system": "Be kind.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG_B64}},
                    {"type": "text", "text": "What is in these pictures?"}
                ]}
            ],
            "max_tokens": 4096,
            "stream": true
        })
    );
}

#[tokio::test]
async fn a_message_of_images_alone_has_no_text_part() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&format!(
        "{}{}",
        provider("gpt", "openai", &fake, ""),
        provider("claude", "anthropic", &fake, "")
    ));
    for model in ["gpt", "claude"] {
        let only_image =
            vec![ChatMessage::user("").with_attachments(vec![image("image/png", PNG)])];
        let out = run_messages(&llm, model, only_image).await;
        assert!(out.error.is_none(), "{model}: {:?}", out.error);
    }
    let requests = fake.requests();
    assert_eq!(
        requests[0].body["messages"],
        json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}
        ]}])
    );
    assert_eq!(
        requests[1].body["messages"],
        json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
        ]}])
    );
}

#[tokio::test]
async fn dify_and_the_demo_model_get_a_note_line_per_image_instead() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider("dify", "dify", &fake, ""));
    assert!(!llm.accepts_images("dify"));
    let out = run_messages(&llm, "dify", conversation()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let r = &fake.requests()[0];
    assert_eq!(
        r.body["query"],
        format!(
            "user: Hi\nassistant: Hello!\nuser: What is in these pictures?\n{IMAGE_NOT_SEEN_NOTE}\n{IMAGE_NOT_SEEN_NOTE}"
        )
    );
    assert!(!r.body.to_string().contains(PNG_B64), "{}", r.body);

    let (demo, _) = build("demo_token_delay_ms = 0\n");
    assert!(!demo.accepts_images("demo"));
    let out = run_messages(&demo, "demo", conversation()).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.text
            .ends_with(&format!("\n{IMAGE_NOT_SEEN_NOTE}\n{IMAGE_NOT_SEEN_NOTE}")),
        "{}",
        out.text
    );
}
