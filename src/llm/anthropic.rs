//! Anthropic Messages streaming (`POST {endpoint}/messages`): events `message_start` (input usage),
//! `content_block_delta` (text), `message_delta` (output usage), `message_stop`, `ping`, `error`.

use eventsource_stream::Event;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::config::ProviderKind;
use super::provider::{
    Attachment, AttemptError, ChatMessage, LlmProvider, ProviderEvent, ProviderRequest,
    ProviderStream, ReportedUsage, Role,
};
use super::sse::{HttpTarget, SseDecoder, open_sse};

/// API version header value (the one the Go service sent).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` when the provider sets none (Anthropic requires one; the Go service sent 4096).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The Anthropic provider.
#[derive(Debug)]
pub struct AnthropicProvider {
    target: HttpTarget,
}

impl AnthropicProvider {
    /// A provider sending to `target`.
    pub fn new(target: HttpTarget) -> Self {
        Self { target }
    }

    /// The JSON body of a streaming request: system messages go to the top-level `system` field
    /// (the Go service turned them into user messages).
    pub fn request_body(&self, request: &ProviderRequest) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let messages: Vec<Value> = request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(message_json)
            .collect();
        let mut body = json!({
            "model": self.target.model,
            "messages": messages,
            "max_tokens": self.target.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = self.target.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

/// One message of the request: `content` is the text, or, when the message has attachments, an array
/// of one base64 `image` block per image followed by a `text` block (left out when the text is empty),
/// images first as Anthropic advises.
fn message_json(message: &ChatMessage) -> Value {
    if message.attachments.is_empty() {
        return json!({"role": message.role.as_str(), "content": message.content});
    }
    let images = message.attachments.iter().map(|attachment| match attachment {
        Attachment::Image { media_type, .. } => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": attachment.base64_data()},
        }),
    });
    let text =
        (!message.content.is_empty()).then(|| json!({"type": "text", "text": message.content}));
    let blocks: Vec<Value> = images.chain(text).collect();
    json!({"role": message.role.as_str(), "content": blocks})
}

#[async_trait::async_trait]
impl LlmProvider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn open(&self, request: &ProviderRequest) -> Result<ProviderStream, AttemptError> {
        let mut builder = self
            .target
            .client
            .post(self.target.url("/messages"))
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&self.request_body(request));
        if let Some(key) = &self.target.api_key {
            builder = builder.header("x-api-key", key.expose_secret());
        }
        open_sse(
            builder,
            self.target.api_key.as_ref(),
            AnthropicDecoder::default(),
        )
        .await
    }
}

/// Decodes the Messages stream.
#[derive(Debug, Default)]
pub struct AnthropicDecoder {
    usage: ReportedUsage,
}

fn input_tokens(usage: &Value) -> Option<u64> {
    let base = usage.get("input_tokens").and_then(Value::as_u64)?;
    let cached = ["cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .filter_map(|k| usage.get(*k).and_then(Value::as_u64))
        .sum::<u64>();
    Some(base + cached)
}

impl SseDecoder for AnthropicDecoder {
    fn decode(&mut self, event: &Event) -> Result<Vec<ProviderEvent>, AttemptError> {
        let data: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![ProviderEvent::Skipped(format!(
                    "malformed {} event: {e}",
                    event.event
                ))]);
            }
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        match kind {
            "message_start" => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.usage.input_tokens = input_tokens(usage).or(self.usage.input_tokens);
                    self.usage.output_tokens = usage
                        .get("output_tokens")
                        .and_then(Value::as_u64)
                        .or(self.usage.output_tokens);
                }
                Ok(Vec::new())
            }
            "content_block_delta" => Ok(data
                .pointer("/delta/text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| vec![ProviderEvent::Delta(t.to_string())])
                .unwrap_or_default()),
            "message_delta" => {
                if let Some(usage) = data.get("usage") {
                    self.usage.input_tokens = input_tokens(usage).or(self.usage.input_tokens);
                    self.usage.output_tokens = usage
                        .get("output_tokens")
                        .and_then(Value::as_u64)
                        .or(self.usage.output_tokens);
                }
                let stop_reason = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                Ok(if stop_reason == Some("max_tokens") {
                    vec![ProviderEvent::LengthLimit]
                } else {
                    Vec::new()
                })
            }
            "message_stop" => Ok(vec![ProviderEvent::Usage(self.usage), ProviderEvent::Done]),
            "error" => {
                let error_type = data
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let message = data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                Err(AttemptError::ProviderEvent {
                    message: format!("{error_type}: {message}"),
                    retryable: matches!(
                        error_type,
                        "overloaded_error" | "api_error" | "rate_limit_error"
                    ),
                })
            }
            // ping, content_block_start, content_block_stop and future event types.
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

    /// A provider for `https://api.anthropic.com/v1` without a key.
    fn provider() -> AnthropicProvider {
        AnthropicProvider::new(HttpTarget {
            client: build_client(Duration::from_secs(1)).unwrap(),
            endpoint: "https://api.anthropic.com/v1".into(),
            model: "claude-3-opus".into(),
            api_key: None,
            temperature: None,
            max_tokens: None,
        })
    }

    #[test]
    fn request_body_moves_system_prompt_to_the_system_field() {
        let provider = provider();
        let request = ProviderRequest {
            messages: vec![
                ChatMessage::system("Be brief."),
                ChatMessage::user("Hi"),
                ChatMessage::assistant("Hello!"),
                ChatMessage::user("Bye"),
            ],
        };
        assert_eq!(
            provider.request_body(&request),
            json!({
                "model": "claude-3-opus",
                "system": "Be brief.",
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Bye"}
                ],
                "max_tokens": 4096,
                "stream": true
            })
        );
    }

    #[test]
    fn a_message_with_images_has_base64_image_blocks_then_a_text_block() {
        let provider = provider();
        let image = |media_type: &str, data: &'static [u8]| Attachment::Image {
            media_type: media_type.into(),
            data: bytes::Bytes::from_static(data),
        };
        let request = ProviderRequest {
            messages: vec![
                ChatMessage::user("Compare these.").with_attachments(vec![
                    image("image/png", b"\x89PNG"),
                    image("image/gif", b"GIF89a"),
                ]),
                ChatMessage::assistant("They differ."),
                ChatMessage::user("").with_attachments(vec![image("image/jpeg", b"\xff\xd8\xff")]),
            ],
        };
        assert_eq!(
            provider.request_body(&request)["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGODlh"}},
                    {"type": "text", "text": "Compare these."}
                ]},
                {"role": "assistant", "content": "They differ."},
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}
                ]}
            ])
        );
    }

    #[tokio::test]
    async fn decodes_text_usage_and_stop_and_ignores_pings() {
        let text = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let events = decode_ok(text, AnthropicDecoder::default()).await;
        assert_eq!(
            events,
            vec![
                ProviderEvent::Delta("Hi".into()),
                ProviderEvent::Usage(ReportedUsage {
                    input_tokens: Some(25),
                    output_tokens: Some(15)
                }),
                ProviderEvent::Done
            ]
        );
    }

    #[tokio::test]
    async fn error_events_fail_the_attempt() {
        let text = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let events = decode_text(text, AnthropicDecoder::default()).await;
        assert!(matches!(
            events.as_slice(),
            [Err(AttemptError::ProviderEvent {
                retryable: true,
                ..
            })]
        ));
    }

    #[tokio::test]
    async fn stop_reason_max_tokens_is_reported() {
        let text = concat!(
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":1}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let events = decode_ok(text, AnthropicDecoder::default()).await;
        assert_eq!(events[0], ProviderEvent::Delta("Hi".into()));
        assert_eq!(events[1], ProviderEvent::LengthLimit);
        assert_eq!(events.last(), Some(&ProviderEvent::Done));
    }
}
