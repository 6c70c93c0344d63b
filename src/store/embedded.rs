//! The zero-config store: one [redb](https://docs.rs/redb) file in the data directory.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree database (no C toolchain, no background threads),
//! with serialised write transactions: every multi-record update below (get-or-create of the active
//! session, append + counters + indexes, purge) is one transaction, so it is atomic and race-free.
//! The admin list is served by secondary index tables keyed `(partition, sort value, session id)`, where
//! the partition encodes `ended` and `admin_assisted`, so every filter and sort of reference 2.4 reads
//! only the rows of the requested page (see `docs/storage.md`). The audit log is the `audit_log` table keyed
//! `(time, id)`, read backwards for newest-first pages.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::audit::{AuditCursor, audit_limit, new_audit_id, next_audit_cursor};
use super::config::StoreConfig;
use super::crypto::{Binding, Keyring, StoredKind};
use super::error::StoreError;
use super::query::{
    Cursor, MAX_LIMIT, SortField, SortOrder, SortValue, StatusFilter, next_cursor, sort_value,
};
use super::records::*;
use super::retry::{Budget, Runner};
use super::{
    AuditKind, AuditPage, AuditQuery, AuditRecord, SessionPage, SessionQuery, Store, StoreKind,
    StoredAudit, date_day, day_date, from_ms, new_session_id, new_share_token, to_ms, utc_day,
};
use crate::metrics::Metrics;

/// File name of the database in the data directory.
pub const DB_FILE: &str = "chatbox.redb";

type NumIndex = TableDefinition<'static, (u8, i64, &'static str), i64>;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const MESSAGE_IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("message_ids");
const ACTIVE: TableDefinition<&str, &str> = TableDefinition::new("active_by_user");
const USER_SESSIONS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("user_sessions");
const SHARES: TableDefinition<&str, &str> = TableDefinition::new("share_tokens");
const USAGE: TableDefinition<(&str, i32), i64> = TableDefinition::new("user_daily_tokens");
const IDX_START: NumIndex = TableDefinition::new("idx_start_time");
const IDX_END: NumIndex = TableDefinition::new("idx_end_time");
const IDX_COUNT: NumIndex = TableDefinition::new("idx_message_count");
const IDX_TOKENS: NumIndex = TableDefinition::new("idx_total_tokens");
const IDX_USER: TableDefinition<(u8, &str, &str), i64> = TableDefinition::new("idx_user_id");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The audit log: (time in ms, entry id) → entry, read backwards for newest first.
const AUDIT: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("audit_log");

/// Sort value of a missing end time: first in ascending order, as MongoDB sorts missing fields.
const NO_END: i64 = i64::MIN;

/// A session row (name encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRow {
    id: String,
    uid: String,
    nm: String,
    model: String,
    ts: i64,
    end: Option<i64>,
    dur: i64,
    assisted: bool,
    admin_id: Option<String>,
    admin_name: Option<String>,
    help: bool,
    tokens: i64,
    last: Option<i64>,
    max_ms: i64,
    avg_ms: i64,
    resp_count: i64,
    resp_total_ms: i64,
    share: Option<String>,
    count: i64,
    last_seq: u64,
}

impl SessionRow {
    fn new(id: String, uid: &str, model: &str, ts: i64) -> Self {
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
        }
    }

    fn partition(&self) -> u8 {
        (u8::from(self.end.is_some()) << 1) | u8::from(self.assisted)
    }

    fn record(&self, keyring: &Keyring) -> Result<SessionRecord, StoreError> {
        let name = if self.nm.is_empty() {
            String::new()
        } else {
            keyring.decrypt(&self.nm, Binding::Name { session: &self.id }, false)?
        };
        Ok(SessionRecord {
            id: self.id.clone(),
            user_id: self.uid.clone(),
            name,
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
        })
    }
}

/// A message row (content encrypted).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MessageRow {
    id: String,
    seq: u64,
    c: String,
    ts: i64,
    sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cmid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

impl MessageRow {
    fn record(&self, session: &str, keyring: &Keyring) -> Result<MessageRecord, StoreError> {
        Ok(MessageRecord {
            id: self.id.clone(),
            seq: self.seq,
            content: keyring.decrypt(
                &self.c,
                Binding::Message {
                    session,
                    message: &self.id,
                },
                true,
            )?,
            timestamp: from_ms(self.ts),
            sender: self.sender.clone(),
            file_id: self.file_id.clone(),
            file_url: self.file_url.clone(),
            metadata: self.meta.clone(),
            client_msg_id: self.cmid.clone(),
            model_id: self.model.clone(),
            partial: self.partial,
        })
    }
}

/// An audit log row (the key holds the time and the id too).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuditRow {
    id: String,
    ts: i64,
    admin_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_name: Option<String>,
    action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    details: BTreeMap<String, String>,
}

impl AuditRow {
    fn new(id: String, record: &AuditRecord) -> Self {
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

    fn entry(self) -> Result<StoredAudit, StoreError> {
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

/// Key rotation checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    key: String,
    after: String,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct Inner {
    db: Database,
    keyring: Arc<Keyring>,
}

/// The embedded store.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    runner: Runner,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("keyring", &self.inner.keyring)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path` and its tables.
    pub async fn open(
        path: &Path,
        config: &StoreConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let db = tokio::task::spawn_blocking(move || -> Result<Database, StoreError> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Setup(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let db = Database::create(&path)?;
            let txn = db.begin_write()?;
            txn.open_table(SESSIONS)?;
            txn.open_table(MESSAGES)?;
            txn.open_table(MESSAGE_IDS)?;
            txn.open_table(ACTIVE)?;
            txn.open_table(USER_SESSIONS)?;
            txn.open_table(SHARES)?;
            txn.open_table(USAGE)?;
            for index in [IDX_START, IDX_END, IDX_COUNT, IDX_TOKENS] {
                txn.open_table(index)?;
            }
            txn.open_table(IDX_USER)?;
            txn.open_table(META)?;
            txn.open_table(AUDIT)?;
            txn.commit()?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::Embedded(e.to_string()))??;
        Ok(Self {
            inner: Arc::new(Inner { db, keyring }),
            runner: Runner::new(config, metrics),
        })
    }

    /// Runs `f` on a blocking thread with the operation's timeout and metric.
    async fn blocking<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.runner
            .run(name, budget, true, || {
                let inner = self.inner.clone();
                let f = f.clone();
                async move {
                    tokio::task::spawn_blocking(move || f(&inner))
                        .await
                        .map_err(|e| StoreError::Embedded(e.to_string()))?
                }
            })
            .await
    }

    /// Number of sessions (benchmarks and tests).
    pub async fn session_count(&self) -> Result<u64, StoreError> {
        self.blocking("count", Budget::Long, |inner| {
            let txn = inner.db.begin_read()?;
            Ok(txn.open_table(SESSIONS)?.len()?)
        })
        .await
    }
}

fn read_row(txn: &ReadTransaction, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let table = txn.open_table(SESSIONS)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

fn write_row_get(txn: &WriteTransaction, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let table = txn.open_table(SESSIONS)?;
    let row = table.get(id)?;
    row.map(|v| decode(v.value())).transpose()
}

fn num_keys(row: &SessionRow) -> [(NumIndex, i64); 4] {
    [
        (IDX_START, row.ts),
        (IDX_END, row.end.unwrap_or(NO_END)),
        (IDX_COUNT, row.count),
        (IDX_TOKENS, row.tokens),
    ]
}

/// Writes `new` and moves its index entries from `old`'s values.
fn put_row(
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
    let mut by_user = txn.open_table(IDX_USER)?;
    if let Some(o) = old {
        by_user.remove((o.partition(), o.uid.as_str(), o.id.as_str()))?;
    }
    by_user.insert((p, new.uid.as_str(), new.id.as_str()), new.ts)?;
    if old.is_none() {
        txn.open_table(USER_SESSIONS)?
            .insert((new.uid.as_str(), new.ts, new.id.as_str()), ())?;
    }
    Ok(())
}

/// Deletes a session with its messages, index entries, share token and active mapping; returns the
/// number of messages removed.
fn delete_row(txn: &WriteTransaction, row: &SessionRow) -> Result<u64, StoreError> {
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

fn session_ids_of_user(txn: &ReadTransaction, user_id: &str) -> Result<Vec<String>, StoreError> {
    let table = txn.open_table(USER_SESSIONS)?;
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

fn messages_of(
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

/// Applies `change` to the session `id` in one write transaction; `NotFound` if it does not exist.
fn update_row<T>(
    inner: &Inner,
    id: &str,
    change: impl FnOnce(&mut SessionRow) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = inner.db.begin_write()?;
    let old = write_row_get(&txn, id)?.ok_or(StoreError::NotFound)?;
    let mut new = old.clone();
    let out = change(&mut new)?;
    put_row(&txn, Some(&old), &new)?;
    txn.commit()?;
    Ok(out)
}

/// One entry of a sort index: sort value, session id, start time (ms).
type IndexEntry = (SortValue, String, i64);
type IndexIter = Box<dyn Iterator<Item = Result<IndexEntry, StoreError>>>;
/// One item of a range over a sort index.
type RangeItem<'a, K> =
    Result<(redb::AccessGuard<'a, K>, redb::AccessGuard<'a, i64>), redb::StorageError>;

fn num_index_iter(
    txn: &ReadTransaction,
    table: NumIndex,
    p: u8,
    order: SortOrder,
    after: Option<(i64, &str)>,
    start_bounds: Option<(i64, i64)>,
) -> Result<IndexIter, StoreError> {
    let t = txn.open_table(table)?;
    let (lo, hi) = start_bounds.unwrap_or((i64::MIN, i64::MAX));
    let lower = match (order, after) {
        (SortOrder::Asc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Included((p, lo, "")),
    };
    let upper = match (order, after) {
        (SortOrder::Desc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ if hi < i64::MAX => Bound::Excluded((p, hi + 1, "")),
        _ => Bound::Excluded((p + 1, i64::MIN, "")),
    };
    let range = t.range::<(u8, i64, &str)>((lower, upper))?;
    let map = move |entry: RangeItem<'_, (u8, i64, &str)>| {
        let (k, v) = entry?;
        let (_, value, id) = k.value();
        let value = if value == NO_END { None } else { Some(value) };
        Ok((SortValue::Num(value), id.to_string(), v.value()))
    };
    Ok(match order {
        SortOrder::Asc => Box::new(range.map(map)),
        SortOrder::Desc => Box::new(range.rev().map(map)),
    })
}

fn user_index_iter(
    txn: &ReadTransaction,
    p: u8,
    order: SortOrder,
    after: Option<(&str, &str)>,
) -> Result<IndexIter, StoreError> {
    let t = txn.open_table(IDX_USER)?;
    let lower = match (order, after) {
        (SortOrder::Asc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Included((p, "", "")),
    };
    let upper = match (order, after) {
        (SortOrder::Desc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Excluded((p + 1, "", "")),
    };
    let range = t.range::<(u8, &str, &str)>((lower, upper))?;
    let map = |entry: RangeItem<'_, (u8, &str, &str)>| {
        let (k, v) = entry?;
        let (_, uid, id) = k.value();
        Ok((SortValue::Text(uid.to_string()), id.to_string(), v.value()))
    };
    Ok(match order {
        SortOrder::Asc => Box::new(range.map(map)),
        SortOrder::Desc => Box::new(range.rev().map(map)),
    })
}

fn list_sessions(inner: &Inner, query: &SessionQuery) -> Result<SessionPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, query))
        .transpose()?;
    let from = query.started_from.map(to_ms).unwrap_or(i64::MIN);
    let to = query.started_to.map(to_ms).unwrap_or(i64::MAX);
    let txn = inner.db.begin_read()?;

    if let Some(user_id) = &query.user_id {
        // One user's sessions: few, read through the user index and sorted here.
        let mut rows = Vec::new();
        for id in session_ids_of_user(&txn, user_id)? {
            let Some(row) = read_row(&txn, &id)? else {
                continue;
            };
            let record = row.record(&inner.keyring)?;
            if !matches_filters(&record, query, from, to) {
                continue;
            }
            rows.push((sort_value(&record, query.sort_by), record));
        }
        rows.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
        if query.order == SortOrder::Desc {
            rows.reverse();
        }
        let after = cursor.as_ref();
        let sessions: Vec<SessionRecord> = rows
            .into_iter()
            .filter(|(v, r)| match after {
                None => true,
                Some(c) => match query.order {
                    SortOrder::Asc => (v, &r.id) > (&c.v, &c.id),
                    SortOrder::Desc => (v, &r.id) < (&c.v, &c.id),
                },
            })
            .skip(query.offset)
            .take(limit)
            .map(|(_, r)| r)
            .collect();
        let next_cursor = next_cursor(query, &sessions, limit);
        return Ok(SessionPage {
            sessions,
            next_cursor,
        });
    }

    let ended: &[u8] = match query.status {
        Some(StatusFilter::Active) => &[0],
        Some(StatusFilter::Ended) => &[1],
        None => &[0, 1],
    };
    let assisted: &[u8] = match query.admin_assisted {
        Some(false) => &[0],
        Some(true) => &[1],
        None => &[0, 1],
    };
    let start_bounds = (query.sort_by == SortField::StartTime).then_some((from, to));
    let mut heads: Vec<IndexIter> = Vec::new();
    for e in ended {
        for a in assisted {
            let p = (e << 1) | a;
            let iter = match query.sort_by {
                SortField::UserId => {
                    let after = cursor.as_ref().and_then(|c| match &c.v {
                        SortValue::Text(t) => Some((t.as_str(), c.id.as_str())),
                        SortValue::Num(_) => None,
                    });
                    if cursor.is_some() && after.is_none() {
                        return Err(StoreError::InvalidCursor);
                    }
                    user_index_iter(&txn, p, query.order, after)?
                }
                field => {
                    let table = match field {
                        SortField::StartTime => IDX_START,
                        SortField::EndTime => IDX_END,
                        SortField::MessageCount => IDX_COUNT,
                        _ => IDX_TOKENS,
                    };
                    let after = match &cursor {
                        None => None,
                        Some(Cursor {
                            v: SortValue::Num(v),
                            id,
                            ..
                        }) => Some((v.unwrap_or(NO_END), id.as_str())),
                        Some(_) => return Err(StoreError::InvalidCursor),
                    };
                    num_index_iter(&txn, table, p, query.order, after, start_bounds)?
                }
            };
            heads.push(iter);
        }
    }

    let mut current: Vec<Option<IndexEntry>> = heads
        .iter_mut()
        .map(|it| it.next().transpose())
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(limit);
    let mut skipped = 0usize;
    while ids.len() < limit {
        // Merge the partitions: take the smallest (asc) or largest (desc) head.
        let mut best: Option<(usize, &IndexEntry)> = None;
        for (i, head) in current.iter().enumerate() {
            let Some(head) = head else { continue };
            let better = match best {
                None => true,
                Some((_, b)) => {
                    let ord = (&head.0, &head.1).cmp(&(&b.0, &b.1));
                    match query.order {
                        SortOrder::Asc => ord.is_lt(),
                        SortOrder::Desc => ord.is_gt(),
                    }
                }
            };
            if better {
                best = Some((i, head));
            }
        }
        let Some((b, _)) = best else { break };
        let next = heads[b].next().transpose()?;
        let Some((_, id, ts)) = std::mem::replace(&mut current[b], next) else {
            break;
        };
        if ts < from || ts > to {
            continue;
        }
        if skipped < query.offset {
            skipped += 1;
            continue;
        }
        ids.push(id);
    }
    let mut sessions = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = read_row(&txn, &id)? {
            sessions.push(row.record(&inner.keyring)?);
        }
    }
    let next_cursor = next_cursor(query, &sessions, limit);
    Ok(SessionPage {
        sessions,
        next_cursor,
    })
}

fn matches_filters(record: &SessionRecord, query: &SessionQuery, from: i64, to: i64) -> bool {
    let ts = to_ms(record.started_at);
    if ts < from || ts > to {
        return false;
    }
    match query.status {
        Some(StatusFilter::Active) if !record.is_active() => return false,
        Some(StatusFilter::Ended) if record.is_active() => return false,
        _ => {}
    }
    if query
        .admin_assisted
        .is_some_and(|a| a != record.admin_assisted)
    {
        return false;
    }
    true
}

fn metrics(inner: &Inner, from: i64, to: i64, now: i64) -> Result<SessionMetrics, StoreError> {
    let txn = inner.db.begin_read()?;
    let index = txn.open_table(IDX_START)?;
    let sessions = txn.open_table(SESSIONS)?;
    let mut m = SessionMetrics::default();
    let mut avg_sum = 0i64;
    let mut open_ms = 0i128;
    for p in 0u8..4 {
        for entry in index.range((p, from, "")..=(p, to, "\u{10FFFF}"))? {
            let (k, _) = entry?;
            let (_, _, id) = k.value();
            let Some(row) = sessions.get(id)? else {
                continue;
            };
            let row: SessionRow = decode(row.value())?;
            m.total_sessions += 1;
            if row.end.is_none() {
                m.active_sessions += 1;
            }
            if row.assisted {
                m.admin_assisted_count += 1;
            }
            m.total_tokens += row.tokens;
            m.max_response_ms = m.max_response_ms.max(row.max_ms);
            avg_sum += row.avg_ms;
            let until = row.end.unwrap_or(now).min(to);
            open_ms += i128::from((until - row.ts).max(0));
        }
    }
    if m.total_sessions > 0 {
        m.avg_response_ms = avg_sum / m.total_sessions;
    }
    if to > from {
        m.avg_concurrent = open_ms as f64 / (to - from) as f64;
    }
    Ok(m)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Embedded
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking("ping", Budget::Short, |inner| {
            let txn = inner.db.begin_read()?;
            txn.open_table(SESSIONS)?;
            Ok(())
        })
        .await
    }

    async fn active_session_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let user_id = user_id.to_string();
        self.blocking("active_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let active = txn.open_table(ACTIVE)?;
            Ok(active.get(user_id.as_str())?.map(|v| v.value().to_string()))
        })
        .await
    }

    async fn get_or_create_active(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        let user_id = user_id.to_string();
        let preferred = preferred_id.map(str::to_string);
        let model_id = model_id.to_string();
        self.blocking("get_or_create_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let existing = txn
                .open_table(ACTIVE)?
                .get(user_id.as_str())?
                .map(|v| v.value().to_string());
            if let Some(id) = existing
                && let Some(row) = write_row_get(&txn, &id)?
                && row.end.is_none()
            {
                return Ok(ActiveSession {
                    session: row.record(&inner.keyring)?,
                    created: false,
                });
            }
            let id = match &preferred {
                Some(p) if !p.is_empty() && write_row_get(&txn, p)?.is_none() => p.clone(),
                _ => new_session_id(),
            };
            let row = SessionRow::new(id.clone(), &user_id, &model_id, to_ms(super::now()));
            put_row(&txn, None, &row)?;
            txn.open_table(ACTIVE)?
                .insert(user_id.as_str(), id.as_str())?;
            txn.commit()?;
            Ok(ActiveSession {
                session: row.record(&inner.keyring)?,
                created: true,
            })
        })
        .await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = session_id.to_string();
        self.blocking("get_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            read_row(&txn, &id)?
                .map(|r| r.record(&inner.keyring))
                .transpose()
        })
        .await
    }

    async fn append_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<AppendOutcome, StoreError> {
        let id = session_id.to_string();
        let message = message.clone();
        self.blocking("append_message", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            if txn
                .open_table(MESSAGE_IDS)?
                .get((id.as_str(), message.id.as_str()))?
                .is_some()
            {
                return Ok(AppendOutcome::Duplicate);
            }
            if old.end.is_some() {
                return Err(StoreError::SessionEnded);
            }
            let content = inner.keyring.encrypt(
                &message.content,
                Binding::Message {
                    session: &id,
                    message: &message.id,
                },
            )?;
            let ts = to_ms(message.timestamp);
            let row = MessageRow {
                id: message.id.clone(),
                seq: message.seq,
                c: content,
                ts,
                sender: message.sender.clone(),
                file_id: message.file_id.clone(),
                file_url: message.file_url.clone(),
                meta: message.metadata.clone(),
                cmid: message.client_msg_id.clone(),
                model: message.model_id.clone(),
                partial: message.partial,
            };
            let index = u64::try_from(old.count).unwrap_or(0);
            txn.open_table(MESSAGES)?
                .insert((id.as_str(), index), encode(&row)?.as_slice())?;
            txn.open_table(MESSAGE_IDS)?
                .insert((id.as_str(), message.id.as_str()), index)?;
            let mut new = old.clone();
            new.count += 1;
            new.last_seq = new.last_seq.max(message.seq);
            new.last = Some(new.last.map_or(ts, |l| l.max(ts)));
            put_row(&txn, Some(&old), &new)?;
            txn.commit()?;
            Ok(AppendOutcome::Stored)
        })
        .await
    }

    async fn messages(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let id = session_id.to_string();
        self.blocking("get_messages", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            if read_row(&txn, &id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            messages_of(&txn, &inner.keyring, &id, after_seq)
        })
        .await
    }

    async fn set_name(&self, session_id: &str, name: &str) -> Result<(), StoreError> {
        let id = session_id.to_string();
        let name = name.to_string();
        self.blocking("set_name", Budget::Short, move |inner| {
            let sealed = if name.is_empty() {
                String::new()
            } else {
                inner
                    .keyring
                    .encrypt(&name, Binding::Name { session: &id })?
            };
            update_row(inner, &id, |row| {
                row.nm = sealed;
                Ok(())
            })
        })
        .await
    }

    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError> {
        let id = session_id.to_string();
        let model = model_id.to_string();
        self.blocking("set_model", Budget::Short, move |inner| {
            update_row(inner, &id, |row| {
                row.model = model.clone();
                Ok(())
            })
        })
        .await
    }

    async fn end_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
    ) -> Result<EndOutcome, StoreError> {
        let id = session_id.to_string();
        let at = to_ms(at);
        self.blocking("end_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            if old.end.is_some() {
                return Ok(EndOutcome {
                    ended_now: false,
                    session: old.record(&inner.keyring)?,
                });
            }
            let mut new = old.clone();
            let end = at.max(old.ts);
            new.end = Some(end);
            new.dur = (end - old.ts) / 1000;
            put_row(&txn, Some(&old), &new)?;
            {
                let mut active = txn.open_table(ACTIVE)?;
                let points_here = active
                    .get(new.uid.as_str())?
                    .is_some_and(|v| v.value() == id);
                if points_here {
                    active.remove(new.uid.as_str())?;
                }
            }
            txn.commit()?;
            Ok(EndOutcome {
                ended_now: true,
                session: new.record(&inner.keyring)?,
            })
        })
        .await
    }

    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.blocking("record_usage", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            let mut new = old.clone();
            new.tokens += usage.tokens;
            new.max_ms = new.max_ms.max(usage.response_ms);
            new.resp_count += 1;
            new.resp_total_ms += usage.response_ms;
            new.avg_ms = new.resp_total_ms / new.resp_count;
            put_row(&txn, Some(&old), &new)?;
            {
                let mut table = txn.open_table(USAGE)?;
                let key = (new.uid.as_str(), utc_day(usage.at));
                let current = table.get(key)?.map_or(0, |v| v.value());
                table.insert(key, current + usage.tokens)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_tokens_on(&self, user_id: &str, day: Date) -> Result<i64, StoreError> {
        let user_id = user_id.to_string();
        self.blocking("user_tokens", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let table = txn.open_table(USAGE)?;
            Ok(table
                .get((user_id.as_str(), date_day(day)))?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    async fn set_help_requested(
        &self,
        session_id: &str,
        requested: bool,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.blocking("set_help", Budget::Short, move |inner| {
            update_row(inner, &id, |row| {
                row.help = requested;
                Ok(())
            })
        })
        .await
    }

    async fn set_assistance(
        &self,
        session_id: &str,
        admin: Option<&AssistingAdmin>,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        let admin = admin.cloned();
        self.blocking("set_assistance", Budget::Short, move |inner| {
            update_row(inner, &id, |row| {
                match &admin {
                    Some(a) => {
                        row.assisted = true;
                        row.admin_id = Some(a.id.clone());
                        row.admin_name = Some(a.name.clone());
                    }
                    None => {
                        row.admin_id = None;
                        row.admin_name = None;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn share(&self, session_id: &str) -> Result<String, StoreError> {
        let id = session_id.to_string();
        self.blocking("share_session", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            if let Some(token) = &old.share {
                return Ok(token.clone());
            }
            let token = {
                let mut shares = txn.open_table(SHARES)?;
                let mut token = new_share_token();
                while shares.get(token.as_str())?.is_some() {
                    token = new_share_token();
                }
                shares.insert(token.as_str(), id.as_str())?;
                token
            };
            let mut new = old.clone();
            new.share = Some(token.clone());
            put_row(&txn, Some(&old), &new)?;
            txn.commit()?;
            Ok(token)
        })
        .await
    }

    async fn session_by_share_token(
        &self,
        token: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let token = token.to_string();
        self.blocking("get_shared", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let id = txn
                .open_table(SHARES)?
                .get(token.as_str())?
                .map(|v| v.value().to_string());
            let Some(id) = id else { return Ok(None) };
            read_row(&txn, &id)?
                .map(|r| r.record(&inner.keyring))
                .transpose()
        })
        .await
    }

    async fn revoke_share(&self, session_id: &str) -> Result<bool, StoreError> {
        let id = session_id.to_string();
        self.blocking("revoke_share", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            let Some(token) = &old.share else {
                return Ok(false);
            };
            txn.open_table(SHARES)?.remove(token.as_str())?;
            let mut new = old.clone();
            new.share = None;
            put_row(&txn, Some(&old), &new)?;
            txn.commit()?;
            Ok(true)
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let user_id = user_id.to_string();
        self.blocking("list_user_sessions", Budget::Long, move |inner| {
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

    async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        let query = query.clone();
        self.blocking("list_sessions", Budget::Long, move |inner| {
            list_sessions(inner, &query)
        })
        .await
    }

    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        let (from, to, now) = (to_ms(from), to_ms(to), to_ms(super::now()));
        self.blocking("metrics", Budget::Long, move |inner| {
            metrics(inner, from, to, now)
        })
        .await
    }

    async fn purge_ended_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = to_ms(cutoff);
        self.blocking("purge", Budget::Long, move |inner| {
            let txn = inner.db.begin_write()?;
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
                if let Some(row) = write_row_get(&txn, &id)? {
                    delete_row(&txn, &row)?;
                    purged += 1;
                }
            }
            txn.commit()?;
            Ok(purged)
        })
        .await
    }

    async fn export_user(&self, user_id: &str) -> Result<UserExport, StoreError> {
        let user_id = user_id.to_string();
        self.blocking("export_user", Budget::Long, move |inner| {
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

    async fn delete_user(&self, user_id: &str) -> Result<DeleteStats, StoreError> {
        let user_id = user_id.to_string();
        self.blocking("delete_user", Budget::Long, move |inner| {
            let ids = {
                let txn = inner.db.begin_read()?;
                session_ids_of_user(&txn, &user_id)?
            };
            let txn = inner.db.begin_write()?;
            let mut stats = DeleteStats::default();
            for id in ids {
                if let Some(row) = write_row_get(&txn, &id)?
                    && row.uid == user_id
                {
                    stats.messages += delete_row(&txn, &row)?;
                    stats.sessions += 1;
                }
            }
            txn.open_table(ACTIVE)?.remove(user_id.as_str())?;
            txn.open_table(USAGE)?.retain_in(
                (user_id.as_str(), i32::MIN)..=(user_id.as_str(), i32::MAX),
                |_, _| false,
            )?;
            txn.commit()?;
            Ok(stats)
        })
        .await
    }

    async fn rotate_keys(
        &self,
        batch_size: usize,
        progress: RotationProgress<'_>,
    ) -> Result<RotationStats, StoreError> {
        let batch_size = batch_size.max(1);
        let mut stats = RotationStats::default();
        loop {
            let batch = self
                .blocking("rotate_keys", Budget::Long, move |inner| {
                    rotate_batch(inner, batch_size)
                })
                .await?;
            stats.sessions_scanned += batch.sessions_scanned;
            stats.messages_reencrypted += batch.messages_reencrypted;
            stats.names_reencrypted += batch.names_reencrypted;
            stats.done = batch.done;
            progress(&stats);
            if batch.done {
                return Ok(stats);
            }
        }
    }

    async fn record_audit(&self, record: &AuditRecord) -> Result<StoredAudit, StoreError> {
        let row = AuditRow::new(new_audit_id(), record);
        let bytes = encode(&row)?;
        let key_id = row.id.clone();
        let ts = row.ts;
        self.blocking("record_audit", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            txn.open_table(AUDIT)?
                .insert((ts, key_id.as_str()), bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await?;
        row.entry()
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let query = query.clone();
        self.blocking("list_audit", Budget::Long, move |inner| {
            list_audit(inner, &query)
        })
        .await
    }
}

const ROTATION_KEY: &str = "rotation";

/// One newest-first page of the audit log.
fn list_audit(inner: &Inner, query: &AuditQuery) -> Result<AuditPage, StoreError> {
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

/// Re-encrypts one batch of sessions after the checkpoint, in one transaction with the new checkpoint.
fn rotate_batch(inner: &Inner, batch_size: usize) -> Result<RotationStats, StoreError> {
    let keyring = &inner.keyring;
    let active = keyring.active_id().to_string();
    let txn = inner.db.begin_write()?;
    let after = {
        let meta = txn.open_table(META)?;
        let checkpoint = meta.get(ROTATION_KEY)?;
        match checkpoint {
            Some(v) => {
                let c: Checkpoint = decode(v.value())?;
                (c.key == active).then_some(c.after)
            }
            None => None,
        }
    };
    let rows: Vec<SessionRow> = {
        let sessions = txn.open_table(SESSIONS)?;
        let lower = match &after {
            Some(a) => Bound::Excluded(a.as_str()),
            None => Bound::Unbounded,
        };
        sessions
            .range::<&str>((lower, Bound::Unbounded))?
            .take(batch_size)
            .map(|e| decode(e?.1.value()))
            .collect::<Result<_, StoreError>>()?
    };
    let mut stats = RotationStats {
        sessions_scanned: rows.len() as u64,
        done: rows.len() < batch_size,
        ..RotationStats::default()
    };
    for row in &rows {
        let id = row.id.as_str();
        if !row.nm.is_empty() && keyring.classify(&row.nm, false) != StoredKind::Active {
            let name = keyring.decrypt(&row.nm, Binding::Name { session: id }, false)?;
            let mut new = row.clone();
            new.nm = keyring.encrypt(&name, Binding::Name { session: id })?;
            put_row(&txn, Some(row), &new)?;
            stats.names_reencrypted += 1;
        }
        let mut messages = txn.open_table(MESSAGES)?;
        let mut updates = Vec::new();
        for entry in messages.range((id, 0u64)..=(id, u64::MAX))? {
            let (k, v) = entry?;
            let mut message: MessageRow = decode(v.value())?;
            if keyring.classify(&message.c, true) == StoredKind::Active {
                continue;
            }
            let binding = Binding::Message {
                session: id,
                message: &message.id,
            };
            let plain = keyring.decrypt(&message.c, binding, true)?;
            message.c = keyring.encrypt(&plain, binding)?;
            updates.push((k.value().1, encode(&message)?));
        }
        for (index, bytes) in updates {
            messages.insert((id, index), bytes.as_slice())?;
            stats.messages_reencrypted += 1;
        }
    }
    {
        let mut meta = txn.open_table(META)?;
        match (stats.done, rows.last()) {
            (false, Some(last)) => {
                let checkpoint = Checkpoint {
                    key: active,
                    after: last.id.clone(),
                };
                meta.insert(ROTATION_KEY, encode(&checkpoint)?.as_slice())?;
            }
            _ => {
                meta.remove(ROTATION_KEY)?;
            }
        }
    }
    txn.commit()?;
    Ok(stats)
}

/// Low-level access for tests and tools: writes a message row with an already-encoded `content`
/// (bypassing encryption), e.g. to load data in the Go service's formats.
pub async fn insert_raw_message(
    store: &EmbeddedStore,
    session_id: &str,
    message: &MessageRecord,
    stored_content: &str,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    let message = message.clone();
    let stored = stored_content.to_string();
    store
        .blocking("insert_raw", Budget::Short, move |inner| {
            let txn = inner.db.begin_write()?;
            let old = write_row_get(&txn, &id)?.ok_or(StoreError::NotFound)?;
            let row = MessageRow {
                id: message.id.clone(),
                seq: message.seq,
                c: stored.clone(),
                ts: to_ms(message.timestamp),
                sender: message.sender.clone(),
                file_id: None,
                file_url: None,
                meta: BTreeMap::new(),
                cmid: None,
                model: None,
                partial: false,
            };
            let index = u64::try_from(old.count).unwrap_or(0);
            txn.open_table(MESSAGES)?
                .insert((id.as_str(), index), encode(&row)?.as_slice())?;
            txn.open_table(MESSAGE_IDS)?
                .insert((id.as_str(), message.id.as_str()), index)?;
            let mut new = old.clone();
            new.count += 1;
            new.last_seq = new.last_seq.max(message.seq);
            put_row(&txn, Some(&old), &new)?;
            txn.commit()?;
            Ok(())
        })
        .await
}

/// Low-level access for benchmarks and tests: inserts a finished session row directly (one
/// transaction for the whole slice), with the given start, end, tokens, count and assistance.
pub async fn insert_bulk(store: &EmbeddedStore, rows: Vec<BulkSession>) -> Result<(), StoreError> {
    let rows = Arc::new(rows);
    store
        .blocking("insert_bulk", Budget::Long, move |inner| {
            let txn = inner.db.begin_write()?;
            for b in rows.iter() {
                let mut row = SessionRow::new(b.id.clone(), &b.user_id, "", to_ms(b.started_at));
                row.end = b.ended_at.map(to_ms);
                row.dur = row.end.map_or(0, |e| (e - row.ts) / 1000);
                row.tokens = b.total_tokens;
                row.count = b.message_count;
                row.assisted = b.admin_assisted;
                put_row(&txn, None, &row)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
}

/// A session for [`insert_bulk`].
#[derive(Debug, Clone)]
pub struct BulkSession {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Start.
    pub started_at: OffsetDateTime,
    /// End.
    pub ended_at: Option<OffsetDateTime>,
    /// Tokens.
    pub total_tokens: i64,
    /// Message count.
    pub message_count: i64,
    /// Assisted.
    pub admin_assisted: bool,
}
