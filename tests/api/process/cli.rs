//! The maintenance commands run as the real `chatbox` binary against an embedded data directory:
//! `keys rotate`, `users export`, `users delete` and `purge`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chatbox::store::{MessageRecord, Store, now};

use crate::components::store::{Backend, KEY_A, KEY_B};

/// A store on `backend` under key A (`k0`) only.
async fn open_a(backend: &Backend) -> Arc<dyn Store> {
    backend.open().await
}

/// Writes two sessions of `alice` (one ended) and one of `bob`, under key A.
async fn seed(backend: &Backend) {
    let store = open_a(backend).await;
    for (user, text) in [("alice", "first words"), ("bob", "bob's words")] {
        let s = store
            .get_or_create_active(user, None, "demo")
            .await
            .unwrap()
            .session;
        store
            .set_name(&s.id, &format!("{user} chat"))
            .await
            .unwrap();
        store
            .append_message(&s.id, &MessageRecord::new("m1", 1, "user", text))
            .await
            .unwrap();
        if user == "alice" {
            store.end_session(&s.id, now()).await.unwrap();
            let next = store
                .get_or_create_active(user, None, "demo")
                .await
                .unwrap()
                .session;
            store.set_name(&next.id, "alice chat").await.unwrap();
            store
                .append_message(
                    &next.id,
                    &MessageRecord::new("m1", 1, "user", "second words"),
                )
                .await
                .unwrap();
        }
    }
}

/// Runs `chatbox <args>` on the data directory with only the given environment (no MongoDB).
fn chatbox(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatbox"));
    command
        .args(args)
        .env_clear()
        .env("CHATBOX_DATA_DIR", dir)
        .env("LOG_LEVEL", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "chatbox {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// [`chatbox`] with key A only, as the data was written.
fn chatbox_a(dir: &Path, args: &[&str]) -> Output {
    let keys = format!("k0:{KEY_A}");
    chatbox(dir, &[("ENCRYPTION_KEYS", &keys)], args)
}

#[tokio::test]
async fn keys_rotate_prints_progress_and_finishes() {
    let backend = Backend::embedded();
    let dir = backend.data_dir();
    seed(&backend).await;
    let keys = format!("k0:{KEY_A},k1:{KEY_B}");
    let output = chatbox(
        dir,
        &[
            ("ENCRYPTION_KEYS", &keys),
            ("ENCRYPTION_ACTIVE_KEY_ID", "k1"),
        ],
        &["keys", "rotate", "--batch", "1"],
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("rotated: ")).count() >= 3,
        "one progress line per batch of one session:\n{text}"
    );
    assert!(lines.iter().any(|l| l.ends_with("(done)")), "{text}");
    let stats: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(stats["done"], true);
    assert_eq!(stats["messages_reencrypted"], 3);
    assert_eq!(stats["names_reencrypted"], 3);
    // Everything opens with key B alone now.
    let store = backend
        .open_with(&backend.config_with(&[("k1", KEY_B)], "k1"))
        .await
        .unwrap();
    let sessions = store.list_user_sessions("alice", 10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    for s in sessions {
        assert_eq!(s.name, "alice chat");
        assert_eq!(store.messages(&s.id, None).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn users_export_prints_the_users_data_as_json_and_delete_removes_it() {
    let backend = Backend::embedded();
    let dir = backend.data_dir();
    seed(&backend).await;
    let output = chatbox_a(dir, &["users", "export", "alice"]);
    let export: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(export["user_id"], "alice");
    let mut contents: Vec<&str> = export["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["messages"].as_array().unwrap())
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    contents.sort();
    assert_eq!(contents, vec!["first words", "second words"]);

    let output = chatbox_a(dir, &["users", "delete", "alice"]);
    let stats: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(stats["sessions"], 2);
    assert_eq!(stats["messages"], 2);
    let store = open_a(&backend).await;
    assert!(
        store
            .list_user_sessions("alice", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_user_sessions("bob", 10).await.unwrap().len(),
        1,
        "other users keep their data"
    );
}

#[tokio::test]
async fn purge_removes_ended_sessions_past_the_retention() {
    let backend = Backend::embedded();
    let dir = backend.data_dir();
    seed(&backend).await;
    let output = chatbox_a(dir, &["purge", "--days", "0"]);
    assert_eq!(
        stdout(&output).trim(),
        "purged 1 sessions ended more than 0 days ago"
    );
    let store = open_a(&backend).await;
    let left = store.list_user_sessions("alice", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].is_active(), "the active session stays");
}
