//! Compatibility with the Go service's database: documents in its exact layout (reference 4.2), inserted
//! with the mongodb driver, are read back; documents written here keep its field names.
//!
//! These run at the store level: the HTTP API that would serve them is not part of this module.

use chatbox::store::crypto::{Keyring, parse_key};
use chatbox::store::{MessageRecord, SessionQuery, SortField, SortOrder, now};
use mongodb::bson::{Bson, DateTime, Document, doc};
use time::Duration;

use super::{Backend, KEY_A};

const GO_ACTIVE: &str = "0f3c1a2b4d5e6f708192a3b4c5d6e7f8";
const GO_ENDED: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f809";

fn go_ring() -> Keyring {
    Keyring::new(vec![("k0".into(), parse_key(KEY_A).unwrap())], "k0").unwrap()
}

async fn sessions_collection(backend: &Backend) -> mongodb::Collection<Document> {
    let Backend::Mongo { uri, database } = backend else {
        unreachable!()
    };
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client.database(database).collection("sessions")
}

/// Two sessions exactly as the Go service writes them: encrypted and plaintext contents, int32 numbers,
/// no counters, no message ids.
async fn insert_go_documents(backend: &Backend) -> DateTime {
    let ring = go_ring();
    let start = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    let at = |minutes: i64| DateTime::from_millis(start.timestamp_millis() + minutes * 60_000);
    let coll = sessions_collection(backend).await;
    coll.insert_many([
        doc! {
            "_id": GO_ACTIVE,
            "uid": "gouser",
            "nm": "Where is my parcel?",
            "modelId": "",
            "msgs": [
                { "content": ring.encrypt_legacy("Where is my parcel? It is late.", "k0").unwrap(), "ts": at(1), "sender": "user" },
                { "content": ring.encrypt_legacy("It left the depot this morning.", "k0").unwrap(), "ts": at(2), "sender": "ai",
                  "meta": { "model_id": "gpt-4" } },
                { "content": "plaintext from before the key was set", "ts": at(3), "sender": "user",
                  "fileId": "f-1", "fileUrl": "https://files.example/f-1" },
            ],
            "ts": start,
            "dur": 0i64,
            "adminAssisted": false,
            "helpRequested": false,
            "totalTokens": 0i32,
            "maxRespTime": 0i64,
            "avgRespTime": 0i64,
            "lastActivity": at(3),
            "_ts": start,
            "_mt": at(3),
        },
        doc! {
            "_id": GO_ENDED,
            "uid": "gouser",
            "nm": "",
            "modelId": "claude",
            "msgs": [
                { "content": ring.encrypt_legacy("hello", "k0").unwrap(), "ts": at(-50), "sender": "user" },
            ],
            "ts": at(-60),
            "endTs": at(-40),
            "dur": 1200i64,
            "adminAssisted": false,
            "helpRequested": false,
            "totalTokens": 0i32,
            "maxRespTime": 0i64,
            "avgRespTime": 0i64,
            "shareToken": "abcdefabcdefabcdefabcdefabcdef12",
            "_ts": at(-60),
            "_mt": at(-40),
        },
    ])
    .await
    .unwrap();
    start
}

#[tokio::test]
async fn go_service_documents_are_read_back() {
    let backend = Backend::mongo();
    let start = insert_go_documents(&backend).await;
    let store = backend.open().await;

    let session = store.get_session(GO_ACTIVE).await.unwrap().unwrap();
    assert_eq!(session.user_id, "gouser");
    assert_eq!(session.name, "Where is my parcel?");
    assert_eq!(session.message_count, 3);
    assert_eq!(session.last_seq, 3);
    assert_eq!(
        session.seq_mark, 3,
        "a Go document without seqMark reads it as lastSeq"
    );
    assert!(session.is_active());
    assert_eq!(
        session.started_at.unix_timestamp_nanos() / 1_000_000,
        i128::from(start.timestamp_millis())
    );

    let messages = store.messages(GO_ACTIVE, None).await.unwrap();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        vec![
            "Where is my parcel? It is late.",
            "It left the depot this morning.",
            "plaintext from before the key was set"
        ]
    );
    assert_eq!(messages[0].id, "legacy-0");
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        messages[1].metadata.get("model_id").map(String::as_str),
        Some("gpt-4")
    );
    assert_eq!(messages[2].file_id.as_deref(), Some("f-1"));
    assert_eq!(
        messages[2].file_url.as_deref(),
        Some("https://files.example/f-1")
    );

    // The Go service's active session is the user's active session.
    assert_eq!(
        store.active_session_id("gouser").await.unwrap().as_deref(),
        Some(GO_ACTIVE)
    );
    let active = store
        .get_or_create_active("gouser", None, "demo")
        .await
        .unwrap();
    assert!(!active.created);
    assert_eq!(active.session.id, GO_ACTIVE);
    store
        .append_message(
            GO_ACTIVE,
            &MessageRecord::new("new-1", 4, "user", "a new message"),
        )
        .await
        .unwrap();
    let messages = store.messages(GO_ACTIVE, Some(3)).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "a new message");
    assert_eq!(
        store
            .get_session(GO_ACTIVE)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        4
    );

    // Shared links, lists sorted by the back-filled message count, metrics.
    let shared = store
        .session_by_share_token("abcdefabcdefabcdefabcdefabcdef12")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.id, GO_ENDED);
    assert_eq!(shared.duration_secs, 1200);
    assert_eq!(shared.model_id, "claude");
    let q = SessionQuery {
        sort_by: SortField::MessageCount,
        order: SortOrder::Desc,
        limit: 10,
        ..SessionQuery::default()
    };
    let page = store.list_sessions(&q).await.unwrap();
    let listed: Vec<(&str, i64)> = page
        .sessions
        .iter()
        .map(|s| (s.id.as_str(), s.message_count))
        .collect();
    assert_eq!(listed, vec![(GO_ACTIVE, 4), (GO_ENDED, 1)]);
    let m = store
        .metrics(now() - Duration::hours(4), now())
        .await
        .unwrap();
    assert_eq!((m.total_sessions, m.active_sessions), (2, 1));
    let user = store.list_user_sessions("gouser", 100).await.unwrap();
    assert_eq!(
        user.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![GO_ACTIVE, GO_ENDED]
    );
}

#[tokio::test]
async fn documents_written_here_keep_the_go_field_names() {
    let backend = Backend::mongo();
    let store = backend.open().await;
    let s = store
        .get_or_create_active("u", None, "demo")
        .await
        .unwrap()
        .session;
    store.set_name(&s.id, "Named").await.unwrap();
    store
        .append_message(&s.id, &MessageRecord::new("m1", 1, "user", "hello"))
        .await
        .unwrap();
    store.end_session(&s.id, now()).await.unwrap();
    let sessions = sessions_collection(&backend).await;
    let raw = sessions
        .find_one(doc! { "_id": &s.id })
        .await
        .unwrap()
        .unwrap();
    for field in [
        "uid",
        "nm",
        "modelId",
        "ts",
        "endTs",
        "dur",
        "adminAssisted",
        "helpRequested",
        "totalTokens",
        "lastActivity",
        "maxRespTime",
        "avgRespTime",
        "msgCount",
        "_ts",
        "_mt",
    ] {
        assert!(raw.contains_key(field), "missing {field}: {raw:?}");
    }
    assert!(matches!(raw.get("ts"), Some(Bson::DateTime(_))));
    assert_eq!(raw.get_i32("schema").unwrap(), 3);
    assert!(
        !raw.contains_key("msgs"),
        "messages are documents of their own"
    );
    // The message: a document of `sessions_msgs` with the Go service's message fields.
    let m = sessions
        .client()
        .database(sessions.namespace().db.as_str())
        .collection::<Document>("sessions_msgs")
        .find_one(doc! { "sid": &s.id })
        .await
        .unwrap()
        .expect("the message's document");
    assert_eq!(m.get_str("_id").unwrap(), format!("{}:m1", s.id));
    for field in ["content", "ts", "sender", "id", "seq", "n"] {
        assert!(m.contains_key(field), "missing {field}: {m:?}");
    }
    let content = m.get_str("content").unwrap();
    assert!(
        content.starts_with("cb1:k0:"),
        "new contents carry their key id"
    );
    assert!(!content.contains("hello"));
    assert!(
        raw.get_str("nm").unwrap().starts_with("cb1:"),
        "names are encrypted"
    );
}

#[tokio::test]
async fn rotation_converts_go_ciphertexts_to_the_bound_format() {
    let backend = Backend::mongo();
    insert_go_documents(&backend).await;
    let store = backend.open().await;
    let stats = store.rotate_keys(10, &|_| {}).await.unwrap();
    assert!(stats.done);
    assert_eq!(stats.messages_reencrypted, 4);
    assert_eq!(stats.names_reencrypted, 1);
    let raw = sessions_collection(&backend)
        .await
        .find_one(doc! { "_id": GO_ACTIVE })
        .await
        .unwrap()
        .unwrap();
    let msgs = raw.get_array("msgs").unwrap();
    for (i, m) in msgs.iter().enumerate() {
        let Bson::Document(m) = m else { panic!("msg") };
        assert!(m.get_str("content").unwrap().starts_with("cb1:k0:"));
        assert_eq!(m.get_str("id").unwrap(), format!("legacy-{i}"));
    }
    let messages = store.messages(GO_ACTIVE, None).await.unwrap();
    assert_eq!(messages[2].content, "plaintext from before the key was set");
    assert_eq!(
        store.get_session(GO_ACTIVE).await.unwrap().unwrap().name,
        "Where is my parcel?"
    );
}

#[tokio::test]
async fn the_reference_indexes_and_the_unique_share_token_index_exist_after_start() {
    let backend = Backend::mongo();
    let _store = backend.open().await;
    let sessions = sessions_collection(&backend).await;
    let mut indexes = std::collections::BTreeMap::new();
    let mut cursor = sessions.list_indexes().await.unwrap();
    use futures::TryStreamExt;
    while let Some(index) = cursor.try_next().await.unwrap() {
        let options = index.options.clone().unwrap_or_default();
        if let Some(name) = options.name.clone() {
            indexes.insert(name, (index.keys.clone(), options));
        }
    }
    // Reference 4.4, same names and keys, so the Go service's own indexes are reused.
    for (name, keys) in [
        ("idx_user_id", doc! { "uid": 1 }),
        ("idx_start_time", doc! { "ts": -1 }),
        ("idx_admin_assisted", doc! { "adminAssisted": 1 }),
        ("idx_user_start_time", doc! { "uid": 1, "ts": -1 }),
        ("idx_share_token", doc! { "shareToken": 1 }),
        // Those the queries add: each sort of the admin list, (field, _id), and the active count.
        ("idx_sort_start_time", doc! { "ts": -1, "_id": -1 }),
        ("idx_end_time", doc! { "endTs": -1, "_id": -1 }),
        ("idx_msg_count", doc! { "msgCount": -1, "_id": -1 }),
        ("idx_total_tokens", doc! { "totalTokens": -1, "_id": -1 }),
        ("idx_sort_user_id", doc! { "uid": 1, "_id": 1 }),
    ] {
        let (found, _) = indexes
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from {indexes:?}"));
        assert_eq!(found, &keys, "{name}");
    }
    let (_, share) = &indexes["idx_share_token"];
    assert_eq!(share.unique, Some(true), "share tokens are unique");
    // FerretDB 1.24 accepts and drops the `sparse` option (FerretDB issue 2448); its unique indexes do
    // not count documents without the field as duplicates, so sessions without a token coexist there too.
    let build = sessions
        .client()
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await
        .unwrap();
    if !build.contains_key("ferretdbVersion") {
        assert_eq!(
            share.sparse,
            Some(true),
            "sessions without a token do not collide"
        );
    }
}

#[tokio::test]
async fn the_backfill_counts_go_documents_and_stops_when_cancelled() {
    let backend = Backend::mongo();
    insert_go_documents(&backend).await;
    let store = backend.open().await;
    let sessions = sessions_collection(&backend).await;
    let uncounted = doc! { "msgCount": { "$exists": false } };
    let cancelled = tokio_util::sync::CancellationToken::new();
    cancelled.cancel();
    assert_eq!(store.backfill(&cancelled).await.unwrap(), 0);
    assert_eq!(
        sessions.count_documents(uncounted.clone()).await.unwrap(),
        2
    );
    let running = tokio_util::sync::CancellationToken::new();
    assert_eq!(store.backfill(&running).await.unwrap(), 2);
    assert_eq!(sessions.count_documents(uncounted).await.unwrap(), 0);
    let active = sessions
        .find_one(doc! { "_id": GO_ACTIVE })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.get_i64("msgCount").unwrap(), 3);
    assert_eq!(store.backfill(&running).await.unwrap(), 0, "nothing left");
}

#[tokio::test]
async fn sessions_of_the_array_layout_continue_in_their_array() {
    // A session as this server wrote it before messages had documents of their own (`schema: 2`).
    const OLD: &str = "2b3c4d5e6f708192a3b4c5d6e7f8091a";
    let backend = Backend::mongo();
    let sessions = sessions_collection(&backend).await;
    let at = DateTime::now();
    sessions
        .insert_one(doc! {
            "_id": OLD, "uid": "olduser", "nm": "", "modelId": "demo", "ts": at, "dur": 0i64,
            "msgs": [{ "content": "the first question", "ts": at, "sender": "user", "id": "m1", "seq": 1i64 }],
            "adminAssisted": false, "helpRequested": false, "totalTokens": 0i64, "maxRespTime": 0i64,
            "avgRespTime": 0i64, "msgCount": 1i64, "lastSeq": 1i64, "respCount": 0i64, "respTotalMs": 0i64,
            "schema": 2, "_ts": at, "_mt": at,
        })
        .await
        .unwrap();
    let db = sessions.client().database(sessions.namespace().db.as_str());
    db.collection::<Document>("sessions_active")
        .insert_one(doc! { "_id": "olduser", "sid": OLD, "ts": at })
        .await
        .unwrap();
    let store = backend.open().await;

    let active = store
        .get_or_create_active("olduser", None, "demo")
        .await
        .unwrap();
    assert!(!active.created);
    assert_eq!(active.session.id, OLD);
    store
        .append_message(OLD, &MessageRecord::new("m2", 2, "user", "a follow-up"))
        .await
        .unwrap();
    let mut answer = MessageRecord::new("m3", 3, "ai", "half");
    answer.partial = true;
    store.put_answer(OLD, &answer).await.unwrap();
    let answer = MessageRecord::new("m3", 3, "ai", "the whole answer");
    store.finish_turn(OLD, Some(&answer), None).await.unwrap();

    let contents: Vec<String> = store
        .messages(OLD, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        contents,
        vec!["the first question", "a follow-up", "the whole answer"]
    );
    let raw = sessions
        .find_one(doc! { "_id": OLD })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_array("msgs").unwrap().len(), 3);
    assert_eq!(raw.get_i64("msgCount").unwrap(), 3);
    let own_documents = db
        .collection::<Document>("sessions_msgs")
        .count_documents(doc! { "sid": OLD })
        .await
        .unwrap();
    assert_eq!(own_documents, 0, "nothing moved to documents of their own");
}

#[tokio::test]
async fn a_message_document_whose_count_was_lost_is_counted_on_the_next_load() {
    let backend = Backend::mongo();
    let store = backend.open().await;
    let s = store
        .get_or_create_active("counted", None, "demo")
        .await
        .unwrap()
        .session;
    store
        .append_message(&s.id, &MessageRecord::new("m1", 1, "user", "hello"))
        .await
        .unwrap();
    drop(store);
    // The document of a second message, written while its session's update was lost (a crash between
    // the two, or an outcome never known).
    let sessions = sessions_collection(&backend).await;
    let messages = sessions
        .client()
        .database(sessions.namespace().db.as_str())
        .collection::<Document>("sessions_msgs");
    let mut second = messages
        .find_one(doc! { "_id": format!("{}:m1", s.id) })
        .await
        .unwrap()
        .unwrap();
    second.insert("_id", format!("{}:m2", s.id));
    second.insert("id", "m2");
    second.insert("seq", 7i64);
    second.insert("n", 1i64);
    messages.insert_one(second).await.unwrap();

    let store = backend.open().await;
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!((session.message_count, session.last_seq), (2, 7));
    let raw = sessions
        .find_one(doc! { "_id": &s.id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_i64("msgCount").unwrap(), 2, "stored corrected");
    assert_eq!(raw.get_i64("lastSeq").unwrap(), 7);
}

#[tokio::test]
async fn file_documents_keep_their_documented_fields_and_indexes() {
    use chatbox::store::FileRecord;
    use futures::TryStreamExt;
    let backend = Backend::mongo();
    let store = backend.open().await;
    let created_at = now();
    let file = FileRecord {
        id: "0123456789abcdef0123456789abcdef".to_string(),
        user_id: "u".to_string(),
        session_id: None,
        name: "sealed".to_string(),
        content_type: "text/plain".to_string(),
        size: 12,
        sha256: "cd".repeat(32),
        key_id: "k0".to_string(),
        wrapped_key: "wrapped".to_string(),
        created_at,
        attached_at: None,
    };
    store.insert_file(&file).await.unwrap();
    let sessions = sessions_collection(&backend).await;
    let files = sessions
        .client()
        .database(sessions.namespace().db.as_str())
        .collection::<Document>("sessions_files");
    let raw = files
        .find_one(doc! { "_id": &file.id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        raw,
        doc! {
            "_id": &file.id, "uid": "u", "nm": "sealed", "contentType": "text/plain", "size": 12i64,
            "sha256": "cd".repeat(32), "keyId": "k0", "wrappedKey": "wrapped",
            "ts": DateTime::from_millis((created_at.unix_timestamp_nanos() / 1_000_000) as i64),
        }
    );
    store.attach_file(&file.id, "s1").await.unwrap().unwrap();
    let raw = files
        .find_one(doc! { "_id": &file.id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_str("sid").unwrap(), "s1");
    assert!(matches!(raw.get("attTs"), Some(Bson::DateTime(_))));

    let mut indexes = std::collections::BTreeMap::new();
    let mut cursor = files.list_indexes().await.unwrap();
    while let Some(index) = cursor.try_next().await.unwrap() {
        if let Some(name) = index.options.and_then(|o| o.name) {
            indexes.insert(name, index.keys);
        }
    }
    for (name, keys) in [
        ("idx_file_user", doc! { "uid": 1, "ts": 1, "_id": 1 }),
        ("idx_file_session", doc! { "sid": 1, "ts": 1, "_id": 1 }),
        ("idx_file_attached", doc! { "attTs": 1 }),
    ] {
        assert_eq!(indexes.get(name), Some(&keys), "{name} in {indexes:?}");
    }
}
