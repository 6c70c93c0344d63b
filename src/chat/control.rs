//! Control frames: `cancel` stops the running answer (what was produced is kept), `typing_indicator` is
//! relayed between the user's devices and an assisting admin, `resume` replays what a connection missed.

use crate::hub::{BusMessage, Target};
use crate::protocol::ws::{Sender, ServerMessage, TypingIndicator, TypingIndicatorEvent};
use crate::store::AssistingAdmin;

use super::frames;
use super::resolve::Access;
use super::{Chat, ChatError, ConnCtx};

impl Chat {
    pub(super) async fn cancel(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
    ) -> Result<(), ChatError> {
        let (_session, live) = self.resolve(ctx, named_id, Access::Existing).await?;
        // Nothing running: nothing to do (the answer may have just finished).
        live.cancel_turn();
        Ok(())
    }

    pub(super) async fn typing(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: TypingIndicator,
    ) -> Result<(), ChatError> {
        let session = match named_id {
            Some(id) if ctx.identity().is_admin() => self
                .store
                .get_session(id)
                .await?
                .ok_or(ChatError::SessionNotFound)?,
            _ => self.resolve(ctx, named_id, Access::Existing).await?.0,
        };
        let is_owner = session.user_id == ctx.identity().user_id;
        let assisting =
            AssistingAdmin::of(&session).is_some_and(|a| a.id == ctx.identity().user_id);
        if !is_owner && !assisting {
            return Err(ChatError::NotOwner);
        }
        let mut metadata = m.metadata;
        if !is_owner {
            // The user sees who is typing: the assisting administrator's name, as the spec promises.
            metadata
                .get_or_insert_with(Default::default)
                .insert("admin_name".into(), ctx.identity().name.clone());
        }
        let frame = frames::encode(&ServerMessage::TypingIndicator(TypingIndicatorEvent {
            session_id: session.id.clone(),
            sender: if is_owner {
                Sender::User
            } else {
                Sender::Admin
            },
            user_id: Some(ctx.identity().user_id.clone()),
            metadata,
            timestamp: frames::now(),
        }));
        self.bus.publish(BusMessage {
            target: Target::Session {
                session_id: session.id.clone(),
                user_id: session.user_id.clone(),
            },
            frame,
            except: Some(ctx.conn_id),
        });
        Ok(())
    }

    pub(super) async fn resume(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        last_seq: i64,
    ) -> Result<(), ChatError> {
        self.check_message_rate(ctx)?;
        let (session, _live) = self.resolve(ctx, named_id, Access::Existing).await?;
        let after = u64::try_from(last_seq).unwrap_or(0);
        self.replay_to(ctx, &session, after, false).await;
        Ok(())
    }
}
