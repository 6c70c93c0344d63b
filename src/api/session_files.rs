//! An administrator's view of the files posted in a session: `GET /admin/sessions/{sessionId}/files` and
//! `DELETE /admin/sessions/{sessionId}/files/{fileId}`, both audited (`file_list`, `file_delete`).

use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;

use crate::audit::AuditKind;
use crate::protocol::http::{
    AdminDeleteSessionFileResponse, AdminListSessionFilesResponse, SessionFileList, StatusResponse,
};
use crate::state::AppState;

use super::admin::audit;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::takeover::session;
use super::uploads::uploaded_file;
use super::views::count;
use super::{Handlers, operations};

async fn list_inner(
    state: &AppState,
    auth: &BearerAuth,
    session_id: &str,
) -> Result<SessionFileList, ApiError> {
    let admin = auth.admin(state)?;
    let session = session(state, session_id).await?;
    let files: Vec<_> = state
        .files
        .session_files(&session.id)
        .await?
        .iter()
        .map(uploaded_file)
        .collect();
    audit(
        state,
        &admin,
        AuditKind::FileList,
        Some(&session.id),
        Some(&session.user_id),
        &[("files", files.len().to_string())],
    )
    .await;
    Ok(SessionFileList {
        count: count(files.len()),
        session_id: session.id,
        user_id: Some(session.user_id),
        files,
    })
}

async fn delete_inner(
    state: &AppState,
    auth: &BearerAuth,
    session_id: &str,
    file_id: &str,
) -> Result<StatusResponse, ApiError> {
    let admin = auth.admin(state)?;
    let session = session(state, session_id).await?;
    let file = state
        .files
        .get(file_id)
        .await?
        .filter(|f| f.record.session_id.as_deref() == Some(session.id.as_str()))
        .ok_or(ApiError::FileNotFound)?;
    state.files.remove(&file.record).await?;
    audit(
        state,
        &admin,
        AuditKind::FileDelete,
        Some(&session.id),
        Some(&session.user_id),
        &[("file_id", file.record.id.clone())],
    )
    .await;
    Ok(StatusResponse {
        status: "deleted".into(),
    })
}

impl operations::AdminListSessionFiles for Handlers {
    /// The files of any user's session.
    async fn admin_list_session_files(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
    ) -> AdminListSessionFilesResponse {
        match list_inner(state, &auth, &session_id).await {
            Ok(body) => AdminListSessionFilesResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminDeleteSessionFile for Handlers {
    /// Removes one file of a session.
    async fn admin_delete_session_file(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        session_id: String,
        file_id: String,
    ) -> AdminDeleteSessionFileResponse {
        match delete_inner(state, &auth, &session_id, &file_id).await {
            Ok(body) => AdminDeleteSessionFileResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
