//! One simulated user of `soak`: a task that owns its WebSocket, keeps reading it between actions (so the
//! server's heartbeat is answered), and performs the actions it is given one at a time: a chat turn, a
//! reconnect with `?last_seq=` resume (during a turn or between turns), an admin takeover of its session,
//! a fuzzed frame, or churn (closing and reconnecting as a new user). It checks the `seq` of every session
//! event it receives: never a seq at or below the highest seen (duplicate), no hole between the frames of
//! one turn (gap), and nothing replayed after a reconnect between turns (a frame that was sent while it was
//! connected but never arrived).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{FrameHead, OpenStats, Socket, Tokens, open_one};
use crate::report::{Latency, Tally};
use crate::soak_admin::Takeover;

/// Longest wait for the end of a turn.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for an answer to a single frame (an error frame, a pong, the end of a replay).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a whole takeover (join, message, leave) as seen by the user.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a user does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A chat turn: `user_message`, then wait for the final chunk.
    Turn,
    /// A turn during which the socket is closed after the `loading` frame and `after` chunks, then
    /// reopened with `?last_seq=`; the rest of the turn must arrive with no gap or duplicate.
    ResumeMidTurn {
        /// Answer chunks to read before closing.
        after: u64,
    },
    /// Close and reopen with `?last_seq=` between turns: nothing may be replayed.
    ResumeIdle,
    /// An admin joins the session, writes to the user and leaves; the user must see all three events.
    Takeover,
    /// A malformed frame: the server must answer with an error frame and keep the connection open.
    Fuzz,
    /// Close for good and reconnect as a new user.
    Churn,
}

/// What the load tool counted, shared by every user and admin task.
pub struct Counters {
    /// Turns sent.
    pub turns_sent: AtomicU64,
    /// Turns that ended with their final chunk.
    pub turns_done: AtomicU64,
    /// Time from a turn's `user_message` to its final chunk (turns without a reconnect).
    pub turn: Latency,
    /// Reconnects with resume during a turn.
    pub resumes_mid_turn: AtomicU64,
    /// Reconnects with resume between turns.
    pub resumes_idle: AtomicU64,
    /// Takeovers completed (join, message, leave) and seen by the user.
    pub takeovers: AtomicU64,
    /// Fuzzed frames sent.
    pub fuzz_sent: AtomicU64,
    /// Fuzzed frames answered with an error frame on a connection that then still answered a `ping`.
    pub fuzz_answered: AtomicU64,
    /// Users replaced by new ones.
    pub churned: AtomicU64,
    /// Broken seq guarantees, by kind.
    pub violations: Tally,
    /// Failures (error frames, timeouts, failed reconnects), by kind.
    pub errors: Tally,
    /// Closes the tool did not ask for, by code and what the connection was doing.
    pub closes: Tally,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            turns_sent: AtomicU64::new(0),
            turns_done: AtomicU64::new(0),
            turn: Latency::new("turn (final chunk)"),
            resumes_mid_turn: AtomicU64::new(0),
            resumes_idle: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            fuzz_sent: AtomicU64::new(0),
            fuzz_answered: AtomicU64::new(0),
            churned: AtomicU64::new(0),
            violations: Tally::default(),
            errors: Tally::default(),
            closes: Tally::default(),
        }
    }
}

/// Everything the user and admin tasks share.
pub struct Shared {
    /// WebSocket URL without the token.
    pub url: String,
    /// Token minting.
    pub tokens: Tokens,
    /// The user message of every turn.
    pub message: String,
    /// Counters.
    pub counters: Counters,
    /// Bounds the handshakes in progress.
    pub gate: Semaphore,
    /// Handshake timings and failures.
    pub open: OpenStats,
    /// Request queues of the admin tasks (emptied at the end of the run, which ends those tasks).
    pub admins: Mutex<Vec<mpsc::UnboundedSender<Takeover>>>,
    /// Next user number for a churned user.
    pub next_user: AtomicUsize,
    /// Round-robin choice of admin.
    pub next_admin: AtomicUsize,
}

impl Shared {
    /// Everything counted as an error: failures, violations, unexpected closes and failed handshakes.
    pub fn error_total(&self) -> u64 {
        let c = &self.counters;
        c.errors.total() + c.violations.total() + c.closes.total() + self.open.errors.total()
    }
}

/// What reading a socket gave.
pub enum Event {
    /// A text frame.
    Frame(FrameHead),
    /// The socket closed with this code (1006 when it just ended).
    Closed(u16),
    /// Nothing arrived before the deadline.
    Timeout,
}

/// Reads the next text frame of `socket` before `deadline`.
pub async fn read_event(socket: &mut Socket, deadline: Instant) -> Event {
    loop {
        let next = tokio::time::timeout_at(deadline.into(), socket.next()).await;
        return match next {
            Err(_) => Event::Timeout,
            Ok(Some(Ok(Message::Text(text)))) => Event::Frame(FrameHead::parse(&text)),
            Ok(Some(Ok(Message::Close(frame)))) => {
                Event::Closed(frame.map_or(1005, |f| u16::from(f.code)))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => Event::Closed(1006),
        };
    }
}

/// Sends a close frame (waiting at most a second) and drops the socket.
pub async fn close(socket: Option<Socket>) {
    if let Some(mut socket) = socket {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    }
}

/// The frames of one turn, matched by `client_msg_id`, and whether their seqs follow each other.
struct TurnWatch {
    id: String,
    prev_seq: Option<u64>,
    chunks: u64,
    outcome: Option<Result<(), String>>,
}

impl TurnWatch {
    fn new(id: String) -> Self {
        Self {
            id,
            prev_seq: None,
            chunks: 0,
            outcome: None,
        }
    }

    fn see(&mut self, head: &FrameHead, counters: &Counters) {
        if head.client_msg_id.as_deref() != Some(self.id.as_str()) || self.outcome.is_some() {
            return;
        }
        if let Some(seq) = head.seq {
            if self.prev_seq.is_some_and(|prev| seq > prev + 1) {
                counters.violations.bump("gap in a turn's seqs");
            }
            self.prev_seq = Some(seq);
        }
        match head.kind.as_str() {
            "ai_response" if head.is_final() => self.outcome = Some(Ok(())),
            "ai_response" => self.chunks += 1,
            "error" => {
                let code = head.error.as_ref().map(|e| e.code.clone());
                self.outcome = Some(Err(code.unwrap_or_default()));
            }
            _ => {}
        }
    }
}

/// A fuzzed frame: a name for the report and the message sent.
fn fuzz_frame(n: usize, session: &str) -> (&'static str, Message) {
    let long = "x".repeat(300);
    let text = |v: serde_json::Value| Message::Text(v.to_string().into());
    match n % 11 {
        0 => (
            "not JSON",
            Message::Text("{\"type\": \"user_message\", ".into()),
        ),
        1 => ("JSON array", Message::Text("[1, 2, 3]".into())),
        2 => (
            "content of wrong type",
            text(json!({"type": "user_message", "content": 42, "session_id": session})),
        ),
        3 => (
            "oversized client_msg_id",
            text(
                json!({"type": "user_message", "content": "hi", "session_id": session, "client_msg_id": long}),
            ),
        ),
        4 => (
            "oversized session_id",
            text(json!({"type": "user_message", "content": "hi", "session_id": long})),
        ),
        5 => (
            "unknown type",
            text(json!({"type": "soak_probe", "session_id": session})),
        ),
        6 => (
            "server-only type",
            text(json!({"type": "ai_response", "content": "x", "session_id": session})),
        ),
        7 => (
            "non-string metadata",
            text(
                json!({"type": "user_message", "content": "hi", "session_id": session, "metadata": {"k": 1}}),
            ),
        ),
        8 => (
            "last_seq of wrong type",
            text(json!({"type": "resume", "session_id": session, "last_seq": "ten"})),
        ),
        9 => (
            "admin frame from a user",
            text(json!({"type": "admin_join", "session_id": session, "sender": "admin"})),
        ),
        _ => (
            "binary frame, not UTF-8",
            Message::Binary(vec![0xff, 0xfe, 0x00, 0x80].into()),
        ),
    }
}

/// One simulated user.
pub struct Client {
    shared: Arc<Shared>,
    user: usize,
    socket: Option<Socket>,
    session: String,
    last_seq: u64,
    has_session: bool,
    turns: u64,
    fuzzed: usize,
}

impl Client {
    /// A user numbered `user`, connected (or not, when the handshake failed: it retries on its next action).
    pub async fn connect(shared: Arc<Shared>, user: usize) -> Self {
        let mut client = Self {
            shared,
            user,
            socket: None,
            session: String::new(),
            last_seq: 0,
            has_session: false,
            turns: 0,
            fuzzed: rand::random_range(0..11),
        };
        client.open(None).await;
        client
    }

    /// Performs actions from `actions`, handing its `slot` back to `idle` after each, until `actions` ends.
    pub async fn run(
        mut self,
        slot: usize,
        mut actions: mpsc::UnboundedReceiver<Action>,
        idle: mpsc::UnboundedSender<usize>,
    ) {
        let _ = idle.send(slot);
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            let action = if self.socket.is_some() {
                tokio::select! {
                    action = actions.recv() => action,
                    event = self.next(far) => {
                        if let Event::Closed(code) = event {
                            self.recover(code, "while idle", None).await;
                        }
                        continue;
                    }
                }
            } else {
                actions.recv().await
            };
            let Some(action) = action else { break };
            self.perform(action).await;
            let _ = idle.send(slot);
        }
        close(self.socket.take()).await;
    }

    async fn perform(&mut self, action: Action) {
        if self.socket.is_none() && !self.reopen(None).await {
            self.shared
                .counters
                .errors
                .bump("action skipped: cannot reconnect");
            return;
        }
        match action {
            Action::Turn => self.turn(None).await,
            Action::ResumeMidTurn { after } => self.turn(Some(after)).await,
            Action::ResumeIdle => self.resume_idle().await,
            Action::Takeover => self.takeover().await,
            Action::Fuzz => self.fuzz().await,
            Action::Churn => self.churn().await,
        }
    }

    /// Opens the socket (resuming after `last_seq` when given); on a fresh connect, adopts the announced
    /// session and its latest seq.
    async fn open(&mut self, last_seq: Option<u64>) -> bool {
        let shared = Arc::clone(&self.shared);
        let token = match shared.tokens.user(self.user) {
            Ok(token) => token,
            Err(e) => {
                shared.counters.errors.bump(format!("token: {e}"));
                return false;
            }
        };
        let Ok(_permit) = shared.gate.acquire().await else {
            return false;
        };
        match open_one(&shared.url, &token, last_seq, &shared.open).await {
            Ok((socket, first)) => {
                let head = FrameHead::parse(&first);
                let session = head.session_id.unwrap_or_default();
                if last_seq.is_none() {
                    self.last_seq = head.last_seq.unwrap_or(0);
                } else if session != self.session {
                    shared
                        .counters
                        .violations
                        .bump("resume announced another session");
                }
                self.session = session;
                self.socket = Some(socket);
                true
            }
            Err(reason) => {
                shared.open.errors.bump(reason);
                false
            }
        }
    }

    /// Reads the next text frame, checking the seq of session events; a closed socket is dropped.
    async fn next(&mut self, deadline: Instant) -> Event {
        let Some(socket) = self.socket.as_mut() else {
            return Event::Closed(1006);
        };
        let event = read_event(socket, deadline).await;
        match &event {
            Event::Frame(head) => self.track(head),
            Event::Closed(_) => self.socket = None,
            Event::Timeout => {}
        }
        event
    }

    fn track(&mut self, head: &FrameHead) {
        let Some(seq) = head.seq else { return };
        if head
            .session_id
            .as_deref()
            .is_some_and(|s| s != self.session)
        {
            self.shared.counters.errors.bump("event of another session");
            return;
        }
        if seq <= self.last_seq {
            self.shared
                .counters
                .violations
                .bump("duplicate or repeated seq");
        } else {
            self.last_seq = seq;
        }
    }

    async fn send(&mut self, message: Message) -> bool {
        match self.socket.as_mut() {
            Some(socket) => socket.send(message).await.is_ok(),
            None => false,
        }
    }

    /// Closes and reopens with `?last_seq=`, then reads the replay up to the `connection_status` that ends
    /// it, handing the frames to `watch`; false when the connection could not be resumed.
    async fn reopen(&mut self, mut watch: Option<&mut TurnWatch>) -> bool {
        close(self.socket.take()).await;
        // Before its first event the session is only a reserved id: there is nothing to resume.
        let resume = (self.has_session || self.last_seq > 0).then_some(self.last_seq);
        if !self.open(resume).await {
            return false;
        }
        if resume.is_none() {
            return true;
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match self.next(deadline).await {
                Event::Frame(head) => {
                    if let Some(replayed) = head.replay_end() {
                        if watch.is_none() && replayed > 0 {
                            self.shared
                                .counters
                                .violations
                                .bump("frames replayed that were missed while connected");
                        }
                        return true;
                    }
                    if let Some(watch) = watch.as_deref_mut() {
                        watch.see(&head, &self.shared.counters);
                    }
                }
                Event::Closed(code) => {
                    self.shared
                        .counters
                        .closes
                        .bump(format!("{code} during a replay"));
                    return false;
                }
                Event::Timeout => {
                    self.shared.counters.errors.bump("resume: no end of replay");
                    return false;
                }
            }
        }
    }

    /// After an unexpected close: counts it and reconnects with resume.
    async fn recover(&mut self, code: u16, doing: &str, watch: Option<&mut TurnWatch>) {
        self.shared.counters.closes.bump(format!("{code} {doing}"));
        self.reopen(watch).await;
    }

    async fn turn(&mut self, mut reconnect_after: Option<u64>) {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        self.turns += 1;
        let id = format!("u{}-{}", self.user, self.turns);
        let frame = json!({"type": "user_message", "content": self.shared.message, "client_msg_id": id, "session_id": self.session});
        if !self.send(Message::Text(frame.to_string().into())).await {
            counters.errors.bump("turn: send failed");
            return;
        }
        counters.turns_sent.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + TURN_TIMEOUT;
        let mut watch = TurnWatch::new(id);
        let mut resumed = false;
        while watch.outcome.is_none() {
            match self.next(deadline).await {
                Event::Frame(head) => {
                    watch.see(&head, counters);
                    let ready = head.kind == "loading" || head.kind == "ai_response";
                    if ready
                        && watch.outcome.is_none()
                        && reconnect_after.is_some_and(|after| watch.chunks >= after)
                    {
                        reconnect_after = None;
                        resumed = true;
                        counters.resumes_mid_turn.fetch_add(1, Ordering::Relaxed);
                        if !self.reopen(Some(&mut watch)).await {
                            break;
                        }
                    }
                }
                Event::Closed(code) => {
                    self.recover(code, "during a turn", Some(&mut watch)).await;
                    if self.socket.is_none() {
                        break;
                    }
                }
                Event::Timeout => break,
            }
        }
        match watch.outcome {
            Some(Ok(())) => {
                self.has_session = true;
                counters.turns_done.fetch_add(1, Ordering::Relaxed);
                if !resumed {
                    counters.turn.record(started.elapsed());
                }
            }
            Some(Err(code)) => counters.errors.bump(format!("turn: {code}")),
            None => counters.errors.bump("turn: no final chunk"),
        }
        if reconnect_after.is_some() {
            // The answer ended before the chunk to reconnect after: reconnect between turns instead.
            self.resume_idle().await;
        }
    }

    async fn resume_idle(&mut self) {
        let counters = &self.shared.counters;
        counters.resumes_idle.fetch_add(1, Ordering::Relaxed);
        self.reopen(None).await;
    }

    async fn takeover(&mut self) {
        if !self.has_session {
            // An admin can only join a stored session: the first turn creates it.
            self.turn(None).await;
            if !self.has_session || self.socket.is_none() {
                return;
            }
        }
        let shared = Arc::clone(&self.shared);
        let queue = shared.admins.lock().ok().and_then(|admins| {
            let next = shared.next_admin.fetch_add(1, Ordering::Relaxed);
            admins.get(next % admins.len().max(1)).cloned()
        });
        let Some(queue) = queue else { return };
        let (done, mut answer) = oneshot::channel();
        let request = Takeover {
            session: self.session.clone(),
            last_seq: self.last_seq,
            done,
        };
        if queue.send(request).is_err() {
            return;
        }
        let deadline = Instant::now() + TAKEOVER_TIMEOUT;
        let (mut joined, mut told, mut left) = (false, false, false);
        let mut admin_result: Option<Result<(), String>> = None;
        loop {
            if admin_result.is_some() && (left || admin_result.as_ref().is_some_and(Result::is_err))
            {
                break;
            }
            tokio::select! {
                result = &mut answer, if admin_result.is_none() => {
                    admin_result = Some(result.unwrap_or_else(|_| Err("admin task ended".into())));
                }
                event = self.next(deadline) => match event {
                    Event::Frame(head) => match head.kind.as_str() {
                        "admin_join" => joined = true,
                        "admin_message" => told = true,
                        "admin_leave" => left = true,
                        _ => {}
                    },
                    Event::Closed(code) => self.recover(code, "during a takeover", None).await,
                    Event::Timeout => break,
                },
            }
        }
        let counters = &shared.counters;
        match admin_result {
            Some(Ok(())) if joined && told && left => {
                counters.takeovers.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(())) => counters
                .violations
                .bump("takeover events not all delivered to the user"),
            Some(Err(e)) => counters.errors.bump(format!("takeover: {e}")),
            None => counters.errors.bump("takeover: timeout"),
        }
    }

    async fn fuzz(&mut self) {
        let (name, frame) = fuzz_frame(self.fuzzed, &self.session);
        self.fuzzed += 1;
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        counters.fuzz_sent.fetch_add(1, Ordering::Relaxed);
        if !self.send(frame).await {
            counters.errors.bump("fuzz: send failed");
            return;
        }
        if !self
            .expect(|h| h.kind == "error" && h.seq.is_none(), name)
            .await
        {
            return;
        }
        let ping = Message::Text(json!({"type": "ping"}).to_string().into());
        if self.send(ping).await && self.expect(|h| h.kind == "pong", name).await {
            counters.fuzz_answered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits for a frame matching `wanted` after the fuzzed frame `name`; a close or a timeout is counted.
    async fn expect(&mut self, wanted: impl Fn(&FrameHead) -> bool, name: &str) -> bool {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match self.next(deadline).await {
                Event::Frame(head) if wanted(&head) => return true,
                Event::Frame(_) => {}
                Event::Closed(code) => {
                    self.recover(code, &format!("after fuzzed frame ({name})"), None)
                        .await;
                    return false;
                }
                Event::Timeout => {
                    let counters = &self.shared.counters;
                    counters.errors.bump(format!("fuzz ({name}): no answer"));
                    return false;
                }
            }
        }
    }

    async fn churn(&mut self) {
        close(self.socket.take()).await;
        self.user = self.shared.next_user.fetch_add(1, Ordering::Relaxed);
        self.session.clear();
        self.last_seq = 0;
        self.has_session = false;
        self.turns = 0;
        self.shared.counters.churned.fetch_add(1, Ordering::Relaxed);
        self.open(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fuzzed_frame_is_distinct() {
        let names: std::collections::BTreeSet<&str> =
            (0..11).map(|n| fuzz_frame(n, "s").0).collect();
        assert_eq!(names.len(), 11);
    }

    #[test]
    fn a_hole_between_the_frames_of_a_turn_is_a_gap() {
        let counters = Counters::default();
        let mut watch = TurnWatch::new("t1".into());
        let frame = |seq: u64, done: &str| {
            FrameHead::parse(&format!(
                r#"{{"type":"ai_response","client_msg_id":"t1","seq":{seq},"metadata":{{"done":"{done}"}}}}"#
            ))
        };
        watch.see(&frame(3, "false"), &counters);
        watch.see(&frame(4, "false"), &counters);
        assert_eq!(counters.violations.total(), 0);
        watch.see(&frame(6, "true"), &counters);
        assert_eq!(counters.violations.line(), "gap in a turn's seqs=1");
        assert_eq!(watch.outcome, Some(Ok(())));
    }
}
