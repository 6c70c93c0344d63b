//! The MongoDB store (also runs on FerretDB): the Go service's `chat.sessions` documents (reference 4.2)
//! with additive fields, plus helper collections named after the sessions collection: `<c>_msgs` (the
//! messages of sessions created with `schema: 3`, one document each, see `document::MessageLayout`),
//! `<c>_active` (one lock document per user: at most one active session without transactions),
//! `<c>_usage` (tokens per user per UTC day), `<c>_meta` (key rotation checkpoint and key canary),
//! `<c>_audit` (the audit log of administrator actions, listed newest first by `(ts, _id)`) and
//! `<c>_seqmarks` (each session's seq high-water mark, `{_id: sessionId, uid, mark}`: a document of its
//! own, because FerretDB applies updates as read-modify-write of the whole document and a mark written
//! into the session document could undo a concurrent append) and `<c>_files` (the metadata of uploaded
//! files, see `files.rs`).

mod assist;
mod audit;
mod batch;
mod cache;
mod deferred;
mod document;
mod files;
mod maintenance;
mod queries;
mod reads;
mod rotation;
mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use mongodb::Collection;
use mongodb::bson::Document;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::crypto::Keyring;
use super::error::StoreError;
use super::keycheck::KeyReport;
use super::records::*;
use super::runner::Runner;
use super::slots::SessionSlots;
use super::{
    AuditPage, AuditQuery, AuditRecord, FileFilter, FileRecord, SessionPage, SessionQuery, Store,
    StoreKind, StoredAudit,
};
use cache::Cached;

/// The MongoDB store.
pub struct MongoStore {
    sessions: Collection<Document>,
    messages: Collection<Document>,
    locks: Collection<Document>,
    usage: Collection<Document>,
    meta: Collection<Document>,
    audit: Collection<Document>,
    seq_marks: Collection<Document>,
    files: Collection<Document>,
    keyring: Arc<Keyring>,
    runner: Runner,
    /// One writer at a time per session, and what is known of the sessions written or read recently.
    slots: SessionSlots<Cached>,
    /// The active session of users seen recently (user id to session id), kept by this store's writes.
    actives: std::sync::Mutex<HashMap<String, String>>,
    /// Session counters and daily usage held back until the next flush.
    deferred: deferred::Deferred,
    /// Message inserts and session updates of many sessions sent together.
    batches: batch::Batches,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("collection", &self.sessions.namespace().to_string())
            .field("keyring", &self.keyring)
            .finish()
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Mongo
    }

    async fn ping(&self) -> Result<(), StoreError> {
        schema::ping(self).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_deferred().await
    }

    async fn active_session_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        reads::active_session_id(self, user_id).await
    }

    async fn count_active_sessions(&self) -> Result<u64, StoreError> {
        queries::count_active_sessions(self).await
    }

    async fn backfill(&self, shutdown: &CancellationToken) -> Result<u64, StoreError> {
        schema::backfill(self, shutdown).await
    }

    async fn get_or_create_active(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        reads::get_or_create_active(self, user_id, preferred_id, model_id).await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        reads::get_session(self, session_id).await
    }

    async fn append_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<AppendOutcome, StoreError> {
        writer::append_message(self, session_id, message).await
    }

    async fn finish_turn(
        &self,
        session_id: &str,
        answer: Option<&MessageRecord>,
        usage: Option<TurnUsage>,
    ) -> Result<(), StoreError> {
        writer::finish_turn(self, session_id, answer, usage).await
    }

    async fn put_answer(&self, session_id: &str, answer: &MessageRecord) -> Result<(), StoreError> {
        writer::put_answer(self, session_id, answer).await
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
        writer::set_name(self, session_id, name).await
    }

    async fn raise_seq_mark(
        &self,
        session_id: &str,
        user_id: &str,
        mark: u64,
    ) -> Result<(), StoreError> {
        writer::raise_seq_mark(self, session_id, user_id, mark).await
    }

    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError> {
        writer::set_model(self, session_id, model_id).await
    }

    async fn end_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
    ) -> Result<EndOutcome, StoreError> {
        writer::end_session(self, session_id, at).await
    }

    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError> {
        writer::record_usage(self, session_id, usage).await
    }

    async fn user_tokens_on(&self, user_id: &str, day: Date) -> Result<i64, StoreError> {
        writer::user_tokens_on(self, user_id, day).await
    }

    async fn set_help_requested(
        &self,
        session_id: &str,
        requested: bool,
    ) -> Result<(), StoreError> {
        writer::set_help_requested(self, session_id, requested).await
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
        self.send_held_counters().await;
        queries::list_user_sessions(self, user_id, limit).await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        self.send_held_counters().await;
        queries::list_sessions(self, query).await
    }

    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        self.send_held_counters().await;
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
