//! Maintenance in the embedded store: retention purge, user export and deletion, and the key canary with
//! the start-up key check.

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};
use time::OffsetDateTime;

use super::rows::*;
use super::tables::*;
use super::{EmbeddedStore, Inner};
use crate::store::crypto::Binding;
use crate::store::error::StoreError;
use crate::store::keycheck::{KEY_CHECK_MESSAGES, KeyProbe, KeyReport, seal_canary};
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::{day_date, to_ms};

/// Key of the key canary in the `meta` table: a ciphertext (UTF-8) under the key that was active when it
/// was written.
pub(super) const CANARY_KEY: &str = "canary";

/// The stored key canary, written under the active key when there is none; true when this call wrote it.
pub(super) fn ensure_canary(
    txn: &WriteTransaction,
    inner: &Inner,
) -> Result<(String, bool), StoreError> {
    let mut meta = txn.open_table(META)?;
    if let Some(v) = meta.get(CANARY_KEY)? {
        return Ok((String::from_utf8_lossy(v.value()).into_owned(), false));
    }
    let sealed = seal_canary(&inner.keyring)?;
    meta.insert(CANARY_KEY, sealed.as_bytes())?;
    Ok((sealed, true))
}

/// The key check over the canary and the names and last messages of the `sessions` most recent sessions.
pub(super) fn probe_keys(
    inner: &Inner,
    canary: &str,
    created: bool,
    sessions: usize,
) -> Result<KeyReport, StoreError> {
    let txn = inner.db.begin_read()?;
    // The most recent start times of each partition of the start-time index, merged.
    let mut recent: Vec<(i64, String)> = Vec::new();
    for p in 0..4u8 {
        let t = txn.open_table(IDX_START)?;
        let range = t.range::<(u8, i64, &str)>((p, i64::MIN, "")..(p + 1, i64::MIN, ""))?;
        for entry in range.rev().take(sessions) {
            let (k, _) = entry?;
            let (_, ts, id) = k.value();
            recent.push((ts, id.to_string()));
        }
    }
    recent.sort_unstable_by(|a, b| b.cmp(a));
    recent.truncate(sessions);
    let mut probe = KeyProbe::new(&inner.keyring, canary, created);
    let messages = txn.open_table(MESSAGES)?;
    for (_, id) in &recent {
        let Some(row) = read_row(&txn, id)? else {
            continue;
        };
        probe.value(&row.nm, Binding::Name { session: id }, false);
        let range = messages.range((id.as_str(), 0u64)..=(id.as_str(), u64::MAX))?;
        for entry in range.rev().take(KEY_CHECK_MESSAGES) {
            let (_, v) = entry?;
            let message: MessageRow = decode(v.value())?;
            let binding = Binding::Message {
                session: id,
                message: &message.id,
            };
            probe.value(&message.c, binding, true);
        }
    }
    Ok(probe.finish())
}

pub(super) async fn purge_ended_before(
    store: &EmbeddedStore,
    cutoff: OffsetDateTime,
) -> Result<u64, StoreError> {
    let cutoff = to_ms(cutoff);
    store
        .write_mixed("purge", Budget::Long, move |txn, _| {
            let mut ids = Vec::new();
            {
                let index = txn.open_table(IDX_END)?;
                for p in [2u8, 3] {
                    for entry in index.range((p, i64::MIN, "")..(p, cutoff, ""))? {
                        let (k, _) = entry?;
                        ids.push(k.value().2.to_string());
                    }
                }
            }
            let mut purged = 0;
            for id in ids {
                if let Some(row) = write_row_get(txn, &id)? {
                    delete_row(txn, &row)?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
}

pub(super) async fn export_user(
    store: &EmbeddedStore,
    user_id: &str,
) -> Result<UserExport, StoreError> {
    let user_id = user_id.to_string();
    store
        .blocking("export_user", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            let mut sessions = Vec::new();
            for id in session_ids_of_user(&txn, &user_id)?.into_iter().rev() {
                let Some(row) = read_row(&txn, &id)? else {
                    continue;
                };
                sessions.push(ExportedSession {
                    session: row.record(&inner.keyring)?,
                    messages: messages_of(&txn, &inner.keyring, &id, None)?,
                });
            }
            let mut daily_tokens = BTreeMap::new();
            let usage = txn.open_table(USAGE)?;
            for entry in usage.range((user_id.as_str(), i32::MIN)..=(user_id.as_str(), i32::MAX))? {
                let (k, v) = entry?;
                daily_tokens.insert(day_date(k.value().1).to_string(), v.value());
            }
            Ok(UserExport {
                user_id: user_id.clone(),
                sessions,
                daily_tokens,
            })
        })
        .await
}

pub(super) async fn delete_user(
    store: &EmbeddedStore,
    user_id: &str,
) -> Result<DeleteStats, StoreError> {
    let user_id = user_id.to_string();
    store
        .write_mixed("delete_user", Budget::Long, move |txn, _| {
            // Read in the batch's transaction, so sessions created earlier in the batch are seen.
            let ids = session_ids_in(&txn.open_table(USER_SESSIONS)?, &user_id)?;
            let mut stats = DeleteStats::default();
            for id in ids {
                if let Some(row) = write_row_get(txn, &id)?
                    && row.uid == user_id
                {
                    stats.messages += delete_row(txn, &row)?;
                    stats.sessions += 1;
                }
            }
            txn.open_table(ACTIVE)?.remove(user_id.as_str())?;
            txn.open_table(USAGE)?.retain_in(
                (user_id.as_str(), i32::MIN)..=(user_id.as_str(), i32::MAX),
                |_, _| false,
            )?;
            stats.files = super::files::delete_user_files(txn, &user_id)?;
            Ok(stats)
        })
        .await
}

pub(super) async fn check_keys(
    store: &EmbeddedStore,
    sessions: usize,
) -> Result<KeyReport, StoreError> {
    let (canary, created) = store
        .write("key_canary", Budget::Short, ensure_canary)
        .await?;
    store
        .blocking("check_keys", Budget::Long, move |inner| {
            probe_keys(inner, &canary, created, sessions)
        })
        .await
}
