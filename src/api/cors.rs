//! CORS (reference 6.8), active only when `chatbox.cors_allowed_origins` is non-empty: exact origins;
//! preflights (`OPTIONS` with an `Origin`) are answered 204 here, also for routes without `OPTIONS`;
//! a request with an `Origin` that is neither allowed nor the server's own host is refused with 403.
//! Allowed methods GET, POST, PUT, PATCH, DELETE, OPTIONS; headers Origin, Content-Type, Accept,
//! Authorization; credentials allowed; preflights cached 12 hours. Beyond the Go service, `Retry-After`
//! and `X-Request-Id` are exposed next to `Content-Length`, so browser clients can honour rate limits and
//! quote request ids.

use std::sync::Arc;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::protocol::http::{ErrorBody, HttpErrorCode};

use super::request_id::RequestId;

const ALLOW_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";
const ALLOW_HEADERS: &str = "Origin,Content-Type,Accept,Authorization";
const EXPOSE_HEADERS: &str = "Content-Length,Retry-After,X-Request-Id";
/// 12 hours, in seconds.
const MAX_AGE: &str = "43200";

/// The CORS middleware; a no-op when no origin is configured.
#[derive(Clone)]
pub struct Cors {
    origins: Arc<[String]>,
}

impl Cors {
    /// CORS for exactly these origins (empty: disabled).
    pub fn new(origins: &[String]) -> Self {
        Self {
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
        }
    }
}

impl<E: Endpoint> Middleware<E> for Cors {
    type Output = CorsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        CorsEndpoint {
            inner: ep,
            origins: Arc::clone(&self.origins),
        }
    }
}

/// The endpoint produced by [`Cors`].
pub struct CorsEndpoint<E> {
    inner: E,
    origins: Arc<[String]>,
}

/// True when `origin` names the host the request was sent to (not a cross-origin request).
fn same_host(req: &Request, origin: &str) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    host.is_some_and(|host| {
        origin == format!("http://{host}") || origin == format!("https://{host}")
    })
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn forbidden(req: &Request) -> Response {
    let body = ErrorBody {
        error: "Insufficient permissions".into(),
        code: HttpErrorCode::Forbidden,
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .content_type("application/json; charset=utf-8")
        .body(text)
}

impl<E: Endpoint> Endpoint for CorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        if self.origins.is_empty() {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        if same_host(&req, &origin) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if !self.origins.contains(&origin) {
            tracing::debug!(origin = %origin, "cross-origin request refused");
            return Ok(forbidden(&req));
        }
        if req.method() == Method::OPTIONS {
            let mut response = Response::builder().status(StatusCode::NO_CONTENT).finish();
            set(&mut response, header::ACCESS_CONTROL_ALLOW_ORIGIN, &origin);
            set(
                &mut response,
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                "true",
            );
            set(
                &mut response,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                ALLOW_METHODS,
            );
            set(
                &mut response,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                ALLOW_HEADERS,
            );
            set(&mut response, header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
            set(
                &mut response,
                header::VARY,
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            );
            return Ok(response);
        }
        let mut response = match self.inner.call(req).await {
            Ok(output) => output.into_response(),
            Err(err) => err.into_response(),
        };
        set(&mut response, header::ACCESS_CONTROL_ALLOW_ORIGIN, &origin);
        set(
            &mut response,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            "true",
        );
        set(
            &mut response,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            EXPOSE_HEADERS,
        );
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        Ok(response)
    }
}
