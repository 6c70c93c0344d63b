//! `help_request`: flags the session, tells every connected admin live, and confirms to the user.
//! Notifications (live admin event, email, webhook, SMS) are limited per session; email, webhook and SMS are
//! delivered in the background and never affect the reply. The confirmation is always sent.

use crate::hub::{BusMessage, Target};
use crate::notify::HelpEvent;
use crate::protocol::ws::{ConnectionStatus, HelpRequest, HelpRequestEvent, Sender, ServerMessage};

use super::frames;
use super::resolve::Access;
use super::{Chat, ChatError, ConnCtx};

impl Chat {
    pub(super) async fn help_request(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: HelpRequest,
    ) -> Result<(), ChatError> {
        let (session, _live) = self.resolve(ctx, named_id, Access::Existing).await?;
        self.store.set_help_requested(&session.id, true).await?;
        if self
            .help_limiter
            .check(&format!("help_request:{}", session.id))
            .is_ok()
        {
            let frame = frames::encode(&ServerMessage::HelpRequest(HelpRequestEvent {
                session_id: session.id.clone(),
                user_id: ctx.identity().user_id.clone(),
                content: m.content.clone(),
                sender: Sender::User,
                metadata: Some(frames::metadata([(
                    "user_name",
                    ctx.identity().name.clone(),
                )])),
                timestamp: frames::now(),
            }));
            self.bus.publish(BusMessage {
                target: Target::Admins,
                frame,
                except: None,
            });
            self.notifier.help_requested(HelpEvent::now(
                ctx.identity().user_id.clone(),
                Some(ctx.identity().name.clone()).filter(|name| *name != ctx.identity().user_id),
                session.id.clone(),
            ));
        } else {
            tracing::info!(session_id = %session.id, "help notification skipped by the per-session limit");
            self.notifier.help_limited(&session.id);
        }
        self.send(
            ctx,
            &ServerMessage::ConnectionStatus(ConnectionStatus {
                session_id: Some(session.id.clone()),
                user_id: None,
                content: Some(
                    "Help request sent. An administrator will join your session shortly.".into(),
                ),
                model_id: None,
                models: None,
                sender: Sender::Ai,
                metadata: None,
                last_seq: None,
                seq: None,
                timestamp: frames::now(),
            }),
        );
        Ok(())
    }
}
