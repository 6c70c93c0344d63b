//! The audit log of administrator actions (takeover, leave, transfer, lists of every user's sessions, reads
//! of a user's sessions, exports, deletions, ended and read sessions): who acted, what they did, when, and on which session or user. Listed newest first by
//! `GET /admin/audit`, with offset or cursor paging.
//!
//! [`AuditLog`] is the seam the handlers and the chat service record through; [`StoreAuditLog`] keeps the
//! entries in the configured store (the `<c>_audit` MongoDB collection or the embedded `audit_log` table,
//! see `docs/storage.md`), so they survive restarts and are shared by every node on one database. The
//! domain types live in the store layer and are re-exported here.

use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::Identity;
use crate::protocol::http::{AuditAction, AuditEntry};
use crate::protocol::http_timestamp;
use crate::store::{Store, StoreError};

pub use crate::store::{AuditKind, AuditPage, AuditQuery, AuditRecord, StoredAudit};

impl From<AuditKind> for AuditAction {
    fn from(kind: AuditKind) -> Self {
        match kind {
            AuditKind::Takeover => Self::Takeover,
            AuditKind::TakeoverEnd => Self::TakeoverEnd,
            AuditKind::TakeoverTransfer => Self::TakeoverTransfer,
            AuditKind::SessionList => Self::SessionList,
            AuditKind::UserSessionsView => Self::UserSessionsView,
            AuditKind::UserExport => Self::UserExport,
            AuditKind::UserDelete => Self::UserDelete,
            AuditKind::SessionEnd => Self::SessionEnd,
            AuditKind::SessionView => Self::SessionView,
            AuditKind::FileList => Self::FileList,
            AuditKind::FileDelete => Self::FileDelete,
        }
    }
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

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A cursor this log did not issue.
    #[error("invalid audit cursor")]
    InvalidCursor,
    /// The backing storage failed.
    #[error("audit storage: {0}")]
    Storage(#[source] StoreError),
}

impl From<StoreError> for AuditError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidCursor => Self::InvalidCursor,
            other => Self::Storage(other),
        }
    }
}

/// Where administrator actions are recorded.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records an action; returns it as stored (with its id).
    async fn record(&self, record: AuditRecord) -> Result<StoredAudit, AuditError>;

    /// One page of entries, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, AuditError>;
}

/// The audit log kept in the store ([`Store::record_audit`], [`Store::list_audit`]): persistent and
/// shared by every node using the same database.
#[derive(Debug, Clone)]
pub struct StoreAuditLog {
    store: Arc<dyn Store>,
}

impl StoreAuditLog {
    /// The audit log of `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AuditLog for StoreAuditLog {
    async fn record(&self, record: AuditRecord) -> Result<StoredAudit, AuditError> {
        Ok(self.store.record_audit(&record).await?)
    }

    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        Ok(self.store.list_audit(query).await?)
    }
}

/// The record of `admin` doing `kind` now, on a session and/or user, with details.
pub fn admin_record(
    admin: &Identity,
    kind: AuditKind,
    session_id: Option<&str>,
    user_id: Option<&str>,
    details: &[(&str, String)],
) -> AuditRecord {
    AuditRecord {
        admin_id: admin.user_id.clone(),
        // `Identity::name` falls back to the user id when the token had no `name`.
        admin_name: (admin.name != admin.user_id).then(|| admin.name.clone()),
        kind,
        session_id: session_id.map(String::from),
        user_id: user_id.map(String::from),
        at: crate::store::now(),
        details: details
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    }
}

/// Records an action that has already happened: a failing audit log is logged (as an error, with the
/// action) rather than undoing or failing the action.
pub async fn record_logged(log: &dyn AuditLog, record: AuditRecord) {
    let (admin_id, kind) = (record.admin_id.clone(), record.kind);
    if let Err(err) = log.record(record).await {
        tracing::error!(error = %err, admin_id = %admin_id, action = kind.as_str(), "audit record failed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn admin_name_is_omitted_when_the_token_had_none() {
        let named = Identity {
            user_id: "root".into(),
            name: "Root".into(),
            roles: vec!["admin".into()],
        };
        let unnamed = Identity {
            user_id: "ops".into(),
            name: "ops".into(),
            roles: vec!["admin".into()],
        };
        let r = admin_record(
            &named,
            AuditKind::Takeover,
            Some("s1"),
            Some("u1"),
            &[("via", "http".into())],
        );
        assert_eq!(r.admin_name.as_deref(), Some("Root"));
        assert_eq!(r.details.get("via").map(String::as_str), Some("http"));
        let r = admin_record(&unnamed, AuditKind::UserExport, None, Some("u1"), &[]);
        assert_eq!(r.admin_name, None);
        assert!(r.details.is_empty());
    }

    #[test]
    fn store_cursor_errors_stay_cursor_errors() {
        assert!(matches!(
            AuditError::from(StoreError::InvalidCursor),
            AuditError::InvalidCursor
        ));
        assert!(matches!(
            AuditError::from(StoreError::Embedded("x".into())),
            AuditError::Storage(_)
        ));
    }
}
