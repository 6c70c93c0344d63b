//! The OpenAPI tags of `spec/openapi.yaml`.

use poem_openapi::Tags;

/// Operation groups.
#[derive(Tags)]
pub enum ApiTags {
    /// The caller's own sessions.
    #[oai(rename = "sessions")]
    Sessions,
    /// Public, read-only shared sessions.
    #[oai(rename = "shared")]
    Shared,
    /// Administration (roles `admin` or `chat_admin`).
    #[oai(rename = "admin")]
    Admin,
    /// Liveness and readiness.
    #[oai(rename = "health")]
    Health,
    /// Prometheus metrics.
    #[oai(rename = "metrics")]
    Metrics,
}
