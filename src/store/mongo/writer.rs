//! Writing sessions: each write goes through the session's slot, decided from its cached state and
//! addressed by `_id` alone (messages, turns, names, flags, the end), plus the per-day token usage.

use mongodb::bson::{Bson, Document, doc};
use time::{Date, OffsetDateTime};

use super::MongoStore;
use super::cache::*;
use super::document::*;
use crate::store::crypto::Binding;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::{Store, date_day, from_ms, to_ms, utc_day};

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

    /// Sends `update` for session `id`, addressed by `_id` alone; `NotFound` when it does not exist.
    pub(super) async fn update_by_id(&self, id: &str, update: Document) -> Result<(), StoreError> {
        let result = self.sessions.update_one(doc! { "_id": id }, update).await?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Sends what [`Cached::put`] decided for a message of session `session_id`: the session's update
    /// and, in the [`Documents`](MessageLayout::Documents) layout, the message's own document, both at
    /// once (independent documents, so one round trip of latency).
    pub(super) async fn send_put(
        &self,
        session_id: &str,
        update: SessionUpdate,
        message: Option<(Put, &Document)>,
    ) -> Result<(), StoreError> {
        let session = async {
            if update.is_empty() {
                Ok(())
            } else {
                self.update_by_id(session_id, update.build()).await
            }
        };
        let document = async {
            match message {
                Some((put, entry)) if put.own_document() => {
                    self.write_message_doc(session_id, put, entry).await
                }
                _ => Ok(()),
            }
        };
        let (session, document) = tokio::join!(session, document);
        session.and(document)
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
            return match self.messages.insert_one(document).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        let id = document.get("_id").cloned().unwrap_or(Bson::Null);
        self.messages
            .replace_one(doc! { "_id": id }, document)
            .await?;
        Ok(())
    }

    /// `$set` on one session with its slot held, and `apply` on its cached record; `NotFound` when it
    /// does not exist. Nothing is read first.
    pub(super) async fn set_fields(
        &self,
        name: &'static str,
        id: &str,
        update: Document,
        apply: impl Fn(&mut SessionRecord) + Send + Sync,
    ) -> Result<(), StoreError> {
        let held = self.slots.hold(id).await;
        self.runner
            .run(name, Budget::Short, true, || {
                attempt(&held, async {
                    self.update_by_id(id, update.clone()).await?;
                    if let Some(cached) = held.state().as_mut() {
                        apply(&mut cached.session);
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Adds a turn's tokens to the user's UTC day.
    pub(super) async fn add_day_tokens(
        &self,
        uid: &str,
        usage: &TurnUsage,
    ) -> Result<(), StoreError> {
        let day = utc_day(usage.at);
        let key = format!("{uid}\u{1f}{day}");
        self.runner
            .run("record_usage", Budget::Short, false, || async {
                let update = doc! {
                    "$inc": { "tokens": usage.tokens },
                    "$setOnInsert": { "uid": uid, "day": day },
                };
                match self
                    .usage
                    .update_one(doc! { "_id": &key }, update.clone())
                    .upsert(true)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Two first upserts of the day raced: the document exists now.
                    Err(e) if is_duplicate(&e) => {
                        self.usage.update_one(doc! { "_id": &key }, update).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
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
                let mut update = SessionUpdate::default();
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
                store
                    .send_put(session_id, update, Some((put, &entry)))
                    .await?;
                if let Some(cached) = held.state().as_mut() {
                    cached.record(put, message);
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
            let mut update = SessionUpdate::default();
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
            store
                .send_put(session_id, update, put.zip(entry.as_ref()))
                .await?;
            if let Some(cached) = held.state().as_mut() {
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
    let day = async {
        match &usage {
            Some(usage) => store.add_day_tokens(&uid, usage).await,
            None => Ok(()),
        }
    };
    let (session_update, day) = tokio::join!(session_update, day);
    session_update.and(day)
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
                let mut update = SessionUpdate::default();
                let put = held
                    .state()
                    .as_ref()
                    .ok_or(StoreError::NotFound)?
                    .put(&mut update, &entry, answer)
                    .ok_or(StoreError::SessionEnded)?;
                store
                    .send_put(session_id, update, Some((put, &entry)))
                    .await?;
                if let Some(cached) = held.state().as_mut() {
                    cached.record(put, answer);
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
        .set_fields(
            "set_name",
            session_id,
            doc! { "$set": { "nm": sealed, "_mt": now_date() } },
            |s| s.name = name.to_string(),
        )
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
        .set_fields(
            "set_model",
            session_id,
            doc! { "$set": { "modelId": model_id, "_mt": now_date() } },
            |s| s.model_id = model_id.to_string(),
        )
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
                store
                    .update_by_id(
                        session_id,
                        doc! { "$set": { "endTs": dt(end), "dur": dur, "_mt": now_date() } },
                    )
                    .await?;
                store.forget_active(&current.user_id, Some(session_id));
                store
                    .locks
                    .delete_one(doc! { "_id": &current.user_id, "sid": session_id })
                    .await?;
                let mut state = held.state();
                let cached = state.as_mut().ok_or(StoreError::NotFound)?;
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
    let key = format!("{user_id}\u{1f}{}", date_day(day));
    store
        .runner
        .run("user_tokens", Budget::Short, true, || async {
            Ok(store
                .usage
                .find_one(doc! { "_id": &key })
                .await?
                .and_then(|d| get_i64(&d, "tokens"))
                .unwrap_or(0))
        })
        .await
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
            doc! { "$set": { "helpRequested": requested, "_mt": now_date() } },
            |s| s.help_requested = requested,
        )
        .await
}
