//! `LlmError`, the LLM boundary's one error enum, and its mapping to the client codes of reference 1.12.
//!
//! Provider details (status, body, endpoint) stay in the variants for the logs; [`LlmError::client_error`]
//! is the only place that decides what a client sees, and it never includes them.

use std::time::Duration;

use crate::protocol::ws::ErrorCode;

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Establishing the TCP/TLS connection.
    Connect,
    /// Waiting for the first token of the answer.
    FirstToken,
    /// The gap between two chunks of a running answer.
    Idle,
    /// The whole turn (`llm.turn_timeout`, Go's `chatbox.llm_stream_timeout`).
    Turn,
}

impl TimeoutKind {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstToken => "first_token",
            Self::Idle => "idle",
            Self::Turn => "turn",
        }
    }
}

/// Why a chat turn could not be answered (or not completely).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// No provider has this id.
    #[error("unknown model id {0:?}")]
    UnknownModel(String),
    /// A deadline expired before the answer was complete.
    #[error("{} timeout after {after:?} (provider {provider})", kind.as_str())]
    Timeout {
        /// Which deadline.
        kind: TimeoutKind,
        /// Its configured length.
        after: Duration,
        /// Provider id in use when it expired.
        provider: String,
        /// Whether part of the answer had already been streamed.
        partial: bool,
    },
    /// Every provider of the chain failed before the first token (or was skipped by its breaker).
    #[error("provider {provider} unavailable after {attempts} attempt(s): {detail}")]
    Unavailable {
        /// Last provider id tried.
        provider: String,
        /// Attempts made over the whole chain.
        attempts: u32,
        /// The last failure, for the logs only.
        detail: String,
    },
    /// The stream broke after the first token; what was streamed is a partial answer.
    #[error("stream of provider {provider} broke mid-answer: {detail}")]
    StreamBroken {
        /// Provider id.
        provider: String,
        /// What happened, for the logs only.
        detail: String,
    },
    /// The caller cancelled the turn (or dropped its stream).
    #[error("turn cancelled")]
    Cancelled,
}

impl LlmError {
    /// The client-facing `(code, message)` pair: the codes and generic texts of reference 1.12, never
    /// provider details. A cancelled turn normally gets no error frame; if one is sent it reads as
    /// `LLM_UNAVAILABLE` "Request cancelled".
    pub fn client_error(&self) -> (ErrorCode, String) {
        match self {
            Self::UnknownModel(id) => (ErrorCode::InvalidFormat, format!("Invalid model ID: {id}")),
            Self::Timeout { after, .. } => (
                ErrorCode::LlmTimeout,
                format!(
                    "AI service request timed out after {}",
                    format_go_duration(*after)
                ),
            ),
            Self::Unavailable { .. } | Self::StreamBroken { .. } => (
                ErrorCode::LlmUnavailable,
                "AI service is temporarily unavailable".to_string(),
            ),
            Self::Cancelled => (ErrorCode::LlmUnavailable, "Request cancelled".to_string()),
        }
    }

    /// Whether part of the answer had been streamed before the error (the chat engine keeps it,
    /// marked partial).
    pub fn is_partial(&self) -> bool {
        match self {
            Self::Timeout { partial, .. } => *partial,
            Self::StreamBroken { .. } => true,
            _ => false,
        }
    }
}

/// Formats a duration the way Go's `time.Duration.String` does (`2m0s`, `1.5s`, `200ms`, `1h0m0s`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs_nanos = u128::from(total_secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos());
    let secs = trim_fraction(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` with the fraction's trailing zeros removed (`1500, 1000` → `1.5`).
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn go_duration_strings_match_go() {
        assert_eq!(format_go_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(format_go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn client_errors_use_reference_texts_and_hide_details() {
        let timeout = LlmError::Timeout {
            kind: TimeoutKind::Turn,
            after: Duration::from_secs(120),
            provider: "p".into(),
            partial: false,
        };
        assert_eq!(
            timeout.client_error(),
            (
                ErrorCode::LlmTimeout,
                "AI service request timed out after 2m0s".to_string()
            )
        );
        let unavailable = LlmError::Unavailable {
            provider: "secret-host".into(),
            attempts: 3,
            detail: "status 500: internal".into(),
        };
        let (code, message) = unavailable.client_error();
        assert_eq!(code, ErrorCode::LlmUnavailable);
        assert_eq!(message, "AI service is temporarily unavailable");
        assert!(!message.contains("secret-host"));
    }
}
