//! The HTTP API's rate limiters: the public bucket (per client IP, shared by healthz, readyz, shared and
//! metrics), the admin bucket (per admin user id) and the upload bucket (per user id).

use std::time::Duration;

use crate::chat::rate_limit::RateLimiter;
use crate::config::Settings;

/// The limiters of the HTTP API.
pub struct HttpLimits {
    /// Public routes, keyed by client IP.
    pub public: RateLimiter,
    /// Admin routes, keyed by admin user id.
    pub admin: RateLimiter,
    /// `POST /uploads`, keyed by user id: the message rate limit's numbers, in a bucket of its own.
    pub uploads: RateLimiter,
}

impl HttpLimits {
    /// Limiters with the configured rates.
    pub fn new(all: &Settings) -> Self {
        let settings = &all.http;
        Self {
            uploads: RateLimiter::new(all.ws.message_rate_limit, all.ws.message_rate_window),
            public: RateLimiter::new(settings.public_rate_limit, Duration::from_secs(60)),
            admin: RateLimiter::new(settings.admin_rate_limit, settings.admin_rate_window),
        }
    }
}
