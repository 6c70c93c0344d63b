//! The zero-config store: one [redb](https://docs.rs/redb) file in the data directory.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree database (no C toolchain, no background threads),
//! with serialised write transactions. Writes use group commit: one writer thread takes every write job
//! waiting (up to [`writer::MAX_BATCH`]), runs them in order in one write transaction, commits once (durably)
//! and only then answers each caller. Every multi-record update below (get-or-create of the active
//! session, append + counters + indexes, purge) is one job, applied in full or not at all, and jobs are
//! serialised, so it stays atomic and race-free. Reads run in concurrent read transactions.
//! The admin list is served by secondary index tables keyed `(partition, sort value, session id)`, where
//! the partition encodes `ended` and `admin_assisted`, so every filter and sort of reference 2.4 reads
//! only the rows of the requested page (see `docs/storage.md`). The audit log is the `audit_log` table keyed
//! `(time, id)`, read backwards for newest-first pages. The `meta` table keeps the key rotation checkpoint
//! and the key canary. Uploaded files' metadata is the `files` table with two index tables (see
//! `files.rs`).

mod assist;
mod audit;
mod files;
mod maintenance;
mod queries;
mod raw;
mod reads;
mod rotation;
mod rows;
mod sessions;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableTableMetadata};
use time::{Date, OffsetDateTime};
use tokio::sync::mpsc;

use super::config::StoreConfig;
use super::crypto::Keyring;
use super::error::StoreError;
use super::keycheck::KeyReport;
use super::records::*;
use super::runner::{Budget, Runner};
use super::{
    AuditPage, AuditQuery, AuditRecord, FileFilter, FileRecord, SessionPage, SessionQuery, Store,
    StoreKind, StoredAudit,
};
use crate::metrics::Metrics;
use tables::*;
use writer::WriteJob;

pub use raw::{BulkSession, insert_bulk, insert_raw_message};

/// File name of the database in the data directory.
pub const DB_FILE: &str = "chatbox.redb";

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
        // redb's page cache: bounded by configuration (redb's default, 1 GiB, let the server's memory
        // grow with the database for as long as it ran).
        let cache_bytes = config.embedded_cache_mb as usize * 1024 * 1024;
        let db = tokio::task::spawn_blocking(move || -> Result<Database, StoreError> {
            if let Some(dir) = path.parent() {
                crate::settings_kit::create_private_dir(dir).map_err(|e| {
                    StoreError::Setup(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let new = !path.exists();
            let db = Database::builder()
                .set_cache_size(cache_bytes)
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
            txn.open_table(FILES)?;
            txn.open_table(FILES_BY_USER)?;
            txn.open_table(FILES_BY_SESSION)?;
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
                let metrics = metrics.clone();
                move || writer::run(inner, queue, metrics)
            })
            .map_err(|e| StoreError::Setup(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            inner,
            runner: Runner::new(config, metrics),
            jobs: Some(jobs),
            writer: Some(writer),
        })
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

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Embedded
    }

    async fn ping(&self) -> Result<(), StoreError> {
        reads::ping(self).await
    }

    async fn active_session_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        reads::active_session_id(self, user_id).await
    }

    async fn count_active_sessions(&self) -> Result<u64, StoreError> {
        reads::count_active_sessions(self).await
    }

    async fn get_or_create_active(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        sessions::get_or_create_active(self, user_id, preferred_id, model_id).await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        reads::get_session(self, session_id).await
    }

    async fn append_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<AppendOutcome, StoreError> {
        sessions::append_message(self, session_id, message).await
    }

    async fn put_answer(&self, session_id: &str, answer: &MessageRecord) -> Result<(), StoreError> {
        sessions::put_answer(self, session_id, answer).await
    }

    async fn finish_turn(
        &self,
        session_id: &str,
        answer: Option<&MessageRecord>,
        usage: Option<TurnUsage>,
    ) -> Result<(), StoreError> {
        sessions::finish_turn(self, session_id, answer, usage).await
    }

    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        reads::recent_messages(self, session_id, limit).await
    }

    async fn messages(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        reads::messages(self, session_id, after_seq).await
    }

    async fn set_name(&self, session_id: &str, name: &str) -> Result<(), StoreError> {
        sessions::set_name(self, session_id, name).await
    }

    async fn raise_seq_mark(
        &self,
        session_id: &str,
        _user_id: &str,
        mark: u64,
    ) -> Result<(), StoreError> {
        sessions::raise_seq_mark(self, session_id, _user_id, mark).await
    }

    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError> {
        sessions::set_model(self, session_id, model_id).await
    }

    async fn end_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
    ) -> Result<EndOutcome, StoreError> {
        sessions::end_session(self, session_id, at).await
    }

    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError> {
        sessions::record_usage(self, session_id, usage).await
    }

    async fn user_tokens_on(&self, user_id: &str, day: Date) -> Result<i64, StoreError> {
        reads::user_tokens_on(self, user_id, day).await
    }

    async fn set_help_requested(
        &self,
        session_id: &str,
        requested: bool,
    ) -> Result<(), StoreError> {
        sessions::set_help_requested(self, session_id, requested).await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AssistingAdmin,
        replacing: Option<&str>,
    ) -> Result<Claim, StoreError> {
        assist::claim_assistance(self, session_id, admin, replacing).await
    }

    async fn release_assistance(
        &self,
        session_id: &str,
        admin_id: &str,
    ) -> Result<Release, StoreError> {
        assist::release_assistance(self, session_id, admin_id).await
    }

    async fn share(&self, session_id: &str) -> Result<String, StoreError> {
        assist::share(self, session_id).await
    }

    async fn session_by_share_token(
        &self,
        token: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        assist::session_by_share_token(self, token).await
    }

    async fn revoke_share(&self, session_id: &str) -> Result<bool, StoreError> {
        assist::revoke_share(self, session_id).await
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        reads::list_user_sessions(self, user_id, limit).await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        queries::list_sessions(self, query).await
    }

    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        queries::metrics(self, from, to).await
    }

    async fn purge_ended_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        maintenance::purge_ended_before(self, cutoff).await
    }

    async fn export_user(&self, user_id: &str) -> Result<UserExport, StoreError> {
        maintenance::export_user(self, user_id).await
    }

    async fn delete_user(&self, user_id: &str) -> Result<DeleteStats, StoreError> {
        maintenance::delete_user(self, user_id).await
    }

    async fn check_keys(&self, sessions: usize) -> Result<KeyReport, StoreError> {
        maintenance::check_keys(self, sessions).await
    }

    async fn record_audit(&self, record: &AuditRecord) -> Result<StoredAudit, StoreError> {
        audit::record_audit(self, record).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        audit::list_audit(self, query).await
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        files::insert_file(self, file).await
    }

    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        files::get_file(self, file_id).await
    }

    async fn attach_file(
        &self,
        file_id: &str,
        session_id: &str,
    ) -> Result<Option<FileRecord>, StoreError> {
        files::attach_file(self, file_id, session_id).await
    }

    async fn delete_file(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        files::delete_file(self, file_id).await
    }

    async fn list_files(
        &self,
        filter: FileFilter<'_>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError> {
        files::list_files(self, filter, limit).await
    }

    async fn update_file_key(
        &self,
        file_id: &str,
        key_id: &str,
        wrapped_key: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        files::update_file_key(self, file_id, key_id, wrapped_key, name).await
    }
}
