//! The caller's sessions over HTTP: authentication bodies, listing, reading, ending (idempotent, devices
//! notified, gauges never negative), sharing with revocation, and that nothing of another user's session
//! is reachable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{app, spawn_app};
use crate::support::http::{
    assert_error, call, call_with_header, chat_turn, delete, get, is_http_time, metric, post,
    prometheus, stored_session, two_devices_after_one_turn,
};

#[tokio::test]
async fn http_a_missing_or_malformed_authorization_header_is_401_unauthorized() {
    let app = spawn_app().await;
    let answer = call(&app, Method::GET, "/sessions", None).await;
    assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
    assert_eq!(
        answer.body.as_object().unwrap().len(),
        3,
        "only error, code, request_id: {:?}",
        answer.body
    );
    for header in [
        "Basic abc",
        "Bearer ",
        "Bearer    ",
        "bearer abc",
        "Token x",
    ] {
        let answer = call_with_header(&app, Method::GET, "/sessions", header).await;
        assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
    }
    // The same on every protected route, before anything else is looked at.
    let answer = call(&app, Method::POST, "/sessions/nope/end", None).await;
    assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
    let answer = call(&app, Method::GET, "/admin/sessions", None).await;
    assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
}

#[tokio::test]
async fn http_a_bad_token_is_401_invalid_token() {
    let app = spawn_app().await;
    let other = chatbox::auth::JwtKeys::new(
        &"x9Kq2mV7nB4cL8pZ1wR5tY3uJ6hG0fD2sA".to_string().into(),
        None,
    )
    .unwrap();
    let forged = other
        .mint(&chatbox::auth::Claims {
            user_id: "alice".into(),
            roles: vec!["admin".into()],
            name: None,
            exp: None,
            nbf: None,
        })
        .unwrap();
    for token in ["garbage", "a.b.c", forged.as_str()] {
        let answer = call(&app, Method::GET, "/sessions", Some(token)).await;
        assert_error(
            &answer,
            401,
            "Invalid or expired authentication token",
            "INVALID_TOKEN",
        );
        let answer = call(&app, Method::GET, "/admin/metrics", Some(token)).await;
        assert_error(
            &answer,
            401,
            "Invalid or expired authentication token",
            "INVALID_TOKEN",
        );
    }
    let expired = app
        .state
        .keys
        .mint(&chatbox::auth::Claims {
            user_id: "alice".into(),
            roles: vec![],
            name: None,
            exp: Some(1_000),
            nbf: None,
        })
        .unwrap();
    let answer = get(&app, "/sessions", &expired).await;
    assert_error(
        &answer,
        401,
        "Invalid or expired authentication token",
        "INVALID_TOKEN",
    );
}

#[tokio::test]
async fn http_the_list_holds_only_the_callers_sessions_in_the_go_shape() {
    let app = spawn_app().await;
    let id = chat_turn(&app, "alice", "Hello there. How are you?").await;
    stored_session(&app, "bob", "Bob's question", 10, 100).await;

    let answer = get(&app, "/sessions", &app.user_token("alice")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["user_id"], "alice");
    assert_eq!(body["count"], 1);
    assert_eq!(body["limit"], 100);
    assert_eq!(body["truncated"], false);
    let session = &body["sessions"][0];
    assert_eq!(session["id"], id.as_str());
    assert_eq!(session["user_id"], "alice");
    assert_eq!(session["name"], "Hello there.");
    assert_eq!(session["message_count"], 2);
    assert_eq!(session["is_active"], true);
    assert_eq!(session["admin_assisted"], false);
    assert!(
        session.get("end_time").is_none(),
        "no end_time while active: {session}"
    );
    assert!(session.get("share_token").is_none());
    assert!(session.get("assisting_admin_name").is_none());
    assert!(is_http_time(&session["start_time"]), "{session}");
    assert!(is_http_time(&session["last_activity"]), "{session}");
    assert!(session["duration"].as_i64().unwrap() >= 0);
    for field in ["total_tokens", "max_response_time", "avg_response_time"] {
        assert!(session[field].as_i64().unwrap() >= 0, "{field}");
    }

    let answer = get(&app, "/sessions", &app.user_token("nobody")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["sessions"], json!([]));
    assert_eq!(answer.body["count"], 0);
}

#[tokio::test]
async fn http_a_session_reads_back_with_its_messages() {
    let app = spawn_app().await;
    let id = chat_turn(&app, "alice", "What is Rust?").await;
    let answer = get(&app, &format!("/sessions/{id}"), &app.user_token("alice")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["session_id"], id.as_str());
    assert_eq!(body["name"], "What is Rust?");
    assert_eq!(body["model_id"], "demo");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[0]["sender"], "user");
    assert_eq!(messages[0]["content"], "What is Rust?");
    assert_eq!(messages[1]["sender"], "ai");
    assert!(!messages[1]["content"].as_str().unwrap().is_empty());
    for m in messages {
        assert!(m.get("type").is_none(), "no type field: {m}");
        assert!(is_http_time(&m["timestamp"]), "{m}");
    }
    assert!(messages[0]["seq"].as_i64().unwrap() < messages[1]["seq"].as_i64().unwrap());
    assert!(body["last_seq"].as_i64().unwrap() >= messages[1]["seq"].as_i64().unwrap());
    assert!(body.get("end_time").is_none());
}

#[tokio::test]
async fn http_another_users_session_is_not_found_on_every_route() {
    let app = spawn_app().await;
    let id = stored_session(&app, "alice", "Private", 1, 1).await;
    let bob = app.user_token("bob");
    let unknown = get(&app, "/sessions/0123456789abcdef0123456789abcdef", &bob).await;
    assert_error(&unknown, 404, "Session not found", "NOT_FOUND");
    for (method, path) in [
        (Method::GET, format!("/sessions/{id}")),
        (Method::POST, format!("/sessions/{id}/end")),
        (Method::POST, format!("/sessions/{id}/share")),
        (Method::DELETE, format!("/sessions/{id}/share")),
    ] {
        let answer = call(&app, method.clone(), &path, Some(&bob)).await;
        assert_error(&answer, 404, "Session not found", "NOT_FOUND");
    }
    // A user (even an admin-looking one without the role) cannot take a session over either.
    let answer = post(&app, &format!("/admin/takeover/{id}"), &bob).await;
    assert_error(&answer, 403, "Insufficient permissions", "FORBIDDEN");
    // Nothing changed.
    let session = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert!(session.is_active());
    assert!(session.share_token.is_none());
    assert!(!session.admin_assisted);
}

#[tokio::test]
async fn http_ending_a_session_notifies_every_device_once_and_twice_is_harmless() {
    let app = spawn_app().await;
    let (mut phone, mut laptop, id) = two_devices_after_one_turn(&app, "alice", "Hello").await;
    let token = app.user_token("alice");
    let before = prometheus(&app).await;
    assert_eq!(metric(&before, "chatbox_active_sessions_total"), 1.0);

    let answer = post(&app, &format!("/sessions/{id}/end"), &token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, json!({"status": "ended"}));
    for ws in [&mut phone, &mut laptop] {
        let frame = ws.recv().await;
        assert_eq!(frame["type"], "notification", "{frame}");
        assert_eq!(frame["metadata"]["event"], "session_ended");
        assert_eq!(frame["session_id"], id.as_str());
    }

    let again = post(&app, &format!("/sessions/{id}/end"), &token).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, json!({"status": "ended"}));
    let after = prometheus(&app).await;
    assert_eq!(metric(&after, "chatbox_sessions_ended_total"), 1.0);
    assert_eq!(metric(&after, "chatbox_active_sessions_total"), 0.0);

    let detail = get(&app, &format!("/sessions/{id}"), &token).await;
    assert!(is_http_time(&detail.body["end_time"]), "{detail:?}");
    let list = get(&app, "/sessions", &token).await;
    assert_eq!(list.body["sessions"][0]["is_active"], false);
    assert!(is_http_time(&list.body["sessions"][0]["end_time"]));

    // The ended session takes no more messages; a message without a session starts a new one.
    phone
        .send(json!({"type": "user_message", "content": "Still there?", "session_id": id}))
        .await;
    let frame = phone.recv().await;
    assert_eq!(frame["type"], "error", "{frame}");
    phone
        .send(json!({"type": "user_message", "content": "New topic"}))
        .await;
    let turn = phone.recv_turn().await;
    assert_ne!(turn.last().unwrap()["session_id"], id.as_str());
}

#[tokio::test]
async fn http_ending_a_session_created_before_a_restart_never_drives_the_gauge_negative() {
    let app = spawn_app().await;
    // Created straight in the store: this process never counted it as active.
    let id = stored_session(&app, "carol", "Old session", 1, 1).await;
    let token = app.user_token("carol");
    assert_eq!(
        post(&app, &format!("/sessions/{id}/end"), &token)
            .await
            .status,
        200
    );
    assert_eq!(
        post(&app, &format!("/sessions/{id}/end"), &token)
            .await
            .status,
        200
    );
    let text = prometheus(&app).await;
    assert_eq!(metric(&text, "chatbox_active_sessions_total"), 0.0);
    assert_eq!(metric(&text, "chatbox_sessions_ended_total"), 1.0);
}

#[tokio::test]
async fn http_a_share_link_reads_publicly_until_revoked() {
    let app = spawn_app().await;
    let id = chat_turn(&app, "alice", "Share me").await;
    let token = app.user_token("alice");
    let shared = post(&app, &format!("/sessions/{id}/share"), &token).await;
    assert_eq!(shared.status, 200, "{shared:?}");
    let share_token = shared.body["share_token"].as_str().unwrap().to_string();
    assert_eq!(share_token.len(), 32);
    // At most one token per session.
    let again = post(&app, &format!("/sessions/{id}/share"), &token).await;
    assert_eq!(again.body["share_token"], share_token.as_str());
    let list = get(&app, "/sessions", &token).await;
    assert_eq!(
        list.body["sessions"][0]["share_token"],
        share_token.as_str()
    );

    let public = call(&app, Method::GET, &format!("/shared/{share_token}"), None).await;
    assert_eq!(public.status, 200, "{public:?}");
    assert_eq!(public.body["session_id"], id.as_str());
    assert_eq!(public.body["name"], "Share me");
    let messages = public.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Share me");
    assert_eq!(
        public.body.as_object().unwrap().len(),
        3,
        "{:?}",
        public.body
    );

    let revoked = delete(&app, &format!("/sessions/{id}/share"), &token).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.body, json!({"status": "revoked"}));
    let gone = call(&app, Method::GET, &format!("/shared/{share_token}"), None).await;
    assert_error(&gone, 404, "Shared session not found", "NOT_FOUND");
    // Revoking again is harmless; sharing again makes a new token.
    assert_eq!(
        delete(&app, &format!("/sessions/{id}/share"), &token)
            .await
            .status,
        200
    );
    let fresh = post(&app, &format!("/sessions/{id}/share"), &token).await;
    let fresh_token = fresh.body["share_token"].as_str().unwrap();
    assert_ne!(fresh_token, share_token);
    assert_eq!(
        call(&app, Method::GET, &format!("/shared/{fresh_token}"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn http_shared_reads_are_behind_the_public_rate_limit() {
    let app = app().env("PUBLIC_RATE_LIMIT", "2").spawn().await;
    for _ in 0..2 {
        let answer = call(&app, Method::GET, "/shared/unknown", None).await;
        assert_error(&answer, 404, "Shared session not found", "NOT_FOUND");
    }
    let limited = call(&app, Method::GET, "/shared/unknown", None).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let after: i64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert_eq!(
        limited.body,
        json!({"error": "rate_limit_exceeded", "message": "Too many requests. Please try again later."})
    );
    // The bucket is shared with the other public routes.
    assert_eq!(call(&app, Method::GET, "/healthz", None).await.status, 429);
    // Authenticated routes are not behind it.
    let answer = get(&app, "/sessions", &app.user_token("alice")).await;
    assert_eq!(answer.status, 200);
    let _: Value = answer.body;
}
