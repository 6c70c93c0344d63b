//! A connection coming to life: it is registered with the hub while the session's releases are frozen,
//! so it gets `connection_status`, then exactly the frames it missed (`last_seq`) or the answer being
//! streamed, then live frames, with no gap and no repeat.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::auth::Identity;
use crate::hub::{ConnHandle, Outbound, Slot};
use crate::protocol::ws::{
    AdminMessageEvent, AiResponse, ConnectionStatus, FileUploadEvent, Sender, ServerMessage,
    UserMessageEcho,
};
use crate::store::MessageRecord;

use super::frames::{self, metadata, seq_i64};
use super::{Chat, ConnCtx};

/// A registered connection and the frames it must send before anything else.
pub struct Attached {
    /// The connection's registration (dropping it unregisters).
    pub handle: ConnHandle,
    /// Live frames.
    pub rx: mpsc::Receiver<Outbound>,
    /// `connection_status` and replayed frames, in order.
    pub backlog: Vec<Arc<str>>,
    /// The connection's chat context.
    pub ctx: ConnCtx,
}

impl Chat {
    /// Registers a connection and prepares what it is sent first.
    pub async fn attach(&self, slot: Slot, identity: Identity, last_seq: Option<i64>) -> Attached {
        let is_admin = identity.is_admin();
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
            let (handle, rx) = self.hub.register(slot, is_admin);
            let ctx = ConnCtx::new(handle.id(), identity.clone());
            return Attached {
                handle,
                rx,
                backlog: vec![status(None)],
                ctx,
            };
        };
        let live = self.live_of(&session);
        let (handle, rx, backlog) = live.with_frozen(|snapshot| {
            let (handle, rx) = self.hub.register(slot, is_admin);
            let mut backlog = vec![status(Some(snapshot.last_released()))];
            match last_seq {
                Some(after) => {
                    let (ring, oldest) = snapshot.frames_after(after);
                    let ring_start = oldest.unwrap_or(u64::MAX);
                    for message in stored
                        .iter()
                        .filter(|m| m.seq > after && m.seq < ring_start)
                    {
                        backlog.push(frames::encode(&stored_frame(
                            &session.id,
                            &session.user_id,
                            message,
                        )));
                    }
                    backlog.extend(ring.into_iter().map(|(_, frame)| frame));
                }
                None => {
                    if let Some(partial) = snapshot.partial() {
                        backlog.push(frames::encode(&ServerMessage::AiResponse(AiResponse {
                            session_id: session.id.clone(),
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
                        })));
                    }
                }
            }
            (handle, rx, backlog)
        });
        let ctx = ConnCtx::new(handle.id(), identity);
        Attached {
            handle,
            rx,
            backlog,
            ctx,
        }
    }

    /// Sends the frames after `last_seq` of a session to one connection (in-band `resume`); frames it
    /// already received may repeat and are recognised by their `seq`.
    pub(super) async fn replay_to(
        &self,
        ctx: &ConnCtx,
        session: &crate::store::SessionRecord,
        after: u64,
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
            let (ring, oldest) = snapshot.frames_after(after);
            let ring_start = oldest.unwrap_or(u64::MAX);
            for message in stored.iter().filter(|m| m.seq < ring_start) {
                let frame = frames::encode(&stored_frame(&session.id, &session.user_id, message));
                self.hub.send_to(ctx.conn_id(), Outbound::Text(frame));
            }
            for (_, frame) in ring {
                self.hub.send_to(ctx.conn_id(), Outbound::Text(frame));
            }
        });
    }
}

/// The frame that stands for a stored message when it is replayed from the store.
pub(super) fn stored_frame(session_id: &str, user_id: &str, m: &MessageRecord) -> ServerMessage {
    let timestamp = crate::protocol::ws_timestamp(m.timestamp);
    let meta = (!m.metadata.is_empty()).then(|| m.metadata.clone());
    match (m.sender.as_str(), &m.file_id, &m.file_url) {
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
        ("ai", _, _) => {
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
        ("admin", _, _) => ServerMessage::AdminMessage(AdminMessageEvent {
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
