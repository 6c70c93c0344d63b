//! Pointing the server at the Go service's database: documents in its exact layout (reference 4.2, with
//! its encryption of 4.3 and plaintext legacy content) are served by the HTTP API and continued over
//! WebSocket. Needs the MongoDB-compatible server that `scripts/test.sh` starts (`MONGODB_URI`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::{DateTime, doc};
use serde_json::{Value, json};

use chatbox::store::crypto::{Keyring, parse_key};

use crate::support::app::{TestApp, app};
use crate::support::http::message_contents;
use crate::support::wait::eventually_async;

/// `ENCRYPTION_KEY` as the Go service used it: 32 raw ASCII bytes.
const GO_KEY: &str = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e";
const ACTIVE: &str = "5e8b2f1c9a4d7e3b6f0a2c8d4e1b9f7a";
const ENDED: &str = "7c1e4a9f2b6d8e0a3c5f7b9d1e4a6c8f";

/// A server started on a database that already holds the Go service's documents.
async fn go_app() -> TestApp {
    let uri = std::env::var("MONGODB_URI")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("these tests need MONGODB_URI; run scripts/test.sh, which starts FerretDB");
    let database = format!("go_{}", uuid::Uuid::new_v4().simple());
    insert_go_sessions(&uri, &database).await;
    app()
        .env("ENCRYPTION_KEY", GO_KEY)
        .env("MONGO_DATABASE", database)
        .spawn()
        .await
}

/// Inserts two sessions of user `gouser` exactly as the Go service writes them (`chat.sessions` layout).
async fn insert_go_sessions(uri: &str, database: &str) {
    let ring = Keyring::new(vec![("go".into(), parse_key(GO_KEY).unwrap())], "go").unwrap();
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let sessions = client
        .database(database)
        .collection::<mongodb::bson::Document>("sessions");
    let start = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    let at = |minutes: i64| DateTime::from_millis(start.timestamp_millis() + minutes * 60_000);
    sessions
        .insert_many([
            doc! {
                "_id": ACTIVE, "uid": "gouser", "nm": "Where is my parcel?", "modelId": "",
                "msgs": [
                    { "content": ring.encrypt_legacy("Where is my parcel? It is late.", "go").unwrap(), "ts": at(1), "sender": "user" },
                    { "content": ring.encrypt_legacy("It left the depot this morning.", "go").unwrap(), "ts": at(2), "sender": "ai" },
                    { "content": "written before the key was set", "ts": at(3), "sender": "user",
                      "fileId": "f-1", "fileUrl": "https://files.example/f-1", "meta": { "filename": "label.pdf" } },
                ],
                "ts": start, "dur": 0i64, "adminAssisted": false, "helpRequested": false, "totalTokens": 0i32,
                "maxRespTime": 0i64, "avgRespTime": 0i64, "lastActivity": at(3), "_ts": start, "_mt": at(3),
            },
            doc! {
                "_id": ENDED, "uid": "gouser", "nm": "", "modelId": "claude",
                "msgs": [ { "content": ring.encrypt_legacy("hello", "go").unwrap(), "ts": at(-50), "sender": "user" } ],
                "ts": at(-60), "endTs": at(-40), "dur": 1200i64, "adminAssisted": false, "helpRequested": false,
                "totalTokens": 0i32, "maxRespTime": 0i64, "avgRespTime": 0i64,
                "shareToken": "abcdefabcdefabcdefabcdefabcdef12", "_ts": at(-60), "_mt": at(-40),
            },
        ])
        .await
        .unwrap();
}

/// The server's sessions collection, as the Go service running beside it sees it.
async fn go_collection(app: &TestApp) -> mongodb::Collection<mongodb::bson::Document> {
    let uri = std::env::var("MONGODB_URI").unwrap();
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let settings = &app.state.settings.store;
    client
        .database(&settings.mongo_database)
        .collection(&settings.mongo_collection)
}

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn go_sessions_are_served_by_the_http_api() {
    let app = go_app().await;
    let token = app.user_token("gouser");

    let (status, list) = get(&app, "/sessions", &token).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2);
    let first = &list["sessions"][0];
    assert_eq!(first["id"], ACTIVE);
    assert_eq!(first["name"], "Where is my parcel?");
    assert_eq!(first["message_count"], 3);
    assert_eq!(first["is_active"], true);
    assert!(first.get("end_time").is_none());
    assert_eq!(list["sessions"][1]["is_active"], false);
    assert_eq!(list["sessions"][1]["duration"], 1200);

    let (status, detail) = get(&app, &format!("/sessions/{ACTIVE}"), &token).await;
    assert_eq!(status, 200);
    let contents = message_contents(&detail);
    assert_eq!(
        contents,
        vec![
            "Where is my parcel? It is late.",
            "It left the depot this morning.",
            "written before the key was set"
        ]
    );
    assert_eq!(
        detail["messages"][2]["file_url"],
        "https://files.example/f-1"
    );
    assert_eq!(detail["messages"][2]["metadata"]["filename"], "label.pdf");

    let (status, shared) = get(&app, "/shared/abcdefabcdefabcdefabcdefabcdef12", &token).await;
    assert_eq!(status, 200);
    assert_eq!(shared["messages"][0]["content"], "hello");

    let (status, admin_list) = get(
        &app,
        "/admin/sessions?user_id=gouser&sort_by=message_count",
        &app.admin_token("root"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(admin_list["sessions"][0]["id"], ACTIVE);
}

#[tokio::test]
async fn a_go_session_continues_over_websocket() {
    let app = go_app().await;
    let mut ws = app.connect_ws(&app.user_token("gouser")).await;
    let status = ws.recv().await;
    assert_eq!(
        status["session_id"], ACTIVE,
        "the Go service's active session is the user's active session"
    );
    ws.send(json!({"type": "user_message", "content": "Any news?"}))
        .await;
    let turn = ws.recv_turn().await;
    assert_eq!(turn[0]["session_id"], ACTIVE);
    assert_eq!(
        turn[0]["seq"], 5,
        "seqs continue after the three Go messages and the new one"
    );
    let (_, detail) = get(
        &app,
        &format!("/sessions/{ACTIVE}"),
        &app.user_token("gouser"),
    )
    .await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[3]["content"], "Any news?");
    assert_eq!(messages[4]["sender"], "ai");
}

#[tokio::test]
async fn a_session_the_go_service_writes_while_both_run_continues_its_seqs() {
    let app = go_app().await;
    // The Go service, still running beside this one, starts a new session for another user.
    let sessions = go_collection(&app).await;
    let now = DateTime::now();
    sessions
        .insert_one(doc! {
            "_id": "9d2c4e6a8b0f1d3e5a7c9b1d3f5a7c9e", "uid": "late", "nm": "", "modelId": "",
            "msgs": [
                { "content": "one", "ts": now, "sender": "user" },
                { "content": "two", "ts": now, "sender": "ai" },
            ],
            "ts": now, "dur": 0i64, "adminAssisted": false, "helpRequested": false, "totalTokens": 0i32,
            "maxRespTime": 0i64, "avgRespTime": 0i64, "_ts": now, "_mt": now,
        })
        .await
        .unwrap();
    let mut ws = app.connect_ws(&app.user_token("late")).await;
    assert_eq!(
        ws.recv().await["session_id"],
        "9d2c4e6a8b0f1d3e5a7c9b1d3f5a7c9e"
    );
    ws.send(json!({"type": "user_message", "content": "three"}))
        .await;
    let turn = ws.recv_turn().await;
    assert_eq!(
        turn[0]["seq"], 4,
        "the user's message took seq 3, after the two Go messages"
    );
}

#[tokio::test]
async fn go_documents_get_their_message_counts_in_the_background_and_sort_by_them() {
    let app = go_app().await;
    let sessions = go_collection(&app).await;
    // Nothing reads the sessions through the server here: the counts come from the back-fill.
    eventually_async("every Go document to get its message count", async || {
        let pending = sessions
            .count_documents(doc! { "msgCount": { "$exists": false } })
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    for (id, count) in [(ACTIVE, 3), (ENDED, 1)] {
        let stored = sessions
            .find_one(doc! { "_id": id })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.get_i64("msgCount").unwrap(), count, "{id}");
        assert_eq!(stored.get_i64("lastSeq").unwrap(), count, "{id}");
    }
    let admin = app.admin_token("root");
    for (order, first) in [("desc", ACTIVE), ("asc", ENDED)] {
        let (status, list) = get(
            &app,
            &format!("/admin/sessions?user_id=gouser&sort_by=message_count&sort_order={order}"),
            &admin,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(list["sessions"][0]["id"], first, "{order}: {list}");
    }
}

#[tokio::test]
async fn a_stale_count_of_a_document_the_go_service_keeps_writing_is_corrected_when_read() {
    let app = go_app().await;
    let token = app.user_token("gouser");
    let (_, list) = get(&app, "/sessions", &token).await;
    assert_eq!(list["sessions"][0]["message_count"], 3);
    // The Go service pushes a message without counting it.
    let sessions = go_collection(&app).await;
    sessions
        .update_one(
            doc! { "_id": ACTIVE },
            doc! { "$push": { "msgs": { "content": "pushed by go", "ts": DateTime::now(), "sender": "user" } } },
        )
        .await
        .unwrap();
    let (_, list) = get(&app, "/sessions", &token).await;
    assert_eq!(list["sessions"][0]["id"], ACTIVE);
    assert_eq!(list["sessions"][0]["message_count"], 4);
    let stored = sessions
        .find_one(doc! { "_id": ACTIVE })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_i64("msgCount").unwrap(), 4);
}
