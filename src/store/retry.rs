//! Per-operation timeouts, retries of transient failures with jittered exponential backoff, and the
//! latency metric of every store operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::config::StoreConfig;
use super::error::StoreError;
use crate::metrics::Metrics;

/// First retry delay; doubles per attempt up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);

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
            attempts: config.retry_attempts.max(1),
        }
    }

    /// Runs `op`, timing it under `name`; each attempt has the budget's timeout; transient failures are
    /// retried (all of them when `idempotent`, else only those where the request was not sent).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        name: &'static str,
        budget: Budget,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let _timer = self.metrics.store_timer(name);
        let timeout = match budget {
            Budget::Short => self.short,
            Budget::Long => self.long,
        };
        let mut delay = FIRST_DELAY;
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(timeout, op()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout { operation: name }),
            };
            match result {
                Err(e) if attempt < self.attempts && e.is_transient(idempotent) => {
                    tracing::warn!(operation = name, attempt, error = %e, "transient store error, retrying");
                    let jitter = rand::random_range(0..=delay.as_millis() as u64 / 2);
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay = (delay * 2).min(MAX_DELAY);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
