//! `user_message`: rate limit, the session (created on first write), stored before anything is
//! acknowledged, echoed to the user's other devices, named, then answered by the model unless an admin
//! assists the session.

use std::time::Instant;

use crate::protocol::ws::{Sender, ServerMessage, UserMessage, UserMessageEcho};
use crate::store::{AppendOutcome, MessageRecord, Sender as StoredSender};

use super::frames::{self, seq_i64};
use super::naming::session_name;
use super::resolve::Access;
use super::turns::PendingTurn;
use super::{Chat, ChatError, ConnCtx};

/// The store id of a user's message: derived from the client's id when it sent one (so a retry is
/// recognised), else random.
pub(super) fn message_id(client_msg_id: Option<&str>) -> String {
    match client_msg_id {
        Some(id) => format!("c-{id}"),
        None => format!("m-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// The store id of an administrator's message: client ids are unique per sender, so an admin's id lives
/// apart from the user's (`a-<admin id>-<client id>`), else random.
pub(super) fn admin_message_id(admin_id: &str, client_msg_id: Option<&str>) -> String {
    match client_msg_id {
        Some(id) => format!("a-{admin_id}-{id}"),
        None => message_id(None),
    }
}

impl Chat {
    /// The per-user message rate limit (`chatbox.rate_limit` per minute), shared by everything a user may
    /// send that costs the server work: messages, file and voice uploads (a voice message is answered),
    /// and `resume` (a replay reads the session).
    pub(super) fn check_message_rate(&self, ctx: &ConnCtx) -> Result<(), ChatError> {
        self.message_limiter
            .check(&ctx.identity().user_id)
            .map_err(|wait| {
                ChatError::RateLimited(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
            })
    }

    /// The seq under which message `id` of `session_id` is stored (`fallback` if it is not found): what a
    /// retried message's duplicate echo carries.
    pub(super) async fn stored_seq(
        &self,
        session_id: &str,
        id: &str,
        fallback: u64,
    ) -> Result<u64, ChatError> {
        Ok(self
            .store
            .messages(session_id, None)
            .await?
            .into_iter()
            .find(|stored| stored.id == id)
            .map_or(fallback, |stored| stored.seq))
    }

    pub(super) async fn user_message(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: UserMessage,
    ) -> Result<Option<PendingTurn>, ChatError> {
        let started = Instant::now();
        self.check_message_rate(ctx)?;
        let (session, live) = self.resolve(ctx, named_id, Access::Write).await?;
        let seq = live.reserve_seq();
        let mut record = MessageRecord::new(
            message_id(m.client_msg_id.as_deref()),
            seq,
            StoredSender::User,
            m.content.clone(),
        );
        record.client_msg_id = m.client_msg_id.clone();
        record.metadata = m.metadata.clone().unwrap_or_default();
        let echo = |seq: u64, duplicate: bool| {
            let mut meta = m.metadata.clone();
            if duplicate {
                meta.get_or_insert_with(Default::default)
                    .insert("duplicate".into(), "true".into());
            }
            ServerMessage::UserMessage(UserMessageEcho {
                session_id: session.id.clone(),
                content: m.content.clone(),
                sender: Sender::User,
                user_id: Some(ctx.identity().user_id.clone()),
                client_msg_id: m.client_msg_id.clone(),
                metadata: meta,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        };
        match self.store.append_message(&session.id, &record).await {
            Ok(AppendOutcome::Stored) => {
                live.complete(
                    self.bus.as_ref(),
                    seq,
                    Some((frames::encode(&echo(seq, false)), Some(ctx.conn_id))),
                );
            }
            Ok(AppendOutcome::Duplicate) => {
                live.complete(self.bus.as_ref(), seq, None);
                // A retry: the original is stored; say so to the sender only.
                let original = self.stored_seq(&session.id, &record.id, seq).await?;
                self.send(ctx, &echo(original, true));
                if live.assistant().is_some() {
                    return Ok(None);
                }
                // Answered unless the original's turn ended before any answer was stored (the model
                // failed, or it was cancelled before the first token): the turn checks that under the
                // session's turn lock, so a message is answered once, and a retry after a failure is.
                return Ok(Some(PendingTurn::queue(
                    session,
                    live,
                    m.client_msg_id,
                    started,
                    true,
                )));
            }
            Err(err) => {
                live.complete(self.bus.as_ref(), seq, None);
                return Err(err.into());
            }
        }
        // An unreadable name is kept (the old key may be configured again), not replaced.
        if session.name.is_empty()
            && !session.name_unreadable
            && let Err(err) = self
                .store
                .set_name(&session.id, &session_name(&m.content))
                .await
        {
            tracing::warn!(session_id = %session.id, error = %err, "session name not stored");
        }
        if live.assistant().is_some() {
            return Ok(None);
        }
        Ok(Some(PendingTurn::queue(
            session,
            live,
            m.client_msg_id,
            started,
            false,
        )))
    }
}
