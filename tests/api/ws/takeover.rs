//! Admin takeover rules over WebSocket and HTTP together: one assisting admin at a time (also when two
//! admins race), WebSocket `admin_join` / `admin_leave` refused exactly like the HTTP routes, every
//! connection of the assisting admin receives the session, and the assistance outlives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{SharedData, TestApp, WsClient, app, spawn_app};
use crate::support::http::{
    assert_error, chat_turn_open, delete, end_in_store, get, post, recv_quietly, status,
    stored_session,
};

/// A session id nobody uses.
const UNKNOWN: &str = "0123456789abcdef0123456789abcdef";

fn join(id: &str) -> Value {
    json!({"type": "admin_join", "session_id": id, "sender": "admin"})
}

fn leave(id: &str) -> Value {
    json!({"type": "admin_leave", "session_id": id, "sender": "admin"})
}

fn assert_ws_error(frame: &Value, code: &str, message: &str) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], code, "{frame}");
    assert_eq!(frame["error"]["message"], message, "{frame}");
}

/// Waits until every frame this connection sent before has been handled (the server runs one at a time,
/// `MAX_IN_FLIGHT=1`): a probe is answered `NOT_FOUND` only once the slot is free, `SERVICE_ERROR` (busy)
/// before. Returns the frames received meanwhile, the probe's answer excluded.
async fn settle(ws: &mut WsClient) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        ws.send(json!({"type": "admin_message", "session_id": UNKNOWN, "content": "probe", "sender": "admin"}))
            .await;
        loop {
            let frame = ws.recv().await;
            let code = frame["error"]["code"].clone();
            if frame["type"] == "error" && frame["session_id"] == UNKNOWN && code == "NOT_FOUND" {
                return seen;
            }
            if frame["type"] == "error" && code == "SERVICE_ERROR" {
                break;
            }
            seen.push(frame);
        }
    }
}

/// The actions of the audit log, newest first.
async fn audit_actions(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let log = get(app, "/admin/audit", token).await;
    assert_eq!(log.status, 200, "{log:?}");
    log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["details"]["via"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// Frames of a WebSocket `admin_join` until its outcome: `Ok` with the admin's own `admin_join` event, or
/// `Err` with the error frame.
async fn join_outcome(ws: &mut WsClient, id: &str, admin_id: &str) -> Result<Value, Value> {
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "error" {
            return Err(frame);
        }
        if frame["type"] == "admin_join"
            && frame["session_id"] == id
            && frame["metadata"]["admin_id"] == admin_id
        {
            return Ok(frame);
        }
    }
}

#[tokio::test]
async fn racing_takeovers_by_two_admins_have_exactly_one_winner() {
    // On the embedded store: FerretDB (MONGODB_URI) evaluates update filters apart from the write, so a
    // conditional update is not atomic there (it is on MongoDB; see docs/architecture.md).
    let app = app()
        .env("MONGO_URI", "")
        .env("ADMIN_RATE_LIMIT", "1000")
        .spawn()
        .await;
    let (root, ops, eve) = (
        app.admin_token("root"),
        app.admin_token("ops"),
        app.admin_token("eve"),
    );
    let mut ops_ws = app.connect_ws(&ops).await;
    status(&mut ops_ws).await;
    for round in 0..8 {
        // HTTP against WebSocket.
        let id = stored_session(&app, &format!("racer{round}"), "Help", 1, 1).await;
        let path = format!("/admin/takeover/{id}");
        let (http, ws) = tokio::join!(post(&app, &path, &root), async {
            ops_ws.send(join(&id)).await;
            join_outcome(&mut ops_ws, &id, "ops").await
        });
        let stored = app.state.store.get_session(&id).await.unwrap().unwrap();
        match (http.status, ws) {
            (200, Err(refused)) => {
                assert_ws_error(
                    &refused,
                    "SESSION_ALREADY_ASSISTED",
                    "Session already assisted by another admin: Admin root (root)",
                );
                assert_eq!(stored.assisting_admin_id.as_deref(), Some("root"));
            }
            (_, Ok(_)) => {
                assert_error(
                    &http,
                    400,
                    "session already assisted by another admin: Admin ops (ops)",
                    "BAD_REQUEST",
                );
                assert_eq!(stored.assisting_admin_id.as_deref(), Some("ops"));
            }
            (status, Err(frame)) => panic!("round {round}: nobody won: {status} {frame}"),
        }

        // HTTP against HTTP.
        let id = stored_session(&app, &format!("pair{round}"), "Help", 1, 1).await;
        let path = format!("/admin/takeover/{id}");
        let (a, b) = tokio::join!(post(&app, &path, &root), post(&app, &path, &eve));
        let (winner, loser) = match (a.status, b.status) {
            (200, _) => (("root", "Admin root"), b),
            (_, 200) => (("eve", "Admin eve"), a),
            _ => panic!("round {round}: nobody won: {a:?} {b:?}"),
        };
        assert_error(
            &loser,
            400,
            &format!(
                "session already assisted by another admin: {} ({})",
                winner.1, winner.0
            ),
            "BAD_REQUEST",
        );
        let stored = app.state.store.get_session(&id).await.unwrap().unwrap();
        assert_eq!(stored.assisting_admin_id.as_deref(), Some(winner.0));
    }
}

#[tokio::test]
async fn ws_admin_leave_follows_the_http_rules_and_the_ai_answers_again() {
    let app = app().env("MAX_IN_FLIGHT", "1").spawn().await;
    let (mut phone, id) = chat_turn_open(&app, "alice", "Hello").await;
    let (root, ops) = (app.admin_token("root"), app.admin_token("ops"));
    let mut root_ws = app.connect_ws(&root).await;
    status(&mut root_ws).await;
    let mut ops_ws = app.connect_ws(&ops).await;
    status(&mut ops_ws).await;

    // Nobody assists: leaving is harmless, announces nothing and is not audited.
    root_ws.send(leave(&id)).await;
    assert_eq!(settle(&mut root_ws).await, Vec::<Value>::new());
    phone.send(json!({"type": "ping"})).await;
    assert_eq!(phone.recv().await["type"], "pong", "no admin_leave frame");
    assert!(audit_actions(&app, &root).await.is_empty());

    // Another admin's leave is refused like the HTTP route, and changes nothing.
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    recv_quietly(&mut phone, "admin_join").await;
    ops_ws.send(leave(&id)).await;
    let refused = settle(&mut ops_ws).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_ws_error(
        &refused[0],
        "SESSION_ALREADY_ASSISTED",
        "Session assisted by another admin: Admin root (root)",
    );
    let answer = delete(&app, &format!("/admin/takeover/{id}"), &ops).await;
    assert_error(
        &answer,
        400,
        "session assisted by another admin: Admin root (root)",
        "BAD_REQUEST",
    );
    let stored = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.assisting_admin_id.as_deref(), Some("root"));

    // The assisting admin leaves over WebSocket: the user sees it and the AI answers again.
    root_ws.send(leave(&id)).await;
    let left = recv_quietly(&mut phone, "admin_leave").await;
    assert_eq!(left["metadata"]["admin_id"], "root");
    settle(&mut root_ws).await;
    assert_eq!(
        audit_actions(&app, &root).await,
        [
            ("takeover_end".to_string(), "websocket".to_string()),
            ("takeover".to_string(), "http".to_string())
        ]
    );
    phone
        .send(json!({"type": "user_message", "content": "Back to the bot", "session_id": id}))
        .await;
    let turn = phone.recv_turn().await;
    assert_eq!(turn[0]["type"], "loading", "{turn:?}");
    assert_eq!(turn.last().unwrap()["metadata"]["done"], "true");
}

#[tokio::test]
async fn ws_admin_frames_are_refused_with_the_reference_errors_and_the_connection_survives() {
    let app = spawn_app().await;
    let id = stored_session(&app, "alice", "Help", 1, 1).await;
    let root = app.admin_token("root");
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );

    // Another admin: already assisted, for joining and for messages.
    let mut ops = app.connect_ws(&app.admin_token("ops")).await;
    status(&mut ops).await;
    ops.send(join(&id)).await;
    assert_ws_error(
        &ops.recv().await,
        "SESSION_ALREADY_ASSISTED",
        "Session already assisted by another admin: Admin root (root)",
    );
    ops.send(
        json!({"type": "admin_message", "session_id": id, "content": "me too", "sender": "admin"}),
    )
    .await;
    assert_ws_error(
        &ops.recv().await,
        "SESSION_ALREADY_ASSISTED",
        "Session already assisted by another admin: Admin root (root)",
    );
    let stored = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.assisting_admin_id.as_deref(), Some("root"));

    // Not an admin: every admin frame is forbidden, and the connection keeps working.
    let mut bob = app.connect_ws(&app.user_token("bob")).await;
    status(&mut bob).await;
    bob.send(join(&id)).await;
    bob.send(
        json!({"type": "admin_message", "session_id": id, "content": "hi", "sender": "admin"}),
    )
    .await;
    bob.send(leave(&id)).await;
    for _ in 0..3 {
        assert_ws_error(&bob.recv().await, "FORBIDDEN", "Insufficient permissions");
    }
    bob.send(json!({"type": "ping"})).await;
    assert_eq!(bob.recv().await["type"], "pong");
    let stored = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.assisting_admin_id.as_deref(), Some("root"));

    // An ended session cannot be joined, as over HTTP.
    let ended = stored_session(&app, "carol", "Bye", 1, 1).await;
    end_in_store(&app, &ended).await;
    ops.send(join(&ended)).await;
    assert_ws_error(&ops.recv().await, "SESSION_ENDED", "Session has ended");
    let stored = app.state.store.get_session(&ended).await.unwrap().unwrap();
    assert_eq!(stored.assisting_admin_id, None);
    ops.send(json!({"type": "ping"})).await;
    assert_eq!(ops.recv().await["type"], "pong");
}

#[tokio::test]
async fn every_connection_of_the_assisting_admin_receives_the_session() {
    let app = spawn_app().await;
    let (mut phone, id) = chat_turn_open(&app, "alice", "Hello").await;
    let root = app.admin_token("root");
    let mut desk = app.connect_ws(&root).await;
    status(&mut desk).await;
    let mut laptop = app.connect_ws(&root).await;
    status(&mut laptop).await;

    // A takeover over HTTP: both of the admin's connections are in the conversation.
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    for admin in [&mut desk, &mut laptop] {
        let joined = recv_quietly(admin, "admin_join").await;
        assert_eq!(joined["session_id"], id.as_str());
    }
    recv_quietly(&mut phone, "admin_join").await;
    phone
        .send(json!({"type": "user_message", "content": "Anyone there?", "session_id": id}))
        .await;
    phone
        .send(json!({"type": "typing_indicator", "session_id": id}))
        .await;
    // The typing frame (handled at once) may overtake the message (stored first).
    for admin in [&mut desk, &mut laptop] {
        let (mut message, mut typing) = (None, None);
        while message.is_none() || typing.is_none() {
            let frame = admin.recv().await;
            assert!(
                frame["type"] != "loading" && frame["type"] != "ai_response",
                "{frame}"
            );
            match frame["type"].as_str() {
                Some("user_message") => message = Some(frame),
                Some("typing_indicator") => typing = Some(frame),
                _ => {}
            }
        }
        assert_eq!(message.unwrap()["content"], "Anyone there?");
        assert_eq!(typing.unwrap()["sender"], "user");
    }

    // A device the admin opens later is in it too.
    let mut tablet = app.connect_ws(&root).await;
    status(&mut tablet).await;
    phone
        .send(json!({"type": "typing_indicator", "session_id": id}))
        .await;
    let typing = recv_quietly(&mut tablet, "typing_indicator").await;
    assert_eq!(typing["session_id"], id.as_str());
}

#[tokio::test]
async fn the_assistance_outlives_a_restart() {
    let data = SharedData::new();
    let first = app().data(&data).spawn().await;
    let alice = first.user_token("alice");
    let (phone, id) = chat_turn_open(&first, "alice", "I need a human").await;
    let root = first.admin_token("root");
    assert_eq!(
        post(&first, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    phone.close().await;
    first.stop().await;

    // A new server on the same data: the AI stays silent, the admin watches and talks without rejoining.
    let again = app().data(&data).spawn().await;
    let mut admin = again.connect_ws(&root).await;
    status(&mut admin).await;
    let mut phone = again.connect_ws(&alice).await;
    assert_eq!(status(&mut phone).await["session_id"], id.as_str());
    phone
        .send(json!({"type": "user_message", "content": "Still there?", "session_id": id}))
        .await;
    let seen = recv_quietly(&mut admin, "user_message").await;
    assert_eq!(seen["content"], "Still there?");
    admin
        .send(json!({"type": "admin_message", "session_id": id, "content": "Yes.", "sender": "admin"}))
        .await;
    let answer = recv_quietly(&mut phone, "admin_message").await;
    assert_eq!(answer["content"], "Yes.");

    assert_eq!(
        delete(&again, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    recv_quietly(&mut phone, "admin_leave").await;
    phone
        .send(json!({"type": "user_message", "content": "Thanks", "session_id": id}))
        .await;
    let turn = phone.recv_turn().await;
    assert_eq!(turn[0]["type"], "loading", "{turn:?}");
    let senders: Vec<_> = again
        .state
        .store
        .messages(&id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.sender)
        .collect();
    assert_eq!(senders, ["user", "ai", "user", "admin", "user", "ai"]);
}

#[tokio::test]
async fn a_retried_admin_message_reaches_the_user_once() {
    let app = spawn_app().await;
    let (mut phone, id) = chat_turn_open(&app, "alice", "Hello").await;
    let root = app.admin_token("root");
    let mut desk = app.connect_ws(&root).await;
    status(&mut desk).await;
    desk.send(join(&id)).await;
    recv_quietly(&mut phone, "admin_join").await;
    let message = json!({"type": "admin_message", "session_id": id, "content": "On it.",
        "sender": "admin", "client_msg_id": "a-1"});
    desk.send(message.clone()).await;
    let first = recv_quietly(&mut phone, "admin_message").await;
    assert_eq!(first["content"], "On it.");

    desk.send(message).await;
    // The desk saw the history replayed on joining; the sender alone gets the duplicate.
    let again = desk.recv_until("admin_message").await.pop().unwrap();
    assert_eq!(again["metadata"]["duplicate"], "true", "{again}");
    assert_eq!(again["seq"], first["seq"], "the original's seq");
    // The user hears nothing more: the next frame is the answer to its own ping.
    phone.send(json!({"type": "ping"})).await;
    assert_eq!(phone.recv().await["type"], "pong");
    // Client ids are per sender: the user's own "a-1" is a new message, not the admin's.
    phone
        .send(json!({"type": "user_message", "content": "Thanks!", "session_id": id, "client_msg_id": "a-1"}))
        .await;
    let echo = desk.recv_until("user_message").await.pop().unwrap();
    assert_eq!(echo["content"], "Thanks!");
    assert!(echo["metadata"]["duplicate"].is_null(), "{echo}");
    let admin_messages = app
        .state
        .store
        .messages(&id, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.sender == "admin")
        .count();
    assert_eq!(admin_messages, 1);
}
