//! Waiting without blind sleeps: poll a condition until it holds, failing with a message after a deadline.

use std::time::Duration;

/// How long a test polls for something before it fails (deliveries with retries take the longest).
pub const POLL_DEADLINE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Some`, failing with "timed out waiting for {what}" after
/// [`POLL_DEADLINE`].
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    eventually_async(what, async || probe()).await
}

/// [`eventually`] for a probe that awaits (an HTTP call, a query, a connection attempt).
pub async fn eventually_async<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
