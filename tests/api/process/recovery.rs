//! A database outage in the middle of a conversation, with a FerretDB process of the test's own (killed and
//! started again on the same data and port): the message sent during the outage gets `DATABASE_ERROR` on a
//! connection that keeps working, its retry with the same `client_msg_id` after the database is back is
//! stored and answered exactly once, and nothing stored before is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::app::app;
use crate::support::http::status;
use crate::support::receivers::free_port;
use crate::support::wait::eventually_async;

/// A FerretDB process on `port` keeping its data in `dir`.
fn ferretdb(dir: &Path, port: u16) -> Child {
    let bin = std::env::var("FERRETDB_BIN")
        .expect("FERRETDB_BIN is not set: run the tests through scripts/test.sh");
    Command::new(bin)
        .args([
            "--handler=sqlite",
            &format!("--sqlite-url=file:{}/", dir.display()),
            &format!("--state-dir={}", dir.display()),
            &format!("--listen-addr=127.0.0.1:{port}"),
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=ERROR",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until something accepts connections on `port`.
async fn accepting(port: u16) {
    eventually_async("FerretDB to accept connections", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
}

#[tokio::test]
async fn a_message_refused_during_an_outage_is_answered_once_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut db = ferretdb(dir.path(), port);
    accepting(port).await;
    let app = app()
        .env("MONGO_URI", format!("mongodb://127.0.0.1:{port}/"))
        .env("STORE_REQUEST_WAIT", "1s")
        .env("STORE_OPERATION_TIMEOUT", "1s")
        .spawn()
        .await;
    let mut ws = app.connect_ws(&app.user_token("outage")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "before", "client_msg_id": "o-1"}))
        .await;
    let before = ws.recv_turn().await;
    let session_id = before.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    db.start_kill().unwrap();
    db.wait().await.unwrap();
    ws.send(json!({"type": "user_message", "content": "during", "client_msg_id": "o-2"}))
        .await;
    let refused = ws.recv().await;
    assert_eq!(refused["error"]["code"], "DATABASE_ERROR", "{refused}");
    assert_eq!(refused["error"]["recoverable"], true);
    assert_eq!(refused["client_msg_id"], "o-2");

    let _db = ferretdb(dir.path(), port);
    accepting(port).await;
    // Retried until the store answers again (the driver finds the server back within `request_wait`).
    let mut attempts = 0;
    let answer = loop {
        attempts += 1;
        assert!(attempts <= 20, "the store did not come back");
        ws.send(json!({"type": "user_message", "content": "during", "client_msg_id": "o-2"}))
            .await;
        let turn = ws.recv_turn().await;
        let last = turn.last().unwrap().clone();
        if last["type"] == "ai_response" {
            break turn;
        }
        assert_eq!(last["error"]["code"], "DATABASE_ERROR", "{last}");
    };
    assert_eq!(answer.last().unwrap()["client_msg_id"], "o-2");
    // A second retry is a duplicate: acknowledged, not answered again.
    ws.send(json!({"type": "user_message", "content": "during", "client_msg_id": "o-2"}))
        .await;
    let echo = ws.recv().await;
    assert_eq!(echo["type"], "user_message", "{echo}");
    assert_eq!(echo["metadata"]["duplicate"], "true", "{echo}");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv().await["type"],
        "pong",
        "no second answer before the pong"
    );

    let stored = app.state.store.messages(&session_id, None).await.unwrap();
    let count = |sender: &str, id: &str| {
        stored
            .iter()
            .filter(|m| m.sender == sender && m.client_msg_id.as_deref() == Some(id))
            .count()
    };
    for id in ["o-1", "o-2"] {
        assert_eq!(count("user", id), 1, "{id}: {stored:?}");
        assert_eq!(count("ai", id), 1, "{id}: {stored:?}");
    }
}
