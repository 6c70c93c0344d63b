//! Which session a frame is about: the one it names when the caller owns it, else the caller's active
//! session (created race-free on first write, with the id every device was told at connect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{AssistingAdmin, SessionRecord, new_session_id};

use super::live::LiveSession;
use super::{Chat, ChatError, ConnCtx};

/// Session ids announced to users who have no active session yet, so all their devices converge on one.
/// A reservation is forgotten when its session is created, or when it was not used for the idle time and
/// its user has no connection left (see [`expire`](Self::expire)).
#[derive(Default)]
pub struct Reservations {
    ids: Mutex<HashMap<String, (String, Instant)>>,
}

impl Reservations {
    /// The id reserved for `user_id`, reserving one if needed.
    pub fn reserved_for(&self, user_id: &str) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let entry = ids
            .entry(user_id.to_string())
            .or_insert_with(|| (new_session_id(), Instant::now()));
        entry.1 = Instant::now();
        entry.0.clone()
    }

    /// Forgets the reservation once the session exists.
    pub fn release(&self, user_id: &str, session_id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.get(user_id).is_some_and(|(id, _)| id == session_id) {
            ids.remove(user_id);
        }
    }

    /// Forgets reservations unused for `idle` whose user is not `connected` (a connected device was told
    /// the id and may still write); returns how many.
    pub fn expire(&self, idle: Duration, connected: impl Fn(&str) -> bool) -> usize {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let before = ids.len();
        ids.retain(|user, (_, used)| used.elapsed() < idle || connected(user));
        before - ids.len()
    }

    /// Number of reservations held.
    pub fn len(&self) -> usize {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).len()
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
    /// Drops what memory holds for sessions and users that nothing uses any more: live session states
    /// idle for `WS_SESSION_IDLE` with no connection of their user and no watching admin, and reservations
    /// unused as long whose user has no connection. Returns (sessions, reservations) dropped.
    pub fn sweep_idle(&self) -> (usize, usize) {
        let idle = self.settings.ws.session_idle;
        let sessions = self.live.evict_idle(idle, |s| {
            self.hub.user_is_connected(&s.user_id) || self.hub.has_watchers(&s.id)
        });
        let reservations = self
            .sessions
            .expire(idle, |user| self.hub.user_is_connected(user));
        if sessions + reservations > 0 {
            tracing::debug!(sessions, reservations, "idle session state dropped");
        }
        (sessions, reservations)
    }

    /// Number of reserved session ids held (users told an id who have not written yet).
    pub fn reservation_count(&self) -> usize {
        self.sessions.len()
    }

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

    /// The live state of a stored session. A session loaded here continues above its stored seq mark, and
    /// when it is loaded (first use on this node, or after a restart) with an assisting admin, that admin's
    /// connections watch the session again. (`session` must be fresh: read by the caller just before, well
    /// within the idle time after which an unused live state is dropped, so its mark is not older than the
    /// dropped state's.)
    pub(super) fn live_of(&self, session: &SessionRecord) -> Arc<LiveSession> {
        // An ended session has nobody to assist: its live state (a replay) restores no assistant.
        let assistant = AssistingAdmin::of(session).filter(|_| session.is_active());
        let watcher = assistant.as_ref().map(|a| a.id.clone());
        let (live, created) = self.live.get_or_load(
            &session.id,
            &session.user_id,
            session.seq_mark.max(session.last_seq),
            assistant,
        );
        if created && let Some(admin_id) = watcher {
            self.hub.watch(&session.id, &admin_id);
        }
        live
    }

    /// Resolves the session a frame from `ctx` is about: `named_id` is the session id the frame named, if
    /// any (Go clients make up their own ids, so it may be unknown).
    pub(super) async fn resolve(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        access: Access,
    ) -> Result<(SessionRecord, Arc<LiveSession>), ChatError> {
        let user_id = &ctx.identity().user_id;
        // An unknown id this connection sent before: the session it stood for, while that one is active.
        if let Some(session_id) = named_id.and_then(|id| ctx.aliased(id))
            && let Some(session) = self.store.get_session(&session_id).await?
            && session.is_active()
            && &session.user_id == user_id
        {
            let live = self.live_of(&session);
            return Ok((session, live));
        }
        let named = match named_id {
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
                if let Some(id) = named_id {
                    ctx.remember_alias(id, &session.id);
                }
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
                if let Some(id) = named_id {
                    ctx.remember_alias(id, &active.session.id);
                }
                let live = self.live_of(&active.session);
                Ok((active.session, live))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_expire_only_when_unused_and_unconnected() {
        let r = Reservations::default();
        let a = r.reserved_for("a");
        r.reserved_for("b");
        assert_eq!(r.reserved_for("a"), a, "stable while held");
        assert_eq!(r.expire(Duration::from_secs(3600), |_| false), 0);
        assert_eq!(r.expire(Duration::ZERO, |u| u == "a"), 1);
        assert_eq!(r.len(), 1);
        assert_eq!(r.reserved_for("a"), a);
        assert_eq!(r.expire(Duration::ZERO, |_| false), 1);
        assert_ne!(
            r.reserved_for("a"),
            a,
            "an expired reservation is not reused"
        );
    }
}
