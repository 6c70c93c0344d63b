//! `chatbox_http_request_duration_seconds{endpoint,method}` for every HTTP request. `endpoint` is the
//! matched route template including the path prefix, written like the Go service's Gin routes
//! (`/chatbox/sessions/:sessionID`, `/chatbox/shared/:shareToken`, `/chatbox/healthz`), so existing
//! dashboards keep their series and the label set stays bounded; `""` when no route matched (a 404), as
//! the Go service did. Path parameters take their OpenAPI names (`sessionId` is spelled `sessionID` as in
//! the Go routes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::error::NotFoundError;
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

/// Maps poem's internal pattern of each OpenAPI path (`/chatbox/sessions/:param0/end`, parameters
/// numbered in order) to its label (`/chatbox/sessions/:sessionID/end`).
fn route_labels(prefix: &str) -> HashMap<String, String> {
    let spec: serde_json::Value =
        serde_json::from_str(&super::openapi_service(prefix).spec()).unwrap_or_default();
    let mut labels = HashMap::new();
    for path in spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.keys())
    {
        let mut pattern = prefix.trim_end_matches('/').to_string();
        let mut label = pattern.clone();
        let mut index = 0;
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    pattern.push_str(&format!("/:param{index}"));
                    index += 1;
                    let name = if name == "sessionId" {
                        "sessionID"
                    } else {
                        name
                    };
                    label.push_str(&format!("/:{name}"));
                }
                None => {
                    pattern.push('/');
                    pattern.push_str(segment);
                    label.push('/');
                    label.push_str(segment);
                }
            }
        }
        if index > 0 {
            labels.insert(pattern, label);
        }
    }
    labels
}

/// The request-duration middleware.
pub struct HttpMetrics {
    metrics: Arc<Metrics>,
    labels: Arc<HashMap<String, String>>,
}

impl HttpMetrics {
    /// Observes into `metrics`, for routes mounted under `prefix`.
    pub fn new(metrics: Arc<Metrics>, prefix: &str) -> Self {
        Self {
            metrics,
            labels: Arc::new(route_labels(prefix)),
        }
    }
}

impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        HttpMetricsEndpoint {
            inner: ep,
            metrics: Arc::clone(&self.metrics),
            labels: Arc::clone(&self.labels),
        }
    }
}

/// The endpoint produced by [`HttpMetrics`].
pub struct HttpMetricsEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
    labels: Arc<HashMap<String, String>>,
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
            // No route matched: the nest of the prefix may have tagged it, but it has no endpoint.
            Err(err) if err.is::<NotFoundError>() => (None, Err(err)),
            Err(err) => (
                err.data::<PathPattern>().map(|p| Arc::clone(&p.0)),
                Err(err),
            ),
        };
        let endpoint = match pattern.as_deref() {
            Some(pattern) => self.labels.get(pattern).map_or(pattern, String::as_str),
            None => "",
        };
        self.metrics
            .http_request_duration
            .with_label_values(&[endpoint, method])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_use_the_go_route_names() {
        let labels = route_labels("/chatbox");
        assert_eq!(
            labels["/chatbox/sessions/:param0"],
            "/chatbox/sessions/:sessionID"
        );
        assert_eq!(
            labels["/chatbox/sessions/:param0/end"],
            "/chatbox/sessions/:sessionID/end"
        );
        assert_eq!(
            labels["/chatbox/shared/:param0"],
            "/chatbox/shared/:shareToken"
        );
        assert_eq!(
            labels["/chatbox/admin/users/:param0"],
            "/chatbox/admin/users/:userId"
        );
        assert!(
            !labels.contains_key("/chatbox/healthz"),
            "static paths are their own label"
        );
    }
}
