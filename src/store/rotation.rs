//! Key rotation, written once above the backends: the driver walks the sessions in id order in batches,
//! decides which values need re-encrypting, re-seals them under the active key and counts what was
//! written and what was skipped. A backend ([`RotationBackend`]) only reads a batch after a checkpoint,
//! writes the re-sealed values where they are unchanged (with the next checkpoint) and re-seals the key
//! canary.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::crypto::{Binding, Keyring, StoredKind};
use super::error::StoreError;
use super::keycheck::seal_canary;
use super::records::{RotationProgress, RotationStats};

/// Where an interrupted rotation resumes: after session `after`, as long as `key` is still the active
/// key (MongoDB: `{_id: "rotation", key, after}` in `<c>_meta`; embedded: JSON under `rotation` in `meta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationCheckpoint {
    /// The active key id of the run that wrote the checkpoint.
    pub key: String,
    /// The last session id of the last batch written.
    pub after: String,
}

/// Which value of a session a stored string is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedField {
    /// The session name.
    Name,
    /// The content of the `index`-th message (from 0), whose id is `id` (derived for Go messages).
    Message {
        /// Position of the message in the session.
        index: u64,
        /// Message id (the encryption binding).
        id: String,
    },
}

/// One stored value as read: a ciphertext under some key, a Go ciphertext or plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// The session it belongs to.
    pub session: String,
    /// Which value it is.
    pub field: SealedField,
    /// Its stored form.
    pub stored: String,
}

impl SealedValue {
    /// The encryption binding of this value, and whether Go formats are allowed for it (contents only).
    fn binding(&self) -> (Binding<'_>, bool) {
        match &self.field {
            SealedField::Name => (
                Binding::Name {
                    session: &self.session,
                },
                false,
            ),
            SealedField::Message { id, .. } => (
                Binding::Message {
                    session: &self.session,
                    message: id,
                },
                true,
            ),
        }
    }
}

/// The sessions of one batch, in id order.
#[derive(Debug, Clone, Default)]
pub struct RotationBatch {
    /// Sessions read (a batch shorter than asked for is the last).
    pub scanned: usize,
    /// The id of the last session read, the next checkpoint.
    pub last: Option<String>,
    /// Their names and message contents.
    pub values: Vec<SealedValue>,
}

/// A value re-sealed under the active key: written only where the store still holds `value.stored`.
#[derive(Debug, Clone)]
pub struct Resealed {
    /// The value as read.
    pub value: SealedValue,
    /// Its new stored form.
    pub sealed: String,
}

/// What writing one batch of re-sealed values did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Names replaced.
    pub names: u64,
    /// Message contents replaced.
    pub messages: u64,
    /// Values changed since they were read, left as they are (the next run picks them up).
    pub skipped: u64,
}

impl Rewritten {
    /// Counts one value: written, or skipped when the store holds another value now.
    pub fn count(&mut self, field: &SealedField, written: bool) {
        match (written, field) {
            (false, _) => self.skipped += 1,
            (true, SealedField::Name) => self.names += 1,
            (true, SealedField::Message { .. }) => self.messages += 1,
        }
    }
}

/// What a store provides for [`rotate`]. Each call is one unit of work with the store's timeouts.
#[async_trait]
pub trait RotationBackend: Send + Sync {
    /// The keyring values are sealed with.
    fn keyring(&self) -> &Keyring;

    /// The saved checkpoint, if any.
    async fn rotation_checkpoint(&self) -> Result<Option<RotationCheckpoint>, StoreError>;

    /// Up to `limit` sessions with an id after `after` (all when `None`), in id order, with their
    /// non-empty names and every message content.
    async fn rotation_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RotationBatch, StoreError>;

    /// Writes each re-sealed value where the store still holds the value as read (a value changed
    /// meanwhile is skipped, never overwritten), then saves `checkpoint` (`None`: removes it).
    async fn write_rotated(
        &self,
        values: &[Resealed],
        checkpoint: Option<&RotationCheckpoint>,
    ) -> Result<Rewritten, StoreError>;

    /// Replaces the key canary with `sealed`.
    async fn reseal_canary(&self, sealed: &str) -> Result<(), StoreError>;
}

/// Re-encrypts every value not under the active key (other key ids, Go ciphertexts, plaintext) in
/// batches of `batch_size` sessions, calling `progress` after each batch. Resumable: the checkpoint is
/// saved with each batch, per active key; values already under the active key are left alone. A run that
/// reaches the end with nothing skipped re-seals the key canary under the active key.
pub async fn rotate<B: RotationBackend + ?Sized>(
    backend: &B,
    batch_size: usize,
    progress: RotationProgress<'_>,
) -> Result<RotationStats, StoreError> {
    let batch_size = batch_size.max(1);
    let keyring = backend.keyring();
    let active = keyring.active_id().to_string();
    let mut after = backend
        .rotation_checkpoint()
        .await?
        .filter(|c| c.key == active)
        .map(|c| c.after);
    let mut stats = RotationStats::default();
    loop {
        let batch = backend.rotation_batch(after.as_deref(), batch_size).await?;
        let done = batch.scanned < batch_size;
        let checkpoint = match (done, batch.last) {
            (false, Some(last)) => Some(RotationCheckpoint {
                key: active.clone(),
                after: last,
            }),
            _ => None,
        };
        let resealed = reseal(keyring, batch.values)?;
        let written = backend
            .write_rotated(&resealed, checkpoint.as_ref())
            .await?;
        stats.sessions_scanned += batch.scanned as u64;
        stats.names_reencrypted += written.names;
        stats.messages_reencrypted += written.messages;
        stats.skipped += written.skipped;
        stats.done = done;
        if done && stats.skipped == 0 {
            // Every value is under the active key now: so is the canary from then on.
            backend.reseal_canary(&seal_canary(keyring)?).await?;
        }
        progress(&stats);
        if done {
            return Ok(stats);
        }
        after = checkpoint.map(|c| c.after);
    }
}

/// The values of `values` not under the active key, re-sealed under it. A value that cannot be
/// decrypted stops the rotation with the error (rotation is strict).
fn reseal(keyring: &Keyring, values: Vec<SealedValue>) -> Result<Vec<Resealed>, StoreError> {
    let mut out = Vec::new();
    for value in values {
        let (binding, legacy) = value.binding();
        if value.field == SealedField::Name && value.stored.is_empty()
            || keyring.classify(&value.stored, legacy) == StoredKind::Active
        {
            continue;
        }
        let plain = keyring.decrypt(&value.stored, binding, legacy)?;
        let sealed = keyring.encrypt(&plain, binding)?;
        out.push(Resealed { value, sealed });
    }
    Ok(out)
}
