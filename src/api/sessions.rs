//! The caller's own sessions: `GET /sessions`, `GET /sessions/{sessionId}`, `POST /sessions/{sessionId}/end`,
//! `POST` and `DELETE /sessions/{sessionId}/share`. Another user's session is reported exactly like a
//! missing one (404 `Session not found`), so nothing leaks.

use std::sync::Arc;

use poem::Request;

use poem_openapi::payload::Json;

use crate::auth::Identity;
use crate::chat::SessionAction;
use crate::protocol::http::{
    EndSessionResponse, GetSessionResponse, ListSessionsResponse, RevokeShareResponse,
    SessionDetail, SessionListResponse, ShareResponse, ShareSessionResponse, StatusResponse,
};
use crate::state::AppState;
use crate::store::SessionRecord;

use super::auth::BearerAuth;
use super::error::ApiError;
use super::views::{count, session_detail, session_metadata};
use super::{Handlers, operations};

/// Most sessions `GET /sessions` returns.
const LIST_LIMIT: usize = 100;

/// The caller's sessions.
pub struct OwnSessions;

/// The session `session_id` when `caller` owns it; 404 `Session not found` when it does not exist or
/// belongs to someone else (a store failure is a 500, not a misleading 404).
async fn owned(
    state: &AppState,
    caller: &Identity,
    session_id: &str,
) -> Result<SessionRecord, ApiError> {
    match state.store.get_session(session_id).await? {
        Some(session) if session.user_id == caller.user_id => Ok(session),
        _ => Err(ApiError::SessionNotFound),
    }
}

impl OwnSessions {
    async fn list_inner(
        state: &AppState,
        auth: &BearerAuth,
    ) -> Result<SessionListResponse, ApiError> {
        let caller = auth.identity(state)?;
        let sessions = state
            .store
            .list_user_sessions(&caller.user_id, LIST_LIMIT)
            .await?;
        let now = time::OffsetDateTime::now_utc();
        let sessions: Vec<_> = sessions.iter().map(|s| session_metadata(s, now)).collect();
        Ok(SessionListResponse {
            count: count(sessions.len()),
            truncated: sessions.len() >= LIST_LIMIT,
            sessions,
            user_id: caller.user_id,
            limit: count(LIST_LIMIT),
        })
    }

    async fn get_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<SessionDetail, ApiError> {
        let caller = auth.identity(state)?;
        let session = owned(state, &caller, session_id).await?;
        session_detail(state, session).await
    }

    async fn end_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<StatusResponse, ApiError> {
        let caller = auth.identity(state)?;
        let session = owned(state, &caller, session_id).await?;
        state.chat.act(&session, SessionAction::End).await?;
        Ok(StatusResponse {
            status: "ended".into(),
        })
    }

    async fn share_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<ShareResponse, ApiError> {
        let caller = auth.identity(state)?;
        let session = owned(state, &caller, session_id).await?;
        let share_token = state.store.share(&session.id).await?;
        Ok(ShareResponse { share_token })
    }

    async fn revoke_inner(
        state: &AppState,
        auth: &BearerAuth,
        session_id: &str,
    ) -> Result<StatusResponse, ApiError> {
        let caller = auth.identity(state)?;
        let session = owned(state, &caller, session_id).await?;
        state.store.revoke_share(&session.id).await?;
        Ok(StatusResponse {
            status: "revoked".into(),
        })
    }
}

impl operations::ListSessions for Handlers {
    /// The caller's sessions, newest first, at most 100.
    async fn list_sessions(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
    ) -> ListSessionsResponse {
        match OwnSessions::list_inner(state, &auth).await {
            Ok(body) => ListSessionsResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::GetSession for Handlers {
    /// One of the caller's sessions with its messages.
    async fn get_session(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> GetSessionResponse {
        match OwnSessions::get_inner(state, &auth, &session_id).await {
            Ok(body) => GetSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::EndSession for Handlers {
    /// Ends one of the caller's sessions (idempotent).
    async fn end_session(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> EndSessionResponse {
        match OwnSessions::end_inner(state, &auth, &session_id).await {
            Ok(body) => EndSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::ShareSession for Handlers {
    /// Creates (or returns) the share token of one of the caller's sessions.
    async fn share_session(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> ShareSessionResponse {
        match OwnSessions::share_inner(state, &auth, &session_id).await {
            Ok(body) => ShareSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::RevokeShare for Handlers {
    /// Revokes the share token of one of the caller's sessions (harmless when there is none).
    async fn revoke_share(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> RevokeShareResponse {
        match OwnSessions::revoke_inner(state, &auth, &session_id).await {
            Ok(body) => RevokeShareResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
