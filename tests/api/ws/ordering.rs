//! Frames of one connection take effect in the order they were sent: back-to-back messages are answered
//! and stored in send order (on both stores), an `admin_join` followed at once by an `admin_message` is
//! accepted, and a `cancel` right after a message cancels that message's turn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{TestAppBuilder, app};
use crate::support::http::status;

/// Sends three messages back to back and checks they were answered and stored in send order.
async fn back_to_back_messages_keep_their_order(builder: TestAppBuilder) {
    let app = builder.env("LLM_DEMO_TOKEN_DELAY_MS", "5").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("orderly")).await;
    status(&mut ws).await;
    for i in 0..3 {
        ws.send(json!({"type": "user_message", "content": format!("m{i}"), "client_msg_id": format!("c{i}")}))
            .await;
    }
    let mut loading = Vec::new();
    let mut finals = Vec::new();
    while finals.len() < 3 {
        let frame = ws.recv().await;
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == "loading" {
            loading.push(frame["client_msg_id"].clone());
        }
        if frame["type"] == "ai_response" && frame["metadata"]["done"] == "true" {
            finals.push(frame);
        }
    }
    assert_eq!(loading, ["c0", "c1", "c2"], "answered in send order");
    let session_id = finals[0]["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    let of = |sender: &str| -> Vec<String> {
        stored
            .iter()
            .filter(|m| m.sender == sender)
            .map(|m| m.client_msg_id.clone().unwrap())
            .collect()
    };
    assert_eq!(
        of("user"),
        ["c0", "c1", "c2"],
        "messages stored in send order"
    );
    assert_eq!(of("ai"), ["c0", "c1", "c2"], "answers stored in send order");
    for i in 0..3 {
        let id = format!("c{i}");
        let position = |sender: &str| {
            stored
                .iter()
                .position(|m| m.sender == sender && m.client_msg_id.as_deref() == Some(&id))
                .unwrap()
        };
        assert!(position("user") < position("ai"), "{stored:?}");
    }
}

#[tokio::test]
async fn back_to_back_messages_are_answered_and_stored_in_send_order() {
    back_to_back_messages_keep_their_order(app()).await;
}

#[tokio::test]
async fn back_to_back_messages_keep_their_order_on_the_embedded_store() {
    back_to_back_messages_keep_their_order(app().embedded()).await;
}

#[tokio::test]
async fn a_join_followed_at_once_by_a_message_is_accepted() {
    let app = app().spawn().await;
    let (mut user, frames) = app.chat_once(&app.user_token("joined"), "hello").await;
    let session_id = frames[0]["session_id"].as_str().unwrap().to_string();
    let mut admin = app.connect_ws(&app.admin_token("quick-admin")).await;
    status(&mut admin).await;
    admin
        .send(json!({"type": "admin_join", "session_id": session_id, "sender": "admin"}))
        .await;
    admin
        .send(json!({"type": "admin_message", "session_id": session_id, "content": "I am here", "sender": "admin"}))
        .await;
    let seen: Vec<Value> = user.recv_until("admin_message").await;
    let message = seen.last().unwrap();
    assert_eq!(message["content"], "I am here");
    // The admin got no error on the way (a ping is answered after the frames sent before it).
    admin.send(json!({"type": "ping"})).await;
    let admin_frames = admin.recv_until("pong").await;
    assert!(
        admin_frames.iter().all(|f| f["type"] != "error"),
        "{admin_frames:?}"
    );
}

#[tokio::test]
async fn a_cancel_right_after_a_message_cancels_that_messages_turn() {
    let app = app().env("LLM_DEMO_TOKEN_DELAY_MS", "20").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("canceller")).await;
    status(&mut ws).await;
    ws.send(
        json!({"type": "user_message", "content": "A long answer please", "client_msg_id": "x1"}),
    )
    .await;
    ws.send(json!({"type": "cancel"})).await;
    let turn = ws.recv_turn().await;
    let last = turn.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true", "{turn:?}");
    assert_eq!(last["metadata"]["finish_reason"], "cancelled", "{turn:?}");
    assert_eq!(last["client_msg_id"], "x1");
}
