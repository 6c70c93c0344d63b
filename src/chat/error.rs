//! The chat boundary's error: every failure a client frame can meet, mapped in one place to the wire code
//! and the reference's client text. Client texts come from the fixed set of the spec (`ErrorCode` in
//! `spec/asyncapi.yaml`) and never carry client input or parser details; those stay in the logs.

use crate::llm::LlmError;
use crate::protocol::ws::ErrorCode;
use crate::store::{AssistingAdmin, StoreError};

/// Why a client frame did not get its effect.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The frame is not a JSON object of the envelope's shape; the text names the problem for the log
    /// only (the client gets "Invalid message format").
    #[error("invalid message format: {0}")]
    Malformed(String),
    /// The frame breaks a validation rule; the text is for the log only.
    #[error("message validation failed: {0}")]
    Invalid(String),
    /// A known type the client may not send (`ai_response`, `loading`, ...). Only a name from the server's
    /// fixed list fits here, so the client text that repeats it stays bounded.
    #[error("unknown message type {0}")]
    UnroutableType(&'static str),
    /// `model_select` named a model that is not configured.
    #[error("invalid model id {0}")]
    UnknownModel(String),
    /// A file URL that is not https or points to a private address.
    #[error("invalid file url")]
    BadFileUrl,
    /// `file_id` names an upload of another user, or one that is gone.
    #[error("file not found")]
    FileNotFound,
    /// An uploaded file could not be read or transcribed.
    #[error("files: {0}")]
    Files(#[from] crate::files::FilesError),
    /// The session does not exist (or is not visible to the caller).
    #[error("session not found")]
    SessionNotFound,
    /// The session belongs to someone else.
    #[error("session belongs to another user")]
    NotOwner,
    /// The session has ended.
    #[error("session has ended")]
    SessionEnded,
    /// The caller lacks the admin role.
    #[error("admin role required")]
    Forbidden,
    /// Another admin assists the session (a takeover or an admin message was refused).
    #[error("session already assisted by {} ({})", .0.name, .0.id)]
    AlreadyAssisted(AssistingAdmin),
    /// Another admin assists the session (leaving it was refused).
    #[error("session assisted by {} ({})", .0.name, .0.id)]
    AssistedByOther(AssistingAdmin),
    /// The per-user message rate limit; retry after this many milliseconds.
    #[error("rate limited for {0} ms")]
    RateLimited(u64),
    /// The per-connection in-flight limit.
    #[error("too many messages in flight")]
    Busy,
    /// The user's daily token budget is used up; retry after this many milliseconds (next UTC day).
    #[error("daily token budget exhausted")]
    BudgetExceeded(u64),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The model failed.
    #[error("llm: {0}")]
    Llm(#[from] LlmError),
}

impl ChatError {
    /// The wire code, the client text and the `retry_after` (ms) for this error.
    pub fn to_wire(&self) -> (ErrorCode, String, Option<u64>) {
        match self {
            Self::Malformed(_) => (
                ErrorCode::InvalidFormat,
                "Invalid message format".into(),
                None,
            ),
            Self::Invalid(_) => (
                ErrorCode::InvalidFormat,
                "Message validation failed".into(),
                None,
            ),
            Self::UnroutableType(t) => (
                ErrorCode::InvalidFormat,
                format!("Invalid message format: unknown message type {t}"),
                None,
            ),
            Self::UnknownModel(id) => (
                ErrorCode::InvalidFormat,
                format!("Invalid model ID: {id}"),
                None,
            ),
            Self::BadFileUrl => (ErrorCode::InvalidFormat, "Invalid file URL".into(), None),
            Self::FileNotFound => (ErrorCode::InvalidFormat, "File not found".into(), None),
            Self::Files(_) => (ErrorCode::ServiceError, "File storage failed".into(), None),
            Self::SessionNotFound => (ErrorCode::NotFound, "Session not found".into(), None),
            Self::NotOwner => (
                ErrorCode::Unauthorized,
                "You do not have permission to access this session".into(),
                None,
            ),
            Self::SessionEnded => (ErrorCode::SessionEnded, "Session has ended".into(), None),
            Self::Forbidden => (
                ErrorCode::Forbidden,
                "Insufficient permissions".into(),
                None,
            ),
            Self::AlreadyAssisted(a) => (
                ErrorCode::SessionAlreadyAssisted,
                format!(
                    "Session already assisted by another admin: {} ({})",
                    a.name, a.id
                ),
                None,
            ),
            Self::AssistedByOther(a) => (
                ErrorCode::SessionAlreadyAssisted,
                format!("Session assisted by another admin: {} ({})", a.name, a.id),
                None,
            ),
            Self::RateLimited(ms) => (
                ErrorCode::TooManyRequests,
                "Too many requests, please slow down".into(),
                Some(*ms),
            ),
            Self::Busy => (
                ErrorCode::ServiceError,
                "Server busy \u{2014} please retry".into(),
                None,
            ),
            Self::BudgetExceeded(ms) => (
                ErrorCode::TokenBudgetExceeded,
                "Daily token budget exceeded".into(),
                Some(*ms),
            ),
            Self::Store(StoreError::SessionEnded) => {
                (ErrorCode::SessionEnded, "Session has ended".into(), None)
            }
            Self::Store(_) => (
                ErrorCode::DatabaseError,
                "Database operation failed".into(),
                None,
            ),
            Self::Llm(err) => {
                let (code, text) = err.client_error();
                (code, text, None)
            }
        }
    }
}
