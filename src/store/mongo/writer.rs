//! Writing sessions: each write goes through the session's slot, decided from its cached state and
//! addressed by `_id` alone (messages, turns, names, flags, the end), plus the per-day token usage.

use mongodb::bson::{Bson, Document, doc};
use time::{Date, OffsetDateTime};

use super::MongoStore;
use super::batch::Applied;
use super::cache::*;
use super::deferred::usage_key;
use super::document::*;
use crate::store::crypto::Binding;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::slots::HeldSlot;
use crate::store::{Store, date_day, from_ms, to_ms};

impl MongoStore {
    /// The stored form of `message` of session `session_id`, its content encrypted and bound to both.
    pub(super) fn sealed_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<Document, StoreError> {
        let content = self.keyring.encrypt(
            &message.content,
            Binding::Message {
                session: session_id,
                message: &message.id,
            },
        )?;
        Ok(message_doc(message, content))
    }

    /// Sends `update` for session `id`, addressed by `_id` alone (with the updates of other sessions ready
    /// at the same moment); `NotFound` when it does not exist.
    pub(super) async fn update_by_id(&self, id: &str, update: Document) -> Result<(), StoreError> {
        match self.batches.update(id, update).await? {
            Applied::Unmatched => Err(StoreError::NotFound),
            Applied::Done | Applied::Duplicate => Ok(()),
        }
    }

    /// Sends what [`Cached::put`] decided for a message of session `session_id`: the session's update
    /// and, in the [`Documents`](MessageLayout::Documents) layout, the message's own document, both at
    /// once (independent documents, so one round trip of latency). With `defer`, a message with a
    /// document of its own goes out alone and the session's update is held back: returns the update to
    /// keep as [`Cached::pending`] (empty when it was sent).
    pub(super) async fn send_put(
        &self,
        session_id: &str,
        update: SessionUpdate,
        message: Option<(Put, &Document)>,
        defer: bool,
    ) -> Result<SessionUpdate, StoreError> {
        let own = message.filter(|(put, _)| put.own_document());
        if defer && own.is_some() {
            if let Some((put, entry)) = own {
                self.write_message_doc(session_id, put, entry).await?;
            }
            self.defer(session_id);
            return Ok(update);
        }
        let session = async {
            if update.is_empty() {
                Ok(())
            } else {
                self.update_by_id(session_id, update.build()).await
            }
        };
        let document = async {
            match own {
                Some((put, entry)) => self.write_message_doc(session_id, put, entry).await,
                None => Ok(()),
            }
        };
        let (session, document) = tokio::join!(session, document);
        session.and(document)?;
        Ok(SessionUpdate::default())
    }

    /// Writes the document of a message in `<c>_msgs`: inserted when new (already there counts as done:
    /// an earlier attempt whose outcome was unknown stored it), replaced when a checkpoint of it is.
    async fn write_message_doc(
        &self,
        session_id: &str,
        put: Put,
        entry: &Document,
    ) -> Result<(), StoreError> {
        let document = message_document(session_id, put.position, entry);
        if put.new {
            // Already there counts as done.
            return self.batches.insert(document).await.map(|_| ());
        }
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        self.messages
            .replace_one(doc! { "_id": id }, document)
            .await?;
        Ok(())
    }

    /// `$set` of `fields` on one session with its slot held (with the session's deferred counters), and
    /// `apply` on its cached record; `NotFound` when it does not exist. Nothing is read first.
    pub(super) async fn set_fields(
        &self,
        name: &'static str,
        id: &str,
        fields: Document,
        apply: impl Fn(&mut SessionRecord) + Send + Sync,
    ) -> Result<(), StoreError> {
        let held = self.slots.hold(id).await;
        self.runner
            .run(name, Budget::Short, true, || {
                attempt(&held, async {
                    let mut update = pending(&held);
                    update.set.extend(fields.clone());
                    self.update_by_id(id, update.build()).await?;
                    if let Some(cached) = held.state().as_mut() {
                        cached.pending = SessionUpdate::default();
                        apply(&mut cached.session);
                    }
                    Ok(())
                })
            })
            .await
    }
}

pub(super) async fn append_message(
    store: &MongoStore,
    session_id: &str,
    message: &MessageRecord,
) -> Result<AppendOutcome, StoreError> {
    let entry = store.sealed_message(session_id, message)?;
    let held = store.slots.hold(session_id).await;
    store
        .runner
        .run("append_message", Budget::Short, true, || {
            attempt(&held, async {
                store.load(&held, session_id).await?;
                let mut update = pending(&held);
                let put = {
                    let state = held.state();
                    let cached = state.as_ref().ok_or(StoreError::NotFound)?;
                    if cached.ids.contains_key(&message.id) {
                        return Ok(AppendOutcome::Duplicate);
                    }
                    cached
                        .put(&mut update, &entry, message)
                        .ok_or(StoreError::SessionEnded)?
                };
                let held_back = store
                    .send_put(session_id, update, Some((put, &entry)), true)
                    .await?;
                if let Some(cached) = held.state().as_mut() {
                    cached.record(put, message);
                    cached.pending = held_back;
                }
                Ok(AppendOutcome::Stored)
            })
        })
        .await
}

pub(super) async fn finish_turn(
    store: &MongoStore,
    session_id: &str,
    answer: Option<&MessageRecord>,
    usage: Option<TurnUsage>,
) -> Result<(), StoreError> {
    let entry = answer
        .map(|message| store.sealed_message(session_id, message))
        .transpose()?;
    let held = store.slots.hold(session_id).await;
    let uid = store
        .runner
        .run("finish_turn", Budget::Short, true, || {
            attempt(&held, async {
                Ok(store.cached_session(&held, session_id).await?.user_id)
            })
        })
        .await?;
    // The session's update and the user's day are independent documents: both go out at once.
    let session_update = store.runner.run("finish_turn", Budget::Short, true, || {
        attempt(&held, async {
            store.load(&held, session_id).await?;
            let mut update = pending(&held);
            let put = {
                let state = held.state();
                let cached = state.as_ref().ok_or(StoreError::NotFound)?;
                // An answer finished after its session ended is not stored (as `append_message`
                // refuses it), unless a checkpoint of it is; its usage still counts.
                let put = match (answer, &entry) {
                    (Some(message), Some(entry)) => cached.put(&mut update, entry, message),
                    _ => None,
                };
                if let Some(usage) = &usage {
                    let count = cached.session.response_count + 1;
                    update.usage(usage, (cached.resp_total_ms + usage.response_ms) / count);
                }
                put
            };
            let held_back = store
                .send_put(session_id, update, put.zip(entry.as_ref()), false)
                .await?;
            if let Some(cached) = held.state().as_mut() {
                cached.pending = held_back;
                if let (Some(put), Some(message)) = (put, answer) {
                    cached.record(put, message);
                }
                if let Some(usage) = &usage {
                    cached.add_usage(usage);
                }
            }
            Ok(())
        })
    });
    let stored = session_update.await;
    // The user's daily tokens are held back and stored with the next flush, for all users at once.
    if let Some(usage) = &usage {
        store.add_day_tokens(&uid, usage);
    }
    stored
}

pub(super) async fn put_answer(
    store: &MongoStore,
    session_id: &str,
    answer: &MessageRecord,
) -> Result<(), StoreError> {
    let entry = store.sealed_message(session_id, answer)?;
    let held = store.slots.hold(session_id).await;
    store
        .runner
        .run("put_answer", Budget::Short, true, || {
            attempt(&held, async {
                store.load(&held, session_id).await?;
                let mut update = pending(&held);
                let put = held
                    .state()
                    .as_ref()
                    .ok_or(StoreError::NotFound)?
                    .put(&mut update, &entry, answer)
                    .ok_or(StoreError::SessionEnded)?;
                let held_back = store
                    .send_put(session_id, update, Some((put, &entry)), true)
                    .await?;
                if let Some(cached) = held.state().as_mut() {
                    cached.record(put, answer);
                    cached.pending = held_back;
                }
                Ok(())
            })
        })
        .await
}

pub(super) async fn set_name(
    store: &MongoStore,
    session_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    let sealed = if name.is_empty() {
        String::new()
    } else {
        store.keyring.encrypt(
            name,
            Binding::Name {
                session: session_id,
            },
        )?
    };
    store
        .set_fields("set_name", session_id, doc! { "nm": sealed }, |s| {
            s.name = name.to_string()
        })
        .await
}

pub(super) async fn raise_seq_mark(
    store: &MongoStore,
    session_id: &str,
    user_id: &str,
    mark: u64,
) -> Result<(), StoreError> {
    let stored = i64::try_from(mark).unwrap_or(i64::MAX);
    let held = store.slots.hold(session_id).await;
    store
        .runner
        .run("raise_seq_mark", Budget::Short, true, || async {
            store
                .seq_marks
                .update_one(
                    doc! { "_id": session_id },
                    doc! { "$max": { "mark": stored }, "$set": { "uid": user_id } },
                )
                .upsert(true)
                .await?;
            Ok(())
        })
        .await?;
    if let Some(cached) = held.state().as_mut() {
        cached.session.seq_mark = cached.session.seq_mark.max(mark);
    }
    Ok(())
}

pub(super) async fn set_model(
    store: &MongoStore,
    session_id: &str,
    model_id: &str,
) -> Result<(), StoreError> {
    store
        .set_fields("set_model", session_id, doc! { "modelId": model_id }, |s| {
            s.model_id = model_id.to_string()
        })
        .await
}

pub(super) async fn end_session(
    store: &MongoStore,
    session_id: &str,
    at: OffsetDateTime,
) -> Result<EndOutcome, StoreError> {
    let held = store.slots.hold(session_id).await;
    store
        .runner
        .run("end_session", Budget::Short, true, || {
            attempt(&held, async {
                let current = store.cached_session(&held, session_id).await?;
                if !current.is_active() {
                    return Ok(EndOutcome {
                        ended_now: false,
                        session: current,
                    });
                }
                let end = from_ms(to_ms(at.max(current.started_at)));
                let dur = (end - current.started_at).whole_seconds();
                let mut update = pending(&held);
                update.set.extend(doc! { "endTs": dt(end), "dur": dur });
                store.update_by_id(session_id, update.build()).await?;
                store.forget_active(&current.user_id, Some(session_id));
                store
                    .locks
                    .delete_one(doc! { "_id": &current.user_id, "sid": session_id })
                    .await?;
                let mut state = held.state();
                let cached = state.as_mut().ok_or(StoreError::NotFound)?;
                cached.pending = SessionUpdate::default();
                cached.session.ended_at = Some(end);
                cached.session.duration_secs = dur;
                Ok(EndOutcome {
                    ended_now: true,
                    session: cached.session.clone(),
                })
            })
        })
        .await
}

pub(super) async fn record_usage(
    store: &MongoStore,
    session_id: &str,
    usage: TurnUsage,
) -> Result<(), StoreError> {
    store.finish_turn(session_id, None, Some(usage)).await
}

pub(super) async fn user_tokens_on(
    store: &MongoStore,
    user_id: &str,
    day: Date,
) -> Result<i64, StoreError> {
    let key = usage_key(user_id, date_day(day));
    let stored = store
        .runner
        .run("user_tokens", Budget::Short, true, || async {
            Ok(store
                .usage
                .find_one(doc! { "_id": &key })
                .await?
                .and_then(|d| get_i64(&d, "tokens"))
                .unwrap_or(0))
        })
        .await?;
    Ok(stored + store.held_day_tokens(&key))
}

pub(super) async fn set_help_requested(
    store: &MongoStore,
    session_id: &str,
    requested: bool,
) -> Result<(), StoreError> {
    store
        .set_fields(
            "set_help",
            session_id,
            doc! { "helpRequested": requested },
            |s| s.help_requested = requested,
        )
        .await
}

/// The deferred counters of the session of `held` (see [`Cached::pending`]): every update of the session
/// starts from them.
fn pending(held: &HeldSlot<Cached>) -> SessionUpdate {
    held.state()
        .as_ref()
        .map(|cached| cached.pending.clone())
        .unwrap_or_default()
}
