//! The upload routes, served beside the generated HTTP API (multipart bodies and streamed, ranged bytes are
//! outside what the generated operation layer does; `spec/openapi.yaml` documents them with
//! `x-outside-http-api`): `POST /uploads`, `GET` and `DELETE /uploads/{fileId}`, and
//! `POST /uploads/{fileId}/link`. They authenticate like the rest of the API and answer errors as
//! `UploadErrorBody`.

use std::sync::Arc;

use futures::TryStreamExt;
use poem::http::{HeaderValue, StatusCode, header};
use poem::web::{Data, Multipart, Path, Query};
use poem::{Body, FromRequest, Request, RequestBody, Response, handler};
use serde::Deserialize;

use crate::auth::Identity;
use crate::files::{Caller, Family, FilesError, StoredFile, names};
use crate::protocol::http::{
    StatusResponse, UploadErrorBody, UploadErrorCode, UploadLink, UploadedFile,
};
use crate::protocol::http_timestamp;
use crate::state::AppState;

use super::auth::BearerAuth;
use super::error::ApiError;
use super::limits::too_many;
use super::request_id::RequestId;

/// Bytes a multipart body may carry beyond the file (boundaries and part headers) before its
/// `Content-Length` alone refuses it.
const MULTIPART_OVERHEAD: u64 = 16 * 1024;

/// Why an upload route refused or failed.
enum Refusal {
    Auth(ApiError),
    NotFound,
    BadBody,
    Range(u64),
    Files(FilesError),
}

impl From<FilesError> for Refusal {
    fn from(e: FilesError) -> Self {
        Self::Files(e)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self::Auth(e)
    }
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
}

impl Refusal {
    fn respond(self, req: &Request) -> Response {
        let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
        let body = |status: StatusCode, error: &str, code: UploadErrorCode| {
            json(
                status,
                &UploadErrorBody {
                    error: error.to_string(),
                    code,
                    request_id: request_id.clone(),
                },
            )
        };
        let id = request_id.as_deref().unwrap_or_default();
        match self {
            Self::Auth(ApiError::MissingToken) => body(
                StatusCode::UNAUTHORIZED,
                "Invalid authorization header",
                UploadErrorCode::Unauthorized,
            ),
            Self::Auth(ApiError::InvalidToken(reason)) => {
                tracing::debug!(request_id = id, reason, "upload route: token refused");
                body(
                    StatusCode::UNAUTHORIZED,
                    "Invalid or expired authentication token",
                    UploadErrorCode::InvalidToken,
                )
            }
            Self::Auth(other) => {
                tracing::error!(request_id = id, error = %other, "upload route failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An internal error occurred",
                    UploadErrorCode::InternalError,
                )
            }
            Self::NotFound => body(
                StatusCode::NOT_FOUND,
                "File not found",
                UploadErrorCode::NotFound,
            ),
            Self::BadBody => body(
                StatusCode::BAD_REQUEST,
                "Expected a multipart/form-data body with a file part",
                UploadErrorCode::BadRequest,
            ),
            Self::Range(size) => {
                let mut response = body(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Range not satisfiable",
                    UploadErrorCode::RangeNotSatisfiable,
                );
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                response
            }
            Self::Files(FilesError::TooLarge) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "File too large",
                UploadErrorCode::FileTooLarge,
            ),
            Self::Files(FilesError::QuotaExceeded) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Upload quota exceeded",
                UploadErrorCode::QuotaExceeded,
            ),
            Self::Files(FilesError::UnsupportedType) => body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "File type not allowed",
                UploadErrorCode::UnsupportedFileType,
            ),
            Self::Files(FilesError::RateLimited(wait)) => {
                let (body, after) = too_many(wait, false);
                let mut response = json(StatusCode::TOO_MANY_REQUESTS, &body.0);
                if let Some(after) = after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, after);
                }
                response
            }
            Self::Files(FilesError::Body(reason)) => {
                tracing::debug!(request_id = id, reason, "upload body broken");
                body(
                    StatusCode::BAD_REQUEST,
                    "Expected a multipart/form-data body with a file part",
                    UploadErrorCode::BadRequest,
                )
            }
            Self::Files(other) => {
                tracing::error!(request_id = id, error = %other, "upload route failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An internal error occurred",
                    UploadErrorCode::InternalError,
                )
            }
        }
    }
}

fn identity(req: &Request, state: &AppState) -> Result<Identity, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    BearerAuth::from_header(value).identity(state)
}

fn caller(identity: &Identity) -> Caller<'_> {
    Caller {
        user_id: &identity.user_id,
        admin: identity.is_admin(),
    }
}

/// The wire form of a stored file.
pub fn uploaded_file(file: &StoredFile) -> UploadedFile {
    UploadedFile {
        file_id: file.record.id.clone(),
        name: file.name.clone(),
        size: i64::try_from(file.record.size).unwrap_or(i64::MAX),
        content_type: file.record.content_type.clone(),
        sha256: file.record.sha256.clone(),
        session_id: file.record.session_id.clone(),
        created_at: http_timestamp(file.record.created_at),
    }
}

/// `POST /uploads`.
#[handler]
pub async fn upload(req: &Request, body: Body, Data(state): Data<&Arc<AppState>>) -> Response {
    upload_inner(req, body, state)
        .await
        .unwrap_or_else(|refusal| refusal.respond(req))
}

async fn upload_inner(req: &Request, body: Body, state: &AppState) -> Result<Response, Refusal> {
    let identity = identity(req, state)?;
    state
        .http_limits
        .uploads
        .check(&identity.user_id)
        .map_err(FilesError::RateLimited)?;
    let max = state.files.config().max_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(FilesError::TooLarge.into());
    }
    let mut multipart = Multipart::from_request(req, &mut RequestBody::new(body))
        .await
        .map_err(|_| Refusal::BadBody)?;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| FilesError::Body(e.to_string()))?
            .ok_or(Refusal::BadBody)?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().map(str::to_string);
        let stored = state
            .files
            .upload(&identity.user_id, name.as_deref(), field.into_async_read())
            .await?;
        return Ok(json(StatusCode::CREATED, &uploaded_file(&stored)));
    }
}

/// The query of a signed link.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

/// `GET /uploads/{fileId}`.
#[handler]
pub async fn download(
    req: &Request,
    Path(file_id): Path<String>,
    Query(query): Query<LinkQuery>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    download_inner(req, &file_id, query, state)
        .await
        .unwrap_or_else(|refusal| refusal.respond(req))
}

async fn download_inner(
    req: &Request,
    file_id: &str,
    query: LinkQuery,
    state: &AppState,
) -> Result<Response, Refusal> {
    let now = time::OffsetDateTime::now_utc();
    let file = match (query.expires, query.signature.as_deref()) {
        (Some(expires), Some(signature)) => {
            if !state.files.verify_link(file_id, expires, signature, now) {
                return Err(ApiError::InvalidToken("signed link expired or altered".into()).into());
            }
            state.files.get(file_id).await?
        }
        _ => {
            let identity = identity(req, state)?;
            state.files.readable(file_id, caller(&identity)).await?
        }
    };
    let file = file.ok_or(Refusal::NotFound)?;
    let size = file.record.size;
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(text) => match http_range_header::parse_range_header(text) {
            Ok(parsed) => match parsed.validate(size) {
                Ok(ranges) if ranges.len() == 1 => ranges.into_iter().next(),
                // Several ranges: the whole file (RFC 9110 allows ignoring Range).
                Ok(_) => None,
                Err(_) => return Err(Refusal::Range(size)),
            },
            Err(_) if size == 0 => return Err(Refusal::Range(size)),
            // A Range that does not parse is ignored (RFC 9110).
            Err(_) => None,
        },
    };
    let stream = state.files.open(&file.record, range.clone()).await?;
    let disposition = match file.family() {
        Some(Family::Image | Family::Document | Family::Audio) => "inline",
        _ => "attachment",
    };
    let mut builder = Response::builder()
        .content_type(file.record.content_type.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            names::content_disposition(disposition, &file.name),
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::ETAG, format!("\"{}\"", file.record.sha256));
    let length = match &range {
        Some(r) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start(), r.end()),
            );
            r.end() - r.start() + 1
        }
        None => size,
    };
    let body = stream.map_err(std::io::Error::other);
    Ok(builder
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_bytes_stream(body)))
}

/// `DELETE /uploads/{fileId}`: the owner only.
#[handler]
pub async fn delete(
    req: &Request,
    Path(file_id): Path<String>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    delete_inner(req, &file_id, state)
        .await
        .unwrap_or_else(|refusal| refusal.respond(req))
}

async fn delete_inner(req: &Request, file_id: &str, state: &AppState) -> Result<Response, Refusal> {
    let identity = identity(req, state)?;
    let file = state
        .files
        .get(file_id)
        .await?
        .filter(|f| f.record.user_id == identity.user_id)
        .ok_or(Refusal::NotFound)?;
    state.files.remove(&file.record).await?;
    Ok(json(
        StatusCode::OK,
        &StatusResponse {
            status: "deleted".into(),
        },
    ))
}

/// `POST /uploads/{fileId}/link`.
#[handler]
pub async fn link(
    req: &Request,
    Path(file_id): Path<String>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    link_inner(req, &file_id, state)
        .await
        .unwrap_or_else(|refusal| refusal.respond(req))
}

async fn link_inner(req: &Request, file_id: &str, state: &AppState) -> Result<Response, Refusal> {
    let identity = identity(req, state)?;
    let file = state
        .files
        .readable(file_id, caller(&identity))
        .await?
        .ok_or(Refusal::NotFound)?;
    let signed = state
        .files
        .link(&file.record.id, time::OffsetDateTime::now_utc());
    Ok(json(
        StatusCode::OK,
        &UploadLink {
            url: signed.url,
            expires_at: http_timestamp(signed.expires_at),
        },
    ))
}
