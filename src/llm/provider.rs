//! The `LlmProvider` trait, the messages it takes and the events it streams, and the per-attempt
//! error the retry policy classifies.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

use super::config::ProviderKind;
use super::error::TimeoutKind;

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions (the provider's system prompt is added as one).
    System,
    /// The end user.
    User,
    /// The model (or an assisting admin, as the chat engine decides).
    Assistant,
}

impl Role {
    /// The OpenAI/Anthropic spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of the conversation sent to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

/// What one attempt sends: the conversation with the provider's system prompt already first.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// Messages in order.
    pub messages: Vec<ChatMessage>,
}

/// Token counts reported by a provider (either may be missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedUsage {
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Answer tokens.
    pub output_tokens: Option<u64>,
}

/// One decoded event of a provider stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// A piece of the answer.
    Delta(String),
    /// Token usage; later reports overwrite the fields they carry.
    Usage(ReportedUsage),
    /// A chunk that could not be decoded and was skipped (logged by the caller).
    Skipped(String),
    /// The provider stopped because the answer reached its token limit (OpenAI `finish_reason:
    /// "length"`, Anthropic `stop_reason: "max_tokens"`); `Done` still follows.
    LengthLimit,
    /// The provider's end-of-answer marker.
    Done,
}

/// A stream of decoded events; ends after `Done` or an error.
pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, AttemptError>> + Send>>;

/// Why one attempt failed; details are for logs only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    /// The connection could not be made (refused, DNS, TLS).
    #[error("connection failed: {0}")]
    Connect(String),
    /// A deadline expired.
    #[error("{} timeout", .0.as_str())]
    Timeout(TimeoutKind),
    /// The provider answered with a non-success status.
    #[error("status {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// Start of the body, secrets redacted.
        body: String,
    },
    /// The stream broke or ended without the provider's end marker.
    #[error("stream error: {0}")]
    Stream(String),
    /// The provider sent an error event inside the stream.
    #[error("provider error event: {message}")]
    ProviderEvent {
        /// The provider's text.
        message: String,
        /// Whether it is worth retrying (overload, rate limit, server error).
        retryable: bool,
    },
}

impl AttemptError {
    /// Retry policy of reference 5.3, refined: connection errors, timeouts, 408, 429 and 5xx are
    /// retried; other statuses (400, 401, 403, 404, 422...) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) | Self::Stream(_) => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::ProviderEvent { retryable, .. } => *retryable,
        }
    }

    /// Whether the failure says the provider is unhealthy, so it counts against its circuit breaker:
    /// the retryable failures (connection errors, timeouts, 408, 429, 5xx, broken streams, overload
    /// events). A 400, 401 or 403 is about this request or this key: the provider answered, and one
    /// user's bad request must not open the breaker for everyone.
    pub fn counts_against_breaker(&self) -> bool {
        self.is_retryable()
    }

    /// The HTTP status, for logs.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A streaming chat backend.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// The provider kind (the `provider` metric label).
    fn kind(&self) -> ProviderKind;

    /// Sends the request and resolves once the response has started (status checked); the returned
    /// stream yields the answer. Dropping the stream closes the upstream request.
    async fn open(&self, request: &ProviderRequest) -> Result<ProviderStream, AttemptError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> AttemptError {
        AttemptError::Status {
            status,
            retry_after: None,
            body: String::new(),
        }
    }

    #[test]
    fn only_retryable_failures_count_against_the_breaker() {
        for code in [400, 401, 403, 404, 422] {
            assert!(!status(code).counts_against_breaker(), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 529] {
            assert!(status(code).counts_against_breaker(), "{code}");
        }
        assert!(AttemptError::Connect("refused".into()).counts_against_breaker());
        assert!(AttemptError::Timeout(TimeoutKind::Connect).counts_against_breaker());
        assert!(AttemptError::Stream("dropped".into()).counts_against_breaker());
        let event = |retryable| AttemptError::ProviderEvent {
            message: String::new(),
            retryable,
        };
        assert!(event(true).counts_against_breaker());
        assert!(!event(false).counts_against_breaker());
    }
}
