//! Admin actions on a session over HTTP: `POST /admin/takeover/{sessionId}` (start assisting; the AI
//! pauses), `DELETE` (stop; the AI answers again), `POST .../transfer` (take over from another
//! administrator, or hand the session to a named one), `POST /admin/sessions/{sessionId}/end` (end the session) and `GET
//! /admin/sessions/{sessionId}` (read it with its messages, ended ones too); the last two are audited here.
//! The live side (events to the user's devices, the paused AI) is the chat service's; these handlers
//! check the session and map refusals to the spec's 400 texts. Each action is audited by the chat service
//! (`via=http`), the one place that records takeovers whichever door they come through. The
//! administrator's display name is the token's `name` claim (else the user id).

use std::sync::Arc;

use poem::Request;

use poem_openapi::payload::Json;

use crate::audit::AuditKind;
use crate::chat::{ActionOutcome, SessionAction};
use crate::cluster::Caller;
use crate::protocol::http::{
    AdminEndSessionResponse, AdminEndTakeoverResponse, AdminGetSessionResponse,
    AdminTakeoverResponse, AdminTransferTakeoverResponse, SessionDetail, StatusResponse,
    TakeoverResponse,
};
use crate::state::AppState;
use crate::store::{AssistingAdmin, SessionRecord};

use super::admin::audit;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::views::session_detail;
use super::{Handlers, operations};

/// Any user's session `session_id` (the admin routes); 404 `Session not found` when there is none.
pub(super) async fn session(state: &AppState, session_id: &str) -> Result<SessionRecord, ApiError> {
    state
        .store
        .get_session(session_id)
        .await?
        .ok_or(ApiError::SessionNotFound)
}

fn answer(message: &str, session: &SessionRecord, admin_id: String) -> TakeoverResponse {
    TakeoverResponse {
        message: message.into(),
        session_id: session.id.clone(),
        admin_id,
    }
}

/// Takeover routes.
pub struct Takeovers;

impl Takeovers {
    async fn take_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<TakeoverResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        state
            .chat
            .act(&session, SessionAction::TakeOver(Caller::from(&admin)))
            .await?;
        Ok(answer(
            "Takeover initiated successfully",
            &session,
            admin.user_id,
        ))
    }

    async fn leave_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<TakeoverResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        // Nobody assists: nothing to end, nothing to announce, and still a success.
        state
            .chat
            .act(&session, SessionAction::Leave(Caller::from(&admin)))
            .await?;
        Ok(answer(
            "Takeover ended successfully",
            &session,
            admin.user_id,
        ))
    }

    async fn transfer_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
        to: Option<AssistingAdmin>,
    ) -> Result<TakeoverResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        if let Some(to) = to {
            let to_id = to.id.clone();
            let action = SessionAction::HandOver {
                admin: Caller::from(&admin),
                to_id: to.id,
                to_name: to.name,
            };
            state.chat.act(&session, action).await?;
            return Ok(answer("Takeover transferred successfully", &session, to_id));
        }
        let action = SessionAction::Transfer(Caller::from(&admin));
        match state.chat.act(&session, action).await? {
            ActionOutcome::Transferred(Some(_previous)) => Ok(answer(
                "Takeover transferred successfully",
                &session,
                admin.user_id,
            )),
            _ => Ok(answer(
                "Takeover initiated successfully",
                &session,
                admin.user_id,
            )),
        }
    }
}

impl Takeovers {
    async fn end_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<StatusResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        let ended_now =
            state.chat.act(&session, SessionAction::End).await? == ActionOutcome::Ended(true);
        let details = [("ended_now", ended_now.to_string())];
        audit(
            state,
            &admin,
            AuditKind::SessionEnd,
            Some(&session.id),
            Some(&session.user_id),
            &details,
        )
        .await;
        Ok(StatusResponse {
            status: "ended".into(),
        })
    }
}

impl Takeovers {
    async fn view_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<SessionDetail, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        let (id, user) = (session.id.clone(), session.user_id.clone());
        let detail = session_detail(state, session).await?;
        audit(
            state,
            &admin,
            AuditKind::SessionView,
            Some(&id),
            Some(&user),
            &[],
        )
        .await;
        Ok(detail)
    }
}

impl operations::AdminGetSession for Handlers {
    /// Any user's session with its messages.
    async fn admin_get_session(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> AdminGetSessionResponse {
        match Takeovers::view_inner(state, &auth, &session_id).await {
            Ok(body) => AdminGetSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminEndSession for Handlers {
    /// The calling administrator ends a session, whoever owns it.
    async fn admin_end_session(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> AdminEndSessionResponse {
        match Takeovers::end_inner(state, &auth, &session_id).await {
            Ok(body) => AdminEndSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminTakeover for Handlers {
    /// The calling administrator starts assisting a session.
    async fn admin_takeover(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> AdminTakeoverResponse {
        match Takeovers::take_inner(state, &auth, &session_id).await {
            Ok(body) => AdminTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminEndTakeover for Handlers {
    /// The calling administrator stops assisting a session.
    async fn admin_end_takeover(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> AdminEndTakeoverResponse {
        match Takeovers::leave_inner(state, &auth, &session_id).await {
            Ok(body) => AdminEndTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminTransferTakeover for Handlers {
    /// The calling administrator takes a session over from whoever assists it.
    async fn admin_transfer_takeover(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
        to_admin_id: Option<String>,
        to_admin_name: Option<String>,
    ) -> AdminTransferTakeoverResponse {
        let to = to_admin_id.map(|id| AssistingAdmin {
            name: to_admin_name
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| id.clone()),
            id,
        });
        match Takeovers::transfer_inner(state, &auth, &session_id, to).await {
            Ok(body) => AdminTransferTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
