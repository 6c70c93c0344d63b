//! Security headers on every response, as the Go service sent them, plus a restrictive
//! `Content-Security-Policy` on everything but HTML pages (the Swagger UI page loads its own scripts and
//! styles, so it gets none).

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Adds `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and `X-XSS-Protection`, and
/// [`API_CSP`] to responses that are not HTML and carry no policy of their own.
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

/// The policy of API answers (JSON, text, YAML): nothing may load from them and nothing may frame them.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

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
        let html = headers
            .get(poem::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        // A response that brings its own policy keeps it (the console's pages, also on a 304, which has no
        // content type and whose headers the browser merges into the cached page).
        let own = headers.contains_key(poem::http::header::CONTENT_SECURITY_POLICY);
        if !html && !own {
            headers.insert(
                poem::http::header::CONTENT_SECURITY_POLICY,
                poem::http::HeaderValue::from_static(API_CSP),
            );
        }
        Ok(response)
    }
}
