//! The built-in `demo` provider: no network, a deterministic answer derived from the user's last
//! message, streamed word by word with a configurable delay, with usage reported.

use std::time::Duration;

use futures::StreamExt;

use super::config::ProviderKind;
use super::provider::{
    Attachment, AttemptError, ChatMessage, IMAGE_NOT_SEEN_NOTE, LlmProvider, ProviderEvent,
    ProviderRequest, ProviderStream, ReportedUsage, Role,
};
use super::usage::estimate_tokens;

/// Longest excerpt of the user's message quoted in the answer (characters).
const EXCERPT_CHARS: usize = 60;

/// The demo provider.
#[derive(Debug, Clone)]
pub struct DemoProvider {
    token_delay: Duration,
}

impl DemoProvider {
    /// A demo provider waiting `token_delay` between tokens.
    pub fn new(token_delay: Duration) -> Self {
        Self { token_delay }
    }

    /// The answer to a conversation (deterministic). The demo model does not see images: an answer to a
    /// message with images ends with one [`IMAGE_NOT_SEEN_NOTE`] line per image.
    pub fn answer(messages: &[ChatMessage]) -> String {
        let last = messages.iter().rev().find(|m| m.role == Role::User);
        let text = Self::answer_text(last.map(|m| m.content.trim()).unwrap_or_default());
        let images = last.map_or(0, |m| {
            m.attachments
                .iter()
                .filter(|a| matches!(a, Attachment::Image { .. }))
                .count()
        });
        std::iter::once(text.as_str())
            .chain(std::iter::repeat_n(IMAGE_NOT_SEEN_NOTE, images))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The answer to the text of the user's last message.
    fn answer_text(last: &str) -> String {
        if last.is_empty() {
            return "Hello! This is the built-in demo model, so no real AI is answering. \
                    Send a message and I will repeat it back. Configure an LLM provider to get real answers."
                .to_string();
        }
        let first_line = last.lines().next().unwrap_or_default().trim();
        let mut excerpt: String = first_line.chars().take(EXCERPT_CHARS).collect();
        if excerpt.len() < first_line.len() {
            excerpt.push_str("...");
        }
        let words = last.split_whitespace().count();
        let plural = if words == 1 { "" } else { "s" };
        format!(
            "You said: \"{excerpt}\" ({words} word{plural}). This is the built-in demo model, so no real AI \
             is answering. Configure an LLM provider in the [[llm.providers]] section to get real answers."
        )
    }

    /// The answer split into streamed tokens (words with their trailing space).
    pub fn tokens(answer: &str) -> Vec<String> {
        answer.split_inclusive(' ').map(str::to_string).collect()
    }
}

#[async_trait::async_trait]
impl LlmProvider for DemoProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Demo
    }

    async fn open(&self, request: &ProviderRequest) -> Result<ProviderStream, AttemptError> {
        let tokens = Self::tokens(&Self::answer(&request.messages));
        let usage = ReportedUsage {
            input_tokens: Some(
                request
                    .messages
                    .iter()
                    .map(|m| estimate_tokens(&m.content))
                    .sum(),
            ),
            output_tokens: Some(tokens.len() as u64),
        };
        let delay = self.token_delay;
        let deltas = futures::stream::iter(tokens.into_iter().enumerate()).then(
            move |(i, token)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(ProviderEvent::Delta(token))
            },
        );
        let tail =
            futures::stream::iter([Ok(ProviderEvent::Usage(usage)), Ok(ProviderEvent::Done)]);
        Ok(Box::pin(deltas.chain(tail)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn answer_is_deterministic_and_quotes_the_last_user_message() {
        let messages = vec![
            ChatMessage::user("first"),
            ChatMessage::assistant("x"),
            ChatMessage::user("What is Rust?"),
        ];
        let a = DemoProvider::answer(&messages);
        assert_eq!(a, DemoProvider::answer(&messages));
        assert!(
            a.starts_with("You said: \"What is Rust?\" (3 words)."),
            "{a}"
        );
        let tokens = DemoProvider::tokens(&a);
        assert!((20..=60).contains(&tokens.len()), "{}", tokens.len());
        assert_eq!(tokens.concat(), a);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let a = DemoProvider::answer(&[ChatMessage::user(long)]);
        assert!(a.contains("...\""));
    }

    #[test]
    fn images_are_not_seen_and_the_answer_says_so() {
        let png = Attachment::Image {
            media_type: "image/png".into(),
            data: bytes::Bytes::from_static(b"\x89PNG"),
        };
        let text_only = DemoProvider::answer(&[ChatMessage::user("What is this?")]);
        let with_image = DemoProvider::answer(&[
            ChatMessage::user("What is this?").with_attachments(vec![png.clone()])
        ]);
        assert_eq!(with_image, format!("{text_only}\n{IMAGE_NOT_SEEN_NOTE}"));
        let image_only =
            DemoProvider::answer(&[ChatMessage::user("").with_attachments(vec![png.clone(), png])]);
        assert!(image_only.starts_with("Hello!"), "{image_only}");
        assert!(
            image_only.ends_with(&format!("\n{IMAGE_NOT_SEEN_NOTE}\n{IMAGE_NOT_SEEN_NOTE}")),
            "{image_only}"
        );
    }

    #[tokio::test]
    async fn streams_tokens_then_usage_then_done() {
        let provider = DemoProvider::new(Duration::ZERO);
        let request = ProviderRequest {
            messages: vec![ChatMessage::user("Hi there")],
        };
        let events: Vec<_> = provider.open(&request).await.unwrap().collect().await;
        let n = events.len();
        assert!(matches!(events[n - 1], Ok(ProviderEvent::Done)));
        assert!(matches!(events[n - 2], Ok(ProviderEvent::Usage(_))));
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(ProviderEvent::Delta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, DemoProvider::answer(&request.messages));
    }
}
