//! Connecting, the indexes of reference 4.4, and the background back-fill of the message counts of
//! documents written by the Go service.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::MongoStore;
use super::cache::*;
use crate::metrics::Metrics;
use crate::store::config::StoreConfig;
use crate::store::crypto::Keyring;
use crate::store::error::StoreError;
use crate::store::runner::{Budget, Runner};
use crate::store::slots::SessionSlots;

/// Documents per batch of the message count back-fill (each read with its messages).
pub(super) const BACKFILL_BATCH: usize = 200;

impl MongoStore {
    /// Connects and creates indexes (failures are logged, as the Go service does). The message counts of
    /// documents written by the Go service are filled later, in the background ([`Store::backfill`]).
    pub async fn connect(
        config: &StoreConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let uri = config
            .mongo_uri
            .as_ref()
            .ok_or_else(|| StoreError::Setup("no MongoDB URI configured".into()))?;
        let mut options = ClientOptions::parse(uri.expose_secret()).await?;
        options
            .app_name
            .get_or_insert_with(|| "chatbox".to_string());
        // A request waits for an unreachable server no longer than `request_wait`.
        options.server_selection_timeout = Some(config.operation_timeout.min(config.request_wait));
        // Every command is a round trip: counted by name (`chatbox_mongodb_commands_total`).
        let commands = metrics.store_commands.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                commands
                    .with_label_values(&[started.command_name.as_str()])
                    .inc();
            }
        }));
        options
            .connect_timeout
            .get_or_insert(config.operation_timeout);
        let client = Client::with_options(options)?;
        let store = Self::with_client(
            &client,
            &config.mongo_database,
            &config.mongo_collection,
            config,
            keyring,
            metrics,
        );
        store.ensure_indexes().await;
        Ok(store)
    }

    /// A store over `database.collection` of an existing client (no index creation).
    pub fn with_client(
        client: &Client,
        database: &str,
        collection: &str,
        config: &StoreConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let db = client.database(database);
        let sessions = db.collection(collection);
        let messages = db.collection(&format!("{collection}_msgs"));
        Self {
            batches: super::batch::Batches::new(&messages, &sessions),
            sessions,
            messages,
            locks: db.collection(&format!("{collection}_active")),
            usage: db.collection(&format!("{collection}_usage")),
            meta: db.collection(&format!("{collection}_meta")),
            audit: db.collection(&format!("{collection}_audit")),
            seq_marks: db.collection(&format!("{collection}_seqmarks")),
            files: db.collection(&format!("{collection}_files")),
            keyring,
            runner: Runner::new(config, metrics),
            slots: SessionSlots::new(CACHED_SESSIONS),
            actives: std::sync::Mutex::new(HashMap::new()),
            deferred: Default::default(),
        }
    }

    /// Creates the indexes of reference 4.4 (same names and options, so the Go service's are reused)
    /// and those the queries need. Idempotent. Each creation goes through the runner (the list timeout,
    /// 30 s by default like the Go service's, and retries); failures are logged, and once the server
    /// proves unreachable the remaining indexes are left for the next start rather than waiting out
    /// each one's timeout.
    pub async fn ensure_indexes(&self) {
        let plain = |name: &str, keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        let share = IndexModel::builder()
            .keys(doc! { "shareToken": 1 })
            .options(
                IndexOptions::builder()
                    .name("idx_share_token".to_string())
                    .unique(true)
                    .sparse(true)
                    .build(),
            )
            .build();
        let indexes = [
            (&self.sessions, plain("idx_user_id", doc! { "uid": 1 })),
            (&self.sessions, plain("idx_start_time", doc! { "ts": -1 })),
            (
                &self.sessions,
                plain("idx_admin_assisted", doc! { "adminAssisted": 1 }),
            ),
            (
                &self.sessions,
                plain("idx_user_start_time", doc! { "uid": 1, "ts": -1 }),
            ),
            (&self.sessions, share),
            // The admin list sorts on (field, _id) in one direction: these serve each sort without an
            // in-memory sort (walked backwards for the other direction).
            (
                &self.sessions,
                plain("idx_sort_start_time", doc! { "ts": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_end_time", doc! { "endTs": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_msg_count", doc! { "msgCount": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_total_tokens", doc! { "totalTokens": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_sort_user_id", doc! { "uid": 1, "_id": 1 }),
            ),
            (&self.usage, plain("idx_uid", doc! { "uid": 1 })),
            // A session's messages in conversation order.
            (
                &self.messages,
                plain("idx_session_order", doc! { "sid": 1, "n": 1 }),
            ),
            (
                &self.audit,
                plain("idx_audit_time", doc! { "ts": -1, "_id": -1 }),
            ),
            // Uploaded files, listed oldest first by (ts, _id): a user's, a session's (and, under
            // `sid: null`, the unattached ones), and those attached before a time.
            (
                &self.files,
                plain("idx_file_user", doc! { "uid": 1, "ts": 1, "_id": 1 }),
            ),
            (
                &self.files,
                plain("idx_file_session", doc! { "sid": 1, "ts": 1, "_id": 1 }),
            ),
            (&self.files, plain("idx_file_attached", doc! { "attTs": 1 })),
        ];
        for (collection, model) in indexes {
            let name = model
                .options
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_default();
            let result = self
                .runner
                .run("create_index", Budget::Long, true, || async {
                    collection.create_index(model.clone()).await?;
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_transient(true) => {
                    tracing::warn!(index = %name, collection = %collection.name(), error = %e,
                        "the store is unreachable: index creation is left for the next start");
                    return;
                }
                Err(e) => {
                    tracing::warn!(index = %name, collection = %collection.name(), error = %e,
                        "could not create an index");
                }
            }
        }
    }

    /// One batch of the back-fill: sets `msgCount` (and raises `lastSeq`) on up to `limit` documents
    /// written by the Go service that have no stored count. Returns (documents read, documents updated).
    pub(super) async fn backfill_batch(&self, limit: usize) -> Result<(usize, u64), StoreError> {
        let mut cursor = self
            .sessions
            .find(doc! { "msgCount": { "$exists": false } })
            .projection(doc! { "msgs": 1 })
            .limit(super::document::query_limit(limit))
            .await?;
        let mut docs = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            docs.push(d);
        }
        let mut updated = 0;
        for d in &docs {
            let Some(Bson::String(id)) = d.get("_id") else {
                continue;
            };
            let held = self.slots.hold(id).await;
            held.forget();
            if self.correct_counts(d, None).await? {
                updated += 1;
            }
        }
        Ok((docs.len(), updated))
    }

    /// Writes the message count of `doc` (loaded with its `msgs`) when its stored `msgCount` is
    /// `stored` (`None`: missing), and raises `lastSeq` to it: documents the Go service writes get no
    /// counters. True when the document was updated. A concurrent append changes `msgCount` and makes
    /// this a no-op (the next read corrects again).
    pub(super) async fn correct_counts(
        &self,
        doc: &Document,
        stored: Option<i64>,
    ) -> Result<bool, StoreError> {
        let Some(id) = doc.get("_id") else {
            return Ok(false);
        };
        let count = match doc.get("msgs") {
            Some(Bson::Array(msgs)) => msgs.len() as i64,
            _ => 0,
        };
        let guard = match stored {
            Some(n) => Bson::Int64(n),
            None => Bson::Document(doc! { "$exists": false }),
        };
        let r = self
            .sessions
            .update_one(
                doc! { "_id": id.clone(), "msgCount": guard },
                doc! { "$set": { "msgCount": count }, "$max": { "lastSeq": count } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }
}

pub(super) async fn ping(store: &MongoStore) -> Result<(), StoreError> {
    let db = store
        .sessions
        .client()
        .database(store.sessions.namespace().db.as_str());
    store
        .runner
        .run("ping", Budget::Short, true, || async {
            tokio::time::timeout(Duration::from_secs(2), db.run_command(doc! { "ping": 1 }))
                .await
                .map_err(|_| StoreError::Timeout { operation: "ping" })??;
            Ok(())
        })
        .await
}

pub(super) async fn backfill(
    store: &MongoStore,
    shutdown: &CancellationToken,
) -> Result<u64, StoreError> {
    let pending = store
        .runner
        .run("backfill_counts", Budget::Long, true, || async {
            Ok(store
                .sessions
                .count_documents(doc! { "msgCount": { "$exists": false } })
                .await?)
        })
        .await?;
    if pending == 0 {
        return Ok(0);
    }
    tracing::info!(
        pending,
        "filling the message counts of sessions written by the Go service, in the background"
    );
    let mut updated = 0;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                tracing::info!(updated, pending, "message count back-fill stopped by shutdown; the next start resumes it");
                return Ok(updated);
            }
            batch = store.runner.run("backfill_counts", Budget::Long, true, || {
                store.backfill_batch(BACKFILL_BATCH)
            }) => batch?,
        };
        updated += batch.1;
        tracing::info!(updated, pending, "message count back-fill progress");
        // A short batch is the last; a full one that changed nothing would repeat forever.
        if batch.0 < BACKFILL_BATCH || batch.1 == 0 {
            return Ok(updated);
        }
    }
}
