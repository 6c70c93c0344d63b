//! A server restarted with a different encryption key: the start-up key check (production refuses to start
//! naming the missing key id, development starts and `/readyz` reports it), and unreadable names and
//! messages that neither break the lists nor keep the user from chatting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{SharedData, TestApp, TestAppBuilder, answer_text, app};
use crate::support::http::{call, message_contents};

/// The first key (32 raw bytes, id `k0` by default).
const KEY_A: &str = "0123456789abcdef0123456789abcdef";
/// Another key.
const KEY_B: &str = "fedcba9876543210fedcba9876543210";

fn with_key(data: &SharedData, key: &str) -> TestAppBuilder {
    app().env("ENCRYPTION_KEY", key).data(data)
}

/// A production configuration (the demo model is not allowed there; this provider is never called).
fn production(data: &SharedData) -> TestAppBuilder {
    app()
        .data(data)
        .env("CHATBOX_ENV", "production")
        .env("WS_ALLOWED_ORIGINS", "https://chat.example")
        .env("LLM_PROVIDER_1_ID", "gpt")
        .env("LLM_PROVIDER_1_NAME", "GPT")
        .env("LLM_PROVIDER_1_TYPE", "openai")
        .env("LLM_PROVIDER_1_ENDPOINT", "http://127.0.0.1:9/v1")
        .env("LLM_PROVIDER_1_MODEL", "gpt-4o")
        .env("LLM_PROVIDER_1_API_KEY", "sk-live-4f8a9b2c7d1e6f3a5b8c9d0e")
}

/// One answered turn of `user`; returns the session id.
async fn chat(app: &TestApp, user: &str, text: &str) -> String {
    let (ws, frames) = app.chat_once(&app.user_token(user), text).await;
    assert!(!answer_text(&frames).is_empty(), "{frames:?}");
    ws.close().await;
    frames.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let answer = call(app, Method::GET, path, Some(token)).await;
    assert_eq!(answer.status, 200, "{path}: {answer:?}");
    answer.body
}

#[tokio::test]
async fn a_changed_key_is_reported_and_unreadable_items_do_not_break_lists_or_chat() {
    let data = SharedData::new();
    let first = with_key(&data, KEY_A).spawn().await;
    let old = chat(&first, "alice", "My private question").await;
    first.stop().await;

    // The key changed (same id k0) and the old one is not configured: the server starts in development.
    let second = with_key(&data, KEY_B).spawn().await;
    let ready = call(&second, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    let keys = &ready.body["checks"]["keys"];
    assert_eq!(keys["status"], "not ready");
    assert_eq!(keys["missing_key_ids"], json!(["k0"]));
    let reason = keys["reason"].as_str().unwrap();
    assert!(
        reason.contains("k0") && !reason.contains(KEY_A) && !reason.contains(KEY_B),
        "{reason}"
    );
    assert_eq!(ready.body["checks"]["mongodb"]["status"], "ready");

    // The admin list and the user's list show the session with an unreadable name.
    let root = second.admin_token("root");
    let listed = get(&second, "/admin/sessions", &root).await;
    let row = &listed["sessions"][0];
    assert_eq!(
        (row["id"].as_str(), row["name"].as_str()),
        (Some(old.as_str()), Some(""))
    );
    assert_eq!(row["name_unreadable"], true);
    let alice = second.user_token("alice");
    let own = get(&second, "/sessions", &alice).await;
    assert_eq!(own["sessions"][0]["name_unreadable"], true);
    // The history shows the messages marked unreadable, never ciphertext.
    let detail = get(&second, &format!("/sessions/{old}"), &alice).await;
    assert_eq!(detail["name"], "");
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    for m in messages {
        assert_eq!(m["content"], "", "{m}");
        assert_eq!(m["metadata"]["unreadable"], "true", "{m}");
    }

    // Alice goes on chatting in that session (its unreadable name is kept), then in a new one.
    assert_eq!(chat(&second, "alice", "Still there?").await, old);
    let detail = get(&second, &format!("/sessions/{old}"), &alice).await;
    assert_eq!(detail["name"], "", "the unreadable name is not replaced");
    assert_eq!(detail["messages"][2]["content"], "Still there?");
    let ended = call(
        &second,
        Method::POST,
        &format!("/sessions/{old}/end"),
        Some(&alice),
    )
    .await;
    assert_eq!(ended.status, 200, "{ended:?}");
    let new = chat(&second, "alice", "A fresh start").await;
    assert_ne!(new, old);
    let detail = get(&second, &format!("/sessions/{new}"), &alice).await;
    assert_eq!(detail["name"], "A fresh start");
    assert!(detail.get("name_unreadable").is_none(), "{detail}");
    assert_eq!(detail["messages"][0]["content"], "A fresh start");
    second.stop().await;
}

#[tokio::test]
async fn configuring_the_old_key_under_its_id_makes_everything_readable_again() {
    let data = SharedData::new();
    let first = with_key(&data, KEY_A).spawn().await;
    let old = chat(&first, "bob", "Written under the first key").await;
    first.stop().await;

    // A new key under a new id, the old one forgotten: k0 is reported missing.
    let second = with_key(&data, KEY_B)
        .env("ENCRYPTION_KEY_ID", "k1")
        .spawn()
        .await;
    let ready = call(&second, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(
        ready.body["checks"]["keys"]["missing_key_ids"],
        json!(["k0"])
    );
    assert_eq!(
        chat(&second, "bob", "Written under the second key").await,
        old
    );
    second.stop().await;

    // Both keys under their ids, the new one active: ready, and every message reads.
    let third = app()
        .data(&data)
        .env("ENCRYPTION_KEYS", format!("k0:{KEY_A},k1:{KEY_B}"))
        .env("ENCRYPTION_ACTIVE_KEY_ID", "k1")
        .spawn()
        .await;
    let ready = call(&third, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert!(ready.body["checks"].get("keys").is_none(), "{ready:?}");
    let bob = third.user_token("bob");
    let detail = get(&third, &format!("/sessions/{old}"), &bob).await;
    assert_eq!(detail["name"], "Written under the first key");
    let contents = message_contents(&detail);
    assert_eq!(contents.len(), 4);
    assert_eq!(contents[0], "Written under the first key");
    assert_eq!(contents[2], "Written under the second key");
    assert!(contents.iter().all(|c| !c.is_empty()), "{contents:?}");
    third.stop().await;
}

#[tokio::test]
async fn production_refuses_to_start_naming_the_missing_key_id() {
    let data = SharedData::new();
    // The first start writes the canary under k0.
    let first = production(&data).env("ENCRYPTION_KEY", KEY_A).spawn().await;
    let ready = call(&first, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    first.stop().await;

    let refused = production(&data)
        .env("ENCRYPTION_KEY", KEY_B)
        .try_spawn()
        .await
        .err()
        .expect("a production server with a changed key must not start");
    assert!(
        refused.contains("k0") && refused.contains("ENCRYPTION_KEYS"),
        "{refused}"
    );
    assert!(
        !refused.contains(KEY_A) && !refused.contains(KEY_B),
        "{refused}"
    );
    let refused = production(&data)
        .env("ENCRYPTION_KEY", KEY_B)
        .env("ENCRYPTION_KEY_ID", "k1")
        .try_spawn()
        .await
        .err()
        .expect("a production server without the key id of its data must not start");
    assert!(refused.contains("k0"), "{refused}");

    // The old key under its id, the new one active: it starts.
    let rotated = production(&data)
        .env("ENCRYPTION_KEYS", format!("k0:{KEY_A},k1:{KEY_B}"))
        .env("ENCRYPTION_ACTIVE_KEY_ID", "k1")
        .spawn()
        .await;
    let ready = call(&rotated, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    rotated.stop().await;
}
