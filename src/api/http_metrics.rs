//! `chatbox_http_request_duration_seconds{endpoint,method}` for every HTTP request. `endpoint` is the
//! matched route template including the path prefix, in poem's syntax (`/chatbox/sessions/:sessionId`,
//! `/chatbox/healthz`), so the label set stays bounded; `""` when no route matched (a 404), as the Go
//! service did.

use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::metrics::Metrics;

/// The `method` label: the standard methods by name, anything else as `OTHER` (bounded label values).
fn label_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The request-duration middleware.
pub struct HttpMetrics {
    metrics: Arc<Metrics>,
}

impl HttpMetrics {
    /// Observes into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        HttpMetricsEndpoint {
            inner: ep,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The endpoint produced by [`HttpMetrics`].
pub struct HttpMetricsEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
}

impl<E: Endpoint> Endpoint for HttpMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let method = label_method(req.method());
        let started = Instant::now();
        let result = self.inner.call(req).await;
        let (pattern, result) = match result {
            Ok(output) => {
                let response = output.into_response();
                (
                    response.data::<PathPattern>().map(|p| Arc::clone(&p.0)),
                    Ok(response),
                )
            }
            Err(err) => (
                err.data::<PathPattern>().map(|p| Arc::clone(&p.0)),
                Err(err),
            ),
        };
        let endpoint = pattern.as_deref().unwrap_or("");
        self.metrics
            .http_request_duration
            .with_label_values(&[endpoint, method])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}
