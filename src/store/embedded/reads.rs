//! Reads of single sessions, their messages, the active session of a user and daily usage.

use std::ops::Bound;

use redb::ReadableTableMetadata;
use time::Date;

use super::EmbeddedStore;
use super::rows::*;
use super::tables::*;
use crate::store::date_day;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;

pub(super) async fn ping(store: &EmbeddedStore) -> Result<(), StoreError> {
    store
        .blocking("ping", Budget::Short, |inner| {
            let txn = inner.db.begin_read()?;
            txn.open_table(SESSIONS)?;
            Ok(())
        })
        .await
}

pub(super) async fn active_session_id(
    store: &EmbeddedStore,
    user_id: &str,
) -> Result<Option<String>, StoreError> {
    let user_id = user_id.to_string();
    store
        .blocking("active_session", Budget::Short, move |inner| {
            active_id(&inner.db.begin_read()?, &user_id)
        })
        .await
}

/// The id in the active-session entry of `user_id`.
fn active_id(txn: &redb::ReadTransaction, user_id: &str) -> Result<Option<String>, StoreError> {
    Ok(txn
        .open_table(ACTIVE)?
        .get(user_id)?
        .map(|v| v.value().to_string()))
}

pub(super) async fn count_active_sessions(store: &EmbeddedStore) -> Result<u64, StoreError> {
    // One entry per user with an active session.
    store
        .blocking("count_active_sessions", Budget::Short, |inner| {
            let txn = inner.db.begin_read()?;
            Ok(txn.open_table(ACTIVE)?.len()?)
        })
        .await
}

pub(super) async fn get_session(
    store: &EmbeddedStore,
    session_id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let id = session_id.to_string();
    store
        .blocking("get_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            read_row(&txn, &id)?
                .map(|r| r.record(&inner.keyring))
                .transpose()
        })
        .await
}

pub(super) async fn messages(
    store: &EmbeddedStore,
    session_id: &str,
    after_seq: Option<u64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let id = session_id.to_string();
    store
        .blocking("get_messages", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            if read_row(&txn, &id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            messages_of(&txn, &inner.keyring, &id, after_seq)
        })
        .await
}

/// The last `limit` messages of session `session_id`, oldest first, read from the end of its range
/// (the cost does not grow with the conversation).
pub(super) async fn recent_messages(
    store: &EmbeddedStore,
    session_id: &str,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let id = session_id.to_string();
    store
        .blocking("recent_messages", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            if read_row(&txn, &id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let table = txn.open_table(MESSAGES)?;
            let mut out = Vec::with_capacity(limit.min(256));
            for entry in table
                .range((id.as_str(), 0u64)..=(id.as_str(), u64::MAX))?
                .rev()
                .take(limit)
            {
                let (_, v) = entry?;
                let row: MessageRow = decode(v.value())?;
                out.push(row.record(&id, &inner.keyring)?);
            }
            out.reverse();
            Ok(out)
        })
        .await
}

/// The active session of `user_id` if it has one that has not ended, found by a read.
pub(super) async fn active_session(
    store: &EmbeddedStore,
    user_id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let user_id = user_id.to_string();
    store
        .blocking("active_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let Some(id) = active_id(&txn, &user_id)? else {
                return Ok(None);
            };
            read_row(&txn, &id)?
                .filter(|row| row.end.is_none())
                .map(|row| row.record(&inner.keyring))
                .transpose()
        })
        .await
}

pub(super) async fn user_tokens_on(
    store: &EmbeddedStore,
    user_id: &str,
    day: Date,
) -> Result<i64, StoreError> {
    let user_id = user_id.to_string();
    store
        .blocking("user_tokens", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(USAGE)?;
            Ok(table
                .get((user_id.as_str(), date_day(day)))?
                .map_or(0, |v| v.value()))
        })
        .await
}

pub(super) async fn list_user_sessions(
    store: &EmbeddedStore,
    user_id: &str,
    limit: usize,
) -> Result<Vec<SessionRecord>, StoreError> {
    let user_id = user_id.to_string();
    store
        .blocking("list_user_sessions", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(USER_SESSIONS)?;
            let mut out = Vec::new();
            let range = table.range::<(&str, i64, &str)>((
                Bound::Included((user_id.as_str(), i64::MIN, "")),
                Bound::Included((user_id.as_str(), i64::MAX, "\u{10FFFF}")),
            ))?;
            for entry in range.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = entry?;
                let (_, _, id) = k.value();
                if let Some(row) = read_row(&txn, id)? {
                    out.push(row.record(&inner.keyring)?);
                }
            }
            Ok(out)
        })
        .await
}
