//! One administrator of `soak`: a task with an admin token and its own WebSocket that takes over the
//! sessions users hand it, one at a time: `admin_join` (with the user's `last_seq`, so the replay is
//! short), `admin_message`, `admin_leave`, each answered by its session event (or an error frame).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{FrameHead, Socket, open_one};
use crate::soak_client::{Event, Shared, close, read_event};

/// Longest wait for the answer to one admin frame.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A takeover requested by a user task.
pub struct Takeover {
    /// The session to take over.
    pub session: String,
    /// The highest seq the user has seen (the admin's replay starts after it).
    pub last_seq: u64,
    /// The outcome: `Err` with the error code or what went wrong.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// True for a session event of `session`.
fn ours(head: &FrameHead, session: &str) -> bool {
    head.seq.is_some() && head.session_id.as_deref() == Some(session)
}

/// One administrator connection.
pub struct Admin {
    shared: Arc<Shared>,
    number: usize,
    socket: Option<Socket>,
    messages: u64,
}

impl Admin {
    /// Administrator `number`, connected (or reconnecting on its first request when that failed).
    pub async fn connect(shared: Arc<Shared>, number: usize) -> Self {
        let mut admin = Self {
            shared,
            number,
            socket: None,
            messages: 0,
        };
        admin.open().await;
        admin
    }

    async fn open(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let token = match shared.tokens.admin(self.number) {
            Ok(token) => token,
            Err(e) => {
                shared.counters.errors.bump(format!("admin token: {e}"));
                return false;
            }
        };
        match open_one(&shared.url, &token, None, &shared.open).await {
            Ok((socket, _)) => {
                self.socket = Some(socket);
                true
            }
            Err(reason) => {
                shared.open.errors.bump(format!("admin: {reason}"));
                false
            }
        }
    }

    /// Serves takeovers until `requests` ends, reading the socket in between.
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Takeover>) {
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            let request = match self.socket.as_mut() {
                Some(socket) => tokio::select! {
                    request = requests.recv() => request,
                    event = read_event(socket, far) => {
                        if let Event::Closed(code) = event {
                            self.shared.counters.closes.bump(format!("{code} admin while idle"));
                            self.socket = None;
                        }
                        continue;
                    }
                },
                None => requests.recv().await,
            };
            let Some(request) = request else { break };
            let outcome = self.take_over(&request.session, request.last_seq).await;
            let _ = request.done.send(outcome);
        }
        close(self.socket.take()).await;
    }

    /// Joins, writes and leaves. The admin's own connection does not receive its `admin_message` (the
    /// user's do), so the message is followed at once by the leave, and an error frame about either comes
    /// before the `admin_leave` event. After a failed join it still tries to leave, so the session is not
    /// left assisted (the AI would stay silent for the user).
    async fn take_over(&mut self, session: &str, last_seq: u64) -> Result<(), String> {
        if self.socket.is_none() && !self.open().await {
            return Err("admin cannot connect".into());
        }
        self.messages += 1;
        let id = format!("a{}-{}", self.number, self.messages);
        let join = json!({"type": "admin_join", "session_id": session, "sender": "admin", "last_seq": last_seq});
        let joined = self
            .step(join, |h| h.kind == "admin_join" && ours(h, session))
            .await;
        if joined.is_ok() {
            let message = json!({"type": "admin_message", "session_id": session, "sender": "admin", "content": "A human here, checking in.", "client_msg_id": id});
            self.send(&message).await?;
        }
        let leave = json!({"type": "admin_leave", "session_id": session, "sender": "admin"});
        let left = self
            .step(leave, |h| h.kind == "admin_leave" && ours(h, session))
            .await;
        joined.and(left)
    }

    /// Sends `frame` and waits for the frame `done` accepts, or an error frame about it.
    async fn step(
        &mut self,
        frame: serde_json::Value,
        done: impl Fn(&FrameHead) -> bool,
    ) -> Result<(), String> {
        let kind = self.send(&frame).await?;
        self.wait(&kind, done).await
    }

    /// Sends `frame`; returns its type.
    async fn send(&mut self, frame: &serde_json::Value) -> Result<String, String> {
        let kind = frame["type"].as_str().unwrap_or_default().to_string();
        let Some(socket) = self.socket.as_mut() else {
            return Err(format!("{kind}: not connected"));
        };
        if socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            self.socket = None;
            return Err(format!("{kind}: send failed"));
        }
        Ok(kind)
    }

    /// Waits for the frame `done` accepts, or an error frame (about the `kind` frame sent).
    async fn wait(&mut self, kind: &str, done: impl Fn(&FrameHead) -> bool) -> Result<(), String> {
        let Some(socket) = self.socket.as_mut() else {
            return Err(format!("{kind}: not connected"));
        };
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            match read_event(socket, deadline).await {
                Event::Frame(head) if done(&head) => return Ok(()),
                Event::Frame(head) if head.kind == "error" && head.seq.is_none() => {
                    // Of the admin frames only `admin_message` has a `client_msg_id`.
                    let about = head
                        .client_msg_id
                        .as_ref()
                        .map_or(kind, |_| "admin_message");
                    let code = head.error.map(|e| e.code).unwrap_or_default();
                    return Err(format!("{about} {code}"));
                }
                Event::Frame(_) => {}
                Event::Closed(code) => {
                    self.shared
                        .counters
                        .closes
                        .bump(format!("{code} admin during {kind}"));
                    self.socket = None;
                    return Err(format!("{kind}: closed"));
                }
                Event::Timeout => return Err(format!("{kind}: timeout")),
            }
        }
    }
}
