//! The answer of an HTTP rate limit (the limiters are [`crate::state::HttpLimits`]): 429 with
//! `Retry-After`.

use std::time::Duration;

use poem_openapi::payload::Json;

use crate::protocol::http::RateLimitError;

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
