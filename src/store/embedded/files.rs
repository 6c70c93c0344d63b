//! Uploaded files' metadata in the embedded store: the `files` table (file id → JSON row) and two index
//! tables moved in the same write transaction as the row: `files_by_user` ((uid, created ms, file id))
//! and `files_by_session` ((session id, `""` while unattached; created ms; file id)).
//!
//! A user's files, a session's files and the unattached files created before a time are key ranges of
//! the index tables, read in order up to the limit. The files attached before a time and those under
//! another key (key rotation) are found by reading the whole `files` table, keeping the `limit` oldest.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::EmbeddedStore;
use super::tables::*;
use crate::store::error::StoreError;
use crate::store::files::{before_ms, check_session_id, duplicate_file};
use crate::store::runner::Budget;
use crate::store::{FileFilter, FileRecord, from_ms, to_ms};

/// A row of the `files` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct FileRow {
    id: String,
    uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    nm: String,
    ctype: String,
    size: u64,
    sha256: String,
    kid: String,
    wk: String,
    ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    att: Option<i64>,
}

impl FileRow {
    fn new(file: &FileRecord) -> Self {
        Self {
            id: file.id.clone(),
            uid: file.user_id.clone(),
            sid: file.session_id.clone(),
            nm: file.name.clone(),
            ctype: file.content_type.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            kid: file.key_id.clone(),
            wk: file.wrapped_key.clone(),
            ts: to_ms(file.created_at),
            att: file.attached_at.map(to_ms),
        }
    }

    fn record(self) -> FileRecord {
        FileRecord {
            id: self.id,
            user_id: self.uid,
            session_id: self.sid,
            name: self.nm,
            content_type: self.ctype,
            size: self.size,
            sha256: self.sha256,
            key_id: self.kid,
            wrapped_key: self.wk,
            created_at: from_ms(self.ts),
            attached_at: self.att.map(from_ms),
        }
    }

    /// The first part of the row's `files_by_session` key.
    fn session_key(&self) -> &str {
        self.sid.as_deref().unwrap_or("")
    }
}

fn write_get(txn: &WriteTransaction, id: &str) -> Result<Option<FileRow>, StoreError> {
    let table = txn.open_table(FILES)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

fn read_get(txn: &ReadTransaction, id: &str) -> Result<Option<FileRow>, StoreError> {
    let table = txn.open_table(FILES)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

/// Writes `row` (replacing `old`, the stored row of the same id, if any) with its index entries.
fn put(txn: &WriteTransaction, old: Option<&FileRow>, row: &FileRow) -> Result<(), StoreError> {
    let id = row.id.as_str();
    txn.open_table(FILES)?.insert(id, encode(row)?.as_slice())?;
    if let Some(old) = old {
        txn.open_table(FILES_BY_USER)?
            .remove((old.uid.as_str(), old.ts, id))?;
        txn.open_table(FILES_BY_SESSION)?
            .remove((old.session_key(), old.ts, id))?;
    }
    txn.open_table(FILES_BY_USER)?
        .insert((row.uid.as_str(), row.ts, id), ())?;
    txn.open_table(FILES_BY_SESSION)?
        .insert((row.session_key(), row.ts, id), ())?;
    Ok(())
}

/// Removes `row` and its index entries.
fn remove(txn: &WriteTransaction, row: &FileRow) -> Result<(), StoreError> {
    let id = row.id.as_str();
    txn.open_table(FILES)?.remove(id)?;
    txn.open_table(FILES_BY_USER)?
        .remove((row.uid.as_str(), row.ts, id))?;
    txn.open_table(FILES_BY_SESSION)?
        .remove((row.session_key(), row.ts, id))?;
    Ok(())
}

/// Deletes every file of `user_id` in the batch's transaction; returns how many.
pub(super) fn delete_user_files(txn: &WriteTransaction, user_id: &str) -> Result<u64, StoreError> {
    let ids = {
        let index = txn.open_table(FILES_BY_USER)?;
        ids_in(&index, user_id, None, usize::MAX)?
    };
    let mut deleted = 0;
    for id in ids {
        if let Some(row) = write_get(txn, &id)? {
            remove(txn, &row)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The file ids of an index table under `first` (created before `before`, in ms, if given), oldest
/// first, at most `limit`.
fn ids_in(
    index: &impl ReadableTable<(&'static str, i64, &'static str), ()>,
    first: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for entry in index.range((first, i64::MIN, "")..)?.take(limit) {
        let (k, _) = entry?;
        let (key, ts, id) = k.value();
        if key != first || before.is_some_and(|before| ts >= before) {
            break;
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// The files of an index table under `first` (created before `before`, in ms, if given), oldest first,
/// at most `limit`.
fn by_index(
    txn: &ReadTransaction,
    table: FileIndex,
    first: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    let ids = ids_in(&txn.open_table(table)?, first, before, limit)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = read_get(txn, &id)? {
            out.push(row.record());
        }
    }
    Ok(out)
}

/// The files `filter` selects, oldest first, at most `limit`.
fn list(
    txn: &ReadTransaction,
    filter: FileFilter<'_>,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    match filter {
        FileFilter::User(user) => by_index(txn, FILES_BY_USER, user, None, limit),
        // `""` keys the unattached files, not a session.
        FileFilter::Session("") => Ok(Vec::new()),
        FileFilter::Session(session) => by_index(txn, FILES_BY_SESSION, session, None, limit),
        FileFilter::UnattachedBefore(t) => {
            by_index(txn, FILES_BY_SESSION, "", Some(before_ms(t)), limit)
        }
        FileFilter::AttachedBefore(_) | FileFilter::NotUnderKey(_) => {
            // The whole table, keeping the `limit` oldest matches.
            let mut oldest: BTreeMap<(i64, String), FileRecord> = BTreeMap::new();
            for entry in txn.open_table(FILES)?.iter()? {
                let (_, v) = entry?;
                let file = decode::<FileRow>(v.value())?.record();
                if !filter.matches(&file) {
                    continue;
                }
                oldest.insert((to_ms(file.created_at), file.id.clone()), file);
                if oldest.len() > limit {
                    oldest.pop_last();
                }
            }
            Ok(oldest.into_values().collect())
        }
    }
}

pub(super) async fn insert_file(
    store: &EmbeddedStore,
    file: &FileRecord,
) -> Result<(), StoreError> {
    let row = FileRow::new(file);
    let inserted = store
        .write("insert_file", Budget::Short, move |txn, _| {
            if write_get(txn, &row.id)?.is_some() {
                return Ok(false);
            }
            put(txn, None, &row)?;
            Ok(true)
        })
        .await?;
    if inserted {
        Ok(())
    } else {
        Err(duplicate_file(&file.id))
    }
}

pub(super) async fn get_file(
    store: &EmbeddedStore,
    file_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    let id = file_id.to_string();
    store
        .blocking("get_file", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            Ok(read_get(&txn, &id)?.map(FileRow::record))
        })
        .await
}

pub(super) async fn attach_file(
    store: &EmbeddedStore,
    file_id: &str,
    session_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    check_session_id(session_id)?;
    let id = file_id.to_string();
    let session = session_id.to_string();
    let now = to_ms(crate::store::now());
    // Check and set in one write transaction.
    store
        .write("attach_file", Budget::Short, move |txn, _| {
            let Some(old) = write_get(txn, &id)? else {
                return Ok(None);
            };
            if old.sid.is_some() {
                return Ok(Some(old.record()));
            }
            let mut row = old.clone();
            row.sid = Some(session.clone());
            row.att = Some(now);
            put(txn, Some(&old), &row)?;
            Ok(Some(row.record()))
        })
        .await
}

pub(super) async fn delete_file(
    store: &EmbeddedStore,
    file_id: &str,
) -> Result<Option<FileRecord>, StoreError> {
    let id = file_id.to_string();
    store
        .write("delete_file", Budget::Short, move |txn, _| {
            let Some(row) = write_get(txn, &id)? else {
                return Ok(None);
            };
            remove(txn, &row)?;
            Ok(Some(row.record()))
        })
        .await
}

pub(super) async fn list_files(
    store: &EmbeddedStore,
    filter: FileFilter<'_>,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The blocking job outlives the borrowed filter: it takes owned copies.
    let owned = OwnedFilter::of(filter);
    store
        .blocking("list_files", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            list(&txn, owned.filter(), limit)
        })
        .await
}

pub(super) async fn update_file_key(
    store: &EmbeddedStore,
    file_id: &str,
    key_id: &str,
    wrapped_key: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let id = file_id.to_string();
    let (key_id, wrapped_key, name) = (
        key_id.to_string(),
        wrapped_key.to_string(),
        name.to_string(),
    );
    store
        .write("update_file_key", Budget::Short, move |txn, _| {
            let Some(old) = write_get(txn, &id)? else {
                return Ok(false);
            };
            let mut row = old.clone();
            row.kid = key_id.clone();
            row.wk = wrapped_key.clone();
            row.nm = name.clone();
            // Neither index key changes: only the row is written.
            txn.open_table(FILES)?
                .insert(id.as_str(), encode(&row)?.as_slice())?;
            Ok(true)
        })
        .await
}

/// A [`FileFilter`] owning its strings.
enum OwnedFilter {
    User(String),
    Session(String),
    UnattachedBefore(time::OffsetDateTime),
    AttachedBefore(time::OffsetDateTime),
    NotUnderKey(String),
}

impl OwnedFilter {
    fn of(filter: FileFilter<'_>) -> Self {
        match filter {
            FileFilter::User(user) => Self::User(user.to_string()),
            FileFilter::Session(session) => Self::Session(session.to_string()),
            FileFilter::UnattachedBefore(t) => Self::UnattachedBefore(t),
            FileFilter::AttachedBefore(t) => Self::AttachedBefore(t),
            FileFilter::NotUnderKey(key) => Self::NotUnderKey(key.to_string()),
        }
    }

    fn filter(&self) -> FileFilter<'_> {
        match self {
            Self::User(user) => FileFilter::User(user),
            Self::Session(session) => FileFilter::Session(session),
            Self::UnattachedBefore(t) => FileFilter::UnattachedBefore(*t),
            Self::AttachedBefore(t) => FileFilter::AttachedBefore(*t),
            Self::NotUnderKey(key) => FileFilter::NotUnderKey(key),
        }
    }
}
