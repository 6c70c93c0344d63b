//! `Transcriber` against the fake's `/audio/transcriptions` over real HTTP: the exact multipart parts and
//! auth header it sends, the text it returns, and each failure's error variant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chatbox::llm::{TranscribeError, Transcriber, TranscriptionConfig};

use super::*;
use crate::support::fake_llm::{
    DEFAULT_TRANSCRIPT, TranscriptionReply, UPSTREAM_DETAIL, refused_endpoint, sha256_hex,
};

/// A transcriber configured as the server does (`[transcription]` text, environment, validation),
/// pointing at `url` with the key [`KEY`]; `extra` adds lines.
fn transcriber(url: &str, extra: &str) -> Transcriber {
    let text = format!("url = \"{url}\"\napiKey = \"{KEY}\"\n{extra}\n");
    let mut config: TranscriptionConfig = toml::from_str(&text).unwrap();
    config.apply_env(&EnvVars::default()).unwrap();
    config.validate(false).unwrap();
    Transcriber::from_config(&config).unwrap().unwrap()
}

/// 64 KiB of audio-like bytes (every byte value, so any mangling shows in the hash).
fn audio() -> Bytes {
    Bytes::from(
        (0..64 * 1024)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn audio_is_posted_as_multipart_with_the_model_and_the_bearer_key() {
    let fake = FakeLlm::start().await;
    fake.require_api_key(KEY);
    let transcriber = transcriber(&fake.base_url(), "");
    let audio = audio();
    let text = transcriber
        .transcribe(audio.clone(), "voice.webm", "audio/webm")
        .await
        .unwrap();
    assert_eq!(text, DEFAULT_TRANSCRIPT);

    let recorded = fake.transcriptions();
    assert_eq!(recorded.len(), 1);
    assert_eq!(fake.request_count(), 0, "not a chat request");
    let r = &recorded[0];
    assert_eq!(r.path, "/v1/audio/transcriptions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary="),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body_len.to_string().as_str())
    );
    let shape: Vec<_> = r
        .parts
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.file_name.as_deref(),
                p.content_type.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("file", Some("voice.webm"), Some("audio/webm")),
            ("model", None, None),
            ("response_format", None, None),
        ]
    );
    let file = r.part("file").unwrap();
    assert_eq!(file.data.len(), audio.len());
    assert_eq!(file.sha256(), sha256_hex(&audio));
    assert_eq!(r.part("model").unwrap().text(), "whisper-1");
    assert_eq!(r.part("response_format").unwrap().text(), "json");
}

#[tokio::test]
async fn the_configured_model_is_sent_and_the_scripted_text_comes_back_trimmed() {
    let fake = FakeLlm::start().await;
    fake.script_transcriptions([TranscriptionReply::Text(
        "  Bonjour tout le monde.\n".into(),
    )]);
    let transcriber = transcriber(
        &format!("{}/", fake.base_url()),
        "model = \"whisper-large-v3\"",
    );
    assert_eq!(transcriber.model(), "whisper-large-v3");
    let text = transcriber
        .transcribe(Bytes::from_static(b"OggS\0\x02"), "note.ogg", "audio/ogg")
        .await
        .unwrap();
    assert_eq!(text, "Bonjour tout le monde.");
    let r = &fake.transcriptions()[0];
    assert_eq!(r.path, "/v1/audio/transcriptions");
    assert_eq!(r.part("model").unwrap().text(), "whisper-large-v3");
    let file = r.part("file").unwrap();
    assert_eq!(file.file_name.as_deref(), Some("note.ogg"));
    assert_eq!(file.content_type.as_deref(), Some("audio/ogg"));
    assert_eq!(file.data, b"OggS\0\x02");
}

#[tokio::test]
async fn an_error_status_is_the_status_variant_without_the_body_or_the_key() {
    let fake = FakeLlm::start().await;
    fake.script_transcriptions([
        TranscriptionReply::Status(500),
        TranscriptionReply::Status(413),
    ]);
    let transcriber = transcriber(&fake.base_url(), "");
    for expected in [500, 413] {
        let err = transcriber
            .transcribe(audio(), "voice.webm", "audio/webm")
            .await
            .unwrap_err();
        assert!(
            matches!(err, TranscribeError::Status { status } if status == expected),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            !text.contains(UPSTREAM_DETAIL) && !text.contains(KEY),
            "{text}"
        );
    }
    // A key the service refuses: 401, and the body (which echoes a masked key) is not read either.
    fake.require_api_key("sk-another-key");
    let err = transcriber
        .transcribe(audio(), "voice.webm", "audio/webm")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Status { status: 401 }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("sk-"), "{err}");
}

#[tokio::test]
async fn an_answer_without_text_is_an_invalid_response() {
    let fake = FakeLlm::start().await;
    fake.script_transcriptions([
        TranscriptionReply::Raw("{\"txt\": \"secret words\"}".into()),
        TranscriptionReply::Raw("<html>gateway</html>".into()),
    ]);
    let transcriber = transcriber(&fake.base_url(), "");
    for _ in 0..2 {
        let err = transcriber
            .transcribe(audio(), "voice.webm", "audio/webm")
            .await
            .unwrap_err();
        assert!(
            matches!(err, TranscribeError::InvalidResponse(_)),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            !text.contains("secret words") && !text.contains("gateway"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_service_that_never_answers_times_out_and_a_refused_connection_is_a_request_error() {
    let fake = FakeLlm::start().await;
    fake.script_transcriptions([TranscriptionReply::Stall]);
    let transcriber = transcriber(&fake.base_url(), "timeout = \"300ms\"");
    let started = Instant::now();
    let err = transcriber
        .transcribe(audio(), "voice.webm", "audio/webm")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Timeout(t) if t == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let refused = transcriber_at_refused().await;
    let err = refused
        .transcribe(audio(), "voice.webm", "audio/webm")
        .await
        .unwrap_err();
    assert!(matches!(err, TranscribeError::Request(_)), "{err:?}");
    assert!(!err.to_string().contains(KEY), "{err}");
}

/// A transcriber whose endpoint refuses connections.
async fn transcriber_at_refused() -> Transcriber {
    transcriber(&refused_endpoint().await, "")
}
