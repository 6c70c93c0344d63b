//! OpenAI-compatible chat completions (`POST {endpoint}/chat/completions`, `stream: true` with
//! `stream_options.include_usage` unless turned off): OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM
//! and similar.

use eventsource_stream::Event;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::config::ProviderKind;
use super::provider::{
    Attachment, AttemptError, ChatMessage, LlmProvider, ProviderEvent, ProviderRequest,
    ProviderStream, ReportedUsage,
};
use super::sse::{HttpTarget, SseDecoder, open_sse};

/// An OpenAI-compatible provider.
#[derive(Debug)]
pub struct OpenAiProvider {
    target: HttpTarget,
    include_usage: bool,
}

impl OpenAiProvider {
    /// A provider sending to `target`; `include_usage` sends `stream_options.include_usage` (some
    /// compatible servers reject the field).
    pub fn new(target: HttpTarget, include_usage: bool) -> Self {
        Self {
            target,
            include_usage,
        }
    }

    /// The JSON body of a streaming request.
    pub fn request_body(&self, request: &ProviderRequest) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": self.target.model,
            "messages": messages,
            "stream": true,
        });
        if self.include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(t) = self.target.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.target.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    async fn open(&self, request: &ProviderRequest) -> Result<ProviderStream, AttemptError> {
        let mut builder = self
            .target
            .client
            .post(self.target.url("/chat/completions"))
            .json(&self.request_body(request));
        if let Some(key) = &self.target.api_key {
            builder = builder.bearer_auth(key.expose_secret());
        }
        open_sse(
            builder,
            self.target.api_key.as_ref(),
            OpenAiDecoder::default(),
        )
        .await
    }
}

/// One message of the request: `content` is the text, or, when the message has attachments, an array
/// of a text part (left out when the text is empty) followed by one `image_url` part per image, the
/// image inline as a `data:` URL.
fn message_json(message: &ChatMessage) -> Value {
    if message.attachments.is_empty() {
        return json!({"role": message.role.as_str(), "content": message.content});
    }
    let text =
        (!message.content.is_empty()).then(|| json!({"type": "text", "text": message.content}));
    let images = message.attachments.iter().map(|attachment| match attachment {
        Attachment::Image { media_type, .. } => json!({
            "type": "image_url",
            "image_url": {"url": format!("data:{media_type};base64,{}", attachment.base64_data())},
        }),
    });
    let parts: Vec<Value> = text.into_iter().chain(images).collect();
    json!({"role": message.role.as_str(), "content": parts})
}

/// Error `code`s (strings) and `type`s of in-stream errors worth retrying: rate limits, overload and
/// server-side failures (OpenAI, vLLM and LiteLLM spell them differently).
const RETRYABLE_ERROR_NAMES: &[&str] = &[
    "rate_limit_exceeded",
    "rate_limit_error",
    "server_error",
    "internal_error",
    "internal_server_error",
    "service_unavailable",
    "overloaded",
    "overloaded_error",
    "timeout",
];

/// Whether an in-stream `error` object is retryable: a numeric `code` of 408, 429 or 5xx, or a string
/// `code` or a `type` naming a rate limit or a server-side failure.
fn error_event_is_retryable(error: &Value) -> bool {
    let code = error.get("code");
    if let Some(n) = code
        .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()))
        .filter(|n| (100..600).contains(n))
    {
        return n == 408 || n == 429 || n >= 500;
    }
    [code, error.get("type")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|name| RETRYABLE_ERROR_NAMES.contains(&name.to_ascii_lowercase().as_str()))
}

/// Decodes `data: {chat.completion.chunk}` lines until `data: [DONE]`.
#[derive(Debug, Default)]
pub struct OpenAiDecoder {
    finish_seen: bool,
}

impl SseDecoder for OpenAiDecoder {
    fn decode(&mut self, event: &Event) -> Result<Vec<ProviderEvent>, AttemptError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(vec![ProviderEvent::Done]);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![ProviderEvent::Skipped(format!(
                    "malformed chunk: {e}"
                ))]);
            }
        };
        if let Some(error) = chunk.get("error") {
            // Some compatible servers (vLLM, LiteLLM) report failures inside the stream.
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string();
            return Err(AttemptError::ProviderEvent {
                message,
                retryable: error_event_is_retryable(error),
            });
        }
        let mut events = Vec::new();
        if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                events.push(ProviderEvent::Delta(text.to_string()));
            }
            match choice.get("finish_reason") {
                None | Some(Value::Null) => {}
                Some(reason) => {
                    self.finish_seen = true;
                    if reason.as_str() == Some("length") {
                        events.push(ProviderEvent::LengthLimit);
                    }
                }
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            events.push(ProviderEvent::Usage(ReportedUsage {
                input_tokens: usage.get("prompt_tokens").and_then(Value::as_u64),
                output_tokens: usage.get("completion_tokens").and_then(Value::as_u64),
            }));
        }
        Ok(events)
    }

    fn finish(&mut self) -> Result<Vec<ProviderEvent>, AttemptError> {
        // Servers that omit `[DONE]` after a `finish_reason` still ended the answer properly.
        if self.finish_seen {
            Ok(vec![ProviderEvent::Done])
        } else {
            Err(AttemptError::Stream("stream ended without [DONE]".into()))
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

    fn provider() -> OpenAiProvider {
        provider_with_usage(true)
    }

    fn provider_with_usage(include_usage: bool) -> OpenAiProvider {
        OpenAiProvider::new(
            HttpTarget {
                client: build_client(Duration::from_secs(1)).unwrap(),
                endpoint: "http://127.0.0.1:1/v1".into(),
                model: "gpt-4o".into(),
                api_key: None,
                temperature: Some(0.5),
                max_tokens: Some(100),
            },
            include_usage,
        )
    }

    #[test]
    fn request_body_has_model_messages_stream_and_usage_option() {
        let request = ProviderRequest {
            messages: vec![ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
        };
        assert_eq!(
            provider().request_body(&request),
            json!({
                "model": "gpt-4o",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.5,
                "max_tokens": 100
            })
        );
    }

    fn image(media_type: &str, data: &'static [u8]) -> Attachment {
        Attachment::Image {
            media_type: media_type.into(),
            data: bytes::Bytes::from_static(data),
        }
    }

    #[test]
    fn a_message_with_images_has_a_text_part_then_data_url_image_parts() {
        let request = ProviderRequest {
            messages: vec![
                ChatMessage::system("Be brief."),
                ChatMessage::user("What is this?").with_attachments(vec![
                    image("image/png", b"\x89PNG"),
                    image("image/jpeg", b"\xff\xd8\xff"),
                ]),
                ChatMessage::assistant("A logo."),
                ChatMessage::user("").with_attachments(vec![image("image/webp", b"RIFF")]),
            ],
        };
        assert_eq!(
            provider_with_usage(false).request_body(&request)["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}
                ]},
                {"role": "assistant", "content": "A logo."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}}
                ]}
            ])
        );
    }

    #[tokio::test]
    async fn decodes_deltas_usage_and_done() {
        let text = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {not json\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
            "data: [DONE]\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"after done\"}}]}\n\n",
        );
        let events = decode_ok(text, OpenAiDecoder::default()).await;
        assert_eq!(events[0], ProviderEvent::Delta("Hel".into()));
        assert!(matches!(events[1], ProviderEvent::Skipped(_)));
        assert_eq!(events[2], ProviderEvent::Delta("lo".into()));
        assert_eq!(
            events[3],
            ProviderEvent::Usage(ReportedUsage {
                input_tokens: Some(9),
                output_tokens: Some(2)
            })
        );
        assert_eq!(events[4], ProviderEvent::Done);
        assert_eq!(events.len(), 5);
    }

    #[test]
    fn include_usage_can_be_left_out() {
        let request = ProviderRequest {
            messages: vec![ChatMessage::user("Hi")],
        };
        let body = provider_with_usage(false).request_body(&request);
        assert!(body.get("stream_options").is_none(), "{body}");
        assert_eq!(body["stream"], true);
    }

    #[tokio::test]
    async fn finish_reason_length_is_reported() {
        let text = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let events = decode_ok(text, OpenAiDecoder::default()).await;
        assert_eq!(
            events,
            vec![
                ProviderEvent::Delta("Hel".into()),
                ProviderEvent::LengthLimit,
                ProviderEvent::Done
            ]
        );
    }

    #[tokio::test]
    async fn string_error_codes_and_server_error_types_are_retryable() {
        for (error, retryable) in [
            (
                r#"{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}"#,
                true,
            ),
            (
                r#"{"message":"oops","type":"server_error","code":null}"#,
                true,
            ),
            (r#"{"message":"busy","code":503}"#, true),
            (r#"{"message":"busy","code":"502"}"#, true),
            (
                r#"{"message":"bad","type":"invalid_request_error","code":"context_length_exceeded"}"#,
                false,
            ),
            (r#"{"message":"bad","code":400}"#, false),
        ] {
            let text = format!("data: {{\"error\":{error}}}\n\n");
            let events = decode_text(&text, OpenAiDecoder::default()).await;
            assert!(
                matches!(events.as_slice(), [Err(AttemptError::ProviderEvent { retryable: r, .. })] if *r == retryable),
                "{error}: {events:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_ending_before_finish_is_an_error() {
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let events = decode_text(text, OpenAiDecoder::default()).await;
        assert!(matches!(events.last(), Some(Err(AttemptError::Stream(_)))));
    }
}
