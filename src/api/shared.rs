//! `GET /shared/{shareToken}`: the public, read-only view of a shared session, behind the public rate
//! limit (per client IP). A revoked or unknown token is 404 `Shared session not found`.

use std::sync::Arc;

use poem::Request;

use poem_openapi::payload::Json;

use crate::protocol::http::{GetSharedSessionResponse, SharedSession};
use crate::state::AppState;

use super::client_ip::client_ip;
use super::error::ApiError;
use super::views::session_messages;
use super::{Handlers, operations};

/// Shared sessions.
pub struct SharedSessions;

/// The public limiter (one bucket per client IP, shared with the health and metrics routes).
pub fn public_limit(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let ip = client_ip(req, &state.settings.http.trusted_proxies);
    let key = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    state.http_limits.public.check(&key).map_err(|wait| {
        state
            .metrics
            .ratelimit_blocked
            .with_label_values(&["message"])
            .inc();
        ApiError::RateLimited { wait, admin: false }
    })
}

impl SharedSessions {
    async fn shared_inner(
        state: &AppState,
        req: &Request,
        token: &str,
    ) -> Result<SharedSession, ApiError> {
        public_limit(state, req)?;
        let session = state
            .store
            .session_by_share_token(token)
            .await?
            .ok_or(ApiError::SharedNotFound)?;
        let messages = state.store.messages(&session.id, None).await?;
        Ok(SharedSession {
            session_id: session.id,
            name: session.name,
            name_unreadable: session.name_unreadable.then_some(true),
            messages: session_messages(&messages),
        })
    }
}

impl operations::GetSharedSession for Handlers {
    /// A shared session, read-only.
    async fn get_shared_session(
        req: &Request,
        state: &Arc<AppState>,
        token: String,
    ) -> GetSharedSessionResponse {
        match SharedSessions::shared_inner(state, req, &token).await {
            Ok(body) => GetSharedSessionResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
