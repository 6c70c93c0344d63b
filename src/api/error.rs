//! The HTTP boundary's error enum, [`ApiError`], and the one place where it becomes a wire answer: the
//! reference's `ErrorBody` (`{"error","code","request_id"}`) with its status, or a 429 `RateLimitError`
//! with `Retry-After`. Clients get the generic texts; details and the request id go to the log.

use std::time::Duration;

use poem::Request;
use poem_openapi::payload::Json;

use crate::chat::ChatError;
use crate::protocol::http::{ErrorBody, ErrorStatuses, HttpErrorCode, RateLimitError};
use crate::store::StoreError;

use super::limits::too_many;
use super::request_id::RequestId;
use crate::audit::AuditError;

/// Why an HTTP request did not get its effect.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer <token>` header (missing, other scheme, empty token).
    #[error("missing or malformed authorization header")]
    MissingToken,
    /// The token does not verify (signature, expiry, claims).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The caller lacks the admin role.
    #[error("admin role required")]
    Forbidden,
    /// A request parameter is refused; the text is the client text.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The session does not exist or belongs to someone else.
    #[error("session not found")]
    SessionNotFound,
    /// The file does not exist or is not the session's.
    #[error("file not found")]
    FileNotFound,
    /// The uploads service failed.
    #[error("files: {0}")]
    Files(#[from] crate::files::FilesError),
    /// The share token is unknown or revoked.
    #[error("shared session not found")]
    SharedNotFound,
    /// A rate limit; retry after this long. `admin` adds `retry_after_ms` to the body.
    #[error("rate limited for {wait:?}")]
    RateLimited {
        /// Time until a request is allowed again.
        wait: Duration,
        /// Whether this is the admin limiter (its body carries `retry_after_ms`).
        admin: bool,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// Any other server-side failure.
    #[error("internal: {0}")]
    Internal(String),
}

/// An error as it goes on the wire.
pub enum Wire {
    /// A JSON `ErrorBody` with this status.
    Body(u16, ErrorBody),
    /// A 429 with its body and `Retry-After` seconds.
    RateLimited(Json<RateLimitError>, Option<i64>),
}

/// Text of a takeover refused because the session ended.
pub const ENDED: &str = "session has ended";

/// The text and code of a 500.
const INTERNAL_TEXT: &str = "An internal error occurred";

/// Chat-service refusals of the takeover routes.
impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::AlreadyAssisted(a) => ApiError::BadRequest(format!(
                "session already assisted by another admin: {} ({})",
                a.name, a.id
            )),
            ChatError::AssistedByOther(a) => ApiError::BadRequest(format!(
                "session assisted by another admin: {} ({})",
                a.name, a.id
            )),
            ChatError::SessionEnded | ChatError::Store(StoreError::SessionEnded) => {
                ApiError::BadRequest(ENDED.into())
            }
            ChatError::SessionNotFound | ChatError::NotOwner => ApiError::SessionNotFound,
            ChatError::Forbidden => ApiError::Forbidden,
            ChatError::Store(err) => ApiError::Store(err),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The wire form of this error for the request `req` (whose id goes into the body and the log).
    pub fn to_wire(&self, req: &Request) -> Wire {
        let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
        let body = |status: u16, error: &str, code: HttpErrorCode| {
            Wire::Body(
                status,
                ErrorBody {
                    error: error.to_string(),
                    code,
                    request_id: request_id.clone(),
                },
            )
        };
        match self {
            Self::MissingToken => body(
                401,
                "Invalid authorization header",
                HttpErrorCode::Unauthorized,
            ),
            Self::InvalidToken(_) => body(
                401,
                "Invalid or expired authentication token",
                HttpErrorCode::InvalidToken,
            ),
            Self::Forbidden => body(403, "Insufficient permissions", HttpErrorCode::Forbidden),
            Self::BadRequest(text) => body(400, text, HttpErrorCode::BadRequest),
            Self::SessionNotFound => body(404, "Session not found", HttpErrorCode::NotFound),
            Self::SharedNotFound => body(404, "Shared session not found", HttpErrorCode::NotFound),
            Self::FileNotFound => body(404, "File not found", HttpErrorCode::NotFound),
            Self::Store(StoreError::InvalidCursor) | Self::Audit(AuditError::InvalidCursor) => {
                body(400, "Invalid cursor", HttpErrorCode::BadRequest)
            }
            Self::RateLimited { wait, admin } => {
                let (body, after) = too_many(*wait, *admin);
                Wire::RateLimited(body, after)
            }
            Self::Store(_) | Self::Audit(_) | Self::Files(_) | Self::Internal(_) => {
                body(500, INTERNAL_TEXT, HttpErrorCode::InternalError)
            }
        }
    }

    /// Logs the error (server failures as errors, refusals at debug level) and converts it to the
    /// operation's response enum.
    pub fn respond<R: FromWire>(self, req: &Request) -> R {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.as_str())
            .unwrap_or_default();
        match &self {
            Self::Store(StoreError::InvalidCursor) | Self::Audit(AuditError::InvalidCursor) => {
                tracing::debug!(request_id, error = %self, "request refused");
            }
            Self::Store(_) | Self::Audit(_) | Self::Files(_) | Self::Internal(_) => {
                tracing::error!(request_id, error = %self, "request failed");
            }
            _ => tracing::debug!(request_id, error = %self, "request refused"),
        }
        R::from_wire(self.to_wire(req), request_id)
    }
}

/// A generated response enum that can carry [`ApiError`]s.
pub trait FromWire: Sized {
    /// The response for `wire`; a status the operation does not declare becomes its 500.
    fn from_wire(wire: Wire, request_id: &str) -> Self;
}

/// The body of a 500 that replaces an error the operation cannot express.
pub fn internal_body(request_id: &str) -> ErrorBody {
    ErrorBody {
        error: INTERNAL_TEXT.to_string(),
        code: HttpErrorCode::InternalError,
        request_id: (!request_id.is_empty()).then(|| request_id.to_string()),
    }
}

/// Every generated response enum that declares its error statuses answers an [`ApiError`] through them; a
/// status the operation does not declare becomes its 500 (and is logged).
impl<T: ErrorStatuses> FromWire for T {
    fn from_wire(wire: Wire, request_id: &str) -> Self {
        let undeclared = match wire {
            Wire::Body(status, body) => match T::from_error(status, body) {
                Ok(response) => return response,
                Err(_) => status,
            },
            Wire::RateLimited(Json(body), after) => match T::from_rate_limit(body, after) {
                Some(response) => return response,
                None => 429,
            },
        };
        tracing::error!(
            request_id,
            status = undeclared,
            "error status not declared by the operation"
        );
        T::internal(internal_body(request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(err: ApiError) -> (u16, String, String) {
        let req = Request::builder().finish();
        match err.to_wire(&req) {
            Wire::Body(status, body) => (status, body.error, body.code.as_str().to_string()),
            Wire::RateLimited(body, _) => (429, body.0.error, body.0.message),
        }
    }

    #[test]
    fn errors_map_to_the_reference_texts() {
        assert_eq!(
            wire(ApiError::MissingToken),
            (
                401,
                "Invalid authorization header".into(),
                "UNAUTHORIZED".into()
            )
        );
        assert_eq!(
            wire(ApiError::InvalidToken("x".into())),
            (
                401,
                "Invalid or expired authentication token".into(),
                "INVALID_TOKEN".into()
            )
        );
        assert_eq!(
            wire(ApiError::Forbidden),
            (403, "Insufficient permissions".into(), "FORBIDDEN".into())
        );
        assert_eq!(
            wire(ApiError::SessionNotFound),
            (404, "Session not found".into(), "NOT_FOUND".into())
        );
        assert_eq!(
            wire(ApiError::SharedNotFound),
            (404, "Shared session not found".into(), "NOT_FOUND".into())
        );
        assert_eq!(
            wire(ApiError::Store(StoreError::InvalidCursor)),
            (400, "Invalid cursor".into(), "BAD_REQUEST".into())
        );
        assert_eq!(
            wire(ApiError::Store(StoreError::Embedded("disk on fire".into()))),
            (
                500,
                "An internal error occurred".into(),
                "INTERNAL_ERROR".into()
            )
        );
    }
}
