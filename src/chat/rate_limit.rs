//! A sliding-window rate limiter keyed by string (user id, session id, client IP), bounded in keys and in
//! timestamps per key, answering with the time until the oldest event leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked; a new key beyond this is treated as limited (as the Go service did).
const MAX_KEYS: usize = 100_000;

/// Sliding-window limiter: at most `limit` events per `window` per key.
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// A limiter allowing `limit` events per `window` (a limit of 0 disables it).
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event for `key`, or returns how long to wait before one is allowed.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= MAX_KEYS && !events.contains_key(key) {
            events.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
            if events.len() >= MAX_KEYS {
                return Err(self.window);
            }
        }
        let queue = events.entry(key.to_string()).or_default();
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            queue.pop_front();
        }
        if queue.len() >= self.limit {
            let oldest = queue.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        queue.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.check_at("u", t0).is_ok());
        assert!(limiter.check_at("u", t0 + Duration::from_secs(10)).is_ok());
        let wait = limiter
            .check_at("u", t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(limiter.check_at("other", t0).is_ok());
        assert!(limiter.check_at("u", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            assert!(limiter.check("u").is_ok());
        }
    }
}
