//! Graceful shutdown: running answers finish (or are stored cut short), then clients get 1001.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::app::{FRAME_DEADLINE, app};

#[tokio::test]
async fn a_turn_in_flight_finishes_before_clients_get_1001() {
    let mut app = app()
        .env("LLM_DEMO_TOKEN_DELAY_MS", "20")
        .env("SHUTDOWN_TIMEOUT", "20s")
        .spawn()
        .await;
    let token = app.user_token("leaving");
    let mut ws = app.connect_ws(&token).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "Finish this before you go"}))
        .await;
    assert_eq!(ws.recv().await["type"], "loading");
    assert_eq!(ws.recv().await["type"], "ai_response");
    let server = app.signal_stop().unwrap();
    let rest = ws.recv_turn().await;
    let last = rest.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true");
    assert_eq!(last["metadata"]["finish_reason"], "stop");
    let closed = ws.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "Server shutting down")
    );
    tokio::time::timeout(FRAME_DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
    let session_id = last["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    let answer = stored.iter().find(|m| m.sender == "ai").unwrap();
    assert!(!answer.partial);
}

#[tokio::test]
async fn an_answer_longer_than_the_grace_period_is_stored_as_partial() {
    let mut app = app()
        .env("LLM_DEMO_TOKEN_DELAY_MS", "200")
        .env("SHUTDOWN_TIMEOUT", "100ms")
        .spawn()
        .await;
    let mut ws = app.connect_ws(&app.user_token("hurried")).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "This will take a while"}))
        .await;
    assert_eq!(ws.recv().await["type"], "loading");
    assert_eq!(ws.recv().await["type"], "ai_response");
    let server = app.signal_stop().unwrap();
    let rest = ws.recv_turn().await;
    let last = rest.last().unwrap();
    assert_eq!(last["metadata"]["finish_reason"], "cancelled");
    assert_eq!(ws.closed().await.code, 1001);
    tokio::time::timeout(FRAME_DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
    let session_id = last["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    assert!(stored.iter().find(|m| m.sender == "ai").unwrap().partial);
}

#[tokio::test]
async fn new_connections_are_refused_while_draining() {
    let mut app = app()
        .env("LLM_DEMO_TOKEN_DELAY_MS", "50")
        .env("SHUTDOWN_TIMEOUT", "20s")
        .spawn()
        .await;
    let token = app.user_token("late");
    let mut ws = app.connect_ws(&token).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "keep the server busy"}))
        .await;
    assert_eq!(ws.recv().await["type"], "loading");
    let server = app.signal_stop().unwrap();
    let url = format!("{}?token={token}", app.ws_url);
    let mut refused = false;
    for _ in 0..200 {
        match app.try_connect(&url, &[]).await {
            Err((503, _)) => {
                refused = true;
                break;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(refused);
    ws.recv_turn().await;
    tokio::time::timeout(FRAME_DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
}
