//! Domain records of the store (not wire types): sessions, messages, usage, query results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One chat session as stored (name decrypted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRecord {
    /// Server-generated id (32 hex characters; `_id`).
    pub id: String,
    /// Owner (`uid`).
    pub user_id: String,
    /// Session name, `""` until named (`nm`), and `""` when it cannot be decrypted (see
    /// [`name_unreadable`](Self::name_unreadable)).
    pub name: String,
    /// True when the stored name cannot be decrypted (its key is not configured, or it was altered): the
    /// name reads `""` and is not replaced by a new one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub name_unreadable: bool,
    /// Selected model / provider id, `""` for the default (`modelId`).
    pub model_id: String,
    /// Start time (`ts`).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// End time; `None` while active (`endTs`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Duration in seconds, set when ended (`dur`).
    pub duration_secs: i64,
    /// Whether an admin assisted (`adminAssisted`).
    pub admin_assisted: bool,
    /// Assisting admin's id (`assistingAdminId`).
    pub assisting_admin_id: Option<String>,
    /// Assisting admin's display name (`assistingAdminName`).
    pub assisting_admin_name: Option<String>,
    /// Whether the user asked for help (`helpRequested`).
    pub help_requested: bool,
    /// Tokens used by the session (`totalTokens`).
    pub total_tokens: i64,
    /// Time of the last stored message (`lastActivity`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_activity: Option<OffsetDateTime>,
    /// Slowest answer in ms (`maxRespTime`).
    pub max_response_ms: i64,
    /// Average answer time in ms (`avgRespTime`).
    pub avg_response_ms: i64,
    /// Number of answers behind the average (`respCount`).
    pub response_count: i64,
    /// Public share token (`shareToken`).
    pub share_token: Option<String>,
    /// Number of stored messages (`msgCount`).
    pub message_count: i64,
    /// Highest `seq` of a stored message (`lastSeq`).
    pub last_seq: u64,
    /// Highest `seq` the server may have handed out for this session, stored or not (embedded: a field of
    /// the row; MongoDB: `<c>_seqmarks`, read by `get_session` and `get_or_create_active` only, other
    /// reads report `last_seq`). Sessions without one, such as the Go service's, read `last_seq`. Never
    /// below `last_seq`.
    pub seq_mark: u64,
}

impl SessionRecord {
    /// True while the session has not ended.
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// One stored message (content decrypted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRecord {
    /// Message id, unique within its session: the idempotency key of appends (`id`). Messages written by the
    /// Go service get `legacy-<index>`.
    pub id: String,
    /// Sequence number within the session (`seq`); Go messages get their position + 1.
    pub seq: u64,
    /// Text (`content`, encrypted at rest); `""` when it cannot be decrypted, and then `metadata` has
    /// `unreadable="true"`.
    pub content: String,
    /// Server time the message was processed (`ts`).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Who wrote it (`sender`).
    pub sender: Sender,
    /// Uploaded file id (`fileId`).
    pub file_id: Option<String>,
    /// Uploaded file URL (`fileUrl`).
    pub file_url: Option<String>,
    /// String metadata (`meta`).
    pub metadata: BTreeMap<String, String>,
    /// Client-chosen id for retries (`clientMsgId`).
    pub client_msg_id: Option<String>,
    /// Model that produced an answer (`modelId`).
    pub model_id: Option<String>,
    /// True for an answer cut short (cancelled, timed out) (`partial`).
    pub partial: bool,
}

impl MessageRecord {
    /// A message with the given id, seq, sender and content, timestamped now; other fields empty.
    pub fn new(
        id: impl Into<String>,
        seq: u64,
        sender: impl Into<Sender>,
        content: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            seq,
            content: content.into(),
            timestamp: super::now(),
            sender: sender.into(),
            file_id: None,
            file_url: None,
            metadata: BTreeMap::new(),
            client_msg_id: None,
            model_id: None,
            partial: false,
        }
    }
}

/// Who wrote a stored message. Stored and serialised as its string (`user`, `ai`, `admin`, `system`); a
/// value this server does not write (from another writer of a shared database) is kept as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sender {
    /// `user`: the session's owner.
    User,
    /// `ai`: the model.
    Ai,
    /// `admin`: an assisting administrator.
    Admin,
    /// `system`: the server.
    System,
    /// Any other stored value, kept verbatim.
    Other(String),
}

impl Sender {
    /// The stored string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "user",
            Self::Ai => "ai",
            Self::Admin => "admin",
            Self::System => "system",
            Self::Other(other) => other,
        }
    }

    /// The sender a stored string names (never fails: unknown values become [`Sender::Other`]).
    pub fn parse(stored: &str) -> Self {
        match stored {
            "user" => Self::User,
            "ai" => Self::Ai,
            "admin" => Self::Admin,
            "system" => Self::System,
            other => Self::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Sender {
    fn from(stored: &str) -> Self {
        Self::parse(stored)
    }
}

impl From<String> for Sender {
    fn from(stored: String) -> Self {
        Self::parse(&stored)
    }
}

/// Compares with a stored string (`sender == "ai"`).
impl PartialEq<&str> for Sender {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Sender {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Result of [`Store::get_or_create_active`](super::Store::get_or_create_active).
#[derive(Debug, Clone)]
pub struct ActiveSession {
    /// The user's active session.
    pub session: SessionRecord,
    /// True when this call created it.
    pub created: bool,
}

/// Result of an idempotent append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The message was stored by this call.
    Stored,
    /// A message with this id was already stored; nothing changed.
    Duplicate,
}

/// Result of ending a session.
#[derive(Debug, Clone)]
pub struct EndOutcome {
    /// True when this call ended it (false: it had already ended, nothing changed).
    pub ended_now: bool,
    /// The session after the call.
    pub session: SessionRecord,
}

/// Figures of one answered turn.
#[derive(Debug, Clone, Copy)]
pub struct TurnUsage {
    /// Tokens used by the turn.
    pub tokens: i64,
    /// Time from the user's message to the end of the answer, ms.
    pub response_ms: i64,
    /// When the turn finished (its UTC day receives the tokens).
    pub at: OffsetDateTime,
}

/// The admin assisting a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssistingAdmin {
    /// Admin user id.
    pub id: String,
    /// Display name.
    pub name: String,
}

impl AssistingAdmin {
    /// The admin a stored session names as assisting, if any.
    pub fn of(session: &SessionRecord) -> Option<Self> {
        session.assisting_admin_id.clone().map(|id| Self {
            id,
            name: session.assisting_admin_name.clone().unwrap_or_default(),
        })
    }
}

/// Outcome of [`Store::claim_assistance`](super::Store::claim_assistance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller assists the session now (nobody did, or the caller already did).
    Granted,
    /// Another admin assists it; nothing changed.
    Held(AssistingAdmin),
}

/// Outcome of [`Store::release_assistance`](super::Store::release_assistance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The caller assisted the session and no longer does.
    Released,
    /// Nobody assisted it; nothing changed.
    NotAssisted,
    /// Another admin assists it; nothing changed.
    Held(AssistingAdmin),
}

/// Figures of `/admin/metrics` over sessions started in a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionMetrics {
    /// Sessions started in the range.
    pub total_sessions: i64,
    /// Of those, not ended.
    pub active_sessions: i64,
    /// Sum of their tokens.
    pub total_tokens: i64,
    /// Average of their average response times (ms, truncated), as the Go service computed it.
    pub avg_response_ms: i64,
    /// Largest response time (ms).
    pub max_response_ms: i64,
    /// Sessions with an assisting admin.
    pub admin_assisted_count: i64,
    /// Time-weighted average number of open sessions over the range: the sum over these sessions of the
    /// time each was open inside the range (active ones until `min(now, end)`), divided by the range length.
    pub avg_concurrent: f64,
}

/// All data of one user, decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct UserExport {
    /// The user.
    pub user_id: String,
    /// Sessions with their messages, newest first.
    pub sessions: Vec<ExportedSession>,
    /// Tokens per UTC day (`YYYY-MM-DD`).
    pub daily_tokens: BTreeMap<String, i64>,
}

/// One session in a [`UserExport`].
#[derive(Debug, Clone, Serialize)]
pub struct ExportedSession {
    /// The session.
    pub session: SessionRecord,
    /// Its messages in order.
    pub messages: Vec<MessageRecord>,
}

/// What [`Store::delete_user`](super::Store::delete_user) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeleteStats {
    /// Sessions deleted.
    pub sessions: u64,
    /// Messages deleted with them.
    pub messages: u64,
    /// Records of uploaded files deleted (their object-store contents are not the store's).
    pub files: u64,
}

/// Progress of a key rotation, reported after each batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationStats {
    /// Sessions examined in this run.
    pub sessions_scanned: u64,
    /// Message contents re-encrypted with the active key.
    pub messages_reencrypted: u64,
    /// Session names re-encrypted with the active key.
    pub names_reencrypted: u64,
    /// Values changed concurrently and left for the next run.
    pub skipped: u64,
    /// True when the last batch was reached.
    pub done: bool,
}

/// Callback receiving rotation progress after each batch.
pub type RotationProgress<'a> = &'a (dyn Fn(&RotationStats) + Send + Sync);
