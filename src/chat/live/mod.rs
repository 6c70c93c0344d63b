//! Live session state on this node: the sequence counter, the replay ring of recent frames, the answer being
//! streamed (for devices that join mid-answer), the running turn's cancel token and the assisting admin.
//! The store is the truth for everything persisted; this is a cache owned by [`LiveSessions`].
//!
//! Sequence numbers are reserved before a frame is ready (a stored message takes its seq before the write)
//! and frames are released strictly in seq order, so every device sees seqs ascending and a reconnect with
//! `last_seq` can never skip a frame.
//!
//! Seqs survive restarts through a persisted high-water mark handed out in blocks (hi/lo): a frame is
//! released only once its seq is at or below the stored mark, and a session loaded again starts above the
//! mark. The next block is requested when half of the current one is used, so frames normally never wait;
//! a restart leaves a gap of at most one block. Seqs are therefore strictly increasing but not contiguous.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::hub::{BusMessage, ConnId, EventBus, Target};
use crate::store::{AssistingAdmin, Store};

use super::turn_queue::TurnQueue;

/// Seqs reserved in the store at a time.
pub const SEQ_BLOCK: u64 = 256;

/// How much of a session's recent frames is kept for replay: at most `frames` frames and `bytes` bytes
/// (the newest frame is always kept).
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimit {
    /// Frames (`ws.replay_buffer`).
    pub frames: usize,
    /// Bytes of frame text (`ws.replay_bytes`): bounds the memory of a live session; older frames come
    /// from the store on a resume, as for a ring that is full.
    pub bytes: usize,
}

/// Where the seq high-water marks are stored, and the bus that releases the frames that waited for one.
pub struct SeqMarks {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    block: u64,
}

impl SeqMarks {
    /// Marks kept in `store` in blocks of `block` seqs; held-back frames go out on `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn EventBus>, block: u64) -> Self {
        Self {
            store,
            bus,
            block: block.max(2),
        }
    }
}

/// A frame released to a session's subscribers.
#[derive(Clone)]
struct Released {
    seq: u64,
    frame: Arc<str>,
}

/// The answer being streamed right now.
#[derive(Debug, Clone, Default)]
pub struct PartialAnswer {
    /// Text so far.
    pub text: String,
    /// Model answering.
    pub model_id: String,
    /// The answered message's `client_msg_id`.
    pub client_msg_id: Option<String>,
    /// Seq of the last chunk sent.
    pub last_seq: u64,
}

/// A frame waiting for its turn to be released, and the connection it must skip.
type Pending = (Arc<str>, Option<ConnId>);

struct Inner {
    next_seq: u64,
    next_release: u64,
    /// Seqs up to this one may be released (stored mark; `u64::MAX` without marks).
    durable: u64,
    /// A raise of the stored mark is in flight.
    raising: bool,
    /// Last time the session was used (a seq reserved, a connection attached).
    touched: Instant,
    pending: BTreeMap<u64, Option<Pending>>,
    ring: VecDeque<Released>,
    /// Bytes of the frames in `ring`.
    ring_bytes: usize,
    partial: Option<PartialAnswer>,
    cancel: Option<CancellationToken>,
    assistant: Option<AssistingAdmin>,
}

impl Inner {
    /// Whether the session can be dropped from memory without losing anything: no frame waits, no turn
    /// runs, no admin assists and nothing happened for `idle`.
    fn is_idle(&self, idle: Duration) -> bool {
        self.pending.is_empty()
            && self.next_seq == self.next_release
            && !self.raising
            && self.partial.is_none()
            && self.cancel.is_none()
            && self.assistant.is_none()
            && self.touched.elapsed() >= idle
    }
}

/// One session's live state.
pub struct LiveSession {
    /// Session id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    inner: Mutex<Inner>,
    /// The turns of the session, one at a time in the order their messages took effect.
    pub turns: Arc<TurnQueue>,
    ring_limit: ReplayLimit,
    marks: Option<Arc<SeqMarks>>,
    me: Weak<LiveSession>,
}

impl LiveSession {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the next sequence number; the caller must [`complete`](Self::complete) it.
    pub fn reserve_seq(&self) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.touched = Instant::now();
        self.keep_ahead(&mut inner);
        seq
    }

    /// Starts raising the stored mark when less than half a block of released-ready seqs is left.
    fn keep_ahead(&self, inner: &mut Inner) {
        let Some(marks) = &self.marks else { return };
        if inner.raising || inner.next_seq.saturating_add(marks.block / 2) <= inner.durable {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let target = inner
            .durable
            .max(inner.next_seq.saturating_sub(1))
            .saturating_add(marks.block);
        inner.raising = true;
        let marks = Arc::clone(marks);
        tokio::spawn(async move {
            match marks
                .store
                .raise_seq_mark(&me.id, &me.user_id, target)
                .await
            {
                Ok(()) => {}
                // The session was deleted meanwhile: nothing will be resumed.
                Err(crate::store::StoreError::NotFound) => {}
                // Holding frames back forever would stall the session; release them, at the risk of a seq
                // repeating if the process restarts before the store answers again.
                Err(err) => {
                    tracing::error!(session_id = %me.id, error = %err, "storing the seq mark failed");
                }
            }
            let mut inner = me.lock();
            inner.raising = false;
            inner.durable = inner.durable.max(target);
            me.release(&mut inner, marks.bus.as_ref());
            me.keep_ahead(&mut inner);
        });
    }

    /// Completes a reserved seq with a frame (or with nothing, when the event did not happen) and releases
    /// every frame whose turn has come.
    pub fn complete(
        &self,
        bus: &dyn EventBus,
        seq: u64,
        frame: Option<(Arc<str>, Option<ConnId>)>,
    ) {
        self.complete_with(bus, seq, frame, |_| {});
    }

    /// [`Self::complete`], with `also` applied to the state under the same lock.
    fn complete_with(
        &self,
        bus: &dyn EventBus,
        seq: u64,
        frame: Option<(Arc<str>, Option<ConnId>)>,
        also: impl FnOnce(&mut Inner),
    ) {
        let mut inner = self.lock();
        inner.pending.insert(seq, frame);
        also(&mut inner);
        self.release(&mut inner, bus);
    }

    /// Releases, in seq order, every completed frame whose seq is covered by the stored mark.
    fn release(&self, inner: &mut Inner, bus: &dyn EventBus) {
        while inner.next_release <= inner.durable {
            let released_seq = inner.next_release;
            let Some(entry) = inner.pending.remove(&released_seq) else {
                break;
            };
            inner.next_release += 1;
            if let Some((frame, except)) = entry {
                inner.ring_bytes += frame.len();
                inner.ring.push_back(Released {
                    seq: released_seq,
                    frame: Arc::clone(&frame),
                });
                while inner.ring.len() > self.ring_limit.frames
                    || (inner.ring_bytes > self.ring_limit.bytes && inner.ring.len() > 1)
                {
                    if let Some(dropped) = inner.ring.pop_front() {
                        inner.ring_bytes -= dropped.frame.len();
                    }
                }
                bus.publish(BusMessage {
                    target: Target::Session {
                        session_id: self.id.clone(),
                        user_id: self.user_id.clone(),
                    },
                    frame,
                    except,
                });
            }
        }
    }

    /// Reserves a seq, builds the frame with it and releases it.
    pub fn emit(
        &self,
        bus: &dyn EventBus,
        except: Option<ConnId>,
        build: impl FnOnce(u64) -> Arc<str>,
    ) -> u64 {
        self.emit_with(bus, except, build, |_, _| {})
    }

    /// [`Self::emit`], with `also` applied to the state (and the frame's seq) under the lock that
    /// releases the frame.
    fn emit_with(
        &self,
        bus: &dyn EventBus,
        except: Option<ConnId>,
        build: impl FnOnce(u64) -> Arc<str>,
        also: impl FnOnce(&mut Inner, u64),
    ) -> u64 {
        let seq = self.reserve_seq();
        let frame = build(seq);
        self.complete_with(bus, seq, Some((frame, except)), |inner| also(inner, seq));
        seq
    }

    /// Runs `f` while no frame of this session can be released: a connection registered inside `f` receives
    /// exactly the frames released after it, and `f` sees every frame released before.
    pub fn with_frozen<R>(&self, f: impl FnOnce(&Snapshot<'_>) -> R) -> R {
        let mut inner = self.lock();
        inner.touched = Instant::now();
        let snapshot = Snapshot { inner: &inner };
        f(&snapshot)
    }

    /// Emits a chunk of the answer being streamed (`build` makes its frame with its seq) and adds `delta`
    /// to the partial answer, under one lock: a device attaching meanwhile gets the chunk either in the
    /// partial answer or live, never neither.
    pub fn emit_chunk(
        &self,
        bus: &dyn EventBus,
        delta: &str,
        model_id: &str,
        client_msg_id: Option<&str>,
        build: impl FnOnce(u64) -> Arc<str>,
    ) -> u64 {
        self.emit_with(bus, None, build, |inner, seq| {
            let partial = inner.partial.get_or_insert_with(|| PartialAnswer {
                model_id: model_id.to_string(),
                client_msg_id: client_msg_id.map(String::from),
                ..PartialAnswer::default()
            });
            partial.text.push_str(delta);
            partial.last_seq = seq;
        })
    }

    /// Completes the final frame of an answer and forgets the partial answer, under one lock: a device
    /// attaching meanwhile gets the partial answer and then the final frame, or only the final frame.
    pub fn finish_answer(
        &self,
        bus: &dyn EventBus,
        seq: u64,
        frame: Option<(Arc<str>, Option<ConnId>)>,
    ) {
        self.complete_with(bus, seq, frame, |inner| inner.partial = None);
    }

    /// Sets the running turn's cancel token.
    pub fn set_cancel(&self, token: Option<CancellationToken>) {
        self.lock().cancel = token;
    }

    /// Cancels the running turn and the turns waiting for it; true when there was one. The running turn
    /// stays counted as running until it has stored what it produced and released its final frame.
    pub fn cancel_turn(&self) -> bool {
        // Waiting turns first: a turn that starts meanwhile sees its ticket cancelled once its token is
        // set (see `run_turn`).
        let waiting = self.turns.cancel_taken();
        let running = match &self.lock().cancel {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        };
        waiting || running
    }

    /// The assisting admin.
    pub fn assistant(&self) -> Option<AssistingAdmin> {
        self.lock().assistant.clone()
    }

    /// Sets or clears the assisting admin.
    pub fn set_assistant(&self, assistant: Option<AssistingAdmin>) {
        self.lock().assistant = assistant;
    }
}

/// A read-only view of a live session while its releases are frozen.
pub struct Snapshot<'a> {
    inner: &'a Inner,
}

impl Snapshot<'_> {
    /// Released frames with a seq above `after`, oldest first, and the lowest seq the ring still holds.
    pub fn frames_after(&self, after: u64) -> (Vec<(u64, Arc<str>)>, Option<u64>) {
        let oldest = self.inner.ring.front().map(|r| r.seq);
        let frames = self
            .inner
            .ring
            .iter()
            .filter(|r| r.seq > after)
            .map(|r| (r.seq, Arc::clone(&r.frame)))
            .collect();
        (frames, oldest)
    }

    /// The highest seq released so far (0 when none).
    pub fn last_released(&self) -> u64 {
        self.inner.next_release.saturating_sub(1)
    }

    /// The answer being streamed, if any.
    pub fn partial(&self) -> Option<&PartialAnswer> {
        self.inner.partial.as_ref()
    }
}

/// All live sessions of this node.
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    ring_limit: ReplayLimit,
    marks: Option<Arc<SeqMarks>>,
}

impl LiveSessions {
    /// An empty cache keeping up to `ring_limit` of recent frames per session for replay; with `marks`,
    /// seqs are kept unique across restarts (without, as in unit tests, they restart above the stored seq).
    pub fn new(ring_limit: ReplayLimit, marks: Option<SeqMarks>) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            ring_limit,
            marks: marks.map(Arc::new),
        }
    }

    /// The live state of a session, created when first needed from what the store holds: seqs continue
    /// above `stored_seq_mark` (the session's stored seq high-water mark: no seq up to it is handed out
    /// again) and its assisting admin is restored (an assistance outlives a restart). True when it was
    /// created now.
    pub fn get_or_load(
        &self,
        session_id: &str,
        user_id: &str,
        stored_seq_mark: u64,
        stored_assistant: Option<AssistingAdmin>,
    ) -> (Arc<LiveSession>, bool) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut created = false;
        let session = Arc::clone(sessions.entry(session_id.to_string()).or_insert_with(|| {
            created = true;
            Arc::new_cyclic(|me| LiveSession {
                id: session_id.to_string(),
                user_id: user_id.to_string(),
                inner: Mutex::new(Inner {
                    next_seq: stored_seq_mark + 1,
                    next_release: stored_seq_mark + 1,
                    durable: if self.marks.is_some() {
                        stored_seq_mark
                    } else {
                        u64::MAX
                    },
                    raising: false,
                    touched: Instant::now(),
                    pending: BTreeMap::new(),
                    ring: VecDeque::new(),
                    ring_bytes: 0,
                    partial: None,
                    cancel: None,
                    assistant: stored_assistant,
                }),
                turns: Arc::default(),
                ring_limit: self.ring_limit,
                marks: self.marks.clone(),
                me: me.clone(),
            })
        }));
        drop(sessions);
        // Reserve the first block right away, so the session's first frame does not wait for it.
        session.keep_ahead(&mut session.lock());
        (session, created)
    }

    /// Drops the live state of every session that nothing uses: no one but this cache holds it, it is
    /// idle ([`LiveSession`] has no waiting frame, turn or assistant and was not touched for `idle`) and
    /// `in_use` (connections of its user, watching admins) says no. Returns how many were dropped.
    /// A session loaded again starts from the store: its seqs continue above the stored mark and a resume
    /// from before is served from the stored messages (`resync`).
    pub fn evict_idle(&self, idle: Duration, in_use: impl Fn(&LiveSession) -> bool) -> usize {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        // Holding the map lock, a count of one means no one else can reach the session any more.
        sessions.retain(|_, s| Arc::strong_count(s) > 1 || !s.lock().is_idle(idle) || in_use(s));
        before - sessions.len()
    }

    /// Number of sessions held in memory.
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// True when no session is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live state of a session if this node has it.
    pub fn get(&self, session_id: &str) -> Option<Arc<LiveSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
            .cloned()
    }

    /// Drops a session's live state (it ended); a running turn is cancelled.
    pub fn remove(&self, session_id: &str) {
        let removed = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session_id);
        if let Some(session) = removed {
            session.cancel_turn();
        }
    }

    /// Cancels every running turn (their partial answers are stored); returns how many.
    pub fn cancel_all(&self) -> usize {
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        sessions.iter().filter(|s| s.cancel_turn()).count()
    }

    /// Number of turns running now (graceful shutdown waits for them).
    pub fn running_turns(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .values()
            .filter(|s| s.lock().cancel.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests;
