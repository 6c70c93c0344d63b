//! Request ids: every HTTP request gets one (or keeps the caller's `X-Request-Id` when it is well formed:
//! at most 64 letters, digits, `-` and `_`, so a proxy's or client's id correlates its logs with ours), it
//! is logged with the request, returned in the `X-Request-Id` header and put into error bodies.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tracing::Instrument;

/// The header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request, stored in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    fn from_header(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(value.to_string()))
    }
}

/// `path` with the segment after `shared` (a share token, a read credential) replaced by `*`.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains("/shared/") {
        return std::borrow::Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path.split('/').collect();
    match segments.iter().position(|s| *s == "shared") {
        Some(at) if at + 1 < segments.len() && !segments[at + 1].is_empty() => {
            let mut masked = segments;
            masked[at + 1] = "*";
            std::borrow::Cow::Owned(masked.join("/"))
        }
        _ => std::borrow::Cow::Borrowed(path),
    }
}

/// Middleware that assigns request ids and logs each request (method, path without query, status, latency).
pub struct RequestIdMiddleware;

impl<E: Endpoint> Middleware<E> for RequestIdMiddleware {
    type Output = RequestIdEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint { inner: ep }
    }
}

/// The endpoint produced by [`RequestIdMiddleware`].
pub struct RequestIdEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for RequestIdEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::from_header)
            .unwrap_or_else(RequestId::generate);
        req.extensions_mut().insert(id.clone());
        // Only the path is logged, with share tokens masked: query strings and share links carry credentials.
        let path = loggable_path(req.uri().path());
        let span =
            tracing::info_span!("http", request_id = %id.0, method = %req.method(), path = %path);
        let started = std::time::Instant::now();
        let result = self.inner.call(req).instrument(span.clone()).await;
        let mut response = match result {
            Ok(output) => output.into_response(),
            Err(err) => err.into_response(),
        };
        if let Ok(value) = id.0.parse() {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        span.in_scope(|| {
            tracing::info!(
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request"
            );
        });
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn share_tokens_are_masked_in_logged_paths() {
        assert_eq!(
            loggable_path("/chatbox/shared/Zx81-secret_token"),
            "/chatbox/shared/*"
        );
        assert_eq!(loggable_path("/api/shared/abc/"), "/api/shared/*/");
        assert_eq!(
            loggable_path("/chatbox/sessions/s-1"),
            "/chatbox/sessions/s-1"
        );
        assert_eq!(loggable_path("/chatbox/shared/"), "/chatbox/shared/");
    }
}
