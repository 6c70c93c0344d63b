//! Writes the MongoDB store holds back and sends together: the session counters of messages stored as
//! documents of their own (they go out with the session's next update, or with [`MongoStore::flush`] at the
//! latest), and every user's daily token usage (one multi-statement `update` of `<c>_usage` per flush,
//! whatever the number of users and turns since the last one).
//!
//! What is held back is bounded by the flush interval. A crash loses the held-back usage of that interval
//! (daily budgets then count less than was used), and held-back session counters are corrected when the
//! session is next read (its message documents are counted).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use mongodb::bson::{Document, doc};

use super::MongoStore;
use super::batch::MAX_UPDATES;
use super::cache::SessionUpdate;
use super::document::{DUPLICATE_KEY, is_duplicate};
use crate::store::error::StoreError;
use crate::store::records::TurnUsage;
use crate::store::runner::Budget;
use crate::store::utc_day;

/// What the store holds back until the next flush.
#[derive(Default)]
pub(super) struct Deferred {
    /// Sessions whose cached state holds deferred counters.
    sessions: Mutex<HashSet<String>>,
    /// Tokens used per `<c>_usage` document id (user and UTC day) and not stored yet.
    usage: Mutex<HashMap<String, DayTokens>>,
    /// `<c>_usage` document ids known to exist (of the days held back lately).
    usage_known: Mutex<HashSet<String>>,
}

/// Tokens of one user on one UTC day, not stored yet.
struct DayTokens {
    uid: String,
    day: i32,
    tokens: i64,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `<c>_usage` document id of `uid`'s UTC `day`.
pub(super) fn usage_key(uid: &str, day: i32) -> String {
    format!("{uid}\u{1f}{day}")
}

impl MongoStore {
    /// Notes that the cached state of `session_id` holds deferred counters.
    pub(super) fn defer(&self, session_id: &str) {
        locked(&self.deferred.sessions).insert(session_id.to_string());
    }

    /// Adds a turn's tokens to the user's UTC day, stored with the next flush.
    pub(super) fn add_day_tokens(&self, uid: &str, usage: &TurnUsage) {
        let day = utc_day(usage.at);
        let mut held = locked(&self.deferred.usage);
        held.entry(usage_key(uid, day))
            .or_insert_with(|| DayTokens {
                uid: uid.to_string(),
                day,
                tokens: 0,
            })
            .tokens += usage.tokens;
    }

    /// Tokens of the `<c>_usage` document `key` not stored yet.
    pub(super) fn held_day_tokens(&self, key: &str) -> i64 {
        locked(&self.deferred.usage)
            .get(key)
            .map_or(0, |held| held.tokens)
    }

    /// Drops the held-back usage of `uid` (the user is being deleted).
    pub(super) fn forget_day_tokens(&self, uid: &str) {
        locked(&self.deferred.usage).retain(|_, held| held.uid != uid);
    }

    /// Sends what is held back: each deferred session's counters, then all daily usage in one command.
    pub(super) async fn flush_deferred(&self) -> Result<(), StoreError> {
        let sessions = self.flush_sessions().await;
        let usage = self.flush_usage().await;
        sessions.and(usage)
    }

    /// Sends the held-back session counters before a list reads session documents, so lists count every
    /// message this node stored; a failure is logged (the list then lags by those messages).
    pub(super) async fn send_held_counters(&self) {
        if let Err(e) = self.flush_sessions().await {
            tracing::warn!(error = %e, "held-back session counters not sent before a list");
        }
    }

    /// Sends the counters of every deferred session at once (so they go out together, see
    /// [`batch`](super::batch)).
    async fn flush_sessions(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = locked(&self.deferred.sessions).drain().collect();
        let sent = futures::future::join_all(ids.iter().map(|id| self.flush_session(id))).await;
        sent.into_iter().collect()
    }

    async fn flush_session(&self, id: &str) -> Result<(), StoreError> {
        let held = self.slots.hold(id).await;
        let update = held.state().as_ref().map(|cached| cached.pending.clone());
        let sent = match update {
            Some(update) if update.is_empty() => Ok(()),
            Some(update) => self.update_by_id(id, update.build()).await,
            // Dropped from the cache: reading the session again recounts its messages.
            None => self.load(&held, id).await,
        };
        match sent {
            Ok(()) => {
                if let Some(cached) = held.state().as_mut() {
                    cached.pending = SessionUpdate::default();
                }
                Ok(())
            }
            // Deleted meanwhile: nothing to count.
            Err(StoreError::NotFound) => {
                held.forget();
                Ok(())
            }
            Err(err) => {
                // Read again (and recounted) on next use.
                held.forget();
                Err(err)
            }
        }
    }

    /// Stores the held-back daily usage: the documents of user-days not known to exist are inserted
    /// first (one command; an existing one is fine), then the counts are raised by `update` commands of
    /// [`MAX_UPDATES`] statements without upserts (FerretDB 1.24 stalls on an `update` of many statements,
    /// and on several upserts in one). What was not stored is held again for the next flush.
    async fn flush_usage(&self) -> Result<(), StoreError> {
        let held: Vec<(String, DayTokens)> = locked(&self.deferred.usage).drain().collect();
        if held.is_empty() {
            return Ok(());
        }
        let (stored, result) = match self.create_usage_documents(&held).await {
            Ok(()) => self.raise_usage(&held).await,
            Err(e) => (0, Err(e)),
        };
        if stored < held.len() {
            let mut pending = locked(&self.deferred.usage);
            for (key, day) in held.into_iter().skip(stored) {
                pending
                    .entry(key)
                    .and_modify(|held| held.tokens += day.tokens)
                    .or_insert(day);
            }
        }
        result
    }

    /// Inserts the `<c>_usage` documents of `held` not known to exist, with no tokens.
    async fn create_usage_documents(&self, held: &[(String, DayTokens)]) -> Result<(), StoreError> {
        let unknown: Vec<Document> = {
            let known = locked(&self.deferred.usage_known);
            held.iter()
                .filter(|(key, _)| !known.contains(key))
                .map(|(key, day)| doc! { "_id": key, "uid": &day.uid, "day": day.day, "tokens": 0i64 })
                .collect()
        };
        if unknown.is_empty() {
            return Ok(());
        }
        self.runner
            .run("record_usage", Budget::Short, true, || async {
                match self.usage.insert_many(unknown.clone()).ordered(false).await {
                    Ok(_) => Ok(()),
                    // Created before (by another node, or before this one restarted).
                    Err(e) if only_duplicates(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        let today = held.iter().map(|(_, day)| day.day).max().unwrap_or(0);
        let mut known = locked(&self.deferred.usage_known);
        // Only the last two days' documents are still written to.
        known.retain(|key| key_day(key).is_some_and(|day| day + 1 >= today));
        known.extend(held.iter().map(|(key, _)| key.clone()));
        Ok(())
    }

    /// Adds the tokens of `held` to their documents; returns how many of `held` (from the start) were
    /// stored, and the first failure.
    async fn raise_usage(&self, held: &[(String, DayTokens)]) -> (usize, Result<(), StoreError>) {
        let namespace = self.usage.namespace();
        let db = self.usage.client().database(namespace.db.as_str());
        let mut stored = 0;
        for group in held.chunks(MAX_UPDATES) {
            let updates: Vec<Document> = group
                .iter()
                .map(|(key, day)| {
                    doc! { "q": { "_id": key }, "u": { "$inc": { "tokens": day.tokens } } }
                })
                .collect();
            let command =
                doc! { "update": namespace.coll.as_str(), "updates": updates, "ordered": false };
            let sent = self
                .runner
                .run("record_usage", Budget::Short, false, || async {
                    Ok(db.run_command(command.clone()).await?)
                })
                .await;
            if let Err(e) = sent {
                return (stored, Err(e));
            }
            stored += group.len();
        }
        (stored, Ok(()))
    }
}

/// The UTC day of a `<c>_usage` document id.
fn key_day(key: &str) -> Option<i32> {
    key.rsplit_once('\u{1f}')?.1.parse().ok()
}

/// True when every error of a multi-document insert is a duplicate `_id`.
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => is_duplicate(e),
    }
}
