//! Maintenance on MongoDB: retention purge, user export and deletion, and the key canary with the
//! start-up key check.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, doc};
use time::OffsetDateTime;

use super::MongoStore;
use super::document::*;
use crate::store::crypto::Binding;
use crate::store::day_date;
use crate::store::error::StoreError;
use crate::store::keycheck::{KEY_CHECK_MESSAGES, KeyProbe, KeyReport, seal_canary};
use crate::store::records::*;
use crate::store::runner::Budget;

/// `_id` of the key canary in `<c>_meta`: `{_id, value}` with `value` a ciphertext under the key that was
/// active when it was written.
pub(super) const CANARY_ID: &str = "canary";

impl MongoStore {
    /// The stored key canary, written under the active key when there is none (a concurrent first start
    /// of another node keeps whichever was inserted first); true when this call wrote it.
    pub(super) async fn canary(&self) -> Result<(String, bool), StoreError> {
        if let Some(value) = self.stored_canary().await? {
            return Ok((value, false));
        }
        let sealed = seal_canary(&self.keyring)?;
        match self
            .meta
            .insert_one(doc! { "_id": CANARY_ID, "value": &sealed })
            .await
        {
            Ok(_) => Ok((sealed, true)),
            Err(e) if is_duplicate(&e) => {
                Ok((self.stored_canary().await?.unwrap_or_default(), false))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn stored_canary(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .find_one(doc! { "_id": CANARY_ID })
            .await?
            .and_then(|d| get_str(&d, "value")))
    }

    pub(super) async fn check_keys_inner(&self, sessions: usize) -> Result<KeyReport, StoreError> {
        let (canary, created) = self.canary().await?;
        let mut probe = KeyProbe::new(&self.keyring, &canary, created);
        // FerretDB has no `$slice`: the sampled documents come with their message ids and contents, and
        // the last ones are taken here.
        let mut cursor = self
            .sessions
            .find(doc! {})
            .sort(doc! { "ts": -1 })
            .limit(i64::try_from(sessions).unwrap_or(i64::MAX))
            .projection(doc! { "nm": 1, "msgs.id": 1, "msgs.content": 1, SCHEMA: 1 })
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let Some(Bson::String(id)) = d.get("_id") else {
                continue;
            };
            if let Some(Bson::String(nm)) = d.get("nm") {
                probe.value(nm, Binding::Name { session: id }, false);
            }
            let msgs = match MessageLayout::of(&d) {
                MessageLayout::Array => match d.get("msgs") {
                    Some(Bson::Array(msgs)) => msgs.clone(),
                    _ => continue,
                },
                MessageLayout::Documents => self.last_message_documents(id).await?,
            };
            let skip = msgs.len().saturating_sub(KEY_CHECK_MESSAGES);
            for (index, m) in msgs.iter().enumerate().skip(skip) {
                let Bson::Document(m) = m else { continue };
                if let Some(Bson::String(stored)) = m.get("content") {
                    // Go messages carry no id; their ciphertexts carry no associated data either.
                    let (mid, _) = message_identity(m, index);
                    let binding = Binding::Message {
                        session: id,
                        message: &mid,
                    };
                    probe.value(stored, binding, true);
                }
            }
        }
        Ok(probe.finish())
    }

    /// The last [`KEY_CHECK_MESSAGES`] message documents of session `id` (their ids and contents),
    /// oldest first.
    async fn last_message_documents(&self, id: &str) -> Result<Vec<Bson>, StoreError> {
        let mut cursor = self
            .messages
            .find(doc! { "sid": id })
            .sort(doc! { "n": -1 })
            .limit(KEY_CHECK_MESSAGES as i64)
            .projection(doc! { "id": 1, "content": 1 })
            .await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            out.push(Bson::Document(d));
        }
        out.reverse();
        Ok(out)
    }
}

pub(super) async fn purge_ended_before(
    store: &MongoStore,
    cutoff: OffsetDateTime,
) -> Result<u64, StoreError> {
    store
        .runner
        .run("purge", Budget::Long, true, || async {
            let mut ids = Vec::new();
            let mut cursor = store
                .sessions
                .find(doc! { "endTs": { "$lt": dt(cutoff) } })
                .projection(doc! { "_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                ids.extend(d.get("_id").cloned());
            }
            if ids.is_empty() {
                return Ok(0);
            }
            // Messages first: a purge cut short leaves sessions to purge again, never orphan messages.
            store
                .messages
                .delete_many(doc! { "sid": { "$in": ids.clone() } })
                .await?;
            let r = store
                .sessions
                .delete_many(doc! { "_id": { "$in": ids.clone() } })
                .await?;
            store
                .slots
                .forget_where(|c| c.session.ended_at.is_some_and(|end| end < cutoff));
            store
                .seq_marks
                .delete_many(doc! { "_id": { "$in": ids } })
                .await?;
            Ok(r.deleted_count)
        })
        .await
}

pub(super) async fn export_user(
    store: &MongoStore,
    user_id: &str,
) -> Result<UserExport, StoreError> {
    store
        .runner
        .run("export_user", Budget::Long, true, || async {
            // Held-back counters and usage are part of the export.
            store.flush_deferred().await?;
            let mut cursor = store
                .sessions
                .find(doc! { "uid": user_id })
                .sort(doc! { "ts": -1 })
                .await?;
            let mut sessions = Vec::new();
            while let Some(d) = cursor.try_next().await? {
                let session = session_from_doc(&d, &store.keyring)?;
                let messages = store.session_messages(&d, &session.id, None).await?;
                sessions.push(ExportedSession { session, messages });
            }
            let mut daily_tokens = BTreeMap::new();
            let mut usage = store.usage.find(doc! { "uid": user_id }).await?;
            while let Some(d) = usage.try_next().await? {
                if let Some(day) = get_i64(&d, "day").and_then(|v| i32::try_from(v).ok()) {
                    daily_tokens.insert(
                        day_date(day).to_string(),
                        get_i64(&d, "tokens").unwrap_or(0),
                    );
                }
            }
            Ok(UserExport {
                user_id: user_id.to_string(),
                sessions,
                daily_tokens,
            })
        })
        .await
}

pub(super) async fn delete_user(
    store: &MongoStore,
    user_id: &str,
) -> Result<DeleteStats, StoreError> {
    store
        .runner
        .run("delete_user", Budget::Long, true, || async {
            let mut cursor = store
                .sessions
                .find(doc! { "uid": user_id })
                .projection(doc! { "msgs": 1, SCHEMA: 1 })
                .await?;
            let mut messages = 0u64;
            let mut with_documents = Vec::new();
            while let Some(d) = cursor.try_next().await? {
                match (MessageLayout::of(&d), d.get("msgs")) {
                    (MessageLayout::Array, Some(Bson::Array(a))) => messages += a.len() as u64,
                    (MessageLayout::Documents, _) => with_documents.extend(d.get("_id").cloned()),
                    _ => {}
                }
            }
            if !with_documents.is_empty() {
                let theirs = doc! { "sid": { "$in": with_documents } };
                messages += store.messages.count_documents(theirs.clone()).await?;
                store.messages.delete_many(theirs).await?;
            }
            let r = store.sessions.delete_many(doc! { "uid": user_id }).await?;
            store.slots.forget_where(|c| c.session.user_id == user_id);
            store.forget_active(user_id, None);
            store.locks.delete_many(doc! { "_id": user_id }).await?;
            store.forget_day_tokens(user_id);
            store.usage.delete_many(doc! { "uid": user_id }).await?;
            store.seq_marks.delete_many(doc! { "uid": user_id }).await?;
            let files = store.files.delete_many(doc! { "uid": user_id }).await?;
            Ok(DeleteStats {
                sessions: r.deleted_count,
                messages,
                files: files.deleted_count,
            })
        })
        .await
}

pub(super) async fn check_keys(
    store: &MongoStore,
    sessions: usize,
) -> Result<KeyReport, StoreError> {
    store
        .runner
        .run("check_keys", Budget::Long, true, || {
            store.check_keys_inner(sessions)
        })
        .await
}
