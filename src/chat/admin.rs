//! Admin takeover over WebSocket: `admin_join` (the admin watches the session, gets its history and its
//! live frames; the AI stays silent), `admin_message` (reaches every device of the user), `admin_leave`
//! (the AI answers again). One assisting admin at a time.
//!
//! Every takeover, leave and transfer is written to the audit log here, whichever door it came through
//! (WebSocket or the HTTP takeover routes), exactly once, with a `via` detail naming the door.

use crate::audit::{AuditKind, admin_record, record_logged};
use crate::auth::Identity;
use crate::protocol::ws::{
    AdminJoinEvent, AdminLeaveEvent, AdminMessage, AdminMessageEvent, Sender, ServerMessage,
};
use crate::store::{AssistingAdmin, MessageRecord, SessionRecord};

use super::frames::{self, metadata, seq_i64};
use super::live::{Assistant, LiveSession};
use super::user_message::message_id;
use super::{Chat, ChatError, ConnCtx};

/// Longest admin name shown in join and leave texts, in bytes.
const MAX_NAME_BYTES: usize = 100;

/// Which door an admin action came through (the `via` detail of its audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The HTTP takeover routes.
    Http,
    /// WebSocket `admin_join` / `admin_leave`.
    WebSocket,
}

impl Via {
    /// `http` or `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::WebSocket => "websocket",
        }
    }
}

fn short_name(name: &str) -> &str {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let mut cut = MAX_NAME_BYTES;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    &name[..cut]
}

impl Chat {
    /// Makes `admin_id` the assisting admin, in the store and on this node; the AI stays silent from now
    /// on, so a running answer stops here.
    async fn assign(
        &self,
        session: &SessionRecord,
        live: &LiveSession,
        admin_id: &str,
        admin_name: &str,
    ) -> Result<(), ChatError> {
        let admin = AssistingAdmin {
            id: admin_id.to_string(),
            name: admin_name.to_string(),
        };
        self.store.set_assistance(&session.id, Some(&admin)).await?;
        live.set_assistant(Some(Assistant {
            admin_id: admin.id,
            admin_name: admin.name,
        }));
        live.cancel_turn();
        self.metrics.admin_takeovers.inc();
        Ok(())
    }

    async fn admin_session(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
    ) -> Result<SessionRecord, ChatError> {
        if !ctx.identity.is_admin() {
            return Err(ChatError::Forbidden);
        }
        self.store
            .get_session(session_id)
            .await?
            .ok_or(ChatError::SessionNotFound)
    }

    /// Records one admin action on `session` in the audit log (failures are logged).
    async fn audit_action(
        &self,
        admin: &Identity,
        kind: AuditKind,
        session: &SessionRecord,
        via: Via,
        details: &[(&str, String)],
    ) {
        let mut details = details.to_vec();
        details.push(("via", via.as_str().to_string()));
        let record = admin_record(
            admin,
            kind,
            Some(&session.id),
            Some(&session.user_id),
            &details,
        );
        record_logged(self.audit.as_ref(), record).await;
    }

    /// Makes `admin` the assisting admin of a session (WebSocket `admin_join` or HTTP takeover) and
    /// audits it as a `takeover`.
    pub async fn take_over(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<(), ChatError> {
        let (admin_id, admin_name) = (admin.user_id.as_str(), admin.name.as_str());
        let live = self.live_of(session);
        let current = live.assistant().or_else(|| {
            session.assisting_admin_id.clone().map(|id| Assistant {
                admin_id: id,
                admin_name: session.assisting_admin_name.clone().unwrap_or_default(),
            })
        });
        if let Some(current) = current
            && current.admin_id != admin_id
        {
            return Err(ChatError::AlreadyAssisted(format!(
                "{} ({})",
                current.admin_name, current.admin_id
            )));
        }
        self.assign(session, &live, admin_id, admin_name).await?;
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::AdminJoin(AdminJoinEvent {
                session_id: session.id.clone(),
                content: format!(
                    "Administrator {} has joined the session",
                    short_name(admin_name)
                ),
                sender: Sender::Admin,
                metadata: metadata([
                    ("admin_id", admin_id.to_string()),
                    ("admin_name", admin_name.to_string()),
                ]),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });
        self.audit_action(admin, AuditKind::Takeover, session, via, &[])
            .await;
        Ok(())
    }

    /// Ends the assistance of a session (WebSocket `admin_leave` or HTTP); the AI answers again. Audited
    /// as a `takeover_end`.
    pub async fn hand_back(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<(), ChatError> {
        let (admin_id, admin_name) = (admin.user_id.as_str(), admin.name.as_str());
        let live = self.live_of(session);
        self.store.set_assistance(&session.id, None).await?;
        live.set_assistant(None);
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::AdminLeave(AdminLeaveEvent {
                session_id: session.id.clone(),
                content: format!(
                    "Administrator {} has left the session",
                    short_name(admin_name)
                ),
                sender: Sender::Admin,
                metadata: metadata([
                    ("admin_id", admin_id.to_string()),
                    ("admin_name", admin_name.to_string()),
                ]),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });
        for conn in self.hub.clear_watchers(&session.id) {
            tracing::debug!(conn, session_id = %session.id, "admin stopped watching");
        }
        self.audit_action(admin, AuditKind::TakeoverEnd, session, via, &[])
            .await;
        Ok(())
    }

    /// The admin assisting a session: this node's live state, else the stored assistance.
    pub fn assistant_of(&self, session: &SessionRecord) -> Option<Assistant> {
        self.live_of(session).assistant().or_else(|| {
            session.assisting_admin_id.clone().map(|id| Assistant {
                admin_id: id,
                admin_name: session.assisting_admin_name.clone().unwrap_or_default(),
            })
        })
    }

    /// Moves the assistance of a session to `admin` (HTTP transfer). When another admin assists, that
    /// admin's `admin_leave` (`metadata.reason = "transfer"`) goes out first, their watching connections
    /// stop receiving the session, then the caller's `admin_join`; returns the previous admin. When nobody
    /// or the caller assists, this is [`take_over`](Self::take_over) and returns `None`. Audited as a
    /// `takeover_transfer` naming the previous admin (or as the `takeover` it falls back to).
    pub async fn transfer(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<Option<Assistant>, ChatError> {
        let (admin_id, admin_name) = (admin.user_id.as_str(), admin.name.as_str());
        let previous = match self.assistant_of(session) {
            Some(previous) if previous.admin_id != admin_id => previous,
            _ => {
                self.take_over(session, admin, via).await?;
                return Ok(None);
            }
        };
        let live = self.live_of(session);
        self.assign(session, &live, admin_id, admin_name).await?;
        for conn in self.hub.clear_watchers(&session.id) {
            tracing::debug!(conn, session_id = %session.id, "previous admin stopped watching (transfer)");
        }
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::AdminLeave(AdminLeaveEvent {
                session_id: session.id.clone(),
                content: format!(
                    "Administrator {} has left the session",
                    short_name(&previous.admin_name)
                ),
                sender: Sender::Admin,
                metadata: metadata([
                    ("admin_id", previous.admin_id.clone()),
                    ("admin_name", previous.admin_name.clone()),
                    ("reason", "transfer".to_string()),
                ]),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::AdminJoin(AdminJoinEvent {
                session_id: session.id.clone(),
                content: format!(
                    "Administrator {} has joined the session",
                    short_name(admin_name)
                ),
                sender: Sender::Admin,
                metadata: metadata([
                    ("admin_id", admin_id.to_string()),
                    ("admin_name", admin_name.to_string()),
                ]),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });
        let details = [
            ("previous_admin_id", previous.admin_id.clone()),
            ("previous_admin_name", previous.admin_name.clone()),
        ];
        self.audit_action(admin, AuditKind::TakeoverTransfer, session, via, &details)
            .await;
        Ok(Some(previous))
    }

    pub(super) async fn admin_join(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
        last_seq: Option<i64>,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, session_id).await?;
        self.take_over(&session, &ctx.identity, Via::WebSocket)
            .await?;
        // The admin sees the conversation (after `last_seq`, when given), then its live frames, with no gap
        // and no repeat: the connection starts watching while the session's releases are frozen.
        let after = last_seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        self.replay_to(ctx, &session, after, true).await;
        Ok(())
    }

    pub(super) async fn admin_leave(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, session_id).await?;
        let assisting = self.live_of(&session).assistant();
        if assisting
            .as_ref()
            .is_some_and(|a| a.admin_id != ctx.identity.user_id)
        {
            return Err(ChatError::AlreadyAssisted(
                assisting.map(|a| a.admin_name).unwrap_or_default(),
            ));
        }
        self.hub.unwatch(&session.id, ctx.conn_id);
        self.hand_back(&session, &ctx.identity, Via::WebSocket)
            .await
    }

    pub(super) async fn admin_message(
        &self,
        ctx: &ConnCtx,
        m: AdminMessage,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, &m.session_id).await?;
        let live = self.live_of(&session);
        match live.assistant() {
            Some(a) if a.admin_id == ctx.identity.user_id => {}
            Some(a) => {
                return Err(ChatError::AlreadyAssisted(format!(
                    "{} ({})",
                    a.admin_name, a.admin_id
                )));
            }
            None => return Err(ChatError::Forbidden),
        }
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let seq = live.reserve_seq();
        let mut record = MessageRecord::new(
            message_id(m.client_msg_id.as_deref()),
            seq,
            "admin",
            m.content.clone(),
        );
        record.client_msg_id = m.client_msg_id.clone();
        record.metadata = m.metadata.clone().unwrap_or_default();
        record
            .metadata
            .insert("admin_id".into(), ctx.identity.user_id.clone());
        record
            .metadata
            .insert("admin_name".into(), ctx.identity.name.clone());
        if let Err(err) = self.store.append_message(&session.id, &record).await {
            live.complete(self.bus.as_ref(), seq, None);
            return Err(err.into());
        }
        let frame = ServerMessage::AdminMessage(AdminMessageEvent {
            session_id: session.id.clone(),
            content: m.content,
            sender: Sender::Admin,
            client_msg_id: m.client_msg_id,
            metadata: record.metadata.clone(),
            seq: seq_i64(seq),
            timestamp: frames::now(),
        });
        live.complete(
            self.bus.as_ref(),
            seq,
            Some((frames::encode(&frame), Some(ctx.conn_id))),
        );
        Ok(())
    }
}
