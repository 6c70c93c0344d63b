//! Admin takeover over HTTP: `POST /admin/takeover/{sessionId}` (start assisting; the AI pauses),
//! `DELETE` (stop; the AI answers again) and `POST .../transfer` (take over from another administrator).
//! The live side (events to the user's devices, the paused AI) is the chat service's; these handlers
//! check the session and map refusals to the spec's 400 texts. Each action is audited by the chat service
//! (`via=http`), the one place that records takeovers whichever door they come through. The
//! administrator's display name is the token's `name` claim (else the user id).

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;

use crate::chat::Via;
use crate::protocol::http::{
    AdminEndTakeoverResponse, AdminTakeoverResponse, AdminTransferTakeoverResponse,
    TakeoverResponse,
};
use crate::state::AppState;
use crate::store::SessionRecord;

use super::auth::BearerAuth;
use super::error::ApiError;
use super::tags::ApiTags;

async fn session(state: &AppState, session_id: &str) -> Result<SessionRecord, ApiError> {
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
pub struct TakeoverApi;

impl TakeoverApi {
    async fn take_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<TakeoverResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        state.chat.take_over(&session, &admin, Via::Http).await?;
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
        state.chat.leave(&session, &admin, Via::Http).await?;
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
    ) -> Result<TakeoverResponse, ApiError> {
        let admin = auth.admin(state)?;
        let session = session(state, session_id).await?;
        match state.chat.transfer(&session, &admin, Via::Http).await? {
            Some(_previous) => Ok(answer(
                "Takeover transferred successfully",
                &session,
                admin.user_id,
            )),
            None => Ok(answer(
                "Takeover initiated successfully",
                &session,
                admin.user_id,
            )),
        }
    }
}

#[OpenApi]
impl TakeoverApi {
    /// The calling administrator starts assisting a session.
    #[oai(
        path = "/admin/takeover/:sessionId",
        method = "post",
        operation_id = "adminTakeover",
        tag = "ApiTags::Admin"
    )]
    async fn take_over(
        &self,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "sessionId")] session_id: Path<String>,
        Data(state): Data<&Arc<AppState>>,
    ) -> AdminTakeoverResponse {
        match Self::take_inner(state, &auth, &session_id).await {
            Ok(body) => AdminTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }

    /// The calling administrator stops assisting a session.
    #[oai(
        path = "/admin/takeover/:sessionId",
        method = "delete",
        operation_id = "adminEndTakeover",
        tag = "ApiTags::Admin"
    )]
    async fn leave(
        &self,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "sessionId")] session_id: Path<String>,
        Data(state): Data<&Arc<AppState>>,
    ) -> AdminEndTakeoverResponse {
        match Self::leave_inner(state, &auth, &session_id).await {
            Ok(body) => AdminEndTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }

    /// The calling administrator takes a session over from whoever assists it.
    #[oai(
        path = "/admin/takeover/:sessionId/transfer",
        method = "post",
        operation_id = "adminTransferTakeover",
        tag = "ApiTags::Admin"
    )]
    async fn transfer(
        &self,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "sessionId")] session_id: Path<String>,
        Data(state): Data<&Arc<AppState>>,
    ) -> AdminTransferTakeoverResponse {
        match Self::transfer_inner(state, &auth, &session_id).await {
            Ok(body) => AdminTransferTakeoverResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
