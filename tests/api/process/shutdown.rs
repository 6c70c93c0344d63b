//! Graceful shutdown: running answers finish (or are stored cut short), then clients get 1001.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::app::{app, stopped};

#[tokio::test]
async fn a_turn_in_flight_finishes_before_clients_get_1001() {
    let mut app = app().slow_answers(20, "20s").spawn().await;
    let (_, mut ws) = app
        .turn_in_flight("leaving", "Finish this before you go")
        .await;
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
    stopped(server).await;
    let session_id = last["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    let answer = stored.iter().find(|m| m.sender == "ai").unwrap();
    assert!(!answer.partial);
}

#[tokio::test]
async fn an_answer_longer_than_the_grace_period_is_stored_as_partial() {
    let mut app = app().slow_answers(200, "100ms").spawn().await;
    let (_, mut ws) = app
        .turn_in_flight("hurried", "This will take a while")
        .await;
    assert_eq!(ws.recv().await["type"], "ai_response");
    let server = app.signal_stop().unwrap();
    let rest = ws.recv_turn().await;
    let last = rest.last().unwrap();
    assert_eq!(last["metadata"]["finish_reason"], "cancelled");
    assert_eq!(ws.closed().await.code, 1001);
    stopped(server).await;
    let session_id = last["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    assert!(stored.iter().find(|m| m.sender == "ai").unwrap().partial);
}

#[tokio::test]
async fn new_connections_are_refused_while_draining() {
    let mut app = app().slow_answers(50, "20s").spawn().await;
    let (token, mut ws) = app.turn_in_flight("late", "keep the server busy").await;
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
    stopped(server).await;
}
