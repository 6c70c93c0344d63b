//! The audit log of administrator actions (takeover, leave, transfer, reads of a user's sessions, exports,
//! deletions): who acted, what they did, when, and on which session or user. Listed newest first by
//! `GET /admin/audit`, with offset or cursor paging.
//!
//! **Not yet persistent.** The store has no audit collection yet, so [`MemoryAuditLog`] keeps the entries
//! in this process only: they are lost on restart and not shared between nodes. A store-backed
//! implementation of [`AuditLog`] replaces it without touching the handlers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::protocol::http::{AuditAction, AuditEntry};
use crate::protocol::http_timestamp;

/// What an administrator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// Took a session over (HTTP takeover or WebSocket `admin_join`).
    Takeover,
    /// Stopped assisting (HTTP leave or WebSocket `admin_leave`).
    TakeoverEnd,
    /// Took a session over from another administrator.
    TakeoverTransfer,
    /// Listed one user's sessions.
    UserSessionsView,
    /// Exported one user's data.
    UserExport,
    /// Deleted one user's data.
    UserDelete,
}

impl From<AuditKind> for AuditAction {
    fn from(kind: AuditKind) -> Self {
        match kind {
            AuditKind::Takeover => Self::Takeover,
            AuditKind::TakeoverEnd => Self::TakeoverEnd,
            AuditKind::TakeoverTransfer => Self::TakeoverTransfer,
            AuditKind::UserSessionsView => Self::UserSessionsView,
            AuditKind::UserExport => Self::UserExport,
            AuditKind::UserDelete => Self::UserDelete,
        }
    }
}

/// One administrator action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Administrator's user id.
    pub admin_id: String,
    /// Administrator's display name, when the token had one.
    pub admin_name: Option<String>,
    /// The action.
    pub kind: AuditKind,
    /// Target session, for session-level actions.
    pub session_id: Option<String>,
    /// Target user (the session's owner or the user acted on).
    pub user_id: Option<String>,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Details (`previous_admin_id`, `sessions_deleted`, ...).
    pub details: BTreeMap<String, String>,
}

/// A stored entry: the record and its id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    /// Entry id (unique within the log).
    pub id: String,
    /// The record.
    pub record: AuditRecord,
}

impl From<&StoredAudit> for AuditEntry {
    fn from(entry: &StoredAudit) -> Self {
        let r = &entry.record;
        Self {
            id: entry.id.clone(),
            admin_id: r.admin_id.clone(),
            admin_name: r.admin_name.clone(),
            action: r.kind.into(),
            session_id: r.session_id.clone(),
            user_id: r.user_id.clone(),
            timestamp: http_timestamp(r.at),
            details: (!r.details.is_empty()).then(|| r.details.clone()),
        }
    }
}

/// A page request: newest first, `limit` entries after `offset` (or after `cursor`).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Page size.
    pub limit: usize,
    /// Entries to skip (ignored with a cursor).
    pub offset: usize,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of entries.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<StoredAudit>,
    /// Cursor of the next page when more may follow.
    pub next_cursor: Option<String>,
}

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A cursor this log did not issue.
    #[error("invalid audit cursor")]
    InvalidCursor,
    /// The backing storage failed.
    #[error("audit storage: {0}")]
    Storage(String),
}

/// Where administrator actions are recorded.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records an action.
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError>;

    /// One page of entries, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, AuditError>;
}

/// Most entries the in-memory log keeps; older ones are dropped first.
const MEMORY_CAPACITY: usize = 100_000;

/// The in-memory audit log (**not persistent**: entries live as long as the process, on this node only,
/// at most [`MEMORY_CAPACITY`] of them).
#[derive(Default)]
pub struct MemoryAuditLog {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    next: u64,
    /// Oldest first; entry `i` has sequence number `first + i`.
    entries: VecDeque<(u64, StoredAudit)>,
}

fn encode_cursor(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{seq}"))
}

fn decode_cursor(text: &str) -> Result<u64, AuditError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| AuditError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| AuditError::InvalidCursor)?;
    text.strip_prefix("audit:")
        .and_then(|n| n.parse().ok())
        .ok_or(AuditError::InvalidCursor)
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next += 1;
        let seq = inner.next;
        let id = format!(
            "{:016x}{}",
            seq,
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        inner.entries.push_back((seq, StoredAudit { id, record }));
        while inner.entries.len() > MEMORY_CAPACITY {
            inner.entries.pop_front();
        }
        Ok(())
    }

    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
        let offset = if before.is_some() { 0 } else { query.offset };
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<&(u64, StoredAudit)> = inner
            .entries
            .iter()
            .rev()
            .filter(|(seq, _)| before.is_none_or(|b| *seq < b))
            .skip(offset)
            .take(query.limit)
            .collect();
        let next_cursor = (query.limit > 0 && rows.len() == query.limit)
            .then(|| rows.last().map(|(seq, _)| encode_cursor(*seq)))
            .flatten();
        Ok(AuditPage {
            entries: rows.into_iter().map(|(_, e)| e.clone()).collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            admin_id: format!("admin{n}"),
            admin_name: None,
            kind: AuditKind::Takeover,
            session_id: Some(format!("s{n}")),
            user_id: None,
            at: OffsetDateTime::now_utc(),
            details: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn pages_newest_first_by_offset_and_cursor() {
        let log = MemoryAuditLog::default();
        for n in 0..5 {
            log.record(record(n)).await.unwrap();
        }
        let first = log
            .list(&AuditQuery {
                limit: 2,
                offset: 0,
                cursor: None,
            })
            .await
            .unwrap();
        let ids: Vec<_> = first
            .entries
            .iter()
            .map(|e| e.record.admin_id.as_str())
            .collect();
        assert_eq!(ids, ["admin4", "admin3"]);
        let second = log
            .list(&AuditQuery {
                limit: 2,
                offset: 99,
                cursor: first.next_cursor.clone(),
            })
            .await
            .unwrap();
        let ids: Vec<_> = second
            .entries
            .iter()
            .map(|e| e.record.admin_id.as_str())
            .collect();
        assert_eq!(ids, ["admin2", "admin1"]);
        // A record written meanwhile does not shift the cursor pages.
        log.record(record(9)).await.unwrap();
        let third = log
            .list(&AuditQuery {
                limit: 2,
                offset: 0,
                cursor: second.next_cursor.clone(),
            })
            .await
            .unwrap();
        assert_eq!(third.entries.len(), 1);
        assert!(third.next_cursor.is_none());
        let by_offset = log
            .list(&AuditQuery {
                limit: 10,
                offset: 1,
                cursor: None,
            })
            .await
            .unwrap();
        assert_eq!(by_offset.entries[0].record.admin_id, "admin4");
    }

    #[tokio::test]
    async fn foreign_cursors_are_refused() {
        let log = MemoryAuditLog::default();
        for bad in ["nope", "!!", &URL_SAFE_NO_PAD.encode("other:1")] {
            let err = log
                .list(&AuditQuery {
                    limit: 1,
                    offset: 0,
                    cursor: Some(bad.to_string()),
                })
                .await
                .unwrap_err();
            assert!(matches!(err, AuditError::InvalidCursor));
        }
    }
}
