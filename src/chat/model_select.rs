//! `model_select`: the model must be configured; the choice is stored and confirmed to every device.

use crate::protocol::ws::{ConnectionStatus, ModelSelect, Sender, ServerMessage};

use super::frames::{self, seq_i64};
use super::resolve::Access;
use super::{Chat, ChatError, ConnCtx};

impl Chat {
    pub(super) async fn model_select(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: ModelSelect,
    ) -> Result<(), ChatError> {
        if !self.llm.has_model(&m.model_id) {
            return Err(ChatError::UnknownModel(m.model_id));
        }
        let (session, live) = self.resolve(ctx, named_id, Access::Write).await?;
        self.store.set_model(&session.id, &m.model_id).await?;
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::ConnectionStatus(ConnectionStatus {
                session_id: Some(session.id.clone()),
                user_id: None,
                content: Some(format!("Model changed to {}", m.model_id)),
                model_id: Some(m.model_id.clone()),
                models: None,
                sender: Sender::Ai,
                metadata: None,
                last_seq: None,
                seq: Some(seq_i64(seq)),
                timestamp: frames::now(),
            }))
        });
        Ok(())
    }
}
