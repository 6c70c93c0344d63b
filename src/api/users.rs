//! Per-user administration: `GET /admin/users/{userId}/sessions` (one user's sessions, paged),
//! `GET /admin/users/{userId}/export` (everything stored about the user, decrypted) and
//! `DELETE /admin/users/{userId}` (ends the user's active sessions, notifying their devices, then deletes
//! every session). Each is audited.

use std::sync::Arc;

use poem::Request;

use poem_openapi::payload::Json;
use time::OffsetDateTime;

use crate::chat::SessionAction;
use crate::protocol::http::{
    AdminDeleteUserResponse, AdminExportUserResponse, AdminListUserSessionsResponse,
    ExportedSession, UserDeleteResponse, UserExportResponse, UserSessionListResponse,
};
use crate::protocol::http_timestamp;
use crate::state::AppState;
use crate::store::{MAX_LIMIT, SessionQuery, SortField, SortOrder, StatusFilter};

use super::admin::{audit, check_user_id};
use super::auth::BearerAuth;
use super::error::ApiError;
use super::params::{Raw, effective_limit, effective_offset, strict_int};
use super::views::{count, session_messages, session_metadata};
use super::{Handlers, operations};
use crate::audit::AuditKind;

/// Per-user administration.
pub struct UserAdmin;

impl UserAdmin {
    async fn sessions_inner(
        state: &AppState,
        auth: &BearerAuth,
        user_id: &str,
        limit: Option<&Raw<i64>>,
        offset: Option<&Raw<i64>>,
        cursor: Option<String>,
    ) -> Result<UserSessionListResponse, ApiError> {
        let admin = auth.admin(state)?;
        check_user_id(user_id)?;
        let limit = effective_limit(strict_int(limit, "limit").map_err(ApiError::BadRequest)?);
        let offset = effective_offset(strict_int(offset, "offset").map_err(ApiError::BadRequest)?);
        let cursor = cursor.filter(|c| !c.is_empty());
        let offset = if cursor.is_some() { 0 } else { offset };
        let page = state
            .store
            .list_sessions(&SessionQuery {
                user_id: Some(user_id.to_string()),
                sort_by: SortField::StartTime,
                order: SortOrder::Desc,
                limit: usize::try_from(limit).unwrap_or(100),
                offset: usize::try_from(offset).unwrap_or(0),
                cursor,
                ..SessionQuery::default()
            })
            .await?;
        audit(
            state,
            &admin,
            AuditKind::UserSessionsView,
            None,
            Some(user_id),
            &[],
        )
        .await;
        let now = OffsetDateTime::now_utc();
        let sessions: Vec<_> = page
            .sessions
            .iter()
            .map(|s| session_metadata(s, now))
            .collect();
        Ok(UserSessionListResponse {
            count: count(sessions.len()),
            sessions,
            user_id: user_id.to_string(),
            limit,
            offset,
            next_cursor: page.next_cursor,
        })
    }

    async fn export_inner(
        state: &AppState,
        auth: &BearerAuth,
        user_id: &str,
    ) -> Result<UserExportResponse, ApiError> {
        let admin = auth.admin(state)?;
        check_user_id(user_id)?;
        let export = state.store.export_user(user_id).await?;
        let now = OffsetDateTime::now_utc();
        let mut sessions: Vec<_> = export.sessions.iter().collect();
        // Oldest session first (ties by id, so the order is stable).
        sessions.sort_by(|a, b| {
            (a.session.started_at, &a.session.id).cmp(&(b.session.started_at, &b.session.id))
        });
        let sessions = sessions
            .into_iter()
            .map(|s| ExportedSession {
                session: session_metadata(&s.session, now),
                messages: session_messages(&s.messages),
            })
            .collect::<Vec<_>>();
        let details = [("sessions_exported", sessions.len().to_string())];
        audit(
            state,
            &admin,
            AuditKind::UserExport,
            None,
            Some(user_id),
            &details,
        )
        .await;
        Ok(UserExportResponse {
            user_id: user_id.to_string(),
            exported_at: http_timestamp(now),
            sessions,
        })
    }

    async fn delete_inner(
        state: &AppState,
        auth: &BearerAuth,
        user_id: &str,
    ) -> Result<UserDeleteResponse, ApiError> {
        let admin = auth.admin(state)?;
        check_user_id(user_id)?;
        // End the active sessions first (a user has at most one), so their devices are told and the
        // gauges stay right.
        let active = state
            .store
            .list_sessions(&SessionQuery {
                user_id: Some(user_id.to_string()),
                status: Some(StatusFilter::Active),
                limit: MAX_LIMIT,
                ..SessionQuery::default()
            })
            .await?;
        for session in &active.sessions {
            state.chat.act(session, SessionAction::End).await?;
        }
        let files_deleted = state.files.remove_user(user_id).await?;
        let stats = state.store.delete_user(user_id).await?;
        let sessions_deleted = i64::try_from(stats.sessions).unwrap_or(i64::MAX);
        let messages_deleted = i64::try_from(stats.messages).unwrap_or(i64::MAX);
        let details = [
            ("sessions_deleted", sessions_deleted.to_string()),
            ("messages_deleted", messages_deleted.to_string()),
            ("files_deleted", files_deleted.to_string()),
        ];
        audit(
            state,
            &admin,
            AuditKind::UserDelete,
            None,
            Some(user_id),
            &details,
        )
        .await;
        Ok(UserDeleteResponse {
            status: "deleted".into(),
            user_id: user_id.to_string(),
            sessions_deleted,
            messages_deleted,
        })
    }
}

impl operations::AdminListUserSessions for Handlers {
    /// One user's sessions, newest first.
    #[allow(clippy::too_many_arguments)]
    async fn admin_list_user_sessions(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        user_id: String,
        limit: Option<Raw<i64>>,
        offset: Option<Raw<i64>>,
        cursor: Option<String>,
    ) -> AdminListUserSessionsResponse {
        match UserAdmin::sessions_inner(
            state,
            &auth,
            &user_id,
            limit.as_ref(),
            offset.as_ref(),
            cursor,
        )
        .await
        {
            Ok(body) => AdminListUserSessionsResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminExportUser for Handlers {
    /// Everything stored about one user.
    async fn admin_export_user(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        user_id: String,
    ) -> AdminExportUserResponse {
        match UserAdmin::export_inner(state, &auth, &user_id).await {
            Ok(body) => AdminExportUserResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminDeleteUser for Handlers {
    /// Deletes everything stored about one user.
    async fn admin_delete_user(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        user_id: String,
    ) -> AdminDeleteUserResponse {
        match UserAdmin::delete_inner(state, &auth, &user_id).await {
            Ok(body) => AdminDeleteUserResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
