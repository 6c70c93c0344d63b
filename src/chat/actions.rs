//! Admin actions on a session from outside a connection (the HTTP routes): take over, leave, transfer,
//! hand over, end. They change the session's live state, so they run where the session's user is served:
//! on this node, or in cluster mode on the owner node, asked through Redis and answered the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::cluster::{Caller, Owner};
use crate::llm::LlmError;
use crate::store::{AssistingAdmin, SessionRecord, StoreError};

use super::frames::{self, Chunk, seq_i64};
use super::{Chat, ChatError, Via};

/// How long an action waits for the owner node's answer.
const CALL_WAIT: Duration = Duration::from_secs(10);

/// An action on a session, by an admin (or the session's owner, for `End`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAction {
    /// Start assisting (the AI pauses).
    TakeOver(Caller),
    /// Stop assisting (the AI answers again).
    Leave(Caller),
    /// Take the session over from the admin assisting it.
    Transfer(Caller),
    /// Hand the session to the admin `to_id` (`to_name`).
    HandOver {
        /// The admin acting.
        admin: Caller,
        /// The admin who takes it.
        to_id: String,
        /// Their display name.
        to_name: String,
    },
    /// End the answer of a turn whose node died while running it.
    EndOrphanedTurn(OrphanedTurn),
    /// End the session.
    End,
}

/// What a node records of each turn it runs, for another node to end it if it dies first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanedTurn {
    /// The `client_msg_id` of the message answered.
    pub client_msg_id: Option<String>,
    /// The model answering.
    pub model_id: String,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionOutcome {
    /// Taken over or handed over.
    Done,
    /// Left; `true` when the caller was assisting.
    Left(bool),
    /// Transferred from this admin (`(id, name)`), or taken over when nobody assisted.
    Transferred(Option<(String, String)>),
    /// Ended; `true` when this call ended it.
    Ended(bool),
}

/// A refusal as it travels back from the owner node.
#[derive(Debug, Serialize, Deserialize)]
enum Refusal {
    SessionNotFound,
    NotOwner,
    SessionEnded,
    Forbidden,
    AlreadyAssisted(String, String),
    AssistedByOther(String, String),
    Failed(String),
}

impl From<&ChatError> for Refusal {
    fn from(err: &ChatError) -> Self {
        match err {
            ChatError::SessionNotFound | ChatError::Store(StoreError::NotFound) => {
                Self::SessionNotFound
            }
            ChatError::NotOwner => Self::NotOwner,
            ChatError::SessionEnded | ChatError::Store(StoreError::SessionEnded) => {
                Self::SessionEnded
            }
            ChatError::Forbidden => Self::Forbidden,
            ChatError::AlreadyAssisted(a) => Self::AlreadyAssisted(a.id.clone(), a.name.clone()),
            ChatError::AssistedByOther(a) => Self::AssistedByOther(a.id.clone(), a.name.clone()),
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<Refusal> for ChatError {
    fn from(refusal: Refusal) -> Self {
        let admin = |id, name| AssistingAdmin { id, name };
        match refusal {
            Refusal::SessionNotFound => Self::SessionNotFound,
            Refusal::NotOwner => Self::NotOwner,
            Refusal::SessionEnded => Self::SessionEnded,
            Refusal::Forbidden => Self::Forbidden,
            Refusal::AlreadyAssisted(id, name) => Self::AlreadyAssisted(admin(id, name)),
            Refusal::AssistedByOther(id, name) => Self::AssistedByOther(admin(id, name)),
            Refusal::Failed(text) => Self::Store(StoreError::Setup(format!("owner node: {text}"))),
        }
    }
}

/// A call to the owner node.
#[derive(Debug, Serialize, Deserialize)]
struct Call {
    session_id: String,
    action: SessionAction,
}

impl Chat {
    /// Runs `action` on `session` where its user is served, and returns what it did.
    pub async fn act(
        &self,
        session: &SessionRecord,
        action: SessionAction,
    ) -> Result<ActionOutcome, ChatError> {
        let Some(cluster) = &self.cluster else {
            return self.act_here(session, action).await;
        };
        let Owner::Node(owner) = cluster.owner(&session.user_id).await else {
            return self.act_here(session, action).await;
        };
        let call = Call {
            session_id: session.id.clone(),
            action,
        };
        let payload = serde_json::to_string(&call).unwrap_or_default();
        let answer = cluster
            .call(owner, payload, CALL_WAIT)
            .await
            .map_err(|e| ChatError::Store(StoreError::Setup(e.to_string())))?;
        let answer: Result<ActionOutcome, Refusal> = serde_json::from_str(&answer)
            .map_err(|e| ChatError::Store(StoreError::Corrupt(format!("owner's answer: {e}"))))?;
        answer.map_err(ChatError::from)
    }

    /// Answers a call of another node: runs the action here, on the session as stored now.
    pub(super) async fn answer_call(&self, payload: &str) -> String {
        let answer: Result<ActionOutcome, Refusal> = async {
            let call: Call = serde_json::from_str(payload)
                .map_err(|e| Refusal::Failed(format!("malformed call: {e}")))?;
            let session = self
                .store
                .get_session(&call.session_id)
                .await
                .map_err(|e| Refusal::from(&ChatError::Store(e)))?
                .ok_or(Refusal::SessionNotFound)?;
            self.act_here(&session, call.action)
                .await
                .map_err(|e| Refusal::from(&e))
        }
        .await;
        serde_json::to_string(&answer).unwrap_or_default()
    }

    async fn act_here(
        &self,
        session: &SessionRecord,
        action: SessionAction,
    ) -> Result<ActionOutcome, ChatError> {
        let identity = |caller: Caller| Identity::from(caller);
        match action {
            SessionAction::TakeOver(admin) => self
                .take_over(session, &identity(admin), Via::Http)
                .await
                .map(|()| ActionOutcome::Done),
            SessionAction::Leave(admin) => self
                .leave(session, &identity(admin), Via::Http)
                .await
                .map(ActionOutcome::Left),
            SessionAction::Transfer(admin) => self
                .transfer(session, &identity(admin), Via::Http)
                .await
                .map(|from| ActionOutcome::Transferred(from.map(|a| (a.id, a.name)))),
            SessionAction::HandOver {
                admin,
                to_id,
                to_name,
            } => {
                let to = AssistingAdmin {
                    id: to_id,
                    name: to_name,
                };
                self.hand_over(session, &identity(admin), to, Via::Http)
                    .await
                    .map(|()| ActionOutcome::Done)
            }
            SessionAction::EndOrphanedTurn(turn) => {
                self.end_orphaned_turn(session, &turn);
                Ok(ActionOutcome::Done)
            }
            SessionAction::End => self
                .end_session(session)
                .await
                .map(|outcome| ActionOutcome::Ended(outcome.ended_now))
                .map_err(ChatError::from),
        }
    }
}

impl Chat {
    /// Ends a turn that a dead node was running (`record` as it recorded it): where the session's user is
    /// served now, every device gets the final chunk (`finish_reason="error"`) and the error frame of a
    /// broken stream. What was streamed is in the store as a partial answer (checkpoints).
    pub(super) async fn end_orphan(&self, session_id: &str, record: &str) {
        let Ok(turn) = serde_json::from_str::<OrphanedTurn>(record) else {
            tracing::warn!(session_id, "unreadable record of an orphaned turn");
            return;
        };
        let session = match self.store.get_session(session_id).await {
            Ok(Some(session)) if session.is_active() => session,
            Ok(_) => return,
            Err(err) => {
                tracing::error!(session_id, error = %err, "orphaned turn not ended: store failed");
                return;
            }
        };
        if let Err(err) = self
            .act(&session, SessionAction::EndOrphanedTurn(turn))
            .await
        {
            tracing::error!(session_id, error = %err, "orphaned turn not ended");
        }
    }

    fn end_orphaned_turn(&self, session: &SessionRecord, turn: &OrphanedTurn) {
        let live = self.live_of(session);
        let client_msg_id = turn.client_msg_id.as_deref();
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(
                &Chunk {
                    session_id: &session.id,
                    content: "",
                    model_id: &turn.model_id,
                    client_msg_id,
                    done: true,
                    extra: vec![("finish_reason", "error".into())],
                }
                .frame(seq),
            )
        });
        let err = ChatError::Llm(LlmError::StreamBroken {
            provider: turn.model_id.clone(),
            detail: "the node running the turn stopped".into(),
        });
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&frames::error(
                &err,
                Some(&session.id),
                client_msg_id,
                Some(seq_i64(seq)),
            ))
        });
    }
}
