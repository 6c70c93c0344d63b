//! Group commit: one writer thread takes every write job waiting, runs them in one write transaction
//! and commits once before answering (counted by `chatbox_embedded_commits_total` and
//! `chatbox_embedded_writes_total`); reads run on blocking threads.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use redb::WriteTransaction;
use tokio::sync::{mpsc, oneshot};

use super::{EmbeddedStore, Inner};
use crate::metrics::Metrics;
use crate::store::error::StoreError;
use crate::store::runner::Budget;

/// Most write jobs committed together in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// What running a job in the batch's transaction left behind.
pub(super) enum Applied {
    /// The job succeeded, or failed before writing anything: the transaction holds exactly the
    /// successful jobs so far.
    Clean,
    /// The job failed and may have written part of its changes: the transaction must be rolled back.
    Dirty,
}

/// A queued write: runs in the batch's transaction, answers its caller after the commit.
pub(super) trait WriteJob: Send {
    /// Runs the job in `txn` and keeps its result. May run again in a new transaction if another job
    /// of the batch forced a rollback (the result of the run that is committed is the one answered).
    fn apply(&mut self, txn: &WriteTransaction, inner: &Inner) -> Applied;
    /// Answers the caller: the job's result if `commit` succeeded, else the commit's error.
    fn reply(self: Box<Self>, commit: Result<(), &StoreError>);
}

pub(super) struct Job<T, F> {
    pub(super) f: Arc<F>,
    /// The job returns its logical errors (see [`fails_before_writing`]) before its first write.
    pub(super) checks_first: bool,
    pub(super) result: Option<Result<T, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
}

/// Errors that a `checks_first` job returns only before writing anything (missing or ended session,
/// invalid input, encryption and decryption failures). Storage and decoding errors can come at any point.
pub(super) fn fails_before_writing(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound
            | StoreError::SessionEnded
            | StoreError::InvalidCursor
            | StoreError::InvalidQuery(_)
            | StoreError::Crypto(_)
    )
}

/// `e` as the error of every job of a failed batch.
pub(super) fn batch_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Embedded(message) => StoreError::Embedded(message.clone()),
        other => StoreError::Embedded(other.to_string()),
    }
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
{
    fn apply(&mut self, txn: &WriteTransaction, inner: &Inner) -> Applied {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (self.f)(txn, inner)))
            .unwrap_or_else(|_| Err(StoreError::Embedded("write job panicked".to_string())));
        let clean = match &result {
            Ok(_) => true,
            Err(e) => self.checks_first && fails_before_writing(e),
        };
        self.result = Some(result);
        if clean {
            Applied::Clean
        } else {
            Applied::Dirty
        }
    }

    fn reply(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Embedded("write job not run".to_string()))),
            Err(e) => Err(batch_error(e)),
        };
        // The caller may have given up (timeout, cancelled request): nothing to answer then.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]) and commits them together, until
/// the store is dropped (the queue is closed and drained).
pub(super) fn run(
    inner: Arc<Inner>,
    mut jobs: mpsc::UnboundedReceiver<Box<dyn WriteJob>>,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = jobs.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics.embedded_commits.inc();
        metrics.embedded_writes.inc_by(batch.len() as u64);
        commit_batch(&inner, std::mem::take(&mut batch));
    }
}

/// Runs `batch` in order in one write transaction and commits it once (durably), then answers every
/// job. A job that fails cleanly (before writing) is answered with its error and the others go on. A job
/// that fails after it may have written rolls the transaction back: it is answered with its error and
/// the rest of the batch runs again in a new transaction (jobs are answered only after the commit, so
/// a rerun is invisible to callers). A failed commit fails every job of the batch: nothing is
/// acknowledged that is not durable.
pub(super) fn commit_batch(inner: &Inner, mut batch: Vec<Box<dyn WriteJob>>) {
    while !batch.is_empty() {
        let txn = match inner.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let e = StoreError::from(e);
                for job in batch {
                    job.reply(Err(&e));
                }
                return;
            }
        };
        let dirty = batch
            .iter_mut()
            .position(|job| matches!(job.apply(&txn, inner), Applied::Dirty));
        match dirty {
            Some(index) => {
                if let Err(e) = txn.abort() {
                    tracing::warn!(error = %e, "embedded store: aborting a write batch failed");
                }
                // Its own error: none of its writes is committed.
                batch.remove(index).reply(Ok(()));
            }
            None => {
                let committed = txn.commit().map_err(StoreError::from);
                if let Err(e) = &committed {
                    tracing::error!(error = %e, jobs = batch.len(), "embedded store: commit failed");
                }
                for job in batch {
                    job.reply(committed.as_ref().map(|_| ()));
                }
                return;
            }
        }
    }
}

impl EmbeddedStore {
    /// Queues the write job `f` for the writer thread (group commit) and waits for its durable commit,
    /// with the operation's timeout and metric. `f` must return its logical errors (see
    /// [`fails_before_writing`]) before its first write; jobs that cannot use [`Self::write_mixed`].
    pub(super) async fn write<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        self.queue(name, budget, true, f).await
    }

    /// [`Self::write`] for a job that may fail after writing (maintenance batches): any error of it
    /// rolls back the batch's transaction, and the other jobs run again without it.
    pub(super) async fn write_mixed<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        self.queue(name, budget, false, f).await
    }

    pub(super) async fn queue<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        checks_first: bool,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        // Not idempotent: once queued, a job is applied (or fails) whether or not its caller still waits;
        // there is no way to take it back. A timeout therefore means "outcome unknown" and must not be
        // retried, or a job still queued or committing would be applied twice (a doubled `record_usage`,
        // a second session from `get_or_create_active`). With `idempotent = false` the runner retries
        // no embedded error (only timeouts were ever transient here), so every attempt is the only one.
        self.runner
            .run(name, budget, false, || {
                let f = f.clone();
                async move {
                    let stopped =
                        || StoreError::Embedded("the store writer has stopped".to_string());
                    let (reply, answer) = oneshot::channel();
                    let job = Box::new(Job {
                        f,
                        checks_first,
                        result: None,
                        reply,
                    });
                    self.jobs
                        .as_ref()
                        .ok_or_else(stopped)?
                        .send(job)
                        .map_err(|_| stopped())?;
                    answer.await.map_err(|_| stopped())?
                }
            })
            .await
    }

    /// Runs `f` on a blocking thread with the operation's timeout and metric.
    pub(super) async fn blocking<T, F>(
        &self,
        name: &'static str,
        budget: Budget,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Inner) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.runner
            .run(name, budget, true, || {
                let inner = self.inner.clone();
                let f = f.clone();
                async move {
                    tokio::task::spawn_blocking(move || f(&inner))
                        .await
                        .map_err(|e| StoreError::Embedded(e.to_string()))?
                }
            })
            .await
    }
}
