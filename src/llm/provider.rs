//! The `LlmProvider` trait, the messages it takes and the events it streams, and the per-attempt
//! error the retry policy classifies.

use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
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

/// The image media types a model can be given: PNG, JPEG, GIF and WebP (those OpenAI and Anthropic
/// both accept).
pub const IMAGE_MEDIA_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The line a model that does not see images (Dify, the demo model) gets in place of each image
/// attached to a message.
pub const IMAGE_NOT_SEEN_NOTE: &str =
    "[An image was attached, but this model does not see images.]";

/// A file given to the model with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// An image (`media_type` image/png, image/jpeg, image/gif or image/webp), its bytes.
    Image {
        /// The image's media type, one of [`IMAGE_MEDIA_TYPES`].
        media_type: String,
        /// The image file's bytes.
        data: bytes::Bytes,
    },
}

impl Attachment {
    /// The media type of the file.
    pub fn media_type(&self) -> &str {
        match self {
            Self::Image { media_type, .. } => media_type,
        }
    }

    /// The file's bytes in standard base64 (with padding), as both APIs take them.
    pub fn base64_data(&self) -> String {
        match self {
            Self::Image { data, .. } => base64::engine::general_purpose::STANDARD.encode(data),
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
    /// Files given with the message (the chat engine attaches them to user messages, the only ones
    /// providers take images in).
    pub attachments: Vec<Attachment>,
}

impl ChatMessage {
    /// A message with the given role, without attachments.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            attachments: Vec::new(),
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

    /// The message with these attachments (replacing any it had).
    pub fn with_attachments(mut self, attachments: Vec<Attachment>) -> Self {
        self.attachments = attachments;
        self
    }

    /// The message as a model that does not see images gets it: the text, then one
    /// [`IMAGE_NOT_SEEN_NOTE`] line per image (the text alone when there is none, the notes alone when
    /// the text is empty).
    pub fn text_without_images(&self) -> Cow<'_, str> {
        let images = self
            .attachments
            .iter()
            .filter(|a| matches!(a, Attachment::Image { .. }))
            .count();
        if images == 0 {
            return Cow::Borrowed(&self.content);
        }
        let lines = (!self.content.is_empty())
            .then_some(self.content.as_str())
            .into_iter()
            .chain(std::iter::repeat_n(IMAGE_NOT_SEEN_NOTE, images));
        Cow::Owned(lines.collect::<Vec<_>>().join("\n"))
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

    fn image(media_type: &str, data: &'static [u8]) -> Attachment {
        Attachment::Image {
            media_type: media_type.into(),
            data: bytes::Bytes::from_static(data),
        }
    }

    #[test]
    fn constructors_leave_attachments_empty_and_with_attachments_sets_them() {
        assert!(ChatMessage::user("Hi").attachments.is_empty());
        let png = image("image/png", b"\x89PNG");
        let message = ChatMessage::user("Hi").with_attachments(vec![png.clone()]);
        assert_eq!(message.attachments, std::slice::from_ref(&png));
        assert_eq!(png.media_type(), "image/png");
        assert_eq!(png.base64_data(), "iVBORw==");
    }

    #[test]
    fn text_without_images_adds_one_note_line_per_image() {
        let plain = ChatMessage::user("Hi");
        assert!(matches!(plain.text_without_images(), Cow::Borrowed("Hi")));
        let two = ChatMessage::user("What is this?")
            .with_attachments(vec![image("image/png", b"a"), image("image/jpeg", b"b")]);
        assert_eq!(
            two.text_without_images(),
            format!("What is this?\n{IMAGE_NOT_SEEN_NOTE}\n{IMAGE_NOT_SEEN_NOTE}")
        );
        let only_image = ChatMessage::user("").with_attachments(vec![image("image/gif", b"c")]);
        assert_eq!(only_image.text_without_images(), IMAGE_NOT_SEEN_NOTE);
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
