//! Voice transcription through an OpenAI-compatible `POST {url}/audio/transcriptions`: the audio file
//! as multipart/form-data (`file`, `model`, `response_format=json`), `Authorization: Bearer <key>`, and
//! the text read from the JSON answer `{"text": "..."}`.
//!
//! Errors say what failed (connection, timeout, status, unreadable answer) and never carry the API key
//! or the service's answer.

use std::time::Duration;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use secrecy::{ExposeSecret, SecretString};

use super::config::TranscriptionConfig;
use super::sse::{build_client, error_chain};

/// Longest answer read (a transcript of the longest audio the APIs accept is far below this).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Longest connect wait (shorter when the whole request's timeout is).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a transcription failed; the texts are for logs and hold no key and no response body.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The HTTP client could not be built (TLS setup).
    #[error("transcription client could not be built: {0}")]
    Client(String),
    /// The media type given for the audio is not a valid media type.
    #[error("the audio's media type is not valid")]
    MediaType,
    /// The request could not be sent or its answer not received (connection refused, DNS, TLS,
    /// connection dropped).
    #[error("transcription request failed: {0}")]
    Request(String),
    /// No complete answer within the configured timeout.
    #[error("transcription timed out after {}", super::error::format_go_duration(*.0))]
    Timeout(Duration),
    /// The service answered with a non-success status (401 bad key, 413 file too large, 415/400
    /// unsupported audio, 429 rate limit, 5xx).
    #[error("transcription service answered status {status}")]
    Status {
        /// HTTP status.
        status: u16,
    },
    /// The answer was not the expected JSON with a `text` string.
    #[error("transcription answer is unusable: {0}")]
    InvalidResponse(&'static str),
}

/// A client of one transcription endpoint, built once from [`TranscriptionConfig`]; cheap to share
/// behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Transcriber {
    client: reqwest::Client,
    endpoint: String,
    api_key: Option<SecretString>,
    model: String,
    timeout: Duration,
}

impl Transcriber {
    /// The transcriber of a validated configuration; `None` when transcription is not configured.
    pub fn from_config(config: &TranscriptionConfig) -> Result<Option<Self>, TranscribeError> {
        let Some(endpoint) = config.endpoint() else {
            return Ok(None);
        };
        let client = build_client(CONNECT_TIMEOUT.min(config.timeout))
            .map_err(|e| TranscribeError::Client(error_chain(&e)))?;
        Ok(Some(Self {
            client,
            endpoint,
            api_key: config.api_key.clone(),
            model: config.model.clone(),
            timeout: config.timeout,
        }))
    }

    /// The model sent with each file.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends `audio` (named `file_name`, of type `media_type`, e.g. `voice.webm`, `audio/webm`; the
    /// APIs tell the format by the name's extension) and returns the transcript, trimmed.
    pub async fn transcribe(
        &self,
        audio: Bytes,
        file_name: &str,
        media_type: &str,
    ) -> Result<String, TranscribeError> {
        let length = audio.len() as u64;
        let file = Part::stream_with_length(audio, length)
            .file_name(file_name.to_string())
            .mime_str(media_type)
            .map_err(|_| TranscribeError::MediaType)?;
        // Every part has a known length, so the body is sent with a Content-Length.
        let form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        let mut request = self
            .client
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .multipart(form);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| self.failure(e))?;
        let status = response.status();
        if !status.is_success() {
            // The body may echo the key (masked) or the audio's text: it is not read.
            return Err(TranscribeError::Status {
                status: status.as_u16(),
            });
        }
        let body = self.read_body(response).await?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| TranscribeError::InvalidResponse("not JSON"))?;
        answer
            .get("text")
            .and_then(serde_json::Value::as_str)
            .map(|text| text.trim().to_string())
            .ok_or(TranscribeError::InvalidResponse("no \"text\" string"))
    }

    /// Reads the answer, refusing one longer than [`MAX_RESPONSE_BYTES`].
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, TranscribeError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TranscribeError::InvalidResponse("answer too long"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Maps a transport error (the URL left out of its text).
    fn failure(&self, error: reqwest::Error) -> TranscribeError {
        if error.is_timeout() {
            TranscribeError::Timeout(self.timeout)
        } else {
            TranscribeError::Request(error_chain(&error.without_url()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config(url: Option<&str>) -> TranscriptionConfig {
        TranscriptionConfig {
            url: url.map(str::to_string),
            api_key: Some(SecretString::from("sk-transcribe-secret-5e6f")),
            ..TranscriptionConfig::default()
        }
    }

    #[test]
    fn no_url_means_no_transcriber_and_the_key_stays_out_of_debug_output() {
        assert!(Transcriber::from_config(&config(None)).unwrap().is_none());
        let transcriber = Transcriber::from_config(&config(Some("https://api.openai.com/v1")))
            .unwrap()
            .unwrap();
        assert_eq!(transcriber.model(), "whisper-1");
        assert_eq!(
            transcriber.endpoint,
            "https://api.openai.com/v1/audio/transcriptions"
        );
        let debug = format!("{transcriber:?}");
        assert!(!debug.contains("sk-transcribe-secret"), "{debug}");
    }

    #[tokio::test]
    async fn a_bad_media_type_is_refused_before_sending() {
        let transcriber = Transcriber::from_config(&config(Some("http://127.0.0.1:1/v1")))
            .unwrap()
            .unwrap();
        let err = transcriber
            .transcribe(Bytes::from_static(b"OggS"), "voice.ogg", "not a type")
            .await
            .unwrap_err();
        assert!(matches!(err, TranscribeError::MediaType), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_request_error_without_the_key() {
        let transcriber = Transcriber::from_config(&config(Some("http://127.0.0.1:1/v1")))
            .unwrap()
            .unwrap();
        let err = transcriber
            .transcribe(Bytes::from_static(b"OggS"), "voice.ogg", "audio/ogg")
            .await
            .unwrap_err();
        assert!(matches!(err, TranscribeError::Request(_)), "{err}");
        assert!(!err.to_string().contains("sk-transcribe-secret"), "{err}");
    }
}
