//! Session and message rows and the table operations that keep a session's rows, index entries and
//! messages consistent within one write transaction.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::Inner;
use super::tables::*;
use crate::store::crypto::{Binding, Keyring};
use crate::store::error::StoreError;
use crate::store::keycheck::{mark_unreadable, open_content, open_name};
use crate::store::records::*;
use crate::store::{from_ms, to_ms};

/// A session row (name encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionRow {
    pub(super) id: String,
    pub(super) uid: String,
    pub(super) nm: String,
    pub(super) model: String,
    pub(super) ts: i64,
    pub(super) end: Option<i64>,
    pub(super) dur: i64,
    pub(super) assisted: bool,
    pub(super) admin_id: Option<String>,
    pub(super) admin_name: Option<String>,
    pub(super) help: bool,
    pub(super) tokens: i64,
    pub(super) last: Option<i64>,
    pub(super) max_ms: i64,
    pub(super) avg_ms: i64,
    pub(super) resp_count: i64,
    pub(super) resp_total_ms: i64,
    pub(super) share: Option<String>,
    pub(super) count: i64,
    pub(super) last_seq: u64,
    /// The seq high-water mark; rows written before it existed read as 0 (then `last_seq` counts).
    #[serde(default)]
    pub(super) seq_mark: u64,
}

impl SessionRow {
    pub(super) fn new(id: String, uid: &str, model: &str, ts: i64) -> Self {
        Self {
            id,
            uid: uid.to_string(),
            nm: String::new(),
            model: model.to_string(),
            ts,
            end: None,
            dur: 0,
            assisted: false,
            admin_id: None,
            admin_name: None,
            help: false,
            tokens: 0,
            last: None,
            max_ms: 0,
            avg_ms: 0,
            resp_count: 0,
            resp_total_ms: 0,
            share: None,
            count: 0,
            last_seq: 0,
            seq_mark: 0,
        }
    }

    pub(super) fn partition(&self) -> u8 {
        (u8::from(self.end.is_some()) << 1) | u8::from(self.assisted)
    }

    pub(super) fn record(&self, keyring: &Keyring) -> Result<SessionRecord, StoreError> {
        let name = open_name(keyring, &self.nm, &self.id);
        Ok(SessionRecord {
            id: self.id.clone(),
            user_id: self.uid.clone(),
            name_unreadable: name.is_none(),
            name: name.unwrap_or_default(),
            model_id: self.model.clone(),
            started_at: from_ms(self.ts),
            ended_at: self.end.map(from_ms),
            duration_secs: self.dur,
            admin_assisted: self.assisted,
            assisting_admin_id: self.admin_id.clone(),
            assisting_admin_name: self.admin_name.clone(),
            help_requested: self.help,
            total_tokens: self.tokens,
            last_activity: self.last.map(from_ms),
            max_response_ms: self.max_ms,
            avg_response_ms: self.avg_ms,
            response_count: self.resp_count,
            share_token: self.share.clone(),
            message_count: self.count,
            last_seq: self.last_seq,
            seq_mark: self.seq_mark.max(self.last_seq),
        })
    }
}

/// A message row (content encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MessageRow {
    pub(super) id: String,
    pub(super) seq: u64,
    pub(super) c: String,
    pub(super) ts: i64,
    pub(super) sender: Sender,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) file_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cmid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) model: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) partial: bool,
}

impl MessageRow {
    pub(super) fn record(
        &self,
        session: &str,
        keyring: &Keyring,
    ) -> Result<MessageRecord, StoreError> {
        let content = open_content(keyring, &self.c, session, &self.id);
        let mut metadata = self.meta.clone();
        if content.is_none() {
            mark_unreadable(&mut metadata);
        }
        Ok(MessageRecord {
            id: self.id.clone(),
            seq: self.seq,
            content: content.unwrap_or_default(),
            timestamp: from_ms(self.ts),
            sender: self.sender.clone(),
            file_id: self.file_id.clone(),
            file_url: self.file_url.clone(),
            metadata,
            client_msg_id: self.cmid.clone(),
            model_id: self.model.clone(),
            partial: self.partial,
        })
    }
}

pub(super) fn read_row(txn: &ReadTransaction, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let table = txn.open_table(SESSIONS)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

pub(super) fn write_row_get(
    txn: &WriteTransaction,
    id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    let table = txn.open_table(SESSIONS)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

pub(super) fn num_keys(row: &SessionRow) -> [(NumIndex, i64); 4] {
    [
        (IDX_START, row.ts),
        (IDX_END, row.end.unwrap_or(NO_END)),
        (IDX_COUNT, row.count),
        (IDX_TOKENS, row.tokens),
    ]
}

/// Writes `new` and moves its index entries from `old`'s values.
pub(super) fn put_row(
    txn: &WriteTransaction,
    old: Option<&SessionRow>,
    new: &SessionRow,
) -> Result<(), StoreError> {
    txn.open_table(SESSIONS)?
        .insert(new.id.as_str(), encode(new)?.as_slice())?;
    let p = new.partition();
    let old_keys = old.map(|o| (o.partition(), num_keys(o)));
    for (i, (table, value)) in num_keys(new).into_iter().enumerate() {
        let mut t = txn.open_table(table)?;
        if let Some((op, keys)) = &old_keys {
            let old_value = keys[i].1;
            if *op == p && old_value == value && old.is_some_and(|o| o.ts == new.ts) {
                continue;
            }
            t.remove((*op, old_value, new.id.as_str()))?;
        }
        t.insert((p, value, new.id.as_str()), new.ts)?;
    }
    // The user index entry changes only with the partition (ended, assisted) or the start time: most
    // writes (a message, a turn's figures) leave it, and its pages, untouched.
    let user_entry_kept =
        old.is_some_and(|o| o.partition() == p && o.uid == new.uid && o.ts == new.ts);
    if !user_entry_kept {
        let mut by_user = txn.open_table(IDX_USER)?;
        if let Some(o) = old {
            by_user.remove((o.partition(), o.uid.as_str(), o.id.as_str()))?;
        }
        by_user.insert((p, new.uid.as_str(), new.id.as_str()), new.ts)?;
    }
    if old.is_none() {
        txn.open_table(USER_SESSIONS)?
            .insert((new.uid.as_str(), new.ts, new.id.as_str()), ())?;
    }
    Ok(())
}

/// Deletes a session with its messages, index entries, share token and active mapping; returns the
/// number of messages removed.
pub(super) fn delete_row(txn: &WriteTransaction, row: &SessionRow) -> Result<u64, StoreError> {
    let id = row.id.as_str();
    txn.open_table(SESSIONS)?.remove(id)?;
    let p = row.partition();
    for (table, value) in num_keys(row) {
        txn.open_table(table)?.remove((p, value, id))?;
    }
    txn.open_table(IDX_USER)?
        .remove((p, row.uid.as_str(), id))?;
    txn.open_table(USER_SESSIONS)?
        .remove((row.uid.as_str(), row.ts, id))?;
    if let Some(token) = &row.share {
        txn.open_table(SHARES)?.remove(token.as_str())?;
    }
    {
        let mut active = txn.open_table(ACTIVE)?;
        let points_here = active
            .get(row.uid.as_str())?
            .is_some_and(|v| v.value() == id);
        if points_here {
            active.remove(row.uid.as_str())?;
        }
    }
    let mut messages = txn.open_table(MESSAGES)?;
    let mut ids = txn.open_table(MESSAGE_IDS)?;
    let mut removed = 0u64;
    let rows: Vec<(u64, String)> = messages
        .range((id, 0u64)..=(id, u64::MAX))?
        .map(|entry| {
            let (k, v) = entry?;
            let message: MessageRow = decode(v.value())?;
            Ok((k.value().1, message.id))
        })
        .collect::<Result<_, StoreError>>()?;
    for (index, message_id) in rows {
        messages.remove((id, index))?;
        ids.remove((id, message_id.as_str()))?;
        removed += 1;
    }
    Ok(removed)
}

pub(super) fn session_ids_of_user(
    txn: &ReadTransaction,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    session_ids_in(&txn.open_table(USER_SESSIONS)?, user_id)
}

/// Ids of the sessions of `user_id`, oldest first, from the `user_sessions` table of any transaction.
pub(super) fn session_ids_in(
    table: &impl ReadableTable<(&'static str, i64, &'static str), ()>,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for entry in table.range((user_id, i64::MIN, "")..)? {
        let (k, _) = entry?;
        let (uid, _, sid) = k.value();
        if uid != user_id {
            break;
        }
        ids.push(sid.to_string());
    }
    Ok(ids)
}

pub(super) fn messages_of(
    txn: &ReadTransaction,
    keyring: &Keyring,
    session: &str,
    after_seq: Option<u64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let table = txn.open_table(MESSAGES)?;
    let mut out = Vec::new();
    for entry in table.range((session, 0u64)..=(session, u64::MAX))? {
        let (_, v) = entry?;
        let row: MessageRow = decode(v.value())?;
        if after_seq.is_some_and(|after| row.seq <= after) {
            continue;
        }
        out.push(row.record(session, keyring)?);
    }
    Ok(out)
}

pub(super) fn update_row<T>(
    txn: &WriteTransaction,
    id: &str,
    change: impl FnOnce(&mut SessionRow) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    let mut new = old.clone();
    let out = change(&mut new)?;
    put_row(txn, Some(&old), &new)?;
    Ok(out)
}

/// The stored form of `message` of session `id` (content encrypted).
/// A message encrypted and encoded before it reaches the writer thread, which then only writes it.
pub(super) struct SealedMessage {
    /// The message id.
    pub(super) id: String,
    pub(super) seq: u64,
    /// Its timestamp, in ms.
    pub(super) ts: i64,
    /// The encoded [`MessageRow`].
    pub(super) bytes: Vec<u8>,
}

impl SealedMessage {
    /// `message` of session `id`, its content encrypted and bound to both.
    pub(super) fn new(
        inner: &Inner,
        id: &str,
        message: &MessageRecord,
    ) -> Result<Self, StoreError> {
        let row = message_row(inner, id, message)?;
        Ok(Self {
            id: row.id.clone(),
            seq: row.seq,
            ts: row.ts,
            bytes: encode(&row)?,
        })
    }
}

pub(super) fn message_row(
    inner: &Inner,
    id: &str,
    message: &MessageRecord,
) -> Result<MessageRow, StoreError> {
    let content = inner.keyring.encrypt(
        &message.content,
        Binding::Message {
            session: id,
            message: &message.id,
        },
    )?;
    Ok(MessageRow {
        id: message.id.clone(),
        seq: message.seq,
        c: content,
        ts: to_ms(message.timestamp),
        sender: message.sender.clone(),
        file_id: message.file_id.clone(),
        file_url: message.file_url.clone(),
        meta: message.metadata.clone(),
        cmid: message.client_msg_id.clone(),
        model: message.model_id.clone(),
        partial: message.partial,
    })
}
