//! The HTTP API's rate limiters: the public bucket (per client IP, shared by healthz, readyz, shared and
//! metrics) and the admin bucket (per admin user id).

use std::time::Duration;

use crate::chat::rate_limit::RateLimiter;
use crate::config::HttpSettings;

/// The limiters of the HTTP API.
pub struct HttpLimits {
    /// Public routes, keyed by client IP.
    pub public: RateLimiter,
    /// Admin routes, keyed by admin user id.
    pub admin: RateLimiter,
}

impl HttpLimits {
    /// Limiters with the configured rates.
    pub fn new(settings: &HttpSettings) -> Self {
        Self {
            public: RateLimiter::new(settings.public_rate_limit, Duration::from_secs(60)),
            admin: RateLimiter::new(settings.admin_rate_limit, settings.admin_rate_window),
        }
    }
}
