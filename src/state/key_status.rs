//! What the server does with the start-up key check ([`Store::check_keys`]): production refuses to start
//! when stored data needs a key the keyring cannot serve; development logs it loudly and `/readyz` reports
//! it. A store unreachable at start is checked again by the first `/readyz` that finds it reachable.

use tokio::sync::Mutex;

use crate::store::{KEY_CHECK_SESSIONS, KeyReport, Store};

/// The outcome of the key check, shared by the start-up and `/readyz`.
#[derive(Debug, Default)]
pub struct KeyStatus {
    /// `None` until a check has run to completion.
    report: Mutex<Option<KeyReport>>,
}

impl KeyStatus {
    /// Runs the check at start. Production: an error naming the missing key ids (never a key) when stored
    /// data needs a key that the keyring cannot serve. Development: the same text logged as an error.
    /// A check that cannot run (store unreachable) is logged and left for `/readyz`.
    pub async fn at_start(store: &dyn Store, production: bool) -> anyhow::Result<Self> {
        let status = Self::default();
        if let Some(report) = status.checked(store).await
            && !report.is_ok()
            && production
        {
            anyhow::bail!("refusing to start in production: {}", report.describe());
        }
        Ok(status)
    }

    /// The report, running the check first when none has completed yet (`None` when it cannot run).
    pub async fn checked(&self, store: &dyn Store) -> Option<KeyReport> {
        let mut report = self.report.lock().await;
        if report.is_none() {
            match store.check_keys(KEY_CHECK_SESSIONS).await {
                Ok(done) => {
                    log(&done);
                    *report = Some(done);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the encryption key check could not run; /readyz runs it again");
                }
            }
        }
        report.clone()
    }
}

fn log(report: &KeyReport) {
    if report.is_ok() {
        tracing::info!(
            canary_key_id = %report.canary_key_id,
            canary_created = report.canary_created,
            values_checked = report.checked,
            "encryption keys open the stored data"
        );
    } else {
        tracing::error!(
            missing_key_ids = ?report.missing,
            "ENCRYPTION KEY MISMATCH: {}; unreadable items are shown empty and marked unreadable",
            report.describe()
        );
    }
}
