//! OpenAI-compatible chat completions (`POST {endpoint}/chat/completions`, `stream: true` with
//! `stream_options.include_usage`): OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM and similar.

use eventsource_stream::Event;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::config::ProviderKind;
use super::provider::{
    AttemptError, LlmProvider, ProviderEvent, ProviderRequest, ProviderStream, ReportedUsage,
};
use super::sse::{HttpTarget, SseDecoder, open_sse};

/// An OpenAI-compatible provider.
#[derive(Debug)]
pub struct OpenAiProvider {
    target: HttpTarget,
}

impl OpenAiProvider {
    /// A provider sending to `target`.
    pub fn new(target: HttpTarget) -> Self {
        Self { target }
    }

    /// The JSON body of a streaming request.
    pub fn request_body(&self, request: &ProviderRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.target.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
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
            let code = error.get("code").and_then(Value::as_u64).unwrap_or(0);
            return Err(AttemptError::ProviderEvent {
                message,
                retryable: code == 429 || code >= 500,
            });
        }
        let mut events = Vec::new();
        if let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                events.push(ProviderEvent::Delta(text.to_string()));
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                self.finish_seen = true;
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
    use crate::llm::sse::{build_client, decode_text};

    fn provider() -> OpenAiProvider {
        OpenAiProvider::new(HttpTarget {
            client: build_client(Duration::from_secs(1)).unwrap(),
            endpoint: "http://127.0.0.1:1/v1".into(),
            model: "gpt-4o".into(),
            api_key: None,
            temperature: Some(0.5),
            max_tokens: Some(100),
        })
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
        let events: Vec<_> = decode_text(text, OpenAiDecoder::default())
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
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

    #[tokio::test]
    async fn a_body_ending_before_finish_is_an_error() {
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let events = decode_text(text, OpenAiDecoder::default()).await;
        assert!(matches!(events.last(), Some(Err(AttemptError::Stream(_)))));
    }
}
