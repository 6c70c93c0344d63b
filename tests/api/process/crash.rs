//! A crash of the server mid-answer (SIGKILL of the real binary) loses at most the last checkpoint
//! interval of the answer being streamed: after a restart on the same data, the user's message and the
//! streamed part of the answer are stored, the answer marked partial. On the embedded store and on
//! MongoDB (FerretDB).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::process::Server;

/// Chunks read before the kill: with a token every 50 ms and a checkpoint every 100 ms, several
/// checkpoints were stored by then.
const CHUNKS_BEFORE_KILL: usize = 12;

async fn a_crash_keeps_the_streamed_part(mut env: Vec<(&'static str, String)>) {
    env.push(("CHECKPOINT_INTERVAL", "100ms".into()));
    env.push(("LLM_DEMO_TOKEN_DELAY_MS", "50".into()));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &env).await;
    let first = &server.banner;
    let mut ws = first.connect(&first.user_token).await;
    assert_eq!(ws.recv().await["type"], "connection_status");
    let long = "please tell me a long story about a crab who learns to write servers ".repeat(3);
    ws.send(json!({"type": "user_message", "content": long, "client_msg_id": "crash-1"}))
        .await;
    let (session_id, streamed) = ws.recv_chunks(CHUNKS_BEFORE_KILL).await;
    server.kill().await;

    let server = Server::start(dir.path(), &env).await;
    let again = &server.banner;
    let detail = again
        .get_json(&format!("/sessions/{session_id}"), &again.user_token)
        .await;
    let messages = detail["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{detail}");
    assert_eq!(messages[0]["sender"], "user");
    let answer = &messages[1];
    assert_eq!(answer["sender"], "ai");
    assert_eq!(answer["metadata"]["partial"], "true", "{answer}");
    let stored = answer["content"].as_str().unwrap();
    assert!(!stored.is_empty(), "a checkpoint was stored: {answer}");
    assert!(
        streamed.starts_with(stored),
        "the stored part is what was streamed: {stored:?} / {streamed:?}"
    );
    // At most one checkpoint interval (two tokens) of what was streamed is missing.
    let missing = streamed[stored.len()..].split_inclusive(' ').count();
    assert!(
        missing <= 4,
        "{missing} tokens lost: {stored:?} / {streamed:?}"
    );
    server.kill().await;
}

#[tokio::test]
async fn a_crash_mid_answer_keeps_the_streamed_part_on_the_embedded_store() {
    a_crash_keeps_the_streamed_part(Vec::new()).await;
}

#[tokio::test]
async fn a_crash_mid_answer_keeps_the_streamed_part_on_mongodb() {
    let uri = std::env::var("MONGODB_URI").expect("MONGODB_URI (run through scripts/test.sh)");
    let database = format!("t_{}", uuid::Uuid::new_v4().simple());
    a_crash_keeps_the_streamed_part(vec![("MONGO_URI", uri), ("MONGO_DATABASE", database)]).await;
}
