//! Reading sessions: the slot cache loaded once per session, documents of the Go service corrected on
//! read, the active session of each user, and messages.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::MongoStore;
use super::cache::*;
use super::document::*;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::slots::HeldSlot;
use crate::store::{Store, new_session_id};

impl MongoStore {
    pub(super) async fn find_session_doc(
        &self,
        id: &str,
        with_msgs: bool,
    ) -> Result<Option<Document>, StoreError> {
        let find = self.sessions.find_one(doc! { "_id": id });
        let find = if with_msgs {
            find
        } else {
            find.projection(no_msgs())
        };
        Ok(find.await?)
    }

    pub(super) async fn get_session_inner(
        &self,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self.find_session_doc(id, false).await? {
            Some(doc) => {
                let session = self.session_from_row(doc).await?;
                self.with_seq_mark(session).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// The session of `doc` (read without its messages). A document written by the Go service (no
    /// schema marker) may lack counters (not back-filled yet) or have stale ones (the Go service pushes
    /// messages without counting them): it is read again with its messages, its message count and last
    /// seq come from the array itself (so new seqs continue after its messages), and the stored count
    /// is corrected for the admin list's message-count sort.
    pub(super) async fn session_from_row(
        &self,
        doc: Document,
    ) -> Result<SessionRecord, StoreError> {
        if doc.contains_key(SCHEMA) {
            return session_from_doc(&doc, &self.keyring);
        }
        let full = match doc.get("_id") {
            Some(Bson::String(id)) => self.find_session_doc(id, true).await?,
            _ => None,
        };
        let Some(full) = full else {
            return session_from_doc(&doc, &self.keyring);
        };
        self.correct_array_counts(&full).await?;
        session_from_doc(&full, &self.keyring)
    }

    /// Rewrites the stored `msgCount` of `doc` (an array-layout document read with its `msgs`) when it
    /// differs from the array's length (see [`correct_counts`](Self::correct_counts)).
    async fn correct_array_counts(&self, doc: &Document) -> Result<(), StoreError> {
        let stored = get_i64(doc, "msgCount");
        let actual = match doc.get("msgs") {
            Some(Bson::Array(a)) => Some(a.len() as i64),
            _ => None,
        };
        if actual.is_some() && stored != actual {
            self.correct_counts(doc, stored).await?;
        }
        Ok(())
    }

    /// The messages of the session of document `doc` (read with `msgs` and the schema marker), after
    /// `after_seq` when given: from its array, or from its documents in `<c>_msgs`.
    pub(super) async fn session_messages(
        &self,
        doc: &Document,
        id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        match MessageLayout::of(doc) {
            MessageLayout::Array => messages_from_doc(doc, id, &self.keyring, after_seq),
            MessageLayout::Documents => self.message_documents(id, after_seq).await,
        }
    }

    /// `session` with its stored seq high-water mark (at least its last seq).
    pub(super) async fn with_seq_mark(
        &self,
        mut session: SessionRecord,
    ) -> Result<SessionRecord, StoreError> {
        let mark = self
            .seq_marks
            .find_one(doc! { "_id": &session.id })
            .await?
            .and_then(|d| get_i64(&d, "mark"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        session.seq_mark = session.seq_mark.max(mark);
        Ok(session)
    }

    pub(super) async fn require_session(&self, id: &str) -> Result<SessionRecord, StoreError> {
        self.get_session_inner(id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Reads session `id` whole, once, into the cache of its held slot (`NotFound` when it does not
    /// exist); later writes through the slot keep the cache current. A document written by the Go service
    /// gets its counts corrected first (see [`session_from_row`](Self::session_from_row)).
    pub(super) async fn load(&self, held: &HeldSlot<Cached>, id: &str) -> Result<(), StoreError> {
        if held.state().is_some() {
            return Ok(());
        }
        let doc = self
            .find_session_doc(id, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        if !doc.contains_key(SCHEMA) {
            self.correct_array_counts(&doc).await?;
        }
        let layout = MessageLayout::of(&doc);
        let messages = self.session_messages(&doc, id, None).await?;
        let mut session = self
            .with_seq_mark(session_from_doc(&doc, &self.keyring)?)
            .await?;
        if layout == MessageLayout::Documents {
            self.correct_document_counts(&mut session, &messages)
                .await?;
        }
        let resp_total_ms = get_i64(&doc, "respTotalMs")
            .unwrap_or(session.avg_response_ms * session.response_count);
        let ids = messages
            .iter()
            .enumerate()
            .map(|(index, m)| (m.id.clone(), index))
            .collect();
        let len = messages.len();
        let skip = messages.len().saturating_sub(WINDOW);
        held.set(Cached {
            session,
            layout,
            resp_total_ms,
            ids,
            len,
            window: messages.into_iter().skip(skip).collect(),
            pending: SessionUpdate::default(),
        });
        Ok(())
    }

    /// The messages of session `id` (`Documents` layout) in conversation order, those after `after_seq`
    /// when given.
    async fn message_documents(
        &self,
        id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let mut filter = doc! { "sid": id };
        if let Some(after) = after_seq {
            filter.insert(
                "seq",
                doc! { "$gt": i64::try_from(after).unwrap_or(i64::MAX) },
            );
        }
        let mut cursor = self.messages.find(filter).sort(doc! { "n": 1 }).await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            let index = get_i64(&d, "n")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(out.len());
            out.push(message_from_entry(&d, index, id, &self.keyring));
        }
        Ok(out)
    }

    /// Makes the counters of `session` (`Documents` layout) agree with its stored `messages`: a message
    /// whose document was written while the session's update was lost (an unknown outcome, a crash
    /// between the two) is counted on the next load, in `session` and in the stored document.
    async fn correct_document_counts(
        &self,
        session: &mut SessionRecord,
        messages: &[MessageRecord],
    ) -> Result<(), StoreError> {
        let count = messages.len() as i64;
        let last_seq = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        let last_activity = messages.iter().map(|m| m.timestamp).max();
        if session.message_count == count && session.last_seq >= last_seq {
            return Ok(());
        }
        let mut max = doc! { "lastSeq": i64::try_from(last_seq).unwrap_or(i64::MAX) };
        if let Some(at) = last_activity {
            max.insert("lastActivity", dt(at));
        }
        self.update_by_id(
            &session.id,
            doc! { "$set": { "msgCount": count }, "$max": max },
        )
        .await?;
        session.message_count = count;
        session.last_seq = session.last_seq.max(last_seq);
        session.seq_mark = session.seq_mark.max(session.last_seq);
        session.last_activity = session.last_activity.max(last_activity);
        Ok(())
    }

    /// The session of `held`, from its cache (read first when needed).
    pub(super) async fn cached_session(
        &self,
        held: &HeldSlot<Cached>,
        id: &str,
    ) -> Result<SessionRecord, StoreError> {
        self.load(held, id).await?;
        held.state()
            .as_ref()
            .map(|c| c.session.clone())
            .ok_or(StoreError::NotFound)
    }

    /// Remembers `session_id` as `user_id`'s active session.
    pub(super) fn remember_active(&self, user_id: &str, session_id: &str) {
        self.actives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id.to_string(), session_id.to_string());
    }

    /// Forgets `user_id`'s active session (all of them when `session_id` is `None`).
    pub(super) fn forget_active(&self, user_id: &str, session_id: Option<&str>) {
        let mut actives = self.actives.lock().unwrap_or_else(|p| p.into_inner());
        if session_id.is_none() || actives.get(user_id).map(String::as_str) == session_id {
            actives.remove(user_id);
        }
    }

    /// `user_id`'s active session as this store last wrote or read it, when it is still active.
    pub(super) async fn remembered_active(
        &self,
        user_id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let remembered = self
            .actives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned();
        let Some(sid) = remembered else {
            return Ok(None);
        };
        Ok(self
            .get_session(&sid)
            .await?
            .filter(|s| s.is_active() && s.user_id == user_id))
    }

    pub(super) async fn get_or_create_inner(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        for _ in 0..16 {
            if let Some(lock) = self.locks.find_one(doc! { "_id": user_id }).await? {
                let sid = get_str(&lock, "sid").unwrap_or_default();
                if let Some(session) = self.get_session(&sid).await?
                    && session.is_active()
                {
                    self.remember_active(user_id, &sid);
                    return Ok(ActiveSession {
                        session,
                        created: false,
                    });
                }
                // The locked session ended or is gone: release the stale lock and try again.
                self.locks
                    .delete_one(doc! { "_id": user_id, "sid": &sid })
                    .await?;
                continue;
            }
            // An active session written by the Go service (no lock, no schema marker)?
            let legacy = self
                .sessions
                .find_one(doc! { "uid": user_id, "endTs": { "$exists": false }, SCHEMA: { "$exists": false } })
                .sort(doc! { "ts": -1 })
                .projection(no_msgs())
                .await?;
            let (sid, created) = match legacy {
                Some(d) => (session_from_doc(&d, &self.keyring)?.id, false),
                None => {
                    let now = now_date();
                    let mut id = match preferred_id {
                        Some(p) if !p.is_empty() => p.to_string(),
                        _ => new_session_id(),
                    };
                    loop {
                        match self
                            .sessions
                            .insert_one(new_session_doc(&id, user_id, model_id, now))
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if is_duplicate(&e) => id = new_session_id(),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    (id, true)
                }
            };
            match self
                .locks
                .insert_one(doc! { "_id": user_id, "sid": &sid, "ts": now_date() })
                .await
            {
                Ok(_) => {
                    let session = self.get_session(&sid).await?.ok_or(StoreError::NotFound)?;
                    self.remember_active(user_id, &sid);
                    return Ok(ActiveSession { session, created });
                }
                Err(e) if is_duplicate(&e) => {
                    if created {
                        // Another caller won; ours was never visible as the active session.
                        self.sessions
                            .delete_one(doc! { "_id": &sid, "msgCount": 0i64 })
                            .await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Timeout {
            operation: "create_session",
        })
    }
}

pub(super) async fn active_session_id(
    store: &MongoStore,
    user_id: &str,
) -> Result<Option<String>, StoreError> {
    if let Some(session) = store.remembered_active(user_id).await? {
        return Ok(Some(session.id));
    }
    store.runner
        .run("active_session", Budget::Short, true, || async {
            if let Some(lock) = store.locks.find_one(doc! { "_id": user_id }).await?
                && let Some(sid) = get_str(&lock, "sid")
                && let Some(d) = store.find_session_doc(&sid, false).await?
                && !d.contains_key("endTs")
            {
                return Ok(Some(sid));
            }
            let legacy = store
                .sessions
                .find_one(doc! { "uid": user_id, "endTs": { "$exists": false }, SCHEMA: { "$exists": false } })
                .sort(doc! { "ts": -1 })
                .projection(doc! { "_id": 1 })
                .await?;
            Ok(legacy.and_then(|d| get_str(&d, "_id")))
        })
        .await
}

pub(super) async fn get_or_create_active(
    store: &MongoStore,
    user_id: &str,
    preferred_id: Option<&str>,
    model_id: &str,
) -> Result<ActiveSession, StoreError> {
    if let Some(session) = store.remembered_active(user_id).await? {
        return Ok(ActiveSession {
            session,
            created: false,
        });
    }
    store
        .runner
        .run("create_session", Budget::Short, true, || {
            store.get_or_create_inner(user_id, preferred_id, model_id)
        })
        .await
}

pub(super) async fn get_session(
    store: &MongoStore,
    session_id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let held = store.slots.hold(session_id).await;
    store
        .runner
        .run("get_session", Budget::Short, true, || {
            attempt(&held, async {
                match store.cached_session(&held, session_id).await {
                    Ok(session) => Ok(Some(session)),
                    Err(StoreError::NotFound) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })
        .await
}

pub(super) async fn recent_messages(
    store: &MongoStore,
    session_id: &str,
    limit: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let held = store.slots.hold(session_id).await;
    let cached = store
        .runner
        .run("recent_messages", Budget::Short, true, || {
            attempt(&held, async {
                store.load(&held, session_id).await?;
                Ok(held.state().as_ref().and_then(|c| c.recent(limit)))
            })
        })
        .await?;
    drop(held);
    match cached {
        Some(messages) => Ok(messages),
        None => {
            let mut all = store.messages(session_id, None).await?;
            Ok(all.split_off(all.len().saturating_sub(limit)))
        }
    }
}

pub(super) async fn messages(
    store: &MongoStore,
    session_id: &str,
    after_seq: Option<u64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    store
        .runner
        .run("get_messages", Budget::Long, true, || async {
            let d = store
                .sessions
                .find_one(doc! { "_id": session_id })
                .projection(doc! { "msgs": 1, SCHEMA: 1 })
                .await?
                .ok_or(StoreError::NotFound)?;
            store.session_messages(&d, session_id, after_seq).await
        })
        .await
}
