//! Admin takeover over WebSocket: `admin_join` (the admin watches the session, gets its history and its
//! live frames; the AI stays silent), `admin_message` (reaches every device of the user), `admin_leave`
//! (the AI answers again). One assisting admin at a time: takeovers and leaves are atomic check-and-sets
//! in the store ([`Store::claim_assistance`](crate::store::Store::claim_assistance)); only an explicit
//! transfer replaces another admin. The HTTP takeover routes call the same functions.
//!
//! While an admin assists, every connection of theirs (all their devices, also ones opened later and
//! whichever door the takeover came through) receives the session's live frames.
//!
//! Every takeover, leave and transfer is written to the audit log here, whichever door it came through
//! (WebSocket or the HTTP takeover routes), exactly once, with a `via` detail naming the door.

use crate::audit::{AuditKind, admin_record, record_logged};
use crate::auth::Identity;
use crate::protocol::ws::{
    AdminJoinEvent, AdminLeaveEvent, AdminMessage, AdminMessageEvent, Sender, ServerMessage,
};
use crate::store::{
    AppendOutcome, AssistingAdmin, Claim, MessageRecord, Release, Sender as StoredSender,
    SessionRecord,
};

use super::frames::{self, metadata, seq_i64};
use super::live::LiveSession;
use super::user_message::admin_message_id;
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

/// The admin of `identity` as the store records an assistance.
fn assisting(identity: &Identity) -> AssistingAdmin {
    AssistingAdmin {
        id: identity.user_id.clone(),
        name: identity.name.clone(),
    }
}

/// The `admin_join` event of `admin` with seq `seq`.
fn join_event(session_id: &str, admin: &AssistingAdmin, seq: u64) -> std::sync::Arc<str> {
    frames::encode(&ServerMessage::AdminJoin(AdminJoinEvent {
        session_id: session_id.to_string(),
        content: format!(
            "Administrator {} has joined the session",
            short_name(&admin.name)
        ),
        sender: Sender::Admin,
        metadata: metadata([
            ("admin_id", admin.id.clone()),
            ("admin_name", admin.name.clone()),
        ]),
        seq: seq_i64(seq),
        timestamp: frames::now(),
    }))
}

/// The `admin_leave` event of `admin` with seq `seq` (`metadata.reason`, when given).
fn leave_event(
    session_id: &str,
    admin: &AssistingAdmin,
    reason: Option<&str>,
    seq: u64,
) -> std::sync::Arc<str> {
    let mut meta = metadata([
        ("admin_id", admin.id.clone()),
        ("admin_name", admin.name.clone()),
    ]);
    if let Some(reason) = reason {
        meta.insert("reason".into(), reason.to_string());
    }
    frames::encode(&ServerMessage::AdminLeave(AdminLeaveEvent {
        session_id: session_id.to_string(),
        content: format!(
            "Administrator {} has left the session",
            short_name(&admin.name)
        ),
        sender: Sender::Admin,
        metadata: meta,
        seq: seq_i64(seq),
        timestamp: frames::now(),
    }))
}

/// A WebSocket connection joining the session it takes over, and the last seq it has seen.
type Joining<'a> = (&'a ConnCtx, u64);

impl Chat {
    /// This node starts acting on an assignment the store already holds: the AI stays silent from now
    /// on, so a running answer stops here.
    fn start_assisting(&self, live: &LiveSession, admin: AssistingAdmin) {
        live.set_assistant(Some(admin));
        live.cancel_turn();
        self.metrics.admin_takeovers.inc();
    }

    async fn admin_session(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
    ) -> Result<SessionRecord, ChatError> {
        if !ctx.identity().is_admin() {
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

    /// The store's check-and-set of the assistance (see [`Store::claim_assistance`](
    /// crate::store::Store::claim_assistance)); another admin holding the session is
    /// [`ChatError::AlreadyAssisted`].
    async fn claim_in_store(
        &self,
        session: &SessionRecord,
        me: &AssistingAdmin,
        replacing: Option<&str>,
    ) -> Result<(), ChatError> {
        match self
            .store
            .claim_assistance(&session.id, me, replacing)
            .await?
        {
            Claim::Held(current) => Err(ChatError::AlreadyAssisted(current)),
            Claim::Granted => Ok(()),
        }
    }

    /// Stops every admin watching `session` (the assistance ended: `why`).
    fn stop_watching(&self, session: &SessionRecord, why: &str) {
        for watcher in self.hub.clear_watchers(&session.id) {
            tracing::debug!(admin_id = %watcher, session_id = %session.id, why, "admin stopped watching");
        }
    }

    /// Makes `admin` the assisting admin of an active session (HTTP takeover) and audits it as a
    /// `takeover`. Refused with [`ChatError::AlreadyAssisted`] when another admin assists (checked and set
    /// atomically in the store, so of two racing admins exactly one wins) and with
    /// [`ChatError::SessionEnded`] for an ended session. Every connection of the admin starts receiving
    /// the session's live frames.
    pub async fn take_over(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<(), ChatError> {
        self.claim(session, admin, via, None).await
    }

    /// [`take_over`](Self::take_over); a `joining` connection first gets the session's frames after its
    /// last seq, then live frames, with no gap (`admin_join`).
    async fn claim(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
        joining: Option<Joining<'_>>,
    ) -> Result<(), ChatError> {
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let me = assisting(admin);
        self.claim_in_store(session, &me, None).await?;
        // An administrator now helps: the request is answered, and does not wait again after they leave.
        if session.help_requested
            && let Err(err) = self.store.set_help_requested(&session.id, false).await
        {
            tracing::warn!(session_id = %session.id, error = %err, "help request not cleared");
        }
        let live = self.live_of(session);
        self.start_assisting(&live, me.clone());
        match joining {
            Some((ctx, after)) => self.replay_to(ctx, session, after, true).await,
            None => self.hub.watch(&session.id, &me.id),
        }
        live.emit(self.bus.as_ref(), None, |seq| {
            join_event(&session.id, &me, seq)
        });
        self.audit_action(admin, AuditKind::Takeover, session, via, &[])
            .await;
        Ok(())
    }

    /// Ends `admin`'s assistance of a session (WebSocket `admin_leave` or HTTP `DELETE`): the store clears
    /// it only if `admin` assists (atomically); then an `admin_leave` goes to the session, the AI answers
    /// again and it is audited as a `takeover_end`. Returns false, and does nothing, when nobody assists;
    /// [`ChatError::AssistedByOther`] when another admin does.
    pub async fn leave(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<bool, ChatError> {
        let live = self.live_of(session);
        match self
            .store
            .release_assistance(&session.id, &admin.user_id)
            .await?
        {
            Release::Held(current) => return Err(ChatError::AssistedByOther(current)),
            Release::NotAssisted => {
                live.set_assistant(None);
                return Ok(false);
            }
            Release::Released => {}
        }
        live.set_assistant(None);
        let me = assisting(admin);
        live.emit(self.bus.as_ref(), None, |seq| {
            leave_event(&session.id, &me, None, seq)
        });
        self.stop_watching(session, "leave");
        self.audit_action(admin, AuditKind::TakeoverEnd, session, via, &[])
            .await;
        Ok(true)
    }

    /// Moves the assistance of an active session to `admin` (HTTP transfer), the one way to replace
    /// another assisting admin. When another admin assists, that admin's `admin_leave`
    /// (`metadata.reason = "transfer"`) goes out first, their connections stop receiving the session, then
    /// the caller's `admin_join`; returns the previous admin. When nobody or the caller assists, this is
    /// [`take_over`](Self::take_over) and returns `None`. Audited as a `takeover_transfer` naming the
    /// previous admin (or as the `takeover` it falls back to).
    pub async fn transfer(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        via: Via,
    ) -> Result<Option<AssistingAdmin>, ChatError> {
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let me = assisting(admin);
        match AssistingAdmin::of(session) {
            Some(previous) if previous.id != me.id => {
                self.hand(session, admin, Some(previous.clone()), me, via)
                    .await?;
                Ok(Some(previous))
            }
            _ => {
                self.take_over(session, admin, via).await?;
                Ok(None)
            }
        }
    }

    /// `admin` hands a session to the administrator `to` (`POST .../transfer?to_admin_id=`): allowed when
    /// `admin` assists it or nobody does; [`ChatError::AssistedByOther`] when another admin does. The
    /// session gets `admin`'s `admin_leave` (reason `transfer`, when `admin` assisted) and `to`'s
    /// `admin_join`; `to`'s connections start receiving it; audited as a `takeover_transfer`.
    pub async fn hand_over(
        &self,
        session: &SessionRecord,
        admin: &Identity,
        to: AssistingAdmin,
        via: Via,
    ) -> Result<(), ChatError> {
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let previous = match AssistingAdmin::of(session) {
            Some(current) if current.id != admin.user_id => {
                return Err(ChatError::AssistedByOther(current));
            }
            current => current,
        };
        self.hand(session, admin, previous, to, via).await
    }

    /// Replaces `previous` (or nobody) by `next` as the session's assisting admin, atomically in the
    /// store (if a third admin took the session meanwhile, that one keeps it), with the events and the
    /// audit entry (by `acting`) of a transfer.
    async fn hand(
        &self,
        session: &SessionRecord,
        acting: &Identity,
        previous: Option<AssistingAdmin>,
        next: AssistingAdmin,
        via: Via,
    ) -> Result<(), ChatError> {
        self.claim_in_store(session, &next, previous.as_ref().map(|p| p.id.as_str()))
            .await?;
        let live = self.live_of(session);
        self.start_assisting(&live, next.clone());
        if let Some(previous) = &previous {
            live.emit(self.bus.as_ref(), None, |seq| {
                leave_event(&session.id, previous, Some("transfer"), seq)
            });
        }
        self.stop_watching(session, "transfer");
        self.hub.watch(&session.id, &next.id);
        live.emit(self.bus.as_ref(), None, |seq| {
            join_event(&session.id, &next, seq)
        });
        let mut details = vec![
            ("admin_id", next.id.clone()),
            ("admin_name", next.name.clone()),
        ];
        if let Some(previous) = previous {
            details.push(("previous_admin_id", previous.id));
            details.push(("previous_admin_name", previous.name));
        }
        self.audit_action(acting, AuditKind::TakeoverTransfer, session, via, &details)
            .await;
        Ok(())
    }

    pub(super) async fn admin_join(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
        last_seq: Option<i64>,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, session_id).await?;
        // The admin sees the conversation (after `last_seq`, when given), then its live frames.
        let after = last_seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        self.claim(&session, ctx.identity(), Via::WebSocket, Some((ctx, after)))
            .await
    }

    pub(super) async fn admin_leave(
        &self,
        ctx: &ConnCtx,
        session_id: &str,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, session_id).await?;
        self.leave(&session, ctx.identity(), Via::WebSocket)
            .await
            .map(|_| ())
    }

    /// Refuses an admin frame about `session` unless the caller assists it (as the store records it).
    fn check_assisting(&self, session: &SessionRecord, ctx: &ConnCtx) -> Result<(), ChatError> {
        match AssistingAdmin::of(session) {
            Some(a) if a.id == ctx.identity().user_id => Ok(()),
            Some(a) => Err(ChatError::AlreadyAssisted(a)),
            None => Err(ChatError::NotOwner),
        }
    }

    pub(super) async fn admin_message(
        &self,
        ctx: &ConnCtx,
        m: AdminMessage,
    ) -> Result<(), ChatError> {
        let session = self.admin_session(ctx, &m.session_id).await?;
        self.check_assisting(&session, ctx)?;
        let live = self.live_of(&session);
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let seq = live.reserve_seq();
        let mut record = MessageRecord::new(
            admin_message_id(&ctx.identity().user_id, m.client_msg_id.as_deref()),
            seq,
            StoredSender::Admin,
            m.content.clone(),
        );
        record.client_msg_id = m.client_msg_id.clone();
        record.metadata = m.metadata.clone().unwrap_or_default();
        record
            .metadata
            .insert("admin_id".into(), ctx.identity().user_id.clone());
        record
            .metadata
            .insert("admin_name".into(), ctx.identity().name.clone());
        let outcome = match self.store.append_message(&session.id, &record).await {
            Ok(outcome) => outcome,
            Err(err) => {
                live.complete(self.bus.as_ref(), seq, None);
                return Err(err.into());
            }
        };
        let frame = |seq: u64, metadata| {
            ServerMessage::AdminMessage(AdminMessageEvent {
                session_id: session.id.clone(),
                content: m.content.clone(),
                sender: Sender::Admin,
                client_msg_id: m.client_msg_id.clone(),
                metadata,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        };
        if outcome == AppendOutcome::Duplicate {
            // A retry of a message already delivered: the sender alone hears of it, the user not again.
            live.complete(self.bus.as_ref(), seq, None);
            let original = self.stored_seq(&session.id, &record.id, seq).await?;
            let mut metadata = record.metadata.clone();
            metadata.insert("duplicate".into(), "true".into());
            self.send(ctx, &frame(original, metadata));
            return Ok(());
        }
        live.complete(
            self.bus.as_ref(),
            seq,
            Some((
                frames::encode(&frame(seq, record.metadata.clone())),
                Some(ctx.conn_id),
            )),
        );
        Ok(())
    }
}
