//! The database unreachable while the server runs: every HTTP route that needs it answers 500 with the
//! generic body (no driver detail), a chat message gets `DATABASE_ERROR` on its connection, nothing is
//! acknowledged that was not stored, and the connection keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::app::without_database;
use crate::support::http::{assert_error, get, post};

#[tokio::test]
async fn http_routes_answer_500_with_the_generic_body_when_the_database_is_down() {
    let app = without_database().await;
    let user = app.user_token("stranded");
    let admin = app.admin_token("ops");
    let cases = [
        ("GET", "/sessions", &user),
        ("GET", "/sessions/s-1", &user),
        ("POST", "/sessions/s-1/end", &user),
        ("POST", "/sessions/s-1/share", &user),
        ("GET", "/admin/sessions", &admin),
        ("GET", "/admin/metrics", &admin),
        ("POST", "/admin/takeover/s-1", &admin),
        ("GET", "/admin/users/stranded/sessions", &admin),
    ];
    for (method, path, token) in cases {
        let answer = match method {
            "GET" => get(&app, path, token).await,
            _ => post(&app, path, token).await,
        };
        assert_error(&answer, 500, "An internal error occurred", "INTERNAL_ERROR");
        let text = answer.body.to_string().to_lowercase();
        for detail in ["mongo", "127.0.0.1", "timed out", "server selection"] {
            assert!(
                !text.contains(detail),
                "{method} {path} leaks {detail:?}: {text}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_chat_message_gets_database_error_and_the_connection_survives() {
    let app = without_database().await;
    let mut ws = app.connect_ws(&app.user_token("stranded")).await;
    let first = ws.recv().await;
    assert_eq!(first["type"], "connection_status", "{first}");
    ws.send(json!({"type": "user_message", "content": "anyone?", "client_msg_id": "c-9"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(
        error["type"], "error",
        "not acknowledged before it is stored: {error}"
    );
    assert_eq!(error["error"]["code"], "DATABASE_ERROR", "{error}");
    assert_eq!(error["error"]["message"], "Database operation failed");
    assert_eq!(error["client_msg_id"], "c-9");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    app.stop().await;
}

/// With the ordinary timeouts (10 s per attempt, three attempts), a store call on a request's path still
/// gives up after `request_wait`: the sender gets `DATABASE_ERROR` well before the frame deadline, and
/// `GET /sessions` its generic error, instead of hanging until the database returns.
#[tokio::test]
async fn a_request_waits_for_the_database_at_most_request_wait() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = crate::support::app::app()
        .env("MONGO_URI", format!("mongodb://127.0.0.1:{port}/"))
        .env("STORE_OPERATION_TIMEOUT", "10s")
        .env("STORE_RETRY_ATTEMPTS", "3")
        .env("STORE_REQUEST_WAIT", "1s")
        .spawn()
        .await;
    let mut ws = app.connect_ws(&app.user_token("waiting")).await;
    assert_eq!(ws.recv().await["type"], "connection_status");
    ws.send(json!({"type": "user_message", "content": "anyone?", "client_msg_id": "w-1"}))
        .await;
    // `recv` fails after FRAME_DEADLINE (15 s); unbounded, the three attempts would take 30 s.
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "DATABASE_ERROR", "{error}");
    assert_eq!(error["error"]["recoverable"], true, "{error}");
    let response = app
        .http
        .get(format!("{}/sessions", app.base))
        .bearer_auth(app.user_token("waiting"))
        .timeout(crate::support::app::FRAME_DEADLINE)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_server_error(), "{response:?}");
    app.stop().await;
}
