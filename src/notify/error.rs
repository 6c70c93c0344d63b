//! The notification boundary's error. Messages never contain secrets (SMTP password, webhook secret, SMS
//! account SID and auth token), the webhook URL's path or query, which often carry tokens, nor a whole
//! phone number (only its masked form, [`mask_phone`](super::mask_phone)).

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
    /// The SMS request failed before an answer (connection, timeout); `to` is masked.
    #[error("sms to {to}: request failed: {reason}")]
    SmsRequest {
        /// The masked recipient.
        to: String,
        /// What failed, without the URL (it holds the account SID).
        reason: String,
    },
    /// The SMS API answered with a non-success status and, when its body said, a Twilio error code.
    #[error("sms to {to}: the SMS API answered HTTP {status}{}", code.map(|c| format!(" (error {c}, https://www.twilio.com/docs/errors/{c})")).unwrap_or_default())]
    SmsStatus {
        /// The masked recipient.
        to: String,
        /// The HTTP status.
        status: u16,
        /// Twilio's `code` (its `message` is left out: it often repeats the phone number).
        code: Option<u64>,
    },
}
