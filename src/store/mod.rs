//! Session storage: the [`Store`] trait, its MongoDB ([`mongo`]) and embedded ([`embedded`], redb)
//! implementations, encryption at rest ([`crypto`]), key rotation ([`rotation`]), the maintenance jobs
//! ([`maintenance`]), the persistent audit log of administrator actions ([`AuditRecord`],
//! [`Store::record_audit`]) and the metadata of uploaded files ([`FileRecord`], [`Store::insert_file`]).
//!
//! [`open`] picks MongoDB when a URI is configured and the embedded store otherwise. Both keep the
//! Go service's document layout (reference 4.2) and ciphertext formats readable; see `docs/storage.md`.

mod audit;
mod config;
pub mod crypto;
pub mod embedded;
mod error;
mod files;
mod keycheck;
mod keys;
pub mod maintenance;
pub mod mongo;
mod query;
mod records;
pub mod rotation;
mod runner;
mod slots;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

pub use audit::{AuditKind, AuditPage, AuditQuery, AuditRecord, StoredAudit};
pub use config::StoreConfig;
pub use crypto::{CryptoError, Keyring};
pub use error::StoreError;
pub use files::{FileFilter, FileRecord};
pub use keycheck::{KEY_CHECK_MESSAGES, KEY_CHECK_SESSIONS, KeyReport, UNREADABLE};
pub use keys::{DEV_KEY_FILE, load_keyring};
pub use query::{MAX_LIMIT, SessionPage, SessionQuery, SortField, SortOrder, StatusFilter};
pub use records::{
    ActiveSession, AppendOutcome, AssistingAdmin, Claim, DeleteStats, EndOutcome, ExportedSession,
    MessageRecord, Release, RotationProgress, RotationStats, Sender, SessionMetrics, SessionRecord,
    TurnUsage, UserExport,
};
pub use rotation::RotationBackend;

use crate::metrics::Metrics;

/// Which implementation serves a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// MongoDB (or a compatible server such as FerretDB).
    Mongo,
    /// The embedded redb database in the data directory.
    Embedded,
}

/// Persistent sessions and messages. Every method is safe to call concurrently, also from several server
/// nodes sharing one MongoDB. Policy common to both implementations (key rotation) is written once, in
/// default methods over small primitives ([`RotationBackend`]).
#[async_trait]
pub trait Store: RotationBackend + Send + Sync + std::fmt::Debug {
    /// The implementation.
    fn kind(&self) -> StoreKind;

    /// Checks the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores what the store holds back to send together (the MongoDB store's deferred session counters
    /// and daily usage). Called every `store.flush_interval` and at shutdown
    /// ([`maintenance::spawn_flusher`]).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The id of the user's active session, if any (also one written by the Go service).
    async fn active_session_id(&self, user_id: &str) -> Result<Option<String>, StoreError>;

    /// Returns the user's active session, creating it if there is none. At most one active session per
    /// user exists however many callers race. A new session takes `preferred_id` when that id is unused
    /// (an id reserved earlier with [`new_session_id`]), else a fresh id.
    async fn get_or_create_active(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError>;

    /// One session.
    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Appends a message, idempotent by `message.id`: a second call with the same id changes nothing.
    /// Increments the message count, raises the last seq, sets the last activity. Ended sessions refuse
    /// messages ([`StoreError::SessionEnded`]).
    async fn append_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<AppendOutcome, StoreError>;

    /// Stores an answer as it stands: appended under its id the first time (as
    /// [`append_message`](Self::append_message)), its stored form replaced in place after (a checkpoint of
    /// a streamed answer, then the answer itself).
    async fn put_answer(&self, session_id: &str, answer: &MessageRecord) -> Result<(), StoreError>;

    /// Ends a turn: stores its answer (as [`put_answer`](Self::put_answer), except that an answer
    /// finished after its session ended is dropped) and adds its usage (as
    /// [`record_usage`](Self::record_usage)), in as few writes as the store can (MongoDB: one update of
    /// the session; the embedded store: one write job).
    async fn finish_turn(
        &self,
        session_id: &str,
        answer: Option<&MessageRecord>,
        usage: Option<TurnUsage>,
    ) -> Result<(), StoreError>;

    /// The last `limit` messages of a session, oldest first: the model's history window, read without
    /// reading the rest (MongoDB serves it from memory for a session it holds; the embedded store reads
    /// the end of the session's range).
    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;

    /// Raises the seq high-water mark ([`SessionRecord::seq_mark`]) of `user_id`'s session to `mark`; a
    /// lower mark changes nothing. The mark survives restarts so that sequence numbers are never handed out
    /// twice. It is deleted with the session's user or by the retention purge.
    async fn raise_seq_mark(
        &self,
        session_id: &str,
        user_id: &str,
        mark: u64,
    ) -> Result<(), StoreError>;

    /// Messages of a session in order; with `after_seq`, only those with a larger seq.
    async fn messages(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError>;

    /// Sets the (encrypted) session name.
    async fn set_name(&self, session_id: &str, name: &str) -> Result<(), StoreError>;

    /// Sets the selected model.
    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError>;

    /// Ends a session at `at` (sets end time and duration). Idempotent: ending an ended session changes
    /// nothing and reports `ended_now: false`.
    async fn end_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
    ) -> Result<EndOutcome, StoreError>;

    /// Adds one turn's tokens and response time to the session (max and true average) and the tokens to
    /// the user's UTC day.
    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError>;

    /// Tokens the user used on a UTC day (daily budgets).
    async fn user_tokens_on(&self, user_id: &str, day: Date) -> Result<i64, StoreError>;

    /// Sets or clears the help flag.
    async fn set_help_requested(&self, session_id: &str, requested: bool)
    -> Result<(), StoreError>;

    /// Makes `admin` the assisting admin unless a different admin assists (other than `replacing`, the
    /// admin an explicit transfer takes the session from): one atomic check-and-set (a conditional
    /// single-document update on MongoDB, one write transaction in the embedded store), so of two admins
    /// racing for a session exactly one wins. Also sets `admin_assisted`. Claiming a session the caller
    /// already assists is granted again. Ended sessions are refused ([`StoreError::SessionEnded`]).
    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AssistingAdmin,
        replacing: Option<&str>,
    ) -> Result<Claim, StoreError>;

    /// Clears the assisting admin if it is `admin_id` (atomic like
    /// [`claim_assistance`](Self::claim_assistance)); says who assists otherwise.
    async fn release_assistance(
        &self,
        session_id: &str,
        admin_id: &str,
    ) -> Result<Release, StoreError>;

    /// Returns the session's share token, creating a unique one if it has none.
    async fn share(&self, session_id: &str) -> Result<String, StoreError>;

    /// The session shared under `token`.
    async fn session_by_share_token(
        &self,
        token: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Removes the session's share token; true when there was one.
    async fn revoke_share(&self, session_id: &str) -> Result<bool, StoreError>;

    /// The user's sessions, newest first, at most `limit`.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// The admin list: filters, sort, offset and cursor pagination, served by indexes.
    async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage, StoreError>;

    /// `/admin/metrics` figures over sessions started in `[from, to]`.
    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError>;

    /// Number of sessions not ended, over the whole store (every replica sees the same figure): a cheap
    /// indexed count that seeds and refreshes `chatbox_active_sessions_total`.
    async fn count_active_sessions(&self) -> Result<u64, StoreError>;

    /// Background work after start-up that must not delay readiness, in bounded batches with progress
    /// logged, until done or `shutdown` is cancelled; returns the number of records updated. MongoDB fills
    /// the stored message counts of documents written by the Go service; the embedded store has nothing
    /// to do.
    async fn backfill(&self, shutdown: &CancellationToken) -> Result<u64, StoreError> {
        let _ = shutdown;
        Ok(0)
    }

    /// Deletes sessions ended before `cutoff`; returns how many.
    async fn purge_ended_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError>;

    /// All data of one user, decrypted.
    async fn export_user(&self, user_id: &str) -> Result<UserExport, StoreError>;

    /// Deletes all data of one user: sessions, messages, active lock, daily usage, file records. Audit
    /// entries about the user are kept (the audit trail, including that of the deletion itself, must
    /// survive).
    async fn delete_user(&self, user_id: &str) -> Result<DeleteStats, StoreError>;

    /// Re-encrypts every value not under the active key (other key ids, Go ciphertexts, plaintext) in
    /// batches of `batch_size` sessions, calling `progress` after each batch. Resumable: a checkpoint is
    /// kept per active key, and values already under the active key are left alone; a value changed
    /// while its batch ran is counted as skipped and left for the next run ([`rotation::rotate`]).
    async fn rotate_keys(
        &self,
        batch_size: usize,
        progress: RotationProgress<'_>,
    ) -> Result<RotationStats, StoreError> {
        rotation::rotate(self, batch_size, progress).await
    }

    /// The start-up key check: writes the key canary under the active key when the store has none, then
    /// tries the canary and the names and most recent messages (at most [`KEY_CHECK_MESSAGES`] each) of the
    /// `sessions` most recent sessions with the keyring, and reports the key ids that data needs and the
    /// keyring cannot serve.
    async fn check_keys(&self, sessions: usize) -> Result<KeyReport, StoreError>;

    /// Appends an administrator action to the audit log and returns it with its new id. Entries are
    /// never changed or deleted (neither by [`delete_user`](Self::delete_user) nor by the retention purge).
    async fn record_audit(&self, record: &AuditRecord) -> Result<StoredAudit, StoreError>;

    /// One page of the audit log, newest first (by time, then id), with offset or cursor paging. A cursor
    /// this store did not issue is [`StoreError::InvalidCursor`].
    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Stores the metadata of a new file. An id already taken is refused ([`StoreError::Rejected`]);
    /// with random ids it does not happen.
    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError>;

    /// One file's metadata.
    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError>;

    /// Attaches a file to the session a message names it in: sets its session and attachment time (now)
    /// when it has no session yet; a file already attached (to any session) is left as it is. Returns the
    /// file as it stands after the call, `None` when there is no such file; an empty `session_id` is
    /// refused ([`StoreError::InvalidQuery`]). On MongoDB a read and an update by `_id` (see
    /// `docs/storage.md`, "Uploaded files"): two attaches of one file racing each other may both write,
    /// and the later one's session is kept.
    async fn attach_file(
        &self,
        file_id: &str,
        session_id: &str,
    ) -> Result<Option<FileRecord>, StoreError>;

    /// Removes a file's metadata and returns what it was (`None` when there was no such file).
    async fn delete_file(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError>;

    /// The files `filter` selects, oldest created first (ties by id), at most `limit` (0: none).
    async fn list_files(
        &self,
        filter: FileFilter<'_>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError>;

    /// Replaces a file's wrapped data key, the id of the key wrapping it and its (sealed) name, as key
    /// rotation re-wraps them; false when the file is gone.
    async fn update_file_key(
        &self,
        file_id: &str,
        key_id: &str,
        wrapped_key: &str,
        name: &str,
    ) -> Result<bool, StoreError>;
}

/// Opens the configured store: MongoDB when `mongo_uri` is set, else the embedded store in `data_dir`.
/// Loads the keyring (generating a development key in `data_dir` when none is configured outside
/// production) and creates indexes.
pub async fn open(
    config: &StoreConfig,
    data_dir: &Path,
    production: bool,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_with_keyring(config, data_dir, production, metrics)
        .await?
        .0)
}

/// [`open`], also returning the keyring the store encrypts with (uploaded files are sealed with it too).
pub async fn open_with_keyring(
    config: &StoreConfig,
    data_dir: &Path,
    production: bool,
    metrics: Arc<Metrics>,
) -> Result<(Arc<dyn Store>, Arc<Keyring>), StoreError> {
    let keyring = Arc::new(load_keyring(config, data_dir, production)?);
    let store: Arc<dyn Store> = if config.mongo_uri.is_some() {
        Arc::new(mongo::MongoStore::connect(config, Arc::clone(&keyring), metrics).await?)
    } else {
        Arc::new(
            embedded::EmbeddedStore::open(
                &data_dir.join(embedded::DB_FILE),
                config,
                Arc::clone(&keyring),
                metrics,
            )
            .await?,
        )
    };
    Ok((store, keyring))
}

/// A fresh session id: 32 lowercase hex characters, like the Go service's ids.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh share token (32 hex characters, 122 random bits).
pub(crate) fn new_share_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The current time at the stores' millisecond precision.
pub fn now() -> OffsetDateTime {
    from_ms(to_ms(OffsetDateTime::now_utc()))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch (UTC).
pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Days since the Unix epoch of `t`'s UTC date.
pub(crate) fn utc_day(t: OffsetDateTime) -> i32 {
    let date = t.to_offset(time::UtcOffset::UTC).date();
    date_day(date)
}

/// Days since the Unix epoch of `date`.
pub(crate) fn date_day(date: Date) -> i32 {
    date.to_julian_day() - Date::from_julian_day(2_440_588).map_or(0, |d| d.to_julian_day())
}

/// The date `day` days after the Unix epoch.
pub(crate) fn day_date(day: i32) -> Date {
    Date::from_julian_day(2_440_588 + day).unwrap_or(Date::MIN)
}
