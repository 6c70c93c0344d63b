//! Which session a frame is about: the one it names when the caller owns it, else the caller's active
//! session (created race-free on first write, with the id every device was told at connect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::{AssistingAdmin, SessionRecord, new_session_id};

use super::live::LiveSession;
use super::{Chat, ChatError, ConnCtx};

/// Session ids announced to users who have no active session yet, so all their devices converge on one.
#[derive(Default)]
pub struct Reservations {
    ids: Mutex<HashMap<String, String>>,
}

impl Reservations {
    /// The id reserved for `user_id`, reserving one if needed.
    pub fn reserved_for(&self, user_id: &str) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.entry(user_id.to_string())
            .or_insert_with(new_session_id)
            .clone()
    }

    /// Forgets the reservation once the session exists.
    pub fn release(&self, user_id: &str, session_id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.get(user_id).is_some_and(|id| id == session_id) {
            ids.remove(user_id);
        }
    }
}

/// What a frame may do with the session it resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create the user's active session when needed (`user_message`, `model_select`).
    Write,
    /// Only an existing session.
    Existing,
}

impl Chat {
    /// The user's active session, if there is one.
    pub(super) async fn active_session(
        &self,
        user_id: &str,
    ) -> Result<Option<SessionRecord>, ChatError> {
        match self.store.active_session_id(user_id).await? {
            Some(id) => Ok(self.store.get_session(&id).await?.filter(|s| s.is_active())),
            None => Ok(None),
        }
    }

    /// The live state of a stored session. When it is loaded (first use on this node, or after a
    /// restart) with an assisting admin, that admin's connections watch the session again.
    pub(super) fn live_of(&self, session: &SessionRecord) -> Arc<LiveSession> {
        let assistant = AssistingAdmin::of(session);
        let watcher = assistant.as_ref().map(|a| a.id.clone());
        let (live, created) =
            self.live
                .get_or_load(&session.id, &session.user_id, session.last_seq, assistant);
        if created
            && session.is_active()
            && let Some(admin_id) = watcher
        {
            self.hub.watch(&session.id, &admin_id);
        }
        live
    }

    /// Resolves the session a frame from `ctx` is about.
    pub(super) async fn resolve(
        &self,
        ctx: &ConnCtx,
        hint: Option<&str>,
        access: Access,
    ) -> Result<(SessionRecord, Arc<LiveSession>), ChatError> {
        let user_id = &ctx.identity.user_id;
        let named = match hint {
            Some(id) => self.store.get_session(id).await?,
            None => None,
        };
        if let Some(session) = named {
            if &session.user_id != user_id {
                return Err(ChatError::NotOwner);
            }
            if access == Access::Write && !session.is_active() {
                return Err(ChatError::SessionEnded);
            }
            let live = self.live_of(&session);
            return Ok((session, live));
        }
        // Unknown or missing id (the Go clients send their own random ids): the user's active session.
        match access {
            Access::Existing => {
                let session = self
                    .active_session(user_id)
                    .await?
                    .ok_or(ChatError::SessionNotFound)?;
                let live = self.live_of(&session);
                Ok((session, live))
            }
            Access::Write => {
                let reserved = self.sessions.reserved_for(user_id);
                let active = self
                    .store
                    .get_or_create_active(user_id, Some(&reserved), self.llm.default_model_id())
                    .await?;
                if active.created {
                    self.metrics.sessions_created.inc();
                    self.metrics.active_sessions.inc();
                    tracing::info!(user_id = %user_id, session_id = %active.session.id, "session created");
                }
                self.sessions.release(user_id, &active.session.id);
                let live = self.live_of(&active.session);
                Ok((active.session, live))
            }
        }
    }
}
