//! What the MongoDB store keeps of the sessions whose slots it holds, and the single update that stores a
//! message and a turn's figures together.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use mongodb::bson::{Document, doc};

use super::document::*;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::slots::HeldSlot;

/// Messages of a cached session kept in memory for the model's history window.
pub(super) const WINDOW: usize = 64;

/// Sessions whose state stays cached when not in use.
pub(super) const CACHED_SESSIONS: usize = 4096;

/// What the store knows of a session whose slot it holds: read once, then changed by each write through
/// the slot, so a write is decided without reading the document first and is addressed by `_id` alone.
pub(super) struct Cached {
    pub(super) session: SessionRecord,
    /// Where the session's messages are stored.
    pub(super) layout: MessageLayout,
    /// Sum of the response times behind `respCount` (`respTotalMs`).
    pub(super) resp_total_ms: i64,
    /// Every stored message id and its position (index in `msgs`, or `n` of its document); appends are
    /// idempotent by id, and a checkpointed answer is replaced in place.
    pub(super) ids: HashMap<String, usize>,
    /// Number of stored messages (the position of the next one).
    pub(super) len: usize,
    /// The last [`WINDOW`] messages, oldest first.
    pub(super) window: VecDeque<MessageRecord>,
    /// Counters of messages stored as documents of their own whose session update is deferred: they go out
    /// with the session's next update, or with [`MongoStore::flush`](super::MongoStore) at the latest (a
    /// session read again recounts its messages, so a lost deferral is corrected).
    pub(super) pending: SessionUpdate,
}

impl Cached {
    /// Records a message stored through the slot.
    pub(super) fn push(&mut self, message: &MessageRecord) {
        self.ids.insert(message.id.clone(), self.len);
        self.len += 1;
        self.window.push_back(message.clone());
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        let session = &mut self.session;
        session.message_count += 1;
        session.last_seq = session.last_seq.max(message.seq);
        session.seq_mark = session.seq_mark.max(session.last_seq);
        session.last_activity = session.last_activity.max(Some(message.timestamp));
    }

    /// Records a message replaced in place (a checkpointed answer).
    pub(super) fn replace(&mut self, message: &MessageRecord) {
        if let Some(held) = self.window.iter_mut().find(|m| m.id == message.id) {
            *held = message.clone();
        }
        let session = &mut self.session;
        session.last_seq = session.last_seq.max(message.seq);
        session.seq_mark = session.seq_mark.max(session.last_seq);
        session.last_activity = session.last_activity.max(Some(message.timestamp));
    }

    /// Stores `message` through `update`: appended, or replaced in place when its id is stored (a
    /// checkpoint of it); `None` when it is new and the session has ended. In the
    /// [`Documents`](MessageLayout::Documents) layout `update` only counts it: the message's own document
    /// is written beside it (see [`Put::own_document`]).
    pub(super) fn put(
        &self,
        update: &mut SessionUpdate,
        entry: &Document,
        message: &MessageRecord,
    ) -> Option<Put> {
        let (position, new) = match self.ids.get(&message.id) {
            Some(&index) => {
                match self.layout {
                    MessageLayout::Array => update.replace(index, entry, message),
                    MessageLayout::Documents => update.touch(message),
                }
                (index, false)
            }
            None if self.session.is_active() => {
                match self.layout {
                    MessageLayout::Array => update.append(entry, message),
                    MessageLayout::Documents => update.count(message),
                }
                (self.len, true)
            }
            None => return None,
        };
        Some(Put {
            position,
            new,
            layout: self.layout,
        })
    }

    /// Records what [`put`](Self::put) sent.
    pub(super) fn record(&mut self, put: Put, message: &MessageRecord) {
        if put.new {
            self.push(message);
        } else {
            self.replace(message);
        }
    }

    /// Adds one turn's figures; returns the new average response time.
    pub(super) fn add_usage(&mut self, usage: &TurnUsage) -> i64 {
        let session = &mut self.session;
        session.total_tokens += usage.tokens;
        session.max_response_ms = session.max_response_ms.max(usage.response_ms);
        session.response_count += 1;
        self.resp_total_ms += usage.response_ms;
        session.avg_response_ms = self.resp_total_ms / session.response_count;
        session.avg_response_ms
    }

    /// The last `limit` messages, when memory holds them.
    pub(super) fn recent(&self, limit: usize) -> Option<Vec<MessageRecord>> {
        let all_held = self.window.len() as i64 >= self.session.message_count;
        (self.window.len() >= limit || all_held).then(|| {
            let skip = self.window.len().saturating_sub(limit);
            self.window.iter().skip(skip).cloned().collect()
        })
    }
}

/// How [`Cached::put`] stores a message: at which position of the conversation, whether it is new, and
/// in which layout.
#[derive(Clone, Copy)]
pub(super) struct Put {
    /// The message's position in the conversation.
    pub(super) position: usize,
    /// True when the message is new (appended), false when a stored one is replaced.
    pub(super) new: bool,
    layout: MessageLayout,
}

impl Put {
    /// True when the message is written as a document of its own, beside the session's update.
    pub(super) fn own_document(self) -> bool {
        self.layout == MessageLayout::Documents
    }
}

/// Runs one attempt of a write through `held`; a failed attempt (whose outcome may be unknown, such as a
/// timeout after the server applied it) drops the cached state, so the next attempt reads the session again.
pub(super) async fn attempt<T>(
    held: &HeldSlot<Cached>,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let result = op.await;
    if result.is_err() {
        held.forget();
    }
    result
}

/// One update of a session document, built from its parts: a stored message and a turn's figures go out
/// together, addressed by `_id` alone.
#[derive(Default, Clone)]
pub(super) struct SessionUpdate {
    pub(super) push: Option<Document>,
    pub(super) inc: Document,
    pub(super) max: Document,
    pub(super) set: Document,
}

impl SessionUpdate {
    /// Appends `entry` (the stored form of `message`) to `msgs`, and counts it.
    pub(super) fn append(&mut self, entry: &Document, message: &MessageRecord) {
        self.push = Some(doc! { "msgs": entry.clone() });
        self.count(message);
    }

    /// Counts a new message (stored elsewhere): `msgCount`, last seq and activity.
    pub(super) fn count(&mut self, message: &MessageRecord) {
        let counted = get_i64(&self.inc, "msgCount").unwrap_or(0);
        self.inc.insert("msgCount", counted + 1);
        self.touch(message);
    }

    /// Replaces the message at `index` of `msgs` with `entry` (the stored form of `message`).
    pub(super) fn replace(&mut self, index: usize, entry: &Document, message: &MessageRecord) {
        self.set.insert(format!("msgs.{index}"), entry.clone());
        self.touch(message);
    }

    /// Raises the last seq and activity to `message`'s.
    pub(super) fn touch(&mut self, message: &MessageRecord) {
        let seq = i64::try_from(message.seq).unwrap_or(i64::MAX);
        let at = dt(message.timestamp);
        let seq = get_i64(&self.max, "lastSeq").map_or(seq, |held| held.max(seq));
        let at = match self.max.get_datetime("lastActivity") {
            Ok(held) if *held > at => *held,
            _ => at,
        };
        self.max.insert("lastSeq", seq);
        self.max.insert("lastActivity", at);
    }

    /// Adds a turn's tokens and response time; `average` is the new average response time (kept for the
    /// Go service's readers; this server reads `respTotalMs / respCount`).
    pub(super) fn usage(&mut self, usage: &TurnUsage, average: i64) {
        self.inc.insert("totalTokens", usage.tokens);
        self.inc.insert("respCount", 1i64);
        self.inc.insert("respTotalMs", usage.response_ms);
        self.max.insert("maxRespTime", usage.response_ms);
        self.set.insert("avgRespTime", average);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.push.is_none() && self.inc.is_empty() && self.max.is_empty() && self.set.is_empty()
    }

    pub(super) fn build(self) -> Document {
        let mut update = Document::new();
        if let Some(push) = self.push {
            update.insert("$push", push);
        }
        if !self.inc.is_empty() {
            update.insert("$inc", self.inc);
        }
        if !self.max.is_empty() {
            update.insert("$max", self.max);
        }
        let mut set = self.set;
        set.insert("_mt", now_date());
        update.insert("$set", set);
        update
    }
}
