//! Turns that use uploaded files, against the fake provider over real HTTP: an image reaches an
//! OpenAI-compatible model as an image part and an Anthropic model as an image block, a text file is
//! given up to its token limit, and a voice message is transcribed (or the model is told it cannot be).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use serde_json::{Value, json};

use crate::http::uploads::{chatting, png, upload};
use crate::support::app::{WsClient, app};
use crate::support::fake_llm::{DEFAULT_TRANSCRIPT, FakeLlm, sha256_hex};

/// The first bytes of a WebM recording (EBML header with the `webm` doc type).
const WEBM: &[u8] = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm";

/// A WebM recording's bytes (its header, then audio-like bytes).
fn recording() -> Vec<u8> {
    let mut audio = WEBM.to_vec();
    audio.extend((0..5000).map(|i| (i % 251) as u8));
    audio
}

/// Posts upload `file_id` in the session, then asks `question` and waits for the answer's end.
async fn share_and_ask(ws: &mut WsClient, session: &str, file_id: &str, question: &str) {
    ws.send(json!({"type": "file_upload", "session_id": session, "file_id": file_id}))
        .await;
    ws.recv_until("file_upload").await;
    ws.send(json!({"type": "user_message", "session_id": session, "content": question}))
        .await;
    ws.recv_turn().await;
}

/// The messages of the last chat request the fake received.
fn last_messages(fake: &FakeLlm) -> Vec<Value> {
    let request = fake.requests().pop().unwrap();
    request.body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_uploaded_image_reaches_an_openai_compatible_model_as_an_image_part() {
    let fake = FakeLlm::start().await;
    let app = app()
        .toml(&fake.provider_toml("gpt", "openai", ""))
        .spawn()
        .await;
    let token = app.user_token("viewer");
    let (mut ws, session) = chatting(&app, &token).await;
    let image = png(2000);
    let id = upload(&app, &token, "cat.png", image.clone()).await.id();
    share_and_ask(&mut ws, &session, &id, "What is in the picture?").await;

    let messages = last_messages(&fake);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
    let with_image = messages
        .iter()
        .find(|m| m["content"].is_array())
        .expect("a message with parts");
    assert_eq!(with_image["role"], "user");
    assert_eq!(
        with_image["content"],
        json!([
            {"type": "text", "text": "[Image: cat.png]"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}},
        ])
    );
    let last = messages.last().unwrap();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("user"), Some("What is in the picture?"))
    );
}

#[tokio::test]
async fn an_uploaded_image_reaches_an_anthropic_model_as_an_image_block() {
    let fake = FakeLlm::start().await;
    let app = app()
        .toml(&fake.provider_toml("claude", "anthropic", ""))
        .spawn()
        .await;
    let token = app.user_token("viewer");
    let (mut ws, session) = chatting(&app, &token).await;
    let image = png(3000);
    let id = upload(&app, &token, "dog.png", image.clone()).await.id();
    share_and_ask(&mut ws, &session, &id, "And this one?").await;

    let messages = last_messages(&fake);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
    let with_image = messages
        .iter()
        .find(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "image"))
        })
        .expect("a message with an image block");
    assert_eq!(
        with_image["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
            {"type": "text", "text": "[Image: dog.png]"},
        ])
    );
}

#[tokio::test]
async fn a_text_file_is_given_to_the_model_up_to_its_token_limit() {
    let fake = FakeLlm::start().await;
    let app = app()
        .toml(&fake.provider_toml("gpt", "openai", ""))
        .env("UPLOADS_TEXT_TOKENS", "10")
        .spawn()
        .await;
    let token = app.user_token("reader");
    let (mut ws, session) = chatting(&app, &token).await;
    let text = "0123456789".repeat(10);
    let id = upload(&app, &token, "digits.txt", text.clone().into_bytes())
        .await
        .id();
    share_and_ask(&mut ws, &session, &id, "Summarise the file").await;

    let messages = last_messages(&fake);
    let file = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .find(|c| c.starts_with("[File: digits.txt]"))
        .expect("the file's message");
    assert_eq!(
        file,
        format!(
            "[File: digits.txt]\n{}\n[... the rest of the file is not shown]\n[End of file: digits.txt]",
            &text[..40]
        )
    );
}

#[tokio::test]
async fn another_sessions_upload_named_by_a_copied_file_id_never_reaches_the_model() {
    let fake = FakeLlm::start().await;
    let app = app()
        .toml(&fake.provider_toml("gpt", "openai", ""))
        .spawn()
        .await;
    let owner = app.user_token("owner");
    let id = upload(&app, &owner, "private.txt", b"the owner's secret".to_vec())
        .await
        .id();
    // Another user names the id with a public URL (the Go form): stored as a link, the file is not read.
    let other = app.user_token("other");
    let (mut ws, session) = chatting(&app, &other).await;
    ws.send(json!({"type": "file_upload", "session_id": session, "file_id": id, "file_url": "https://93.184.216.34/x.txt"}))
        .await;
    let error = ws.recv_until("error").await.pop().unwrap();
    assert_eq!(error["error"]["message"], "File not found");
    ws.send(json!({"type": "user_message", "session_id": session, "content": "anything?"}))
        .await;
    ws.recv_turn().await;
    let body = fake.requests().pop().unwrap().body.to_string();
    assert!(!body.contains("secret"), "{body}");
}

#[tokio::test]
async fn an_uploaded_voice_message_is_transcribed_and_answered() {
    let fake = FakeLlm::start().await;
    let toml = format!(
        "[transcription]\nurl = \"{}\"\napiKey = \"sk-fake\"\n\n{}",
        fake.base_url(),
        fake.provider_toml("gpt", "openai", "")
    );
    let app = app().toml(&toml).spawn().await;
    let token = app.user_token("speaker");
    let (mut ws, session) = chatting(&app, &token).await;
    let audio = recording();
    let up = upload(&app, &token, "recording", audio.clone()).await;
    assert_eq!(up.body["content_type"], "video/webm");
    ws.send(json!({"type": "voice_message", "session_id": session, "file_id": up.id()}))
        .await;
    let event = ws.recv_until("voice_message").await.pop().unwrap();
    assert_eq!(event["file_url"], format!("/chatbox/uploads/{}", up.id()));
    ws.recv_turn().await;

    let recorded = fake.transcriptions();
    assert_eq!(recorded.len(), 1);
    let file = recorded[0].part("file").unwrap();
    assert_eq!(file.sha256(), sha256_hex(&audio));
    assert_eq!(file.file_name.as_deref(), Some("voice.webm"));
    assert_eq!(recorded[0].part("model").unwrap().text(), "whisper-1");
    let messages = last_messages(&fake);
    let last = messages.last().unwrap();
    assert_eq!(
        last["content"],
        format!("[Voice message, transcribed:] {DEFAULT_TRANSCRIPT}")
    );
}

#[tokio::test]
async fn without_transcription_the_model_is_told_the_voice_message_is_not_understood() {
    let fake = FakeLlm::start().await;
    let app = app()
        .toml(&fake.provider_toml("gpt", "openai", ""))
        .spawn()
        .await;
    let token = app.user_token("speaker");
    let (mut ws, session) = chatting(&app, &token).await;
    let id = upload(&app, &token, "voice.webm", recording()).await.id();
    ws.send(json!({"type": "voice_message", "session_id": session, "file_id": id}))
        .await;
    ws.recv_until("voice_message").await;
    ws.recv_turn().await;
    let messages = last_messages(&fake);
    assert_eq!(
        messages.last().unwrap()["content"],
        chatbox::chat::NOT_TRANSCRIBED
    );
    assert!(fake.transcriptions().is_empty());
}
