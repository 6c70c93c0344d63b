//! Storage conformance: one suite of cases run against the embedded store and against MongoDB (the
//! FerretDB that `scripts/test.sh` starts, `MONGODB_URI`), plus the Go-service compatibility cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;
mod compat;

use std::sync::Arc;

use chatbox::metrics::Metrics;
use chatbox::store::{self, Store, StoreConfig};
use secrecy::SecretString;
use tempfile::TempDir;

/// Key of most tests (32 raw bytes, as the Go service takes it).
pub const KEY_A: &str = "0123456789abcdef0123456789abcdef";
/// A second key, base64.
pub const KEY_B: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// Where a test's data lives; stores can be reopened on it with other key settings.
pub enum Backend {
    /// A temporary data directory.
    Embedded(TempDir),
    /// A fresh database on the test MongoDB.
    Mongo { uri: String, database: String },
}

impl Backend {
    pub fn embedded() -> Self {
        Backend::Embedded(tempfile::tempdir().unwrap())
    }

    pub fn mongo() -> Self {
        let uri = std::env::var("MONGODB_URI").unwrap_or_default();
        assert!(
            !uri.is_empty(),
            "MONGODB_URI is not set: run the tests through scripts/test.sh, which starts FerretDB and sets it"
        );
        Backend::Mongo {
            uri,
            database: format!("chatbox_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The data directory of an embedded backend.
    pub fn data_dir(&self) -> &std::path::Path {
        match self {
            Backend::Embedded(dir) => dir.path(),
            Backend::Mongo { .. } => panic!("a MongoDB backend has no data directory"),
        }
    }

    /// Config with key A only.
    pub fn config(&self) -> StoreConfig {
        self.config_with(&[("k0", KEY_A)], "k0")
    }

    /// Config with the given keys and active key id.
    pub fn config_with(&self, keys: &[(&str, &str)], active: &str) -> StoreConfig {
        let mut config = StoreConfig::default();
        for (id, key) in keys {
            config
                .encryption_keys
                .insert((*id).to_string(), SecretString::from(*key));
        }
        config.active_key_id = Some(active.to_string());
        if let Backend::Mongo { uri, database } = self {
            config.mongo_uri = Some(SecretString::from(uri.as_str()));
            config.mongo_database = database.clone();
        }
        config
    }

    pub async fn open_with(
        &self,
        config: &StoreConfig,
    ) -> Result<Arc<dyn Store>, store::StoreError> {
        let dir = match self {
            Backend::Embedded(dir) => dir.path().to_path_buf(),
            Backend::Mongo { .. } => std::env::temp_dir(),
        };
        store::open(config, &dir, false, Arc::new(Metrics::new())).await
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        self.open_with(&self.config()).await.unwrap()
    }
}

/// Runs each named case of [`cases`] against both stores.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::cases::$name(super::Backend::embedded()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $name() {
                    super::cases::$name(super::Backend::mongo()).await;
                }
            )*
        }
    };
}

conformance!(
    concurrent_first_messages_create_one_session,
    concurrent_callers_with_one_reserved_id_create_one_session,
    retried_append_after_other_messages_is_a_duplicate,
    reserved_id_is_used_and_ended_session_is_replaced,
    append_is_idempotent_by_message_id,
    ended_session_refuses_messages_and_ending_twice_changes_nothing,
    session_figures_are_persisted,
    share_tokens_are_unique_and_revocable,
    admin_list_sorts_filters_and_paginates,
    user_list_is_newest_first,
    metrics_figures_cover_the_range,
    purge_removes_only_old_ended_sessions,
    export_and_delete_cover_all_user_data,
    key_rotation_is_resumable,
    rotation_skips_values_changed_during_a_batch,
    senders_are_stored_as_their_strings_and_unknown_ones_are_kept,
    unreadable_items_are_marked_and_lists_still_work,
    key_check_writes_a_canary_and_names_missing_key_ids,
    ciphertext_moved_to_another_message_does_not_open,
    legacy_contents_are_read,
    legacy_plaintext_that_looks_like_base64_is_read_as_is,
    ping_reports_ready,
    audit_log_records_and_pages_newest_first,
    audit_log_survives_reopening_and_user_deletion,
    only_one_of_racing_admins_claims_a_session,
    assistance_is_released_only_by_its_admin,
    the_seq_mark_only_rises_and_survives_reopening,
    concurrent_appends_to_one_session_lose_nothing,
    finished_turn_stores_answer_and_figures,
    checkpointed_answer_is_replaced_in_place,
    file_metadata_round_trips_and_delete_returns_it,
    a_file_is_attached_to_its_first_session_only,
    file_lists_select_by_filter_oldest_first_within_the_limit,
    file_keys_are_rewrapped,
    deleting_a_user_removes_their_files_and_the_purge_keeps_them,
);

/// Writes stored values directly, bypassing encryption (to load legacy formats and tampered values).
pub enum RawWriter {
    Embedded(Arc<store::embedded::EmbeddedStore>),
    Mongo(mongodb::Collection<mongodb::bson::Document>),
}

impl Backend {
    /// A store plus raw access to the same data.
    pub async fn open_raw(&self) -> (Arc<dyn Store>, RawWriter) {
        let config = self.config();
        match self {
            Backend::Embedded(dir) => {
                let keyring = Arc::new(store::load_keyring(&config, dir.path(), false).unwrap());
                let embedded = Arc::new(
                    store::embedded::EmbeddedStore::open(
                        &dir.path().join(store::embedded::DB_FILE),
                        &config,
                        keyring,
                        Arc::new(Metrics::new()),
                    )
                    .await
                    .unwrap(),
                );
                (embedded.clone(), RawWriter::Embedded(embedded))
            }
            Backend::Mongo { uri, database } => {
                let client = mongodb::Client::with_uri_str(uri).await.unwrap();
                let coll = client.database(database).collection("sessions");
                (self.open().await, RawWriter::Mongo(coll))
            }
        }
    }
}

impl RawWriter {
    /// Appends a message whose stored content is exactly `stored`.
    pub async fn insert_message(
        &self,
        session: &str,
        message: &store::MessageRecord,
        stored: &str,
    ) {
        match self {
            RawWriter::Embedded(s) => {
                store::embedded::insert_raw_message(s, session, message, stored)
                    .await
                    .unwrap()
            }
            RawWriter::Mongo(coll) => {
                use mongodb::bson::doc;
                let ts = mongodb::bson::DateTime::from_millis(
                    (message.timestamp.unix_timestamp_nanos() / 1_000_000) as i64,
                );
                // Sessions created here keep their messages as documents of their own
                // (`<collection>_msgs`, `_id` "<session>:<message id>", in order of `n`).
                let messages =
                    coll.client()
                        .database(coll.namespace().db.as_str())
                        .collection::<mongodb::bson::Document>(&format!("{}_msgs", coll.name()));
                messages
                    .insert_one(doc! {
                        "_id": format!("{session}:{}", message.id), "sid": session, "n": message.seq as i64,
                        "content": stored, "ts": ts, "sender": message.sender.as_str(),
                        "id": &message.id, "seq": message.seq as i64,
                    })
                    .await
                    .unwrap();
                coll.update_one(
                    doc! { "_id": session },
                    doc! { "$inc": { "msgCount": 1i64 }, "$max": { "lastSeq": message.seq as i64 } },
                )
                .await
                .unwrap();
            }
        }
    }
}
