//! A connection coming to life: it is registered with the hub first, then its backlog is taken while the
//! session's releases are frozen, so it gets `connection_status`, then exactly the frames it missed
//! (`last_seq`) or the answer being streamed, then live frames, with no gap and no repeat.

use std::sync::Arc;

use crate::auth::Identity;
use crate::hub::{ConnHandle, ConnId, Outbound, Outgoing, Slot};
use crate::protocol::ws::{
    AdminMessageEvent, AiResponse, ConnectionStatus, FileUploadEvent, Sender, ServerMessage,
    UserMessageEcho,
};
use crate::store::{MessageRecord, Sender as StoredSender, SessionRecord};

use super::live::{PartialAnswer, Snapshot};

use super::frames::{self, metadata, seq_i64};
use super::{Chat, ConnCtx};

/// A registered connection and the frames it must send before anything else.
pub struct Attached {
    /// The connection's registration (dropping it unregisters).
    pub handle: ConnHandle,
    /// Live frames.
    pub rx: Outgoing,
    /// `connection_status` and replayed frames, in order.
    pub backlog: Vec<Arc<str>>,
    /// The connection's chat context.
    pub ctx: ConnCtx,
}

impl Chat {
    /// Registers a connection and prepares what it is sent first.
    pub async fn attach(&self, slot: Slot, identity: Identity, last_seq: Option<i64>) -> Attached {
        // Register before looking the session up: a session that another device creates after the lookup
        // found none publishes its first frames to this user's connections, and this one must already be
        // among them. Frames queued before the session is frozen are dropped there (the snapshot covers
        // them), so nothing is missed and nothing repeats.
        let (handle, mut rx) = self.hub.register(slot, identity.is_admin());
        let ctx = self.context(handle.id(), identity);
        let backlog = self
            .first_frames(ctx.identity(), last_seq, |_| rx.clear())
            .await;
        Attached {
            handle,
            rx,
            backlog,
            ctx,
        }
    }

    /// Registers a connection whose first frames come from another node (cluster mode: the owner of its
    /// user prepares them); `backlog` is empty.
    pub fn register(&self, slot: Slot, identity: Identity) -> Attached {
        let (handle, rx) = self.hub.register(slot, identity.is_admin());
        let ctx = self.context(handle.id(), identity);
        Attached {
            handle,
            rx,
            backlog: Vec::new(),
            ctx,
        }
    }

    /// The chat context of connection `conn_id` (of this node or another) opened by `identity`.
    pub fn context(&self, conn_id: ConnId, identity: Identity) -> ConnCtx {
        ConnCtx::new(conn_id, identity, self.settings.ws.max_in_flight)
    }

    /// Prepares the first frames of a connection on another node whose frames this node handles (cluster
    /// mode) and hands them to the bus while the session is frozen, so that they reach that node before any
    /// later frame of the session.
    pub async fn attach_remote(&self, ctx: &ConnCtx, last_seq: Option<i64>) {
        self.first_frames(ctx.identity(), last_seq, |backlog| {
            self.bus.first_frames(ctx.conn_id(), backlog.to_vec());
        })
        .await;
    }

    /// `connection_status`, then the frames after `last_seq` or the answer being streamed; `frozen` runs
    /// with them while the session's releases are frozen (the connection starts there).
    async fn first_frames(
        &self,
        identity: &Identity,
        last_seq: Option<i64>,
        frozen: impl FnOnce(&[Arc<str>]),
    ) -> Vec<Arc<str>> {
        let session = match self.active_session(&identity.user_id).await {
            Ok(session) => session,
            Err(err) => {
                tracing::error!(error = %err, "active session lookup failed at connect");
                None
            }
        };
        let session_id = session.as_ref().map_or_else(
            || self.sessions.reserved_for(&identity.user_id),
            |s| s.id.clone(),
        );
        let last_seq = last_seq.and_then(|s| u64::try_from(s).ok());

        // Messages older than the replay ring come from the store (read before freezing the session).
        let stored = match (&session, last_seq) {
            (Some(s), Some(after)) if after < s.last_seq => self
                .store
                .messages(&s.id, Some(after))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "replay from store failed");
                    Vec::new()
                }),
            _ => Vec::new(),
        };

        let session_model = session
            .as_ref()
            .map(|s| s.model_id.clone())
            .filter(|m| !m.is_empty());
        let status = |last: Option<u64>| {
            frames::encode(&ServerMessage::ConnectionStatus(ConnectionStatus {
                session_id: Some(session_id.clone()),
                user_id: Some(identity.user_id.clone()),
                content: None,
                model_id: session_model
                    .clone()
                    .or_else(|| Some(self.llm.default_model_id().to_string())),
                models: Some(frames::models(&self.llm.models())),
                sender: Sender::System,
                metadata: None,
                last_seq: last.map(seq_i64),
                seq: None,
                timestamp: frames::now(),
            }))
        };

        let Some(session) = session else {
            let backlog = vec![status(None)];
            frozen(&backlog);
            return backlog;
        };
        let live = self.live_of(&session);
        live.with_frozen(|snapshot| {
            // The connection starts here: what it was sent before is in the snapshot (or was sent before
            // it asked to resume), and nothing of the session can be queued while frozen.
            let mut backlog = vec![status(Some(snapshot.last_released()))];
            match last_seq {
                Some(after) => backlog.extend(replay(snapshot, &session, &stored, after)),
                None => {
                    if let Some(partial) = snapshot.partial() {
                        backlog.push(frames::encode(&partial_frame(&session.id, partial)));
                    }
                }
            }
            frozen(&backlog);
            backlog
        })
    }

    /// Sends the frames after `last_seq` of a session to one connection (in-band `resume`, `admin_join`);
    /// with `watch`, the caller's admin connections start receiving the session's live frames, this one
    /// exactly after the replay. Frames the connection already received may repeat (recognised by their
    /// `seq`): always without `watch`, and with it when the admin was watching already.
    pub(super) async fn replay_to(
        &self,
        ctx: &ConnCtx,
        session: &SessionRecord,
        after: u64,
        watch: bool,
    ) {
        let stored = if after < session.last_seq {
            self.store
                .messages(&session.id, Some(after))
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let live = self.live_of(session);
        live.with_frozen(|snapshot| {
            if watch {
                self.hub.watch(&session.id, &ctx.identity().user_id);
            }
            let frames = replay(snapshot, session, &stored, after);
            self.bus.send_to(ctx.conn_id(), Outbound::Batch(frames));
        });
    }
}

/// The frames of a session after `after`, oldest first, then a `connection_status` that closes the replay
/// (`resumed`, `replayed`, `last_seq`). When the replay ring still holds every event after `after`, those
/// frames are sent exactly as they were. Otherwise the gap is filled with the stored messages (complete
/// texts, without their chunks or transient events), an answer still being streamed comes as one frame with
/// its whole text so far, and `resync="true"` tells the client that events other than messages may be missing.
fn replay(
    snapshot: &Snapshot<'_>,
    session: &SessionRecord,
    stored: &[MessageRecord],
    after: u64,
) -> Vec<Arc<str>> {
    let (ring, oldest) = snapshot.frames_after(after);
    let last = snapshot.last_released();
    let covered = last <= after || oldest.is_some_and(|first| first <= after + 1);
    let mut frames_out: Vec<Arc<str>> = Vec::new();
    if covered {
        frames_out.extend(ring.into_iter().map(|(_, frame)| frame));
    } else {
        let mut upto = after;
        for message in stored.iter().filter(|m| m.seq > after) {
            frames_out.push(frames::encode(&stored_frame(
                &session.id,
                &session.user_id,
                message,
            )));
            upto = upto.max(message.seq);
        }
        if let Some(partial) = snapshot.partial().filter(|p| p.last_seq > upto) {
            frames_out.push(frames::encode(&partial_frame(&session.id, partial)));
            upto = partial.last_seq;
        }
        frames_out.extend(
            ring.into_iter()
                .filter(|(seq, _)| *seq > upto)
                .map(|(_, frame)| frame),
        );
    }
    let mut meta = metadata([
        ("resumed", "true".into()),
        ("replayed", frames_out.len().to_string()),
    ]);
    if !covered {
        meta.insert("resync".into(), "true".into());
    }
    frames_out.push(frames::encode(&ServerMessage::ConnectionStatus(
        ConnectionStatus {
            session_id: Some(session.id.clone()),
            user_id: None,
            content: None,
            model_id: None,
            models: None,
            sender: Sender::System,
            metadata: Some(meta),
            last_seq: Some(seq_i64(last)),
            seq: None,
            timestamp: frames::now(),
        },
    )));
    frames_out
}

/// The answer being streamed, as one `ai_response` with its whole text so far.
fn partial_frame(session_id: &str, partial: &PartialAnswer) -> ServerMessage {
    ServerMessage::AiResponse(AiResponse {
        session_id: session_id.to_string(),
        content: Some(partial.text.clone()).filter(|t| !t.is_empty()),
        model_id: Some(partial.model_id.clone()),
        client_msg_id: partial.client_msg_id.clone(),
        sender: Sender::Ai,
        metadata: Some(metadata([
            ("streaming", "true".into()),
            ("done", "false".into()),
            ("partial", "true".into()),
        ])),
        seq: seq_i64(partial.last_seq),
        timestamp: frames::now(),
    })
}

/// The frame that stands for a stored message when it is replayed from the store.
pub(super) fn stored_frame(session_id: &str, user_id: &str, m: &MessageRecord) -> ServerMessage {
    let timestamp = crate::protocol::ws_timestamp(m.timestamp);
    let meta = (!m.metadata.is_empty()).then(|| m.metadata.clone());
    match (&m.sender, &m.file_id, &m.file_url) {
        (_, Some(file_id), Some(file_url)) => ServerMessage::FileUpload(FileUploadEvent {
            session_id: session_id.into(),
            content: Some(m.content.clone()).filter(|c| !c.is_empty()),
            file_id: file_id.clone(),
            file_url: file_url.clone(),
            sender: Sender::User,
            user_id: Some(user_id.into()),
            client_msg_id: m.client_msg_id.clone(),
            metadata: meta,
            seq: seq_i64(m.seq),
            timestamp,
        }),
        (StoredSender::Ai, _, _) => {
            let mut meta = meta.unwrap_or_default();
            meta.insert("done".into(), "true".into());
            if m.partial {
                meta.insert("partial".into(), "true".into());
            }
            ServerMessage::AiResponse(AiResponse {
                session_id: session_id.into(),
                content: Some(m.content.clone()).filter(|c| !c.is_empty()),
                model_id: m.model_id.clone(),
                client_msg_id: m.client_msg_id.clone(),
                sender: Sender::Ai,
                metadata: Some(meta),
                seq: seq_i64(m.seq),
                timestamp,
            })
        }
        (StoredSender::Admin, _, _) => ServerMessage::AdminMessage(AdminMessageEvent {
            session_id: session_id.into(),
            content: m.content.clone(),
            sender: Sender::Admin,
            client_msg_id: m.client_msg_id.clone(),
            metadata: meta.unwrap_or_default(),
            seq: seq_i64(m.seq),
            timestamp,
        }),
        _ => ServerMessage::UserMessage(UserMessageEcho {
            session_id: session_id.into(),
            content: m.content.clone(),
            sender: Sender::User,
            user_id: Some(user_id.into()),
            client_msg_id: m.client_msg_id.clone(),
            metadata: meta,
            seq: seq_i64(m.seq),
            timestamp,
        }),
    }
}
