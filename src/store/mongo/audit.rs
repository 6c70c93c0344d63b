//! The audit log of the MongoDB store: `<c>_audit` documents, listed newest first by `(ts, _id)`.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use time::OffsetDateTime;

use super::MongoStore;
use super::document::*;
use crate::store::audit::{AuditCursor, audit_limit, new_audit_id, next_audit_cursor};
use crate::store::error::StoreError;
use crate::store::runner::Budget;
use crate::store::{AuditKind, AuditPage, AuditQuery, AuditRecord, StoredAudit};

/// The document of an audit entry in `<c>_audit`.
pub(super) fn audit_doc(id: &str, record: &AuditRecord) -> Document {
    let mut d = doc! {
        "_id": id,
        "ts": dt(record.at),
        "adminId": &record.admin_id,
        "action": record.kind.as_str(),
    };
    if let Some(name) = &record.admin_name {
        d.insert("adminName", name);
    }
    if let Some(sid) = &record.session_id {
        d.insert("sid", sid);
    }
    if let Some(uid) = &record.user_id {
        d.insert("uid", uid);
    }
    if !record.details.is_empty() {
        let details: Document = record
            .details
            .iter()
            .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
            .collect();
        d.insert("details", details);
    }
    d
}

/// The audit entry in `doc`.
pub(super) fn audit_from_doc(doc: &Document) -> Result<StoredAudit, StoreError> {
    let id = get_str(doc, "_id")
        .ok_or_else(|| StoreError::Corrupt("audit entry without string _id".into()))?;
    let action = get_str(doc, "action").unwrap_or_default();
    let kind = AuditKind::parse(&action)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {action}")))?;
    let details = match doc.get("details") {
        Some(Bson::Document(d)) => d
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(StoredAudit {
        id,
        record: AuditRecord {
            admin_id: get_str(doc, "adminId").unwrap_or_default(),
            admin_name: get_str(doc, "adminName"),
            kind,
            session_id: get_str(doc, "sid"),
            user_id: get_str(doc, "uid"),
            at: get_date(doc, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
            details,
        },
    })
}

impl MongoStore {
    pub(super) async fn list_audit_inner(
        &self,
        query: &AuditQuery,
    ) -> Result<AuditPage, StoreError> {
        let limit = audit_limit(query);
        let cursor = query
            .cursor
            .as_deref()
            .map(AuditCursor::decode)
            .transpose()?;
        let (filter, offset) = match &cursor {
            Some(c) => (
                doc! { "$or": [
                    { "ts": { "$lt": ms_date(c.ms) } },
                    { "ts": ms_date(c.ms), "_id": { "$lt": &c.id } },
                ] },
                0,
            ),
            None => (Document::new(), query.offset),
        };
        let mut rows = self
            .audit
            .find(filter)
            .sort(doc! { "ts": -1, "_id": -1 })
            .skip(offset as u64)
            .limit(query_limit(limit))
            .await?;
        let mut entries = Vec::new();
        while let Some(d) = rows.try_next().await? {
            entries.push(audit_from_doc(&d)?);
        }
        let next_cursor = next_audit_cursor(&entries, limit);
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }
}

pub(super) async fn record_audit(
    store: &MongoStore,
    record: &AuditRecord,
) -> Result<StoredAudit, StoreError> {
    let id = new_audit_id();
    let document = audit_doc(&id, record);
    // The id is fixed before the first attempt, so a retry after a lost acknowledgement finds its own
    // entry (duplicate key) and stops: the entry is written once.
    store
        .runner
        .run("record_audit", Budget::Short, true, || async {
            match store.audit.insert_one(document.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    audit_from_doc(&document)
}

pub(super) async fn list_audit(
    store: &MongoStore,
    query: &AuditQuery,
) -> Result<AuditPage, StoreError> {
    store
        .runner
        .run("list_audit", Budget::Long, true, || {
            store.list_audit_inner(query)
        })
        .await
}
