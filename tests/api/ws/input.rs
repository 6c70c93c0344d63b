//! Bad input on the WebSocket: error frames carry only the spec's fixed texts and ids within their limits,
//! `type` is matched exactly, and a text frame that is not UTF-8 closes the connection with 1007.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{WsClient, spawn_app};
use crate::support::http::status;

/// The next frame, which must be an `INVALID_FORMAT` error; returns it.
async fn invalid_format(ws: &mut WsClient) -> Value {
    let error = ws.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "INVALID_FORMAT", "{error}");
    error
}

/// A `ping` is answered by its `pong`: the connection is still open and nothing else came first.
async fn still_open(ws: &mut WsClient) {
    ws.send(json!({"type": "ping", "client_msg_id": "still-here"}))
        .await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["client_msg_id"], "still-here");
}

#[tokio::test]
async fn error_frames_never_repeat_parser_details_or_client_input() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("prober")).await;
    status(&mut ws).await;

    ws.send_text("").await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Invalid message format");
    assert!(error.get("client_msg_id").is_none());

    ws.send(json!({"type": "user_message", "content": 5, "client_msg_id": "c-type"}))
        .await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Invalid message format");
    assert_eq!(
        error["client_msg_id"], "c-type",
        "an id within its limit is named"
    );

    ws.send(
        json!({"type": "resume", "last_seq": "secret-looking-input", "client_msg_id": "c-seq"}),
    )
    .await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Invalid message format");
    assert!(
        !error.to_string().contains("secret-looking-input"),
        "{error}"
    );

    ws.send(json!({"type": "user_message", "content": "x", "timestamp": "12/01/2026"}))
        .await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Invalid message format");

    // Ids above their spec limits (128 bytes each) are not repeated on the error frame.
    let long = "c".repeat(20_000);
    ws.send(json!({"type": "user_message", "content": "hi", "client_msg_id": long, "session_id": "s".repeat(129)}))
        .await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Message validation failed");
    assert!(error.get("client_msg_id").is_none(), "{error}");
    assert!(error.get("session_id").is_none(), "{error}");
    assert!(error.to_string().len() < 512, "a small frame");

    // The one text that names a type names only the server's own types.
    for kind in ["ai_response", "pong"] {
        ws.send(json!({"type": kind, "content": "x"})).await;
        let error = invalid_format(&mut ws).await;
        assert_eq!(
            error["error"]["message"],
            format!("Invalid message format: unknown message type {kind}")
        );
    }
    ws.send(json!({"type": "x".repeat(5_000), "content": "x"}))
        .await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Message validation failed");
    still_open(&mut ws).await;
}

#[tokio::test]
async fn a_type_with_padding_or_a_nul_byte_is_an_unknown_type_and_starts_no_turn() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("padder")).await;
    status(&mut ws).await;
    for (kind, id) in [
        ("user_message ", "c-space"),
        (" user_message", "c-lead"),
        ("user_message\u{0}", "c-nul"),
    ] {
        ws.send(json!({"type": kind, "content": "hello", "client_msg_id": id}))
            .await;
        let error = invalid_format(&mut ws).await;
        assert_eq!(error["error"]["message"], "Message validation failed");
        assert_eq!(error["client_msg_id"], id);
    }
    still_open(&mut ws).await;
    let sessions = app
        .state
        .store
        .list_user_sessions("padder", 10)
        .await
        .unwrap();
    assert!(sessions.is_empty(), "no turn was started: {sessions:?}");
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("mojibake")).await;
    status(&mut ws).await;
    ws.send_text_bytes(b"{\"type\":\"ping\",\"content\":\"\xff\xfe\"}")
        .await;
    assert_eq!(ws.closed().await.code, 1007);
}

#[tokio::test]
async fn a_binary_frame_that_is_not_utf8_gets_an_error_and_the_connection_survives() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("binary")).await;
    status(&mut ws).await;
    ws.send_binary(b"\xff\xfe").await;
    let error = invalid_format(&mut ws).await;
    assert_eq!(error["error"]["message"], "Invalid message format");
    ws.send_binary(br#"{"type":"ping","client_msg_id":"bin"}"#)
        .await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "binary frames are parsed as text");
    still_open(&mut ws).await;
}
