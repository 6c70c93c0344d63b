//! Per-operation timeouts, retries of transient failures with jittered exponential backoff, and the
//! latency metric of every store operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::config::StoreConfig;
use super::error::StoreError;
use crate::backoff::{Backoff, Jitter};
use crate::metrics::Metrics;

/// Waits between attempts: 100 ms doubling up to 2 s, plus up to half of that.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(2),
    jitter: Jitter::Half,
};

/// How long an operation may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Budget {
    /// Reads and writes of one session.
    Short,
    /// Lists, metrics, exports and maintenance batches.
    Long,
}

/// Runs store operations with the configured policy.
#[derive(Clone)]
pub(crate) struct Runner {
    metrics: Arc<Metrics>,
    short: Duration,
    long: Duration,
    /// The whole wait of a short operation, retries included.
    short_total: Duration,
    attempts: u32,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("short", &self.short)
            .field("long", &self.long)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl Runner {
    pub(crate) fn new(config: &StoreConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            short: config.operation_timeout,
            long: config.list_timeout,
            short_total: config.request_wait,
            attempts: config.retry_attempts.max(1),
        }
    }

    /// Runs `op`, timing it under `name`; each attempt has the budget's timeout; transient failures are
    /// retried (all of them when `idempotent`, else only those where the request was not sent). All
    /// attempts together end within the budget's whole wait (`request_wait` for a short operation,
    /// `list_timeout` for a long one): then the operation fails with [`StoreError::Timeout`].
    pub(crate) async fn run<T, F, Fut>(
        &self,
        name: &'static str,
        budget: Budget,
        idempotent: bool,
        op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let _timer = self.metrics.store_timer(name);
        let (timeout, total) = match budget {
            Budget::Short => (self.short, self.short_total),
            Budget::Long => (self.long, self.long),
        };
        match tokio::time::timeout(total, self.attempts(name, timeout, idempotent, op)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout { operation: name }),
        }
    }

    async fn attempts<T, F, Fut>(
        &self,
        name: &'static str,
        timeout: Duration,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(timeout, op()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout { operation: name }),
            };
            match result {
                Err(e) if attempt < self.attempts && e.is_transient(idempotent) => {
                    tracing::warn!(operation = name, attempt, error = %e, "transient store error, retrying");
                    let wait = BACKOFF.delay(attempt, &mut rand::rng());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn runner(attempts: u32, timeout: Duration) -> Runner {
        let config = StoreConfig {
            operation_timeout: timeout,
            list_timeout: timeout,
            retry_attempts: attempts,
            ..StoreConfig::default()
        };
        Runner::new(&config, Arc::new(Metrics::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff_until_success() {
        let runner = runner(3, Duration::from_secs(1));
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = runner
            .run("op", Budget::Short, true, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(StoreError::Timeout { operation: "op" })
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two backoffs: 100 ms and 200 ms, each with up to 50 % jitter (paused clock: no real waiting).
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited <= Duration::from_millis(450),
            "{waited:?}"
        );
        let samples = runner
            .metrics
            .store_operation
            .with_label_values(&["op"])
            .get_sample_count();
        assert_eq!(samples, 1, "one operation, timed once across its attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_that_never_answers_times_out_after_its_attempts() {
        let runner = runner(2, Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = runner
            .run("stuck", Budget::Short, true, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending().await
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::Timeout { operation: "stuck" })),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_idempotent_operation_is_not_retried_after_a_timeout() {
        let runner = runner(3, Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = runner
            .run("write", Budget::Short, false, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending().await
            })
            .await;
        assert!(matches!(result, Err(StoreError::Timeout { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the outcome is unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let runner = runner(3, Duration::from_secs(1));
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = runner
            .run("find", Budget::Short, true, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(StoreError::NotFound)
            })
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
