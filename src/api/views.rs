//! Conversions from store records to the wire shapes of the HTTP API (`SessionMetadata`,
//! `SessionMessage`), with the Go service's time format and figures.

use time::OffsetDateTime;

use crate::protocol::http::{Sender, SessionDetail, SessionMessage, SessionMetadata};
use crate::protocol::http_timestamp;
use crate::state::AppState;
use crate::store::{self, MessageRecord, SessionRecord};

use super::error::ApiError;

/// The summary of a session as of `now` (an active session's duration runs until `now`).
pub fn session_metadata(session: &SessionRecord, now: OffsetDateTime) -> SessionMetadata {
    let end = session.ended_at.unwrap_or(now);
    let duration = (end - session.started_at).whole_seconds().max(0);
    SessionMetadata {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        name: session.name.clone(),
        name_unreadable: session.name_unreadable.then_some(true),
        last_activity: http_timestamp(session.last_activity.unwrap_or(session.started_at)),
        message_count: session.message_count.max(0),
        admin_assisted: session.admin_assisted,
        start_time: http_timestamp(session.started_at),
        end_time: session.ended_at.map(http_timestamp),
        is_active: session.is_active(),
        duration,
        total_tokens: session.total_tokens.max(0),
        max_response_time: session.max_response_ms.max(0),
        avg_response_time: session.avg_response_ms.max(0),
        assisting_admin_name: session
            .assisting_admin_name
            .clone()
            .filter(|n| !n.is_empty()),
        share_token: session.share_token.clone().filter(|t| !t.is_empty()),
        help_requested: session.help_requested.then_some(true),
        model_id: Some(session.model_id.clone()).filter(|m| !m.is_empty()),
        assisting_admin_id: session
            .assisting_admin_id
            .clone()
            .filter(|id| !id.is_empty()),
    }
}

/// A stored message as the HTTP API shows it (no `type` field).
pub fn session_message(message: &MessageRecord) -> SessionMessage {
    SessionMessage {
        content: message.content.clone(),
        timestamp: http_timestamp(message.timestamp),
        sender: sender(&message.sender),
        file_id: message.file_id.clone().filter(|f| !f.is_empty()),
        file_url: message.file_url.clone().filter(|f| !f.is_empty()),
        metadata: message_metadata(message),
        seq: (message.seq >= 1).then(|| i64::try_from(message.seq).unwrap_or(i64::MAX)),
    }
}

/// The stored metadata, plus `partial="true"` on an answer that was cut short (as the WebSocket replay
/// of a stored answer says it).
fn message_metadata(message: &MessageRecord) -> Option<std::collections::BTreeMap<String, String>> {
    let mut metadata = message.metadata.clone();
    if message.partial {
        metadata.insert("partial".into(), "true".into());
    }
    (!metadata.is_empty()).then_some(metadata)
}

/// `session` with its messages, as `GET /sessions/{id}` and `GET /admin/sessions/{id}` show it.
pub async fn session_detail(
    state: &AppState,
    session: SessionRecord,
) -> Result<SessionDetail, ApiError> {
    let messages = state.store.messages(&session.id, None).await?;
    Ok(SessionDetail {
        session_id: session.id,
        name: session.name,
        name_unreadable: session.name_unreadable.then_some(true),
        model_id: session.model_id,
        messages: session_messages(&messages),
        end_time: session.ended_at.map(http_timestamp),
        last_seq: (session.last_seq > 0)
            .then(|| i64::try_from(session.last_seq).unwrap_or(i64::MAX)),
    })
}

/// The messages of a session as the HTTP API shows them.
pub fn session_messages(messages: &[MessageRecord]) -> Vec<SessionMessage> {
    messages.iter().map(session_message).collect()
}

/// The wire sender of a stored message; values outside the enum (never written by this server) show as
/// `system`.
fn sender(stored: &store::Sender) -> Sender {
    match stored {
        store::Sender::User => Sender::User,
        store::Sender::Ai => Sender::Ai,
        store::Sender::Admin => Sender::Admin,
        store::Sender::System | store::Sender::Other(_) => Sender::System,
    }
}

/// A count as the wire's signed integer.
pub fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
