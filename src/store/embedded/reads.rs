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
            let txn = inner.db.begin_read()?;
            let active = txn.open_table(ACTIVE)?;
            Ok(active.get(user_id.as_str())?.map(|v| v.value().to_string()))
        })
        .await
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
