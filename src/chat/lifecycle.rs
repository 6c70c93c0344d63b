//! Ending a session from outside a connection (HTTP `POST /sessions/{id}/end`, user deletion): the store
//! records the end once, the session figures move once, the live state is dropped (a running answer
//! stops) and every device of the session and every watching admin receives a `notification` with
//! `metadata.event = "session_ended"`.

use crate::hub::{BusMessage, Target};
use crate::protocol::ws::{Notification, Sender, ServerMessage};
use crate::store::{EndOutcome, SessionRecord, StoreError};

use super::Chat;
use super::frames::{self, metadata};

/// Text of the `session_ended` notification.
const ENDED_TEXT: &str = "This session has ended";

impl Chat {
    /// Ends `session`. Idempotent: only the call that really ends it counts it in
    /// `chatbox_sessions_ended_total`, lowers `chatbox_active_sessions_total` (never below zero) and
    /// notifies the devices; every call drops the live state.
    pub async fn end_session(&self, session: &SessionRecord) -> Result<EndOutcome, StoreError> {
        let outcome = self
            .store
            .end_session(&session.id, crate::store::now())
            .await?;
        if outcome.ended_now {
            self.metrics.sessions_ended.inc();
            self.metrics.active_session_ended();
            tracing::info!(session_id = %session.id, user_id = %session.user_id, "session ended");
            let frame = frames::encode(&ServerMessage::Notification(Notification {
                session_id: Some(session.id.clone()),
                content: ENDED_TEXT.into(),
                sender: Sender::System,
                metadata: Some(metadata([("event", "session_ended".to_string())])),
                timestamp: frames::now(),
            }));
            self.bus.publish(BusMessage {
                target: Target::Session {
                    session_id: session.id.clone(),
                    user_id: session.user_id.clone(),
                },
                frame,
                except: None,
            });
        }
        self.live.remove(&session.id);
        self.hub.clear_watchers(&session.id);
        Ok(outcome)
    }
}
