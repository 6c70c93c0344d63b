//! The audit log's domain types: administrator actions as the stores keep them ([`AuditRecord`],
//! [`StoredAudit`]), the newest-first page request ([`AuditQuery`]) and its page ([`AuditPage`]), plus the
//! entry ids and the opaque paging cursor both stores share.
//!
//! Entries hold ids, names, the action, its time and details; nothing in them is encrypted. They are
//! ordered by `(time, id)`: ids are generated so that, within one process, a later entry with the same
//! millisecond has a larger id.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use super::error::StoreError;

/// What an administrator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// Took a session over (HTTP takeover or WebSocket `admin_join`).
    Takeover,
    /// Stopped assisting (HTTP leave or WebSocket `admin_leave`).
    TakeoverEnd,
    /// Took a session over from another administrator.
    TakeoverTransfer,
    /// Listed the sessions of every user (`GET /admin/sessions`), with its filters as details.
    SessionList,
    /// Listed one user's sessions.
    UserSessionsView,
    /// Exported one user's data.
    UserExport,
    /// Deleted one user's data.
    UserDelete,
    /// Ended a user's session (`POST /admin/sessions/{id}/end`).
    SessionEnd,
    /// Read a user's session with its messages (`GET /admin/sessions/{id}`).
    SessionView,
    /// Listed a session's files (`GET /admin/sessions/{id}/files`).
    FileList,
    /// Removed a file from a session (`DELETE /admin/sessions/{id}/files/{file}`).
    FileDelete,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [AuditKind; 11] = [
        Self::Takeover,
        Self::TakeoverEnd,
        Self::TakeoverTransfer,
        Self::SessionList,
        Self::UserSessionsView,
        Self::UserExport,
        Self::UserDelete,
        Self::SessionEnd,
        Self::SessionView,
        Self::FileList,
        Self::FileDelete,
    ];

    /// The stored (and wire) name: `takeover`, `takeover_end`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Takeover => "takeover",
            Self::TakeoverEnd => "takeover_end",
            Self::TakeoverTransfer => "takeover_transfer",
            Self::SessionList => "session_list",
            Self::UserSessionsView => "user_sessions_view",
            Self::UserExport => "user_export",
            Self::UserDelete => "user_delete",
            Self::SessionEnd => "session_end",
            Self::SessionView => "session_view",
            Self::FileList => "file_list",
            Self::FileDelete => "file_delete",
        }
    }

    /// The kind named `name` (see [`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One administrator action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Administrator's user id (`cli` for the command line).
    pub admin_id: String,
    /// Administrator's display name, when the token had one.
    pub admin_name: Option<String>,
    /// The action.
    pub kind: AuditKind,
    /// Target session, for session-level actions.
    pub session_id: Option<String>,
    /// Target user (the session's owner or the user acted on).
    pub user_id: Option<String>,
    /// When it happened (stored at millisecond precision).
    pub at: OffsetDateTime,
    /// Details (`previous_admin_id`, `sessions_deleted`, `via`, ...).
    pub details: BTreeMap<String, String>,
}

/// A stored entry: the record and its id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    /// Entry id (32 hex characters, unique within the log).
    pub id: String,
    /// The record.
    pub record: AuditRecord,
}

/// A page request: newest first, `limit` entries after `offset` (or after `cursor`).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Page size (the stores cap it at [`MAX_LIMIT`](super::MAX_LIMIT); 0 means 1).
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
    /// Cursor of the next page when the page is full.
    pub next_cursor: Option<String>,
}

/// Last generated id prefix: (milliseconds, counter within that millisecond).
static LAST_ID: Mutex<(i64, u16)> = Mutex::new((i64::MIN, 0));

/// A fresh entry id: 12 hex digits of milliseconds, a 4-digit counter within the millisecond and 16
/// random hex digits. Ids of one process increase, so entries recorded in the same millisecond list in
/// the order they were recorded.
pub(crate) fn new_audit_id() -> String {
    let wall = super::to_ms(OffsetDateTime::now_utc());
    let (ms, counter) = {
        let mut last = LAST_ID.lock().unwrap_or_else(|p| p.into_inner());
        let next = if wall > last.0 {
            (wall, 0)
        } else if last.1 < u16::MAX {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = next;
        next
    };
    let random = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("{:012x}{counter:04x}{random}", ms.max(0))
}

/// Where the next page starts: after the entry at `ms` with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditCursor {
    /// Time of the last entry of the previous page, in milliseconds.
    pub ms: i64,
    /// Id of that entry.
    pub id: String,
}

impl AuditCursor {
    /// The cursor after `entry`.
    pub(crate) fn after(entry: &StoredAudit) -> Self {
        Self {
            ms: super::to_ms(entry.record.at),
            id: entry.id.clone(),
        }
    }

    /// The opaque form handed to clients.
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("audit:{}:{}", self.ms, self.id))
    }

    /// Reads a cursor issued by [`encode`](Self::encode).
    pub(crate) fn decode(text: &str) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("audit"), Some(ms), Some(id))
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                let ms = ms.parse().map_err(|_| StoreError::InvalidCursor)?;
                Ok(Self {
                    ms,
                    id: id.to_string(),
                })
            }
            _ => Err(StoreError::InvalidCursor),
        }
    }
}

/// The cursor of the page after `entries` when the page is full.
pub(crate) fn next_audit_cursor(entries: &[StoredAudit], limit: usize) -> Option<String> {
    if entries.len() < limit {
        return None;
    }
    entries.last().map(|e| AuditCursor::after(e).encode())
}

/// The page size a store serves for `query`.
pub(crate) fn audit_limit(query: &AuditQuery) -> usize {
    query.limit.clamp(1, super::MAX_LIMIT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_process() {
        let ids: Vec<String> = (0..1000).map(|_| new_audit_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0][..16] < pair[1][..16], "{pair:?}");
        }
        assert!(ids.iter().all(|id| id.len() == 32));
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = AuditCursor {
            ms: 1_700_000_000_123,
            id: new_audit_id(),
        };
        assert_eq!(AuditCursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in [
            "nope",
            "!!",
            &URL_SAFE_NO_PAD.encode("other:1:abc"),
            &URL_SAFE_NO_PAD.encode("audit:x:abc"),
            &URL_SAFE_NO_PAD.encode("audit:1:"),
            &URL_SAFE_NO_PAD.encode("audit:1"),
        ] {
            assert!(
                matches!(AuditCursor::decode(bad), Err(StoreError::InvalidCursor)),
                "{bad}"
            );
        }
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::parse("nope"), None);
    }
}
