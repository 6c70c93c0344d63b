//! Administration reads: `GET /admin/sessions` (every user's sessions with the Go service's lenient query
//! parsing, plus cursor paging), `GET /admin/metrics` (figures with the Go names and as snake_case) and
//! `GET /admin/audit` (the audit log). Every admin route authenticates (401), checks the role (403), then
//! applies the admin rate limit per administrator (429), in that order.

use std::sync::Arc;

use poem::Request;

use poem_openapi::payload::Json;
use time::{Duration, OffsetDateTime};

use crate::auth::Identity;
use crate::protocol::http::{
    AdminGetMetricsResponse, AdminListAuditResponse, AdminListSessionsResponse,
    AdminMetricsResponse, AdminSessionListResponse, AuditLogResponse, SessionMetrics, TimeRange,
};
use crate::protocol::{http_timestamp, ws_timestamp};
use crate::state::AppState;
use crate::store::{SessionQuery, SortField, SortOrder, StatusFilter};

use super::auth::BearerAuth;
use super::error::ApiError;
use super::params::{
    Raw, day_start, effective_limit, effective_offset, leading_int, rfc3339, strict_int,
};
use super::views::{count, session_metadata};
use super::{Handlers, operations};
use crate::audit::{AuditKind, AuditQuery, admin_record, record_logged};

/// Longest `user_id` accepted by the admin routes, in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// Text of a bad time parameter.
const BAD_TIME: &str = "Invalid time format, expected RFC3339";

/// 400 when a user id is longer than [`MAX_USER_ID_LEN`].
pub fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(ApiError::BadRequest(format!(
            "user_id exceeds maximum length of {MAX_USER_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// Records an administrator action of an HTTP handler (lists, reads of a user's sessions, exports, deletions;
/// takeovers are recorded by the chat service). The action has already happened, so a failing audit log
/// is logged (as an error, with the action) rather than turned into a failed request.
pub async fn audit(
    state: &AppState,
    admin: &Identity,
    kind: AuditKind,
    session_id: Option<&str>,
    user_id: Option<&str>,
    details: &[(&str, String)],
) {
    let record = admin_record(admin, kind, session_id, user_id, details);
    record_logged(state.audit.as_ref(), record).await;
}

/// Query parameters of `GET /admin/sessions`, as sent.
struct ListParams {
    user_id: Option<String>,
    status: Option<String>,
    admin_assisted: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    cursor: Option<String>,
    start_time_from: Option<String>,
    start_time_to: Option<String>,
}

impl ListParams {
    /// The store query and the effective limit and offset, with the Go service's parsing and 400 texts.
    fn query(self) -> Result<(SessionQuery, i64, i64), ApiError> {
        if let Some(user_id) = &self.user_id {
            check_user_id(user_id)?;
        }
        let sort_by = match self.sort_by.as_deref() {
            None => SortField::StartTime,
            Some(v) => SortField::parse(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid sort_by field \"{v}\"; allowed: start_time, end_time, message_count, total_tokens, user_id"
                ))
            })?,
        };
        let order = match self.sort_order.as_deref() {
            None | Some("desc") => SortOrder::Desc,
            Some("asc") => SortOrder::Asc,
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid sort_order \"{v}\"; allowed: asc, desc"
                )));
            }
        };
        let time = |text: Option<&str>| -> Result<Option<OffsetDateTime>, ApiError> {
            match text.filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => rfc3339(t)
                    .map(Some)
                    .ok_or_else(|| ApiError::BadRequest(BAD_TIME.into())),
            }
        };
        let started_from = time(self.start_time_from.as_deref())?;
        let started_to = time(self.start_time_to.as_deref())?;
        let limit = effective_limit(self.limit.as_deref().and_then(leading_int));
        let cursor = self.cursor.filter(|c| !c.is_empty());
        let offset = if cursor.is_some() {
            0
        } else {
            effective_offset(self.offset.as_deref().and_then(leading_int))
        };
        let query = SessionQuery {
            user_id: self.user_id.filter(|u| !u.is_empty()),
            status: match self.status.as_deref() {
                Some("active") => Some(StatusFilter::Active),
                Some("ended") => Some(StatusFilter::Ended),
                _ => None,
            },
            admin_assisted: match self.admin_assisted.as_deref() {
                None | Some("") => None,
                Some(v) => Some(v == "true"),
            },
            started_from,
            started_to,
            sort_by,
            order,
            limit: usize::try_from(limit).unwrap_or(100),
            offset: usize::try_from(offset).unwrap_or(0),
            cursor,
        };
        Ok((query, limit, offset))
    }
}

/// The filters of an admin list as audit details (validated values only, so the entry stays small; the
/// `user_id` filter is the entry's target user).
fn list_filters(query: &SessionQuery) -> Vec<(&'static str, String)> {
    let mut details = Vec::new();
    if let Some(status) = query.status {
        let status = match status {
            StatusFilter::Active => "active",
            StatusFilter::Ended => "ended",
        };
        details.push(("status", status.to_string()));
    }
    if let Some(assisted) = query.admin_assisted {
        details.push(("admin_assisted", assisted.to_string()));
    }
    if let Some(from) = query.started_from {
        details.push(("start_time_from", http_timestamp(from)));
    }
    if let Some(to) = query.started_to {
        details.push(("start_time_to", http_timestamp(to)));
    }
    details
}

/// A `start_time` / `end_time` of `/admin/metrics`: RFC 3339, or `YYYY-MM-DD` meaning the start of that
/// day (`end` false) or its last millisecond (`end` true).
fn metrics_time(text: &str, end: bool) -> Result<OffsetDateTime, ApiError> {
    if let Some(t) = rfc3339(text) {
        return Ok(t);
    }
    match day_start(text) {
        Some(day) if end => Ok(day + Duration::days(1) - Duration::milliseconds(1)),
        Some(day) => Ok(day),
        None => Err(ApiError::BadRequest(BAD_TIME.into())),
    }
}

/// Administration reads.
pub struct AdminReads;

impl AdminReads {
    async fn list_inner(
        state: &AppState,
        auth: &BearerAuth,
        params: ListParams,
    ) -> Result<AdminSessionListResponse, ApiError> {
        let admin = auth.admin(state)?;
        let (query, limit, offset) = params.query()?;
        let page = state.store.list_sessions(&query).await?;
        audit(
            state,
            &admin,
            AuditKind::SessionList,
            None,
            query.user_id.as_deref(),
            &list_filters(&query),
        )
        .await;
        let now = OffsetDateTime::now_utc();
        let sessions: Vec<_> = page
            .sessions
            .iter()
            .map(|s| session_metadata(s, now))
            .collect();
        Ok(AdminSessionListResponse {
            count: count(sessions.len()),
            sessions,
            limit,
            offset,
            next_cursor: page.next_cursor,
        })
    }

    async fn metrics_inner(
        state: &AppState,
        auth: &BearerAuth,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<AdminMetricsResponse, ApiError> {
        auth.admin(state)?;
        let now = crate::store::now();
        let start = match start.filter(|s| !s.is_empty()) {
            Some(text) => metrics_time(text, false)?,
            None => now - Duration::hours(24),
        };
        let end = match end.filter(|s| !s.is_empty()) {
            Some(text) => metrics_time(text, true)?,
            None => now,
        };
        if end < start {
            return Err(ApiError::BadRequest(
                "end_time must not be before start_time".into(),
            ));
        }
        let m = state.store.metrics(start, end).await?;
        let figures = SessionMetrics {
            total_sessions: m.total_sessions.max(0),
            active_sessions: m.active_sessions.max(0),
            total_tokens: m.total_tokens.max(0),
            avg_response_time: m.avg_response_ms.max(0),
            max_response_time: m.max_response_ms.max(0),
            admin_assisted_count: m.admin_assisted_count.max(0),
        };
        Ok(AdminMetricsResponse {
            total_sessions: figures.total_sessions,
            active_sessions: figures.active_sessions,
            total_tokens: figures.total_tokens,
            avg_response_time: figures.avg_response_time,
            max_response_time: figures.max_response_time,
            admin_assisted_count: figures.admin_assisted_count,
            avg_concurrent: if m.avg_concurrent.is_finite() {
                m.avg_concurrent.max(0.0)
            } else {
                0.0
            },
            metrics: figures,
            time_range: TimeRange {
                start: ws_timestamp(start),
                end: ws_timestamp(end),
            },
        })
    }

    async fn audit_inner(
        state: &AppState,
        auth: &BearerAuth,
        limit: Option<&Raw<i64>>,
        offset: Option<&Raw<i64>>,
        cursor: Option<String>,
    ) -> Result<AuditLogResponse, ApiError> {
        auth.admin(state)?;
        let limit = effective_limit(strict_int(limit, "limit").map_err(ApiError::BadRequest)?);
        let offset = effective_offset(strict_int(offset, "offset").map_err(ApiError::BadRequest)?);
        let cursor = cursor.filter(|c| !c.is_empty());
        let offset = if cursor.is_some() { 0 } else { offset };
        let page = state
            .audit
            .list(&AuditQuery {
                limit: usize::try_from(limit).unwrap_or(100),
                offset: usize::try_from(offset).unwrap_or(0),
                cursor,
            })
            .await?;
        let entries: Vec<_> = page.entries.iter().map(Into::into).collect();
        Ok(AuditLogResponse {
            count: count(entries.len()),
            entries,
            limit,
            offset,
            next_cursor: page.next_cursor,
        })
    }
}

impl operations::AdminListSessions for Handlers {
    /// Sessions of all users, filtered, sorted and paged.
    #[allow(clippy::too_many_arguments)]
    async fn admin_list_sessions(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        user_id: Option<String>,
        status: Option<String>,
        admin_assisted: Option<String>,
        sort_by: Option<String>,
        sort_order: Option<String>,
        limit: Option<String>,
        offset: Option<String>,
        cursor: Option<String>,
        start_time_from: Option<Raw<OffsetDateTime>>,
        start_time_to: Option<Raw<OffsetDateTime>>,
    ) -> AdminListSessionsResponse {
        let params = ListParams {
            user_id,
            status,
            admin_assisted,
            sort_by,
            sort_order,
            limit,
            offset,
            cursor,
            start_time_from: start_time_from.map(|t| t.as_str().to_string()),
            start_time_to: start_time_to.map(|t| t.as_str().to_string()),
        };
        match AdminReads::list_inner(state, &auth, params).await {
            Ok(body) => AdminListSessionsResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminGetMetrics for Handlers {
    /// Aggregated figures over the sessions started in a time range.
    async fn admin_get_metrics(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        start_time: Option<String>,
        end_time: Option<String>,
    ) -> AdminGetMetricsResponse {
        match AdminReads::metrics_inner(state, &auth, start_time.as_deref(), end_time.as_deref())
            .await
        {
            Ok(body) => AdminGetMetricsResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}

impl operations::AdminListAudit for Handlers {
    /// The audit log of administrator actions, newest first.
    async fn admin_list_audit(
        req: &Request,
        state: &Arc<AppState>,
        auth: BearerAuth,
        limit: Option<Raw<i64>>,
        offset: Option<Raw<i64>>,
        cursor: Option<String>,
    ) -> AdminListAuditResponse {
        match AdminReads::audit_inner(state, &auth, limit.as_ref(), offset.as_ref(), cursor).await {
            Ok(body) => AdminListAuditResponse::Status200(Json(body)),
            Err(err) => err.respond(req),
        }
    }
}
