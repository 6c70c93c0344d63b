//! Live session state on this node: the sequence counter, the replay ring of recent frames, the answer being
//! streamed (for devices that join mid-answer), the running turn's cancel token and the assisting admin.
//! The store is the truth for everything persisted; this is a cache owned by [`LiveSessions`].
//!
//! Sequence numbers are reserved before a frame is ready (a stored message takes its seq before the write)
//! and frames are released strictly in seq order, so every device sees seqs ascending and a reconnect with
//! `last_seq` can never skip a frame.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::hub::{BusMessage, ConnId, EventBus, Target};
use crate::store::AssistingAdmin;

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
    pending: BTreeMap<u64, Option<Pending>>,
    ring: VecDeque<Released>,
    partial: Option<PartialAnswer>,
    cancel: Option<CancellationToken>,
    assistant: Option<AssistingAdmin>,
}

/// One session's live state.
pub struct LiveSession {
    /// Session id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    inner: Mutex<Inner>,
    /// Held while a turn runs, so the turns of a session run one after another.
    pub turn_lock: tokio::sync::Mutex<()>,
    ring_size: usize,
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
        seq
    }

    /// Completes a reserved seq with a frame (or with nothing, when the event did not happen) and releases
    /// every frame whose turn has come.
    pub fn complete(
        &self,
        bus: &dyn EventBus,
        seq: u64,
        frame: Option<(Arc<str>, Option<ConnId>)>,
    ) {
        let mut inner = self.lock();
        inner.pending.insert(seq, frame);
        loop {
            let released_seq = inner.next_release;
            let Some(entry) = inner.pending.remove(&released_seq) else {
                break;
            };
            inner.next_release += 1;
            if let Some((frame, except)) = entry {
                inner.ring.push_back(Released {
                    seq: released_seq,
                    frame: Arc::clone(&frame),
                });
                while inner.ring.len() > self.ring_size {
                    inner.ring.pop_front();
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
        let seq = self.reserve_seq();
        let frame = build(seq);
        self.complete(bus, seq, Some((frame, except)));
        seq
    }

    /// Runs `f` while no frame of this session can be released: a connection registered inside `f` receives
    /// exactly the frames released after it, and `f` sees every frame released before.
    pub fn with_frozen<R>(&self, f: impl FnOnce(&Snapshot<'_>) -> R) -> R {
        let inner = self.lock();
        let snapshot = Snapshot { inner: &inner };
        f(&snapshot)
    }

    /// Records a chunk of the answer being streamed.
    pub fn push_partial(&self, delta: &str, model_id: &str, client_msg_id: Option<&str>, seq: u64) {
        let mut inner = self.lock();
        let partial = inner.partial.get_or_insert_with(|| PartialAnswer {
            model_id: model_id.to_string(),
            client_msg_id: client_msg_id.map(String::from),
            ..PartialAnswer::default()
        });
        partial.text.push_str(delta);
        partial.last_seq = seq;
    }

    /// Forgets the answer being streamed (the turn ended).
    pub fn clear_partial(&self) {
        self.lock().partial = None;
    }

    /// Sets the running turn's cancel token.
    pub fn set_cancel(&self, token: Option<CancellationToken>) {
        self.lock().cancel = token;
    }

    /// Cancels the running turn; true when there was one. The turn stays counted as running until it has
    /// stored what it produced and released its final frame.
    pub fn cancel_turn(&self) -> bool {
        match &self.lock().cancel {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
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
    ring_size: usize,
}

impl LiveSessions {
    /// An empty cache keeping `ring_size` frames per session for replay.
    pub fn new(ring_size: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            ring_size,
        }
    }

    /// The live state of a session, created when first needed from what the store holds (its last seq
    /// and its assisting admin, so an assistance outlives a restart); true when it was created now.
    pub fn get_or_load(
        &self,
        session_id: &str,
        user_id: &str,
        stored_last_seq: u64,
        stored_assistant: Option<AssistingAdmin>,
    ) -> (Arc<LiveSession>, bool) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut created = false;
        let live = sessions.entry(session_id.to_string()).or_insert_with(|| {
            created = true;
            Arc::new(LiveSession {
                id: session_id.to_string(),
                user_id: user_id.to_string(),
                inner: Mutex::new(Inner {
                    next_seq: stored_last_seq + 1,
                    next_release: stored_last_seq + 1,
                    pending: BTreeMap::new(),
                    ring: VecDeque::new(),
                    partial: None,
                    cancel: None,
                    assistant: stored_assistant,
                }),
                turn_lock: tokio::sync::Mutex::new(()),
                ring_size: self.ring_size,
            })
        });
        (Arc::clone(live), created)
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
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct Recorder(StdMutex<Vec<String>>);

    impl EventBus for Recorder {
        fn publish(&self, message: BusMessage) {
            self.0.lock().unwrap().push(message.frame.to_string());
        }
    }

    #[test]
    fn frames_are_released_in_seq_order() {
        let live = LiveSessions::new(16);
        let (s, _) = live.get_or_load("s", "u", 10, None);
        let bus = Recorder::default();
        let first = s.reserve_seq();
        assert_eq!(first, 11);
        let second = s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
        assert_eq!(second, 12);
        assert!(bus.0.lock().unwrap().is_empty(), "12 must wait for 11");
        s.complete(&bus, first, Some((Arc::from("f11"), None)));
        assert_eq!(*bus.0.lock().unwrap(), vec!["f11", "f12"]);
    }

    #[test]
    fn an_abandoned_seq_does_not_block_later_frames() {
        let live = LiveSessions::new(16);
        let (s, _) = live.get_or_load("s", "u", 0, None);
        let bus = Recorder::default();
        let hole = s.reserve_seq();
        s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
        s.complete(&bus, hole, None);
        assert_eq!(*bus.0.lock().unwrap(), vec!["f2"]);
        s.with_frozen(|snap| {
            let (frames, oldest) = snap.frames_after(0);
            assert_eq!(frames.len(), 1);
            assert_eq!(oldest, Some(2));
            assert_eq!(snap.last_released(), 2);
        });
    }

    #[test]
    fn the_ring_keeps_only_recent_frames() {
        let live = LiveSessions::new(2);
        let (s, _) = live.get_or_load("s", "u", 0, None);
        let bus = Recorder::default();
        for _ in 0..5 {
            s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
        }
        s.with_frozen(|snap| {
            let (frames, oldest) = snap.frames_after(0);
            assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), vec![4, 5]);
            assert_eq!(oldest, Some(4));
        });
    }
}
