//! The key rotation primitives of the MongoDB store (the loop is [`crate::store::rotation::rotate`]):
//! batches read in `_id` order, each value replaced by a conditional update on its old value, and the
//! checkpoint `{_id: "rotation", key, after}` in `<c>_meta`.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::MongoStore;
use super::document::*;
use super::maintenance::CANARY_ID;
use crate::store::crypto::Keyring;
use crate::store::error::StoreError;
use crate::store::rotation::{
    Resealed, Rewritten, RotationBackend, RotationBatch, RotationCheckpoint, SealedField,
    SealedValue,
};
use crate::store::runner::Budget;

/// `_id` of the rotation checkpoint in `<c>_meta`.
const ROTATION_ID: &str = "rotation";

#[async_trait]
impl RotationBackend for MongoStore {
    fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    async fn rotation_checkpoint(&self) -> Result<Option<RotationCheckpoint>, StoreError> {
        self.runner
            .run("rotate_keys", Budget::Long, true, || async {
                let stored = self.meta.find_one(doc! { "_id": ROTATION_ID }).await?;
                Ok(stored.and_then(|c| {
                    Some(RotationCheckpoint {
                        key: get_str(&c, "key")?,
                        after: get_str(&c, "after")?,
                    })
                }))
            })
            .await
    }

    async fn rotation_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RotationBatch, StoreError> {
        let filter = match after {
            Some(a) => doc! { "_id": { "$gt": a } },
            None => doc! {},
        };
        self.runner
            .run("rotate_keys", Budget::Long, true, || async {
                let mut cursor = self
                    .sessions
                    .find(filter.clone())
                    .sort(doc! { "_id": 1 })
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .projection(doc! { "nm": 1, "msgs": 1, SCHEMA: 1 })
                    .await?;
                let mut batch = RotationBatch::default();
                let mut with_documents = Vec::new();
                while let Some(d) = cursor.try_next().await? {
                    batch.scanned += 1;
                    let Some(Bson::String(id)) = d.get("_id") else {
                        continue;
                    };
                    batch.last = Some(id.clone());
                    sealed_values(&d, id, &mut batch.values);
                    if MessageLayout::of(&d) == MessageLayout::Documents {
                        with_documents.push(id.clone());
                    }
                }
                if !with_documents.is_empty() {
                    let mut messages = self
                        .messages
                        .find(doc! { "sid": { "$in": with_documents } })
                        .sort(doc! { "sid": 1, "n": 1 })
                        .projection(doc! { "sid": 1, "n": 1, "id": 1, "content": 1 })
                        .await?;
                    while let Some(m) = messages.try_next().await? {
                        let session = get_str(&m, "sid").unwrap_or_default();
                        let index = get_i64(&m, "n").unwrap_or(0);
                        batch
                            .values
                            .push(sealed_message(&session, &m, index as usize));
                    }
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
        self.runner
            .run("rotate_keys", Budget::Long, true, || async {
                let mut rewritten = Rewritten::default();
                for Resealed { value, sealed } in values {
                    let id = value.session.as_str();
                    let (filter, update) = match &value.field {
                        SealedField::Name => (
                            doc! { "_id": id, "nm": &value.stored },
                            doc! { "$set": { "nm": sealed } },
                        ),
                        SealedField::Message { index, id: mid } => {
                            let content_key = format!("msgs.{index}.content");
                            let id_key = format!("msgs.{index}.id");
                            (
                                doc! { "_id": id, &content_key: &value.stored },
                                doc! { "$set": { &content_key: sealed, &id_key: mid } },
                            )
                        }
                    };
                    // One writer at a time per session: a concurrent append is not undone by a server
                    // that applies updates as read-modify-write. The cache holds plaintext and stays valid.
                    let _held = self.slots.hold(id).await;
                    // A message of its own document (sessions of `schema: 3`) is rewritten there; one in
                    // `msgs` matches nothing there and is rewritten in its session's document.
                    let own_document = match &value.field {
                        SealedField::Message { id: mid, .. } => self
                            .messages
                            .update_one(
                                doc! { "_id": message_doc_id(id, mid), "content": &value.stored },
                                doc! { "$set": { "content": sealed } },
                            )
                            .await?
                            .matched_count
                            == 1,
                        SealedField::Name => false,
                    };
                    let modified = own_document
                        || self
                            .sessions
                            .update_one(filter, update)
                            .await?
                            .modified_count
                            == 1;
                    rewritten.count(&value.field, modified);
                }
                match checkpoint {
                    Some(c) => {
                        self.meta
                            .update_one(
                                doc! { "_id": ROTATION_ID },
                                doc! { "$set": { "key": &c.key, "after": &c.after } },
                            )
                            .upsert(true)
                            .await?;
                    }
                    None => {
                        self.meta.delete_one(doc! { "_id": ROTATION_ID }).await?;
                    }
                }
                Ok(rewritten)
            })
            .await
    }

    async fn reseal_canary(&self, sealed: &str) -> Result<(), StoreError> {
        self.runner
            .run("rotate_keys", Budget::Short, true, || async {
                self.meta
                    .update_one(
                        doc! { "_id": CANARY_ID },
                        doc! { "$set": { "value": sealed } },
                    )
                    .upsert(true)
                    .await?;
                Ok(())
            })
            .await
    }
}

/// The name and message contents of session document `d` (id `id`).
fn sealed_values(d: &Document, id: &str, out: &mut Vec<SealedValue>) {
    if let Some(Bson::String(nm)) = d.get("nm") {
        out.push(SealedValue {
            session: id.to_string(),
            field: SealedField::Name,
            stored: nm.clone(),
        });
    }
    let Some(Bson::Array(msgs)) = d.get("msgs") else {
        return;
    };
    for (index, m) in msgs.iter().enumerate() {
        let Bson::Document(m) = m else { continue };
        out.push(sealed_message(id, m, index));
    }
}

/// The content of message `m`, the `index`-th of session `session`.
fn sealed_message(session: &str, m: &Document, index: usize) -> SealedValue {
    let stored = match m.get("content") {
        Some(Bson::String(s)) => s.clone(),
        _ => String::new(),
    };
    let (mid, _) = message_identity(m, index);
    SealedValue {
        session: session.to_string(),
        field: SealedField::Message {
            index: index as u64,
            id: mid,
        },
        stored,
    }
}
