//! The retry loop every channel shares: attempts until success, a failure that will not get better, or the
//! retry budget is spent, waiting `backoff × 2^n` (capped) or the receiver's `Retry-After` when longer.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::NotifyError;
use crate::backoff::{Backoff, Jitter, parse_retry_after};

/// Longest wait between two attempts.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently a channel retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) retries: u32,
    /// Delay before the first retry, doubled for each further one.
    pub(crate) backoff: Duration,
}

/// Why one attempt failed and whether another may succeed.
pub(crate) struct Failure {
    /// What went wrong (secret-free: it is logged).
    pub(crate) error: NotifyError,
    /// True when a later attempt may succeed (connection errors, timeouts, 429, 5xx).
    pub(crate) retry: bool,
    /// The receiver's `Retry-After`, when it sent one.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// A failure worth retrying, without a `Retry-After`.
    pub(crate) fn transient(error: NotifyError) -> Self {
        Self {
            error,
            retry: true,
            retry_after: None,
        }
    }

    /// A failure no retry can fix.
    pub(crate) fn permanent(error: NotifyError) -> Self {
        Self {
            error,
            retry: false,
            retry_after: None,
        }
    }

    /// An HTTP answer with a non-success `status`: retried on 429 and 5xx, honouring `Retry-After`.
    pub(crate) fn http(error: NotifyError, status: StatusCode, headers: &HeaderMap) -> Self {
        Self {
            error,
            retry: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            retry_after: retry_after(headers),
        }
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past is no wait).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// Delay before retry number `attempt + 1`: `base * 2^attempt`, capped, or the receiver's `Retry-After`
/// when that is longer (itself capped).
pub(crate) fn retry_delay(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = Backoff {
        base,
        max: MAX_RETRY_DELAY,
        jitter: Jitter::None,
    }
    .ceiling(attempt.saturating_add(1));
    match retry_after {
        Some(wait) => exponential.max(wait.min(MAX_RETRY_AFTER)),
        None => exponential,
    }
}

/// Runs `attempt` until it succeeds, fails for good or `policy.retries` retries are spent; before each
/// retry `on_retry(retry number from 1, delay, error)` is called (the channel logs it).
pub(crate) async fn with_retries<F, Fut>(
    policy: RetryPolicy,
    mut attempt: F,
    mut on_retry: impl FnMut(u32, Duration, &NotifyError),
) -> Result<(), NotifyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut done = 0;
    loop {
        let failure = match attempt().await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        if !failure.retry || done >= policy.retries {
            return Err(failure.error);
        }
        let delay = retry_delay(policy.backoff, done, failure.retry_after);
        done += 1;
        on_retry(done, delay, &failure.error);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_delays_double_and_are_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(retry_delay(base, 0, None), Duration::from_millis(100));
        assert_eq!(retry_delay(base, 3, None), Duration::from_millis(800));
        assert_eq!(retry_delay(base, 40, None), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(base, 0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(base, 0, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        let headers = HeaderMap::new();
        for (status, retry) in [
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (401, false),
        ] {
            let failure = Failure::http(
                NotifyError::WebhookStatus(status),
                StatusCode::from_u16(status).unwrap(),
                &headers,
            );
            assert_eq!(failure.retry, retry, "{status}");
        }
    }

    async fn run(outcomes: &[Option<bool>], retries: u32) -> (Result<(), NotifyError>, u32, u32) {
        let calls = AtomicU32::new(0);
        let mut retried = 0;
        let policy = RetryPolicy {
            retries,
            backoff: Duration::from_millis(1),
        };
        let result = with_retries(
            policy,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
                let outcome = outcomes.get(n).copied().flatten();
                async move {
                    match outcome {
                        None => Ok(()),
                        Some(retry) => Err(Failure {
                            error: NotifyError::WebhookStatus(500),
                            retry,
                            retry_after: None,
                        }),
                    }
                }
            },
            |n, _, _| retried = n,
        )
        .await;
        (result, calls.load(Ordering::SeqCst), retried)
    }

    #[tokio::test]
    async fn the_loop_stops_on_success_on_a_permanent_failure_and_when_the_budget_is_spent() {
        // `Some(true)`: transient failure, `Some(false)`: permanent, `None`: success.
        let (result, calls, retried) = run(&[Some(true), Some(true), None], 3).await;
        assert!(result.is_ok());
        assert_eq!((calls, retried), (3, 2));
        let (result, calls, _) = run(&[Some(true), Some(false), None], 3).await;
        assert!(result.is_err());
        assert_eq!(calls, 2);
        let (result, calls, retried) = run(&[Some(true); 5], 2).await;
        assert!(result.is_err());
        assert_eq!((calls, retried), (3, 2));
    }
}
