//! The zero-config store: one [redb](https://docs.rs/redb) file in the data directory.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree database (no C toolchain, no background threads),
//! with serialised write transactions. Writes use group commit: one writer thread takes every write job
//! waiting (up to [`MAX_BATCH`]), runs them in order in one write transaction, commits once (durably)
//! and only then answers each caller. Every multi-record update below (get-or-create of the active
//! session, append + counters + indexes, purge) is one job, applied in full or not at all, and jobs are
//! serialised, so it stays atomic and race-free. Reads run in concurrent read transactions.
//! The admin list is served by secondary index tables keyed `(partition, sort value, session id)`, where
//! the partition encodes `ended` and `admin_assisted`, so every filter and sort of reference 2.4 reads
//! only the rows of the requested page (see `docs/storage.md`). The audit log is the `audit_log` table keyed
//! `(time, id)`, read backwards for newest-first pages. The `meta` table keeps the key rotation checkpoint
//! and the key canary.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditCursor, audit_limit, new_audit_id, next_audit_cursor};
use super::config::StoreConfig;
use super::crypto::{Binding, Keyring, StoredKind};
use super::error::StoreError;
use super::keycheck::{
    KEY_CHECK_MESSAGES, KeyProbe, KeyReport, mark_unreadable, open_content, open_name, seal_canary,
};
use super::query::{
    Cursor, MAX_LIMIT, SortField, SortOrder, SortValue, StatusFilter, next_cursor, sort_value,
};
use super::records::*;
use super::runner::{Budget, Runner};
use super::{
    AuditKind, AuditPage, AuditQuery, AuditRecord, SessionPage, SessionQuery, Store, StoreKind,
    StoredAudit, date_day, day_date, from_ms, new_session_id, new_share_token, to_ms, utc_day,
};
use crate::metrics::Metrics;

/// File name of the database in the data directory.
pub const DB_FILE: &str = "chatbox.redb";

type NumIndex = TableDefinition<'static, (u8, i64, &'static str), i64>;

/// redb's in-memory page cache (its default, 1 GiB, let the server's memory grow with the database for
/// as long as it runs).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

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
    /// The seq high-water mark; rows written before it existed read as 0 (then `last_seq` counts).
    #[serde(default)]
    seq_mark: u64,
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
            seq_mark: 0,
        }
    }

    fn partition(&self) -> u8 {
        (u8::from(self.end.is_some()) << 1) | u8::from(self.assisted)
    }

    fn record(&self, keyring: &Keyring) -> Result<SessionRecord, StoreError> {
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
    /// Queue of the writer thread (`None` only while dropping).
    jobs: Option<mpsc::UnboundedSender<Box<dyn WriteJob>>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    /// Closes the queue and waits for the writer to commit the jobs already queued, so that the file is
    /// released (and can be reopened) once the store is dropped.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("embedded store writer thread panicked");
        }
    }
}

/// Most write jobs committed together in one transaction.
const MAX_BATCH: usize = 256;

/// What running a job in the batch's transaction left behind.
enum Applied {
    /// The job succeeded, or failed before writing anything: the transaction holds exactly the
    /// successful jobs so far.
    Clean,
    /// The job failed and may have written part of its changes: the transaction must be rolled back.
    Dirty,
}

/// A queued write: runs in the batch's transaction, answers its caller after the commit.
trait WriteJob: Send {
    /// Runs the job in `txn` and keeps its result. May run again in a new transaction if another job
    /// of the batch forced a rollback (the result of the run that is committed is the one answered).
    fn apply(&mut self, txn: &WriteTransaction, inner: &Inner) -> Applied;
    /// Answers the caller: the job's result if `commit` succeeded, else the commit's error.
    fn reply(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Job<T, F> {
    f: Arc<F>,
    /// The job returns its logical errors (see [`fails_before_writing`]) before its first write.
    checks_first: bool,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

/// Errors that a `checks_first` job returns only before writing anything (missing or ended session,
/// invalid input, encryption and decryption failures). Storage and decoding errors can come at any point.
fn fails_before_writing(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound
            | StoreError::SessionEnded
            | StoreError::InvalidCursor
            | StoreError::InvalidQuery(_)
            | StoreError::Crypto(_)
    )
}

/// `e` as the error of every job of a failed batch.
fn batch_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Embedded(message) => StoreError::Embedded(message.clone()),
        other => StoreError::Embedded(other.to_string()),
    }
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
{
    fn apply(&mut self, txn: &WriteTransaction, inner: &Inner) -> Applied {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(txn, inner)))
            .unwrap_or_else(|_| Err(StoreError::Embedded("write job panicked".to_string())));
        let clean = match &result {
            Ok(_) => true,
            Err(e) => self.checks_first && fails_before_writing(e),
        };
        self.result = Some(result);
        if clean {
            Applied::Clean
        } else {
            Applied::Dirty
        }
    }

    fn reply(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Embedded("write job not run".to_string()))),
            Err(e) => Err(batch_error(e)),
        };
        // The caller may have given up (timeout, cancelled request): nothing to answer then.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]) and commits them together, until
/// the store is dropped (the queue is closed and drained).
fn writer(inner: Arc<Inner>, mut jobs: mpsc::UnboundedReceiver<Box<dyn WriteJob>>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = jobs.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&inner, std::mem::take(&mut batch));
    }
}

/// Runs `batch` in order in one write transaction and commits it once (durably), then answers every
/// job. A job that fails cleanly (before writing) is answered with its error and the others go on. A job
/// that fails after it may have written rolls the transaction back: it is answered with its error and
/// the rest of the batch runs again in a new transaction (jobs are answered only after the commit, so
/// a rerun is invisible to callers). A failed commit fails every job of the batch: nothing is
/// acknowledged that is not durable.
fn commit_batch(inner: &Inner, mut batch: Vec<Box<dyn WriteJob>>) {
    while !batch.is_empty() {
        let txn = match inner.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let e = StoreError::from(e);
                for job in batch {
                    job.reply(Err(&e));
                }
                return;
            }
        };
        let dirty = batch
            .iter_mut()
            .position(|job| matches!(job.apply(&txn, inner), Applied::Dirty));
        match dirty {
            Some(index) => {
                if let Err(e) = txn.abort() {
                    tracing::warn!(error = %e, "embedded store: aborting a write batch failed");
                }
                // Its own error: none of its writes is committed.
                batch.remove(index).reply(Ok(()));
            }
            None => {
                let committed = txn.commit().map_err(StoreError::from);
                if let Err(e) = &committed {
                    tracing::error!(error = %e, jobs = batch.len(), "embedded store: commit failed");
                }
                for job in batch {
                    job.reply(committed.as_ref().map(|_| ()));
                }
                return;
            }
        }
    }
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
                crate::settings_kit::create_private_dir(dir).map_err(|e| {
                    StoreError::Setup(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let new = !path.exists();
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)?;
            #[cfg(unix)]
            if new {
                // Message contents are encrypted, but ids, times and metadata are not: owner only.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |e| StoreError::Setup(format!("cannot restrict {}: {e}", path.display())),
                )?;
            }
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
        let inner = Arc::new(Inner { db, keyring });
        let (jobs, queue) = mpsc::unbounded_channel();
        let writer = std::thread::Builder::new()
            .name("redb-writer".to_string())
            .spawn({
                let inner = inner.clone();
                move || writer(inner, queue)
            })
            .map_err(|e| StoreError::Setup(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            inner,
            runner: Runner::new(config, metrics),
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    /// Queues the write job `f` for the writer thread (group commit) and waits for its durable commit,
    /// with the operation's timeout and metric. `f` must return its logical errors (see
    /// [`fails_before_writing`]) before its first write; jobs that cannot use [`Self::write_mixed`].
    async fn write<T, F>(&self, name: &'static str, budget: Budget, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        self.queue(name, budget, true, f).await
    }

    /// [`Self::write`] for a job that may fail after writing (maintenance batches): any error of it
    /// rolls back the batch's transaction, and the other jobs run again without it.
    async fn write_mixed<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        self.queue(name, budget, false, f).await
    }

    async fn queue<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        checks_first: bool,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        // Not idempotent: once queued, a job is applied (or fails) whether or not its caller still waits;
        // there is no way to take it back. A timeout therefore means "outcome unknown" and must not be
        // retried, or a job still queued or committing would be applied twice (a doubled `record_usage`,
        // a second session from `get_or_create_active`). With `idempotent = false` the runner retries
        // no embedded error (only timeouts were ever transient here), so every attempt is the only one.
        self.runner
            .run(name, budget, false, || {
                let f = f.clone();
                async move {
                    let stopped =
                        || StoreError::Embedded("the store writer has stopped".to_string());
                    let (reply, answer) = oneshot::channel();
                    let job = Box::new(Job {
                        f,
                        checks_first,
                        result: None,
                        reply,
                    });
                    self.jobs
                        .as_ref()
                        .ok_or_else(stopped)?
                        .send(job)
                        .map_err(|_| stopped())?;
                    answer.await.map_err(|_| stopped())?
                }
            })
            .await
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
    session_ids_in(&txn.open_table(USER_SESSIONS)?, user_id)
}

/// Ids of the sessions of `user_id`, oldest first, from the `user_sessions` table of any transaction.
fn session_ids_in(
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

/// Applies `change` to the session `id` in the batch's write transaction; `NotFound` if it does not
/// exist. `change` must not fail (it runs after the checks, and the row is written after it).
/// The assisting admin a row names.
fn row_assistant(row: &SessionRow) -> Option<AssistingAdmin> {
    row.admin_id
        .clone()
        .filter(|id| !id.is_empty())
        .map(|id| AssistingAdmin {
            id,
            name: row.admin_name.clone().unwrap_or_default(),
        })
}

fn update_row<T>(
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

/// Appends `message` to the session `id` (checks first: `NotFound`, duplicate, `SessionEnded` and
/// encryption come before any write).
fn append(
    txn: &WriteTransaction,
    inner: &Inner,
    id: &str,
    message: &MessageRecord,
) -> Result<AppendOutcome, StoreError> {
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    if txn
        .open_table(MESSAGE_IDS)?
        .get((id, message.id.as_str()))?
        .is_some()
    {
        return Ok(AppendOutcome::Duplicate);
    }
    if old.end.is_some() {
        return Err(StoreError::SessionEnded);
    }
    let row = message_row(inner, id, message)?;
    let ts = row.ts;
    let index = u64::try_from(old.count).unwrap_or(0);
    txn.open_table(MESSAGES)?
        .insert((id, index), encode(&row)?.as_slice())?;
    txn.open_table(MESSAGE_IDS)?
        .insert((id, message.id.as_str()), index)?;
    let mut new = old.clone();
    new.count += 1;
    new.last_seq = new.last_seq.max(message.seq);
    new.last = Some(new.last.map_or(ts, |l| l.max(ts)));
    put_row(txn, Some(&old), &new)?;
    Ok(AppendOutcome::Stored)
}

/// The stored form of `message` of session `id` (content encrypted).
fn message_row(inner: &Inner, id: &str, message: &MessageRecord) -> Result<MessageRow, StoreError> {
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

/// Appends `answer`, or replaces the stored message with its id (a checkpoint of it) in place.
fn put_answer(
    txn: &WriteTransaction,
    inner: &Inner,
    id: &str,
    answer: &MessageRecord,
) -> Result<(), StoreError> {
    let stored = txn
        .open_table(MESSAGE_IDS)?
        .get((id, answer.id.as_str()))?
        .map(|index| index.value());
    let Some(index) = stored else {
        return append(txn, inner, id, answer).map(|_| ());
    };
    let row = message_row(inner, id, answer)?;
    txn.open_table(MESSAGES)?
        .insert((id, index), encode(&row)?.as_slice())?;
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    let mut new = old.clone();
    new.last_seq = new.last_seq.max(answer.seq);
    new.last = Some(new.last.map_or(row.ts, |l| l.max(row.ts)));
    put_row(txn, Some(&old), &new)
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
        let ids = session_ids_of_user(&txn, user_id)?;
        return sorted_page(inner, &txn, ids, query, cursor.as_ref(), (from, to), limit);
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
    let parts: Vec<u8> = ended
        .iter()
        .flat_map(|e| assisted.iter().map(move |a| (e << 1) | a))
        .collect();
    let windowed = from > i64::MIN || to < i64::MAX;
    if windowed && query.sort_by != SortField::StartTime {
        // A start-time window with another sort: when the window holds few sessions, read them through
        // the start-time index and sort them here, instead of walking the whole sort index for them.
        if let Some(ids) = ids_started_within(&txn, &parts, from, to)? {
            return sorted_page(inner, &txn, ids, query, cursor.as_ref(), (from, to), limit);
        }
    }
    let start_bounds = (query.sort_by == SortField::StartTime).then_some((from, to));
    let mut heads: Vec<IndexIter> = Vec::new();
    for &p in &parts {
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

/// Most sessions a start-time window may hold for [`list_sessions`] to read them all and sort them in
/// memory (for a sort other than start time); a wider window walks the sort index, where matches are dense.
const WINDOW_SORT_MAX: usize = 2_000;

/// The ids of the sessions of partitions `parts` that started within `[from, to]`, or `None` when there
/// are more than [`WINDOW_SORT_MAX`].
fn ids_started_within(
    txn: &ReadTransaction,
    parts: &[u8],
    from: i64,
    to: i64,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut ids = Vec::new();
    for &p in parts {
        for entry in num_index_iter(txn, IDX_START, p, SortOrder::Asc, None, Some((from, to)))? {
            if ids.len() == WINDOW_SORT_MAX {
                return Ok(None);
            }
            ids.push(entry?.1);
        }
    }
    Ok(Some(ids))
}

/// A page of the sessions `ids` (a bounded set: one user's, or one narrow start-time window's), filtered,
/// sorted and paged here like the index walk of [`list_sessions`] would.
fn sorted_page(
    inner: &Inner,
    txn: &ReadTransaction,
    ids: Vec<String>,
    query: &SessionQuery,
    after: Option<&Cursor>,
    (from, to): (i64, i64),
    limit: usize,
) -> Result<SessionPage, StoreError> {
    // Names are decrypted for the page only: filtering and sorting need none of the encrypted fields.
    let mut rows = Vec::new();
    for id in ids {
        let Some(mut row) = read_row(txn, &id)? else {
            continue;
        };
        let name = std::mem::take(&mut row.nm);
        let record = row.record(&inner.keyring)?;
        if !matches_filters(&record, query, from, to) {
            continue;
        }
        row.nm = name;
        rows.push((sort_value(&record, query.sort_by), record, row));
    }
    rows.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
    if query.order == SortOrder::Desc {
        rows.reverse();
    }
    let sessions = rows
        .into_iter()
        .filter(|(v, r, _)| match after {
            None => true,
            Some(c) => match query.order {
                SortOrder::Asc => (v, &r.id) > (&c.v, &c.id),
                SortOrder::Desc => (v, &r.id) < (&c.v, &c.id),
            },
        })
        .skip(query.offset)
        .take(limit)
        .map(|(_, _, row)| row.record(&inner.keyring))
        .collect::<Result<Vec<SessionRecord>, StoreError>>()?;
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

    async fn count_active_sessions(&self) -> Result<u64, StoreError> {
        // One entry per user with an active session.
        self.blocking("count_active_sessions", Budget::Short, |inner| {
            let txn = inner.db.begin_read()?;
            Ok(txn.open_table(ACTIVE)?.len()?)
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
        self.write("create_session", Budget::Short, move |txn, inner| {
            let existing = txn
                .open_table(ACTIVE)?
                .get(user_id.as_str())?
                .map(|v| v.value().to_string());
            if let Some(id) = existing
                && let Some(row) = write_row_get(txn, &id)?
                && row.end.is_none()
            {
                return Ok(ActiveSession {
                    session: row.record(&inner.keyring)?,
                    created: false,
                });
            }
            let id = match &preferred {
                Some(p) if !p.is_empty() && write_row_get(txn, p)?.is_none() => p.clone(),
                _ => new_session_id(),
            };
            let row = SessionRow::new(id.clone(), &user_id, &model_id, to_ms(super::now()));
            let session = row.record(&inner.keyring)?;
            put_row(txn, None, &row)?;
            txn.open_table(ACTIVE)?
                .insert(user_id.as_str(), id.as_str())?;
            Ok(ActiveSession {
                session,
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
        self.write("append_message", Budget::Short, move |txn, inner| {
            append(txn, inner, &id, &message)
        })
        .await
    }

    async fn put_answer(&self, session_id: &str, answer: &MessageRecord) -> Result<(), StoreError> {
        let id = session_id.to_string();
        let answer = answer.clone();
        self.write("put_answer", Budget::Short, move |txn, inner| {
            put_answer(txn, inner, &id, &answer)
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
        self.write("set_name", Budget::Short, move |txn, inner| {
            let sealed = if name.is_empty() {
                String::new()
            } else {
                inner
                    .keyring
                    .encrypt(&name, Binding::Name { session: &id })?
            };
            update_row(txn, &id, |row| {
                row.nm = sealed;
                Ok(())
            })
        })
        .await
    }

    async fn raise_seq_mark(
        &self,
        session_id: &str,
        _user_id: &str,
        mark: u64,
    ) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write("raise_seq_mark", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
                row.seq_mark = row.seq_mark.max(mark);
                Ok(())
            })
        })
        .await
    }

    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError> {
        let id = session_id.to_string();
        let model = model_id.to_string();
        self.write("set_model", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
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
        self.write("end_session", Budget::Short, move |txn, inner| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
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
            // Decrypted before any write, so that a key error leaves the batch untouched.
            let session = new.record(&inner.keyring)?;
            put_row(txn, Some(&old), &new)?;
            {
                let mut active = txn.open_table(ACTIVE)?;
                let points_here = active
                    .get(new.uid.as_str())?
                    .is_some_and(|v| v.value() == id);
                if points_here {
                    active.remove(new.uid.as_str())?;
                }
            }
            Ok(EndOutcome {
                ended_now: true,
                session,
            })
        })
        .await
    }

    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError> {
        let id = session_id.to_string();
        self.write("record_usage", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            let mut new = old.clone();
            new.tokens += usage.tokens;
            new.max_ms = new.max_ms.max(usage.response_ms);
            new.resp_count += 1;
            new.resp_total_ms += usage.response_ms;
            new.avg_ms = new.resp_total_ms / new.resp_count;
            put_row(txn, Some(&old), &new)?;
            {
                let mut table = txn.open_table(USAGE)?;
                let key = (new.uid.as_str(), utc_day(usage.at));
                let current = table.get(key)?.map_or(0, |v| v.value());
                table.insert(key, current + usage.tokens)?;
            }
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
        self.write("set_help", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
                row.help = requested;
                Ok(())
            })
        })
        .await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AssistingAdmin,
        replacing: Option<&str>,
    ) -> Result<Claim, StoreError> {
        let id = session_id.to_string();
        let admin = admin.clone();
        let replacing = replacing.map(str::to_string);
        // Check and set in one write transaction.
        self.write("claim_assistance", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            if old.end.is_some() {
                return Err(StoreError::SessionEnded);
            }
            if let Some(current) = row_assistant(&old)
                .filter(|a| a.id != admin.id && Some(&a.id) != replacing.as_ref())
            {
                return Ok(Claim::Held(current));
            }
            let mut new = old.clone();
            new.assisted = true;
            new.admin_id = Some(admin.id.clone());
            new.admin_name = Some(admin.name.clone());
            put_row(txn, Some(&old), &new)?;
            Ok(Claim::Granted)
        })
        .await
    }

    async fn release_assistance(
        &self,
        session_id: &str,
        admin_id: &str,
    ) -> Result<Release, StoreError> {
        let id = session_id.to_string();
        let admin_id = admin_id.to_string();
        self.write("release_assistance", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            match row_assistant(&old) {
                None => Ok(Release::NotAssisted),
                Some(current) if current.id != admin_id => Ok(Release::Held(current)),
                Some(_) => {
                    let mut new = old.clone();
                    new.admin_id = None;
                    new.admin_name = None;
                    put_row(txn, Some(&old), &new)?;
                    Ok(Release::Released)
                }
            }
        })
        .await
    }

    async fn share(&self, session_id: &str) -> Result<String, StoreError> {
        let id = session_id.to_string();
        self.write("share_session", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
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
            put_row(txn, Some(&old), &new)?;
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
        self.write("revoke_share", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            let Some(token) = &old.share else {
                return Ok(false);
            };
            txn.open_table(SHARES)?.remove(token.as_str())?;
            let mut new = old.clone();
            new.share = None;
            put_row(txn, Some(&old), &new)?;
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
        self.blocking(
            "list_all_sessions_with_options",
            Budget::Long,
            move |inner| list_sessions(inner, &query),
        )
        .await
    }

    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        let (from, to, now) = (to_ms(from), to_ms(to), to_ms(super::now()));
        self.blocking("get_session_metrics", Budget::Long, move |inner| {
            metrics(inner, from, to, now)
        })
        .await
    }

    async fn purge_ended_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = to_ms(cutoff);
        self.write_mixed("purge", Budget::Long, move |txn, _| {
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
        self.write_mixed("delete_user", Budget::Long, move |txn, _| {
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
                .write_mixed("rotate_keys", Budget::Long, move |txn, inner| {
                    rotate_batch(txn, inner, batch_size)
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

    async fn check_keys(&self, sessions: usize) -> Result<KeyReport, StoreError> {
        let (canary, created) = self
            .write("key_canary", Budget::Short, ensure_canary)
            .await?;
        self.blocking("check_keys", Budget::Long, move |inner| {
            check_keys(inner, &canary, created, sessions)
        })
        .await
    }

    async fn record_audit(&self, record: &AuditRecord) -> Result<StoredAudit, StoreError> {
        let row = AuditRow::new(new_audit_id(), record);
        let bytes = encode(&row)?;
        let key_id = row.id.clone();
        let ts = row.ts;
        self.write("record_audit", Budget::Short, move |txn, _| {
            txn.open_table(AUDIT)?
                .insert((ts, key_id.as_str()), bytes.as_slice())?;
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
/// Key of the key canary in the `meta` table: a ciphertext (UTF-8) under the key that was active when it
/// was written.
const CANARY_KEY: &str = "canary";

/// The stored key canary, written under the active key when there is none; true when this call wrote it.
fn ensure_canary(txn: &WriteTransaction, inner: &Inner) -> Result<(String, bool), StoreError> {
    let mut meta = txn.open_table(META)?;
    if let Some(v) = meta.get(CANARY_KEY)? {
        return Ok((String::from_utf8_lossy(v.value()).into_owned(), false));
    }
    let sealed = seal_canary(&inner.keyring)?;
    meta.insert(CANARY_KEY, sealed.as_bytes())?;
    Ok((sealed, true))
}

/// The key check over the canary and the names and last messages of the `sessions` most recent sessions.
fn check_keys(
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
fn rotate_batch(
    txn: &WriteTransaction,
    inner: &Inner,
    batch_size: usize,
) -> Result<RotationStats, StoreError> {
    let keyring = &inner.keyring;
    let active = keyring.active_id().to_string();
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
            put_row(txn, Some(row), &new)?;
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
                // Every value is under the active key now: so is the canary from then on.
                meta.insert(CANARY_KEY, seal_canary(keyring)?.as_bytes())?;
            }
        }
    }
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
        .write("insert_raw", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
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
            put_row(txn, Some(&old), &new)?;
            Ok(())
        })
        .await
}

/// Low-level access for benchmarks and tests: inserts a finished session row directly (one
/// transaction for the whole slice), with the given start, end, tokens, count and assistance.
pub async fn insert_bulk(store: &EmbeddedStore, rows: Vec<BulkSession>) -> Result<(), StoreError> {
    let rows = Arc::new(rows);
    store
        .write_mixed("insert_bulk", Budget::Long, move |txn, _| {
            for b in rows.iter() {
                let mut row = SessionRow::new(b.id.clone(), &b.user_id, "", to_ms(b.started_at));
                row.end = b.ended_at.map(to_ms);
                row.dur = row.end.map_or(0, |e| (e - row.ts) / 1000);
                row.tokens = b.total_tokens;
                row.count = b.message_count;
                row.assisted = b.admin_assisted;
                put_row(txn, None, &row)?;
            }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::load_keyring;

    async fn open_store(dir: &Path) -> Arc<EmbeddedStore> {
        let config = StoreConfig::default();
        let keyring = Arc::new(load_keyring(&config, dir, false).unwrap());
        let store = EmbeddedStore::open(
            &dir.join(DB_FILE),
            &config,
            keyring,
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        Arc::new(store)
    }

    async fn new_session(store: &EmbeddedStore, user: &str) -> String {
        store
            .get_or_create_active(user, None, "model")
            .await
            .unwrap()
            .session
            .id
    }

    type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

    fn job<T: Send + 'static>(
        f: impl Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    ) -> (Box<dyn WriteJob>, Answer<T>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            f: Arc::new(f),
            checks_first: true,
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    fn append_job(session: &str, message_id: &str) -> (Box<dyn WriteJob>, Answer<AppendOutcome>) {
        let session = session.to_string();
        let message = MessageRecord::new(message_id, 1, "user", "hello");
        job(move |txn, inner| append(txn, inner, &session, &message))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_to_different_sessions_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let ended = new_session(&store, "gone").await;
        store
            .end_session(&ended, super::super::now())
            .await
            .unwrap();
        let mut sessions = Vec::new();
        for user in 0..100 {
            sessions.push(new_session(&store, &format!("user-{user}")).await);
        }
        let mut tasks = Vec::new();
        for session in &sessions {
            for seq in 1..=5u64 {
                let (store, session) = (store.clone(), session.clone());
                tasks.push(tokio::spawn(async move {
                    let message = MessageRecord::new(format!("m{seq}"), seq, "user", "hi");
                    store.append_message(&session, &message).await
                }));
            }
            // Failing jobs interleaved with the others, in the same batches.
            let store = store.clone();
            let ended = ended.clone();
            tasks.push(tokio::spawn(async move {
                let message = MessageRecord::new("late", 1, "user", "late");
                store.append_message(&ended, &message).await
            }));
        }
        let (mut stored, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(AppendOutcome::Stored) => stored += 1,
                Err(StoreError::SessionEnded) => refused += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((stored, refused), (500, 100));
        for session in &sessions {
            let messages = store.messages(session, None).await.unwrap();
            assert_eq!(messages.len(), 5, "{session}");
            let row = store.get_session(session).await.unwrap().unwrap();
            assert_eq!((row.message_count, row.last_seq), (5, 5));
        }
        assert!(store.messages(&ended, None).await.unwrap().is_empty());
        assert_eq!(store.session_count().await.unwrap(), 101);
    }

    #[tokio::test]
    async fn a_failing_job_does_not_abort_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let (a, b) = (
            new_session(&store, "a").await,
            new_session(&store, "b").await,
        );
        let ended = new_session(&store, "c").await;
        store
            .end_session(&ended, super::super::now())
            .await
            .unwrap();

        let (j1, first) = append_job(&a, "m1");
        let (j2, late) = append_job(&ended, "m1");
        let (j3, other) = append_job(&b, "m1");
        // Fails after writing: the batch is rolled back and rerun without it.
        let (j4, broken) = job(|txn, _| -> Result<(), StoreError> {
            txn.open_table(META)?.insert("partial", b"x".as_slice())?;
            Err(StoreError::Embedded("boom".to_string()))
        });
        let (j5, again) = append_job(&a, "m1");
        let (j6, missing) = append_job("no-such-session", "m1");
        commit_batch(&store.inner, vec![j1, j2, j3, j4, j5, j6]);

        assert!(matches!(first.await.unwrap(), Ok(AppendOutcome::Stored)));
        assert!(matches!(late.await.unwrap(), Err(StoreError::SessionEnded)));
        assert!(matches!(other.await.unwrap(), Ok(AppendOutcome::Stored)));
        assert!(matches!(broken.await.unwrap(), Err(StoreError::Embedded(m)) if m == "boom"));
        // Sees the first job's uncommitted write in the same transaction.
        assert!(matches!(again.await.unwrap(), Ok(AppendOutcome::Duplicate)));
        assert!(matches!(missing.await.unwrap(), Err(StoreError::NotFound)));

        for session in [&a, &b] {
            assert_eq!(store.messages(session, None).await.unwrap().len(), 1);
            let row = store.get_session(session).await.unwrap().unwrap();
            assert_eq!(row.message_count, 1);
        }
        assert!(store.messages(&ended, None).await.unwrap().is_empty());
        let txn = store.inner.db.begin_read().unwrap();
        assert!(
            txn.open_table(META)
                .unwrap()
                .get("partial")
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn start_windows_with_another_sort_page_alike_below_and_above_the_in_memory_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let base = OffsetDateTime::now_utc() - time::Duration::days(30);
        let total = WINDOW_SORT_MAX * 3 + 400;
        let rows = (0..total)
            .map(|i| BulkSession {
                id: format!("s{i:06}"),
                user_id: format!("u{}", i % 50),
                started_at: base + time::Duration::seconds(i as i64),
                ended_at: None,
                total_tokens: 0,
                message_count: ((i * 7919) % 1000) as i64,
                admin_assisted: false,
            })
            .collect();
        insert_bulk(&store, rows).await.unwrap();
        // A window of 100 sessions (sorted in memory) and one of more than the bound (the index walk).
        for (first, len) in [(1000, 100), (300, WINDOW_SORT_MAX + 200)] {
            let from = base + time::Duration::seconds(first as i64);
            let to = from + time::Duration::seconds(len as i64 - 1);
            let mut want: Vec<(i64, String)> = (first..first + len)
                .map(|i| (((i * 7919) % 1000) as i64, format!("s{i:06}")))
                .collect();
            want.sort();
            want.reverse();
            let want: Vec<String> = want.into_iter().take(150).map(|(_, id)| id).collect();
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let query = SessionQuery {
                    started_from: Some(from),
                    started_to: Some(to),
                    sort_by: SortField::MessageCount,
                    limit: 50,
                    cursor: cursor.clone(),
                    ..SessionQuery::default()
                };
                let page = store.list_sessions(&query).await.unwrap();
                got.extend(page.sessions.into_iter().map(|s| s.id));
                cursor = page.next_cursor;
                if cursor.is_none() || got.len() >= 150 {
                    break;
                }
            }
            assert_eq!(got, want, "window of {len}");
        }
    }
}
