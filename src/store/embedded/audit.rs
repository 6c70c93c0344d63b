//! The audit log of the embedded store: the `audit_log` table keyed `(time, id)`, read backwards for
//! newest-first pages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tables::*;
use super::{EmbeddedStore, Inner};
use crate::store::audit::{AuditCursor, audit_limit, new_audit_id, next_audit_cursor};
use crate::store::error::StoreError;
use crate::store::runner::Budget;
use crate::store::{AuditKind, AuditPage, AuditQuery, AuditRecord, StoredAudit, from_ms, to_ms};

/// An audit log row (the key holds the time and the id too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuditRow {
    pub(super) id: String,
    pub(super) ts: i64,
    pub(super) admin_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) admin_name: Option<String>,
    pub(super) action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) details: BTreeMap<String, String>,
}

impl AuditRow {
    pub(super) fn new(id: String, record: &AuditRecord) -> Self {
        Self {
            id,
            ts: to_ms(record.at),
            admin_id: record.admin_id.clone(),
            admin_name: record.admin_name.clone(),
            action: record.kind.as_str().to_string(),
            sid: record.session_id.clone(),
            uid: record.user_id.clone(),
            details: record.details.clone(),
        }
    }

    pub(super) fn entry(self) -> Result<StoredAudit, StoreError> {
        let kind = AuditKind::parse(&self.action)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {}", self.action)))?;
        Ok(StoredAudit {
            id: self.id,
            record: AuditRecord {
                admin_id: self.admin_id,
                admin_name: self.admin_name,
                kind,
                session_id: self.sid,
                user_id: self.uid,
                at: from_ms(self.ts),
                details: self.details,
            },
        })
    }
}

/// One newest-first page of the audit log.
pub(super) fn audit_page(inner: &Inner, query: &AuditQuery) -> Result<AuditPage, StoreError> {
    let limit = audit_limit(query);
    let cursor = query
        .cursor
        .as_deref()
        .map(AuditCursor::decode)
        .transpose()?;
    let offset = if cursor.is_some() { 0 } else { query.offset };
    let txn = inner.db.begin_read()?;
    let table = txn.open_table(AUDIT)?;
    let range = match &cursor {
        Some(c) => table.range(..(c.ms, c.id.as_str()))?,
        None => table.range::<(i64, &str)>(..)?,
    };
    let mut entries = Vec::with_capacity(limit.min(64));
    for row in range.rev().skip(offset).take(limit) {
        let (_, value) = row?;
        let row: AuditRow = decode(value.value())?;
        entries.push(row.entry()?);
    }
    let next_cursor = next_audit_cursor(&entries, limit);
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}

pub(super) async fn record_audit(
    store: &EmbeddedStore,
    record: &AuditRecord,
) -> Result<StoredAudit, StoreError> {
    let row = AuditRow::new(new_audit_id(), record);
    let bytes = encode(&row)?;
    let key_id = row.id.clone();
    let ts = row.ts;
    store
        .write("record_audit", Budget::Short, move |txn, _| {
            txn.open_table(AUDIT)?
                .insert((ts, key_id.as_str()), bytes.as_slice())?;
            Ok(())
        })
        .await?;
    row.entry()
}

pub(super) async fn list_audit(
    store: &EmbeddedStore,
    query: &AuditQuery,
) -> Result<AuditPage, StoreError> {
    let query = query.clone();
    store
        .blocking("list_audit", Budget::Long, move |inner| {
            audit_page(inner, &query)
        })
        .await
}
