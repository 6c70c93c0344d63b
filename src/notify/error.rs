//! The notification boundary's error. Messages never contain secrets (SMTP password, webhook secret) nor
//! the webhook URL's path or query, which often carry tokens.

/// Why a notification could not be built or delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The settings cannot produce a working channel (bad address, TLS parameters).
    #[error("notification setup: {0}")]
    Setup(String),
    /// The email could not be built.
    #[error("email message: {0}")]
    Message(String),
    /// The SMTP server refused the mail or could not be reached.
    #[error("smtp: {0}")]
    Smtp(String),
    /// The webhook request failed before an answer (connection, timeout).
    #[error("webhook request: {0}")]
    WebhookRequest(String),
    /// The webhook receiver answered with a non-success status.
    #[error("webhook answered HTTP {0}")]
    WebhookStatus(u16),
}
