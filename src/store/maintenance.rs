//! Maintenance jobs over any [`Store`]: key rotation with progress output, user export and deletion
//! (the CLI commands and the admin endpoint call these), the audit entries of the CLI commands, and the
//! retention purge with its periodic task, the active-sessions gauge refresh and the background
//! back-fill.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

use super::{
    AuditKind, AuditRecord, DeleteStats, RotationStats, Store, StoreError, StoredAudit, UserExport,
};

/// `admin_id` of the audit entries written by the command line.
pub const CLI_ADMIN_ID: &str = "cli";

/// Default number of sessions re-encrypted per batch by `chatbox keys rotate`.
pub const DEFAULT_ROTATION_BATCH: usize = 100;

/// `chatbox keys rotate`: re-encrypts everything not under the active key, writing one progress line per
/// batch to `out`. Safe to interrupt and run again: it resumes from its checkpoint.
pub async fn rotate_keys(
    store: &dyn Store,
    batch_size: usize,
    out: &mut (dyn Write + Send),
) -> Result<RotationStats, StoreError> {
    let out = Mutex::new(out);
    let report = |stats: &RotationStats| {
        if let Ok(mut out) = out.lock() {
            // Progress output is best effort; the checkpoint is what makes the job resumable.
            let _ = writeln!(
                out,
                "rotated: {} sessions scanned, {} messages and {} names re-encrypted, {} left for a rerun{}",
                stats.sessions_scanned,
                stats.messages_reencrypted,
                stats.names_reencrypted,
                stats.skipped,
                if stats.done { " (done)" } else { "" },
            );
        }
    };
    store.rotate_keys(batch_size, &report).await
}

/// `chatbox users export <id>` and the admin endpoint: all data of one user as pretty JSON.
pub async fn export_user_json(store: &dyn Store, user_id: &str) -> Result<String, StoreError> {
    Ok(export_user_counted(store, user_id).await?.0)
}

/// [`export_user_json`] with the number of sessions exported (for the audit entry).
pub async fn export_user_counted(
    store: &dyn Store,
    user_id: &str,
) -> Result<(String, usize), StoreError> {
    let export: UserExport = store.export_user(user_id).await?;
    let json =
        serde_json::to_string_pretty(&export).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((json, export.sessions.len()))
}

/// `chatbox users delete <id>` and the admin endpoint: deletes all data of one user.
pub async fn delete_user(store: &dyn Store, user_id: &str) -> Result<DeleteStats, StoreError> {
    let stats = store.delete_user(user_id).await?;
    tracing::info!(
        sessions = stats.sessions,
        messages = stats.messages,
        files = stats.files,
        "deleted the data of one user"
    );
    Ok(stats)
}

/// Records a CLI action on one user (`chatbox users export/delete`) in the audit log: `admin_id` is
/// [`CLI_ADMIN_ID`], `admin_name` the operating-system user running the command when known, and the
/// details get `via=cli`.
pub async fn audit_cli(
    store: &dyn Store,
    kind: AuditKind,
    user_id: &str,
    details: &[(&str, String)],
    os_user: Option<&str>,
) -> Result<StoredAudit, StoreError> {
    let mut details: std::collections::BTreeMap<String, String> = details
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    details.insert("via".into(), "cli".into());
    store
        .record_audit(&AuditRecord {
            admin_id: CLI_ADMIN_ID.to_string(),
            admin_name: os_user.filter(|u| !u.is_empty()).map(String::from),
            kind,
            session_id: None,
            user_id: Some(user_id.to_string()),
            at: super::now(),
            details,
        })
        .await
}

/// The end time before which a session is past a retention of `retention_days` days at `now`.
pub fn retention_cutoff(retention_days: u32, now: OffsetDateTime) -> OffsetDateTime {
    now - time::Duration::days(i64::from(retention_days))
}

/// Deletes sessions ended more than `retention_days` days before `now`; returns how many.
pub async fn purge_expired(
    store: &dyn Store,
    retention_days: u32,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let cutoff = retention_cutoff(retention_days, now);
    let purged = store.purge_ended_before(cutoff).await?;
    if purged > 0 {
        tracing::info!(
            purged,
            retention_days,
            "purged sessions past the retention period"
        );
    }
    Ok(purged)
}

/// Sets `chatbox_active_sessions_total` to the store's count of active sessions (the whole store's, so
/// every replica reports the same global figure); a failure is logged and leaves the gauge as it is.
pub async fn refresh_active_sessions(store: &dyn Store, metrics: &Metrics) {
    match store.count_active_sessions().await {
        Ok(count) => metrics
            .active_sessions
            .set(i64::try_from(count).unwrap_or(i64::MAX)),
        Err(e) => tracing::warn!(error = %e, "could not count the active sessions"),
    }
}

/// Runs [`refresh_active_sessions`] every `interval` until `shutdown` is cancelled. Between refreshes
/// this node's own session starts and ends move the gauge.
pub fn spawn_active_sessions_gauge(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Start-up already seeded the gauge.
    periodically(
        interval,
        shutdown,
        Start::AfterInterval,
        Stop::Return,
        move || {
            let (store, metrics) = (Arc::clone(&store), Arc::clone(&metrics));
            async move { refresh_active_sessions(store.as_ref(), &metrics).await }
        },
    )
}

/// Runs the store's [`Store::flush`] every `interval`, and once more when `shutdown` is cancelled (after
/// the drain, so the last turns' figures are stored); failures are logged (what failed is held for the next
/// flush).
pub fn spawn_flusher(
    store: Arc<dyn Store>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    periodically(
        interval,
        shutdown,
        Start::AfterInterval,
        Stop::RunOnceMore,
        move || {
            let store = Arc::clone(&store);
            async move {
                if let Err(e) = store.flush().await {
                    tracing::warn!(error = %e, "held-back store writes not flushed; retried at the next flush");
                }
            }
        },
    )
}

/// When a periodic task first runs.
pub(crate) enum Start {
    /// At once.
    Now,
    /// After one interval.
    AfterInterval,
}

/// What a periodic task does when shutdown is cancelled.
pub(crate) enum Stop {
    /// Stops.
    Return,
    /// Runs once more, then stops.
    RunOnceMore,
}

/// Runs `work` every `interval` (a late run delays the next ones) until `shutdown` is cancelled.
pub(crate) fn periodically<F, Fut>(
    interval: Duration,
    shutdown: CancellationToken,
    start: Start,
    stop: Stop,
    mut work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Start::AfterInterval = start {
            // The first tick is immediate.
            ticker.tick().await;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Stop::RunOnceMore = stop {
                        work().await;
                    }
                    return;
                }
                _ = ticker.tick() => work().await,
            }
        }
    })
}

/// Runs the store's [`Store::backfill`] once in the background (cancelled by `shutdown`); failures are
/// logged (the next start tries again, and reads correct the records they touch).
pub fn spawn_backfill(
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match store.backfill(&shutdown).await {
            Ok(0) => {}
            Ok(updated) => tracing::info!(updated, "store back-fill finished"),
            Err(e) => {
                tracing::warn!(error = %e, "store back-fill failed; the next start resumes it")
            }
        }
    })
}
