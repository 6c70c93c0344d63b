//! Uploaded files' metadata on MongoDB: `<c>_files`, one document per file,
//! `{_id: <file id>, uid, sid?, nm, contentType, size, sha256, keyId, wrappedKey, ts, attTs?}` (`sid` and
//! `attTs` appear when the file is attached). Every write addresses the document by `_id` alone.
//!
//! Lists are `find`s sorted by `(ts, _id)`, served on MongoDB by `idx_file_user {uid, ts, _id}`,
//! `idx_file_session {sid, ts, _id}` (also the unattached files: `sid: null`) and `idx_file_attached
//! {attTs}`; key rotation's selection (`keyId` other than the active key) reads the whole collection.
//! FerretDB 1.24 (SQLite) pushes down no filter but `{_id}`: there every list reads the whole collection.

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;
use time::OffsetDateTime;

use super::MongoStore;
use super::document::*;
use crate::store::error::StoreError;
use crate::store::files::{before_ms, check_session_id, duplicate_file};
use crate::store::runner::Budget;
use crate::store::{FileFilter, FileRecord};

/// The document of `file` in `<c>_files`.
pub(super) fn file_doc(file: &FileRecord) -> Document {
    let mut d = doc! {
        "_id": &file.id,
        "uid": &file.user_id,
        "nm": &file.name,
        "contentType": &file.content_type,
        "size": i64::try_from(file.size).unwrap_or(i64::MAX),
        "sha256": &file.sha256,
        "keyId": &file.key_id,
        "wrappedKey": &file.wrapped_key,
        "ts": dt(file.created_at),
    };
    if let Some(sid) = &file.session_id {
        d.insert("sid", sid);
    }
    if let Some(at) = file.attached_at {
        d.insert("attTs", dt(at));
    }
    d
}

/// The file in `doc`.
pub(super) fn file_from_doc(doc: &Document) -> Result<FileRecord, StoreError> {
    let id =
        get_str(doc, "_id").ok_or_else(|| StoreError::Corrupt("file without string _id".into()))?;
    Ok(FileRecord {
        id,
        user_id: get_str(doc, "uid").unwrap_or_default(),
        session_id: get_str(doc, "sid"),
        name: get_str(doc, "nm").unwrap_or_default(),
        content_type: get_str(doc, "contentType").unwrap_or_default(),
        size: get_i64(doc, "size")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        sha256: get_str(doc, "sha256").unwrap_or_default(),
        key_id: get_str(doc, "keyId").unwrap_or_default(),
        wrapped_key: get_str(doc, "wrappedKey").unwrap_or_default(),
        created_at: get_date(doc, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        attached_at: get_date(doc, "attTs"),
    })
}

/// The `find` filter of `filter`.
fn filter_doc(filter: FileFilter<'_>) -> Document {
    match filter {
        FileFilter::User(user) => doc! { "uid": user },
        FileFilter::Session(session) => doc! { "sid": session },
        // `null` matches the missing field, and walks the `{sid: null}` keys of `idx_file_session`.
        FileFilter::UnattachedBefore(t) => {
            doc! { "sid": null, "ts": { "$lt": ms_date(before_ms(t)) } }
        }
        FileFilter::AttachedBefore(t) => doc! { "attTs": { "$lt": ms_date(before_ms(t)) } },
        FileFilter::NotUnderKey(key) => doc! { "keyId": { "$ne": key } },
    }
}

pub(super) async fn insert_file(store: &MongoStore, file: &FileRecord) -> Result<(), StoreError> {
    let document = file_doc(file);
    let mut attempt = 0u32;
    store
        .runner
        .run("insert_file", Budget::Short, true, || {
            attempt += 1;
            let retried = attempt > 1;
            let document = document.clone();
            async move {
                match store.files.insert_one(document).await {
                    Ok(_) => Ok(()),
                    // A retry that finds the id taken finds the insert of an attempt whose
                    // acknowledgement was lost; on the first attempt the id belongs to another file.
                    Err(e) if is_duplicate(&e) && retried => Ok(()),
                    Err(e) if is_duplicate(&e) => Err(duplicate_file(&file.id)),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await
}

pub(super) async fn get_file(
    store: &MongoStore,
    file_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    store
        .runner
        .run("get_file", Budget::Short, true, || async {
            store
                .files
                .find_one(doc! { "_id": file_id })
                .await?
                .map(|d| file_from_doc(&d))
                .transpose()
        })
        .await
}

/// A read by `_id`, then, for a file without a session, an update by `_id` that returns the document
/// after it. A filter holding the condition (`{_id, sid: null}`) would make it one command, but FerretDB
/// 1.24 serves such a filter by reading the whole collection, and has no pipeline updates to make the
/// condition part of the update. Two attaches of one file racing between the read and the update both
/// write; the later one's session is kept and both callers get the file as it stood after their update.
/// That is harmless: a file is attached by its owner's message, and a file the same owner names in two
/// sessions at once ends attached to one of them, as it would had either message come first.
pub(super) async fn attach_file(
    store: &MongoStore,
    file_id: &str,
    session_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    check_session_id(session_id)?;
    let now = dt(crate::store::now());
    store
        .runner
        .run("attach_file", Budget::Short, true, || async {
            let Some(current) = store.files.find_one(doc! { "_id": file_id }).await? else {
                return Ok(None);
            };
            let current = file_from_doc(&current)?;
            if current.session_id.is_some() {
                return Ok(Some(current));
            }
            store
                .files
                .find_one_and_update(
                    doc! { "_id": file_id },
                    doc! { "$set": { "sid": session_id, "attTs": now } },
                )
                .return_document(ReturnDocument::After)
                .await?
                .map(|d| file_from_doc(&d))
                .transpose()
        })
        .await
}

pub(super) async fn delete_file(
    store: &MongoStore,
    file_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    // Not retried once sent: a retry after a lost acknowledgement would report the file missing.
    store
        .runner
        .run("delete_file", Budget::Short, false, || async {
            store
                .files
                .find_one_and_delete(doc! { "_id": file_id })
                .await?
                .map(|d| file_from_doc(&d))
                .transpose()
        })
        .await
}

pub(super) async fn list_files(
    store: &MongoStore,
    filter: FileFilter<'_>,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    // A limit of 0 means "no limit" to MongoDB.
    if limit == 0 {
        return Ok(Vec::new());
    }
    let query = filter_doc(filter);
    store
        .runner
        .run("list_files", Budget::Long, true, || async {
            let mut cursor = store
                .files
                .find(query.clone())
                .sort(doc! { "ts": 1, "_id": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await?;
            let mut out = Vec::new();
            while let Some(d) = cursor.try_next().await? {
                out.push(file_from_doc(&d)?);
            }
            Ok(out)
        })
        .await
}

pub(super) async fn update_file_key(
    store: &MongoStore,
    file_id: &str,
    key_id: &str,
    wrapped_key: &str,
    name: &str,
) -> Result<bool, StoreError> {
    store
        .runner
        .run("update_file_key", Budget::Short, true, || async {
            let r = store
                .files
                .update_one(
                    doc! { "_id": file_id },
                    doc! { "$set": { "keyId": key_id, "wrappedKey": wrapped_key, "nm": name } },
                )
                .await?;
            Ok(r.matched_count == 1)
        })
        .await
}
