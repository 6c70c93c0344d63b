//! Dify chat-messages streaming (`POST {endpoint}/chat-messages`, `response_mode: streaming`): `data:`
//! lines whose JSON `event` is `message`/`agent_message` (text in `answer`), `message_end` (usage in
//! `metadata.usage`), `error` (now an error, not a silent end) or `ping`.

use eventsource_stream::Event;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::config::ProviderKind;
use super::provider::{
    AttemptError, LlmProvider, ProviderEvent, ProviderRequest, ProviderStream, ReportedUsage,
};
use super::sse::{HttpTarget, SseDecoder, open_sse};

/// The Dify provider.
#[derive(Debug)]
pub struct DifyProvider {
    target: HttpTarget,
}

impl DifyProvider {
    /// A provider sending to `target`.
    pub fn new(target: HttpTarget) -> Self {
        Self { target }
    }

    /// The JSON body: as the Go service, the conversation as `<role>: <content>` lines in `query`
    /// (Dify keeps no history for us: no `conversation_id`). Dify is sent no images: each one is a
    /// note line after its message's text ([`ChatMessage::text_without_images`]).
    ///
    /// [`ChatMessage::text_without_images`]: super::provider::ChatMessage::text_without_images
    pub fn request_body(&self, request: &ProviderRequest) -> Value {
        let query = request
            .messages
            .iter()
            .map(|m| format!("{}: {}", m.role.as_str(), m.text_without_images()))
            .collect::<Vec<_>>()
            .join("\n");
        json!({
            "inputs": {},
            "query": query,
            "response_mode": "streaming",
            "user": "chatbox",
        })
    }
}

#[async_trait::async_trait]
impl LlmProvider for DifyProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dify
    }

    async fn open(&self, request: &ProviderRequest) -> Result<ProviderStream, AttemptError> {
        let mut builder = self
            .target
            .client
            .post(self.target.url("/chat-messages"))
            .json(&self.request_body(request));
        if let Some(key) = &self.target.api_key {
            builder = builder.bearer_auth(key.expose_secret());
        }
        open_sse(builder, self.target.api_key.as_ref(), DifyDecoder).await
    }
}

/// Decodes the Dify stream.
#[derive(Debug, Default)]
pub struct DifyDecoder;

impl SseDecoder for DifyDecoder {
    fn decode(&mut self, event: &Event) -> Result<Vec<ProviderEvent>, AttemptError> {
        let data: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![ProviderEvent::Skipped(format!(
                    "malformed chunk: {e}"
                ))]);
            }
        };
        match data.get("event").and_then(Value::as_str).unwrap_or("") {
            "message" | "agent_message" => Ok(data
                .get("answer")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| vec![ProviderEvent::Delta(t.to_string())])
                .unwrap_or_default()),
            "message_end" => {
                let usage = data.pointer("/metadata/usage");
                let field = |name: &str| usage.and_then(|u| u.get(name)).and_then(Value::as_u64);
                let mut events = Vec::new();
                if usage.is_some() {
                    events.push(ProviderEvent::Usage(ReportedUsage {
                        input_tokens: field("prompt_tokens"),
                        output_tokens: field("completion_tokens"),
                    }));
                }
                events.push(ProviderEvent::Done);
                Ok(events)
            }
            "error" => {
                let status = data.get("status").and_then(Value::as_u64).unwrap_or(0);
                let code = data.get("code").and_then(Value::as_str).unwrap_or("");
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                Err(AttemptError::ProviderEvent {
                    message: format!("{code} (status {status}): {message}"),
                    retryable: status == 429 || status >= 500,
                })
            }
            "message_replace" => Ok(vec![ProviderEvent::Skipped(
                "message_replace (moderation) cannot replace text already streamed".into(),
            )]),
            // ping, agent_thought, message_file, workflow and node events, tts_message...
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::llm::provider::ChatMessage;
    use crate::llm::sse::{build_client, decode_ok, decode_text};

    /// A provider for `https://api.dify.ai/v1` without a key.
    fn provider() -> DifyProvider {
        DifyProvider::new(HttpTarget {
            client: build_client(Duration::from_secs(1)).unwrap(),
            endpoint: "https://api.dify.ai/v1".into(),
            model: String::new(),
            api_key: None,
            temperature: None,
            max_tokens: None,
        })
    }

    #[test]
    fn request_body_matches_the_go_service() {
        let provider = provider();
        let request = ProviderRequest {
            messages: vec![
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello"),
                ChatMessage::user("Bye"),
            ],
        };
        assert_eq!(
            provider.request_body(&request),
            json!({
                "inputs": {},
                "query": "user: Hi\nassistant: Hello\nuser: Bye",
                "response_mode": "streaming",
                "user": "chatbox"
            })
        );
    }

    #[test]
    fn images_become_note_lines_in_the_query() {
        let provider = provider();
        let png = crate::llm::provider::Attachment::Image {
            media_type: "image/png".into(),
            data: bytes::Bytes::from_static(b"\x89PNG"),
        };
        let request = ProviderRequest {
            messages: vec![ChatMessage::user("What is this?").with_attachments(vec![png])],
        };
        assert_eq!(
            provider.request_body(&request)["query"],
            "user: What is this?\n[An image was attached, but this model does not see images.]"
        );
    }

    #[tokio::test]
    async fn decodes_answers_usage_and_end() {
        let text = concat!(
            "data: {\"event\": \"ping\"}\n\n",
            "data: {\"event\": \"message\", \"answer\": \"Hi\", \"conversation_id\": \"c\"}\n\n",
            "data: {\"event\": \"agent_message\", \"answer\": \" there\"}\n\n",
            "data: {\"event\": \"message_end\", \"metadata\": {\"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 3, \"total_tokens\": 10}}}\n\n",
        );
        let events = decode_ok(text, DifyDecoder).await;
        assert_eq!(
            events,
            vec![
                ProviderEvent::Delta("Hi".into()),
                ProviderEvent::Delta(" there".into()),
                ProviderEvent::Usage(ReportedUsage {
                    input_tokens: Some(7),
                    output_tokens: Some(3)
                }),
                ProviderEvent::Done
            ]
        );
    }

    #[tokio::test]
    async fn error_events_are_errors_not_silent_ends() {
        let text = "data: {\"event\": \"error\", \"status\": 500, \"code\": \"internal\", \"message\": \"boom\"}\n\n";
        let events = decode_text(text, DifyDecoder).await;
        assert!(matches!(
            events.as_slice(),
            [Err(AttemptError::ProviderEvent {
                retryable: true,
                ..
            })]
        ));
    }
}
