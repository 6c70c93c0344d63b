//! The key rotation primitives of the embedded store (the loop is [`crate::store::rotation::rotate`]):
//! batches read in session id order, the re-sealed values and the checkpoint written in one transaction,
//! each value only where the row still holds it as read.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};

use super::EmbeddedStore;
use super::maintenance::CANARY_KEY;
use super::rows::*;
use super::tables::*;
use crate::store::crypto::Keyring;
use crate::store::error::StoreError;
use crate::store::rotation::{
    Resealed, Rewritten, RotationBackend, RotationBatch, RotationCheckpoint, SealedField,
    SealedValue,
};
use crate::store::runner::Budget;

/// Key of the rotation checkpoint (JSON) in the `meta` table.
const ROTATION_KEY: &str = "rotation";

#[async_trait]
impl RotationBackend for EmbeddedStore {
    fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    async fn rotation_checkpoint(&self) -> Result<Option<RotationCheckpoint>, StoreError> {
        self.blocking("rotate_keys", Budget::Long, |inner| {
            let txn = inner.db.begin_read()?;
            let meta = txn.open_table(META)?;
            let checkpoint = meta.get(ROTATION_KEY)?;
            checkpoint.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn rotation_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RotationBatch, StoreError> {
        let after = after.map(str::to_string);
        self.blocking("rotate_keys", Budget::Long, move |inner| {
            let txn = inner.db.begin_read()?;
            let rows: Vec<SessionRow> = {
                let sessions = txn.open_table(SESSIONS)?;
                let lower = match &after {
                    Some(a) => Bound::Excluded(a.as_str()),
                    None => Bound::Unbounded,
                };
                sessions
                    .range::<&str>((lower, Bound::Unbounded))?
                    .take(limit)
                    .map(|e| decode(e?.1.value()))
                    .collect::<Result<_, StoreError>>()?
            };
            let messages = txn.open_table(MESSAGES)?;
            let mut batch = RotationBatch {
                scanned: rows.len(),
                last: rows.last().map(|r| r.id.clone()),
                values: Vec::new(),
            };
            for row in rows {
                let id = row.id.as_str();
                for entry in messages.range((id, 0u64)..=(id, u64::MAX))? {
                    let (k, v) = entry?;
                    let message: MessageRow = decode(v.value())?;
                    batch.values.push(SealedValue {
                        session: row.id.clone(),
                        field: SealedField::Message {
                            index: k.value().1,
                            id: message.id,
                        },
                        stored: message.c,
                    });
                }
                batch.values.push(SealedValue {
                    session: row.id,
                    field: SealedField::Name,
                    stored: row.nm,
                });
            }
            Ok(batch)
        })
        .await
    }

    async fn write_rotated(
        &self,
        values: &[Resealed],
        checkpoint: Option<&RotationCheckpoint>,
    ) -> Result<Rewritten, StoreError> {
        let values = Arc::new(values.to_vec());
        let checkpoint = checkpoint.cloned();
        self.write_mixed("rotate_keys", Budget::Long, move |txn, _| {
            let mut rewritten = Rewritten::default();
            for resealed in values.iter() {
                let written = write_resealed(txn, resealed)?;
                rewritten.count(&resealed.value.field, written);
            }
            let mut meta = txn.open_table(META)?;
            match &checkpoint {
                Some(c) => {
                    meta.insert(ROTATION_KEY, encode(c)?.as_slice())?;
                }
                None => {
                    meta.remove(ROTATION_KEY)?;
                }
            }
            Ok(rewritten)
        })
        .await
    }

    async fn reseal_canary(&self, sealed: &str) -> Result<(), StoreError> {
        let sealed = sealed.to_string();
        self.write("rotate_keys", Budget::Short, move |txn, _| {
            txn.open_table(META)?
                .insert(CANARY_KEY, sealed.as_bytes())?;
            Ok(())
        })
        .await
    }
}

/// Writes one re-sealed value if its row still holds the value as read; true when written.
fn write_resealed(txn: &WriteTransaction, resealed: &Resealed) -> Result<bool, StoreError> {
    let Resealed { value, sealed } = resealed;
    let id = value.session.as_str();
    match &value.field {
        SealedField::Name => {
            let Some(row) = write_row_get(txn, id)?.filter(|r| r.nm == value.stored) else {
                return Ok(false);
            };
            let mut new = row.clone();
            new.nm = sealed.clone();
            put_row(txn, Some(&row), &new)?;
        }
        SealedField::Message { index, .. } => {
            let mut messages = txn.open_table(MESSAGES)?;
            let stored = messages
                .get((id, *index))?
                .map(|v| decode::<MessageRow>(v.value()))
                .transpose()?;
            let Some(mut message) = stored.filter(|m| m.c == value.stored) else {
                return Ok(false);
            };
            message.c = sealed.clone();
            messages.insert((id, *index), encode(&message)?.as_slice())?;
        }
    }
    Ok(true)
}
