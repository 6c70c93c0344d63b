//! HTTP rate limits: the public bucket (60/min per client IP, shared by healthz, readyz, shared and
//! metrics) and the admin bucket (per admin user id), answering 429 with `Retry-After`.

use std::time::Duration;

use poem_openapi::payload::Json;

use crate::chat::rate_limit::RateLimiter;
use crate::protocol::http::RateLimitError;

/// The limiters of the HTTP API.
pub struct HttpLimits {
    /// Public routes, keyed by client IP.
    pub public: RateLimiter,
    /// Admin routes, keyed by admin user id.
    pub admin: RateLimiter,
}

impl HttpLimits {
    /// Limiters with the configured rates.
    pub fn new(settings: &crate::config::HttpSettings) -> Self {
        Self {
            public: RateLimiter::new(settings.public_rate_limit, Duration::from_secs(60)),
            admin: RateLimiter::new(settings.admin_rate_limit, settings.admin_rate_window),
        }
    }
}

/// The 429 body and `Retry-After` seconds (ceil, at least 1) for a wait; `with_ms` adds `retry_after_ms`.
pub fn too_many(wait: Duration, with_ms: bool) -> (Json<RateLimitError>, Option<i64>) {
    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1);
    let seconds = ((ms + 999) / 1000).max(1);
    (
        Json(RateLimitError {
            error: "rate_limit_exceeded".into(),
            message: "Too many requests. Please try again later.".into(),
            retry_after_ms: with_ms.then_some(ms),
        }),
        Some(seconds),
    )
}
