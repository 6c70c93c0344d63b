//! Identities from validly signed tokens: a `user_id` that cannot name a user and a token over 8 KiB are
//! refused over HTTP and WebSocket with the usual 401 answers; a long or unprintable `name` is cleaned and
//! cut instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::json;

use chatbox::auth::MAX_TOKEN_BYTES;

use crate::support::app::{TestApp, spawn_app};
use crate::support::http::{assert_error, call, status};

/// Signed tokens the server must refuse, each with a description.
fn refused_tokens(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("blank user_id", app.user_token(" \u{0} ")),
        ("user_id over 128 bytes", app.user_token(&"u".repeat(129))),
        ("user_id with a newline", app.user_token("alice\nadmin")),
        ("user_id with an escape", app.user_token("bob\u{1b}[2J")),
        (
            "token over 8 KiB",
            app.token("big", &["user"], Some(&"n".repeat(MAX_TOKEN_BYTES))),
        ),
    ]
}

#[tokio::test]
async fn http_refuses_signed_tokens_with_unusable_identities_as_invalid_tokens() {
    let app = spawn_app().await;
    for (what, token) in refused_tokens(&app) {
        let answer = call(&app, Method::GET, "/sessions", Some(&token)).await;
        assert_eq!(answer.status, 401, "{what}");
        assert_error(
            &answer,
            401,
            "Invalid or expired authentication token",
            "INVALID_TOKEN",
        );
    }
    let fits = app.user_token(&"u".repeat(128));
    assert_eq!(
        call(&app, Method::GET, "/sessions", Some(&fits))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_websocket_upgrade_refuses_them_from_the_header_and_the_query() {
    let app = spawn_app().await;
    for (what, token) in refused_tokens(&app) {
        let by_query = app
            .try_connect(&format!("{}?token={token}", app.ws_url), &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: upgraded"));
        assert_eq!(by_query, (401, "Authentication failed\n".into()), "{what}");
        let bearer = format!("Bearer {token}");
        let by_header = app
            .try_connect(&app.ws_url, &[("authorization", bearer.as_str())])
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: upgraded"));
        assert_eq!(by_header, (401, "Authentication failed\n".into()), "{what}");
    }
}

#[tokio::test]
async fn a_long_or_unprintable_name_is_cleaned_and_cut_to_128_bytes() {
    let app = spawn_app().await;
    let mut admin = app.connect_ws(&app.admin_token("root")).await;
    status(&mut admin).await;
    let name = format!("Ann\u{1b}[2J\n{}", "é".repeat(300));
    let mut user = app
        .connect_ws(&app.token("named", &["user"], Some(&name)))
        .await;
    status(&mut user).await;
    user.send(json!({"type": "user_message", "content": "I am stuck"}))
        .await;
    user.recv_turn().await;
    user.send(json!({"type": "help_request"})).await;
    let event = admin.recv().await;
    assert_eq!(event["type"], "help_request", "{event}");
    let shown = event["metadata"]["user_name"].as_str().unwrap();
    assert!(shown.starts_with("Ann[2J"), "{shown}");
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.len() <= 128 && shown.len() >= 127, "{}", shown.len());
}
