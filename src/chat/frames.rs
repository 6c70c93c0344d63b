//! Server frames: each is built as a generated [`ServerMessage`] and serialised once to JSON text that the
//! hub shares between every connection it goes to.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::protocol::ws::{
    AiResponse, ErrorDetail, ErrorMessage, Metadata, ModelInfo, Pong, Sender, ServerMessage,
};
use crate::protocol::ws_timestamp;

use super::ChatError;

/// The current time as a frame timestamp.
pub fn now() -> String {
    ws_timestamp(time::OffsetDateTime::now_utc())
}

/// Serialises a server message. The generated types hold only strings, numbers, booleans, lists and maps,
/// which always serialise.
pub fn encode(message: &ServerMessage) -> Arc<str> {
    match serde_json::to_string(message) {
        Ok(text) => Arc::from(text),
        Err(err) => {
            tracing::error!(error = %err, "server frame failed to serialise");
            Arc::from("{\"type\":\"error\",\"sender\":\"system\",\"timestamp\":\"\"}")
        }
    }
}

/// Builds string metadata from pairs.
pub fn metadata<const N: usize>(pairs: [(&str, String); N]) -> Metadata {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<BTreeMap<_, _>>()
}

/// An error frame for `err`, addressed to the session when known.
pub fn error(
    err: &ChatError,
    session_id: Option<&str>,
    client_msg_id: Option<&str>,
    seq: Option<i64>,
) -> ServerMessage {
    let (code, message, retry_after) = err.to_wire();
    ServerMessage::Error(ErrorMessage {
        session_id: session_id.map(String::from),
        client_msg_id: client_msg_id.map(String::from),
        sender: Sender::Ai,
        error: ErrorDetail {
            code,
            message,
            recoverable: true,
            retry_after: retry_after.map(|ms| i64::try_from(ms.max(1)).unwrap_or(i64::MAX)),
        },
        seq,
        timestamp: now(),
    })
}

/// The answer to an application-level `ping`.
pub fn pong(client_msg_id: Option<String>) -> ServerMessage {
    ServerMessage::Pong(Pong {
        client_msg_id,
        sender: Sender::System,
        timestamp: now(),
    })
}

/// One streamed chunk (`done="false"`) or the final chunk (`done="true"`) of an answer.
pub struct Chunk<'a> {
    /// Session of the turn.
    pub session_id: &'a str,
    /// The delta (empty for the final chunk unless it carries the whole partial text).
    pub content: &'a str,
    /// Model answering.
    pub model_id: &'a str,
    /// The `client_msg_id` of the user message answered.
    pub client_msg_id: Option<&'a str>,
    /// Whether this ends the answer.
    pub done: bool,
    /// Extra metadata (`partial`, `fallback_from`, `tokens`, ...).
    pub extra: Vec<(&'static str, String)>,
}

impl Chunk<'_> {
    /// The `ai_response` frame with sequence number `seq`.
    pub fn frame(&self, seq: u64) -> ServerMessage {
        let mut meta = metadata([
            ("streaming", "true".to_string()),
            ("done", if self.done { "true" } else { "false" }.to_string()),
        ]);
        for (k, v) in &self.extra {
            meta.insert((*k).to_string(), v.clone());
        }
        ServerMessage::AiResponse(AiResponse {
            session_id: self.session_id.to_string(),
            content: (!self.content.is_empty()).then(|| self.content.to_string()),
            model_id: Some(self.model_id.to_string()),
            client_msg_id: self.client_msg_id.map(String::from),
            sender: Sender::Ai,
            metadata: Some(meta),
            seq: seq_i64(seq),
            timestamp: now(),
        })
    }
}

/// The wire form of a sequence number.
pub fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The model list in configured order.
pub fn models(list: &[crate::llm::ConfiguredModel]) -> Vec<ModelInfo> {
    list.iter()
        .map(|m| ModelInfo {
            id: m.id.clone(),
            name: m.name.clone(),
        })
        .collect()
}
