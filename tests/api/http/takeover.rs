//! Admin takeover over HTTP together with the WebSocket conversation: the AI pauses while an
//! administrator assists, admin messages reach every device of the user, user messages and typing reach
//! the administrator, leaving resumes the AI, and transfers move the assistance explicitly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::http::{
    assert_error, chat_turn, delete, end_in_store, get, post, recv_quietly, status, stored_session,
    two_devices_after_one_turn,
};

/// Frames until one of type `kind`, asserting that no AI activity (`loading`, `ai_response`) is among them.
#[tokio::test]
async fn http_takeover_refusals_use_the_spec_texts() {
    let app = spawn_app().await;
    let root = app.admin_token("root");
    let ops = app.admin_token("ops");
    let answer = post(
        &app,
        "/admin/takeover/0123456789abcdef0123456789abcdef",
        &root,
    )
    .await;
    assert_error(&answer, 404, "Session not found", "NOT_FOUND");
    let answer = delete(
        &app,
        "/admin/takeover/0123456789abcdef0123456789abcdef",
        &root,
    )
    .await;
    assert_error(&answer, 404, "Session not found", "NOT_FOUND");
    let answer = post(
        &app,
        "/admin/takeover/0123456789abcdef0123456789abcdef/transfer",
        &root,
    )
    .await;
    assert_error(&answer, 404, "Session not found", "NOT_FOUND");

    let id = stored_session(&app, "alice", "Help", 1, 1).await;
    // Leaving a session nobody assists is harmless.
    let answer = delete(&app, &format!("/admin/takeover/{id}"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["message"], "Takeover ended successfully");

    let answer = post(&app, &format!("/admin/takeover/{id}"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"message": "Takeover initiated successfully", "session_id": id, "admin_id": "root"})
    );
    // The same admin again succeeds again.
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    let answer = post(&app, &format!("/admin/takeover/{id}"), &ops).await;
    assert_error(
        &answer,
        400,
        "session already assisted by another admin: Admin root (root)",
        "BAD_REQUEST",
    );
    let answer = delete(&app, &format!("/admin/takeover/{id}"), &ops).await;
    assert_error(
        &answer,
        400,
        "session assisted by another admin: Admin root (root)",
        "BAD_REQUEST",
    );

    // The assistance is persisted.
    let session = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert!(session.admin_assisted);
    assert_eq!(session.assisting_admin_id.as_deref(), Some("root"));
    assert_eq!(session.assisting_admin_name.as_deref(), Some("Admin root"));
    let listed = get(&app, "/admin/sessions?user_id=alice", &root).await;
    assert_eq!(listed.body["sessions"][0]["admin_assisted"], true);
    assert_eq!(
        listed.body["sessions"][0]["assisting_admin_name"],
        "Admin root"
    );

    end_in_store(&app, &id).await;
    let answer = post(&app, &format!("/admin/takeover/{id}"), &ops).await;
    assert_error(&answer, 400, "session has ended", "BAD_REQUEST");
    let answer = post(&app, &format!("/admin/takeover/{id}/transfer"), &ops).await;
    assert_error(&answer, 400, "session has ended", "BAD_REQUEST");

    let text = crate::support::http::prometheus(&app).await;
    assert_eq!(
        crate::support::http::metric(&text, "chatbox_admin_takeovers_total"),
        2.0
    );
}

#[tokio::test]
async fn http_takeover_conversation_with_two_devices_and_an_admin() {
    let app = spawn_app().await;
    let (mut phone, mut laptop, id) =
        two_devices_after_one_turn(&app, "alice", "I need a human").await;

    // HTTP takeover: both devices see the admin join.
    let root = app.admin_token("root");
    let answer = post(&app, &format!("/admin/takeover/{id}"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for device in [&mut phone, &mut laptop] {
        let join = device.recv().await;
        assert_eq!(join["type"], "admin_join", "{join}");
        assert_eq!(join["session_id"], id.as_str());
        assert_eq!(join["metadata"]["admin_id"], "root");
        assert_eq!(
            join["content"],
            "Administrator Admin root has joined the session"
        );
    }

    // The admin's own connection joins the conversation and gets its history.
    let mut admin = app.connect_ws(&root).await;
    status(&mut admin).await;
    admin
        .send(json!({"type": "admin_join", "session_id": id, "sender": "admin"}))
        .await;
    let history = admin.recv_until("admin_join").await;
    assert!(
        history.iter().any(|f| f["type"] == "ai_response"),
        "history replayed: {history:?}"
    );
    recv_quietly(&mut phone, "admin_join").await;
    recv_quietly(&mut laptop, "admin_join").await;
    // Drain what the replay still holds for the admin (the join frames), up to a ping's answer.
    admin.send(json!({"type": "ping"})).await;
    admin.recv_until("pong").await;

    // A user message reaches the other device and the admin; the AI stays silent.
    phone
        .send(json!({"type": "user_message", "content": "Are you a person?", "session_id": id}))
        .await;
    let echo = recv_quietly(&mut laptop, "user_message").await;
    assert_eq!(echo["content"], "Are you a person?");
    let seen = recv_quietly(&mut admin, "user_message").await;
    assert_eq!(seen["content"], "Are you a person?");
    assert_eq!(seen["session_id"], id.as_str());

    // Typing relays both ways.
    phone
        .send(json!({"type": "typing_indicator", "session_id": id}))
        .await;
    let typing = recv_quietly(&mut admin, "typing_indicator").await;
    assert_eq!(typing["sender"], "user");
    // The user's other device sees it too.
    let typing = recv_quietly(&mut laptop, "typing_indicator").await;
    assert_eq!(typing["sender"], "user");
    admin
        .send(json!({"type": "typing_indicator", "session_id": id, "sender": "admin"}))
        .await;
    let typing = recv_quietly(&mut phone, "typing_indicator").await;
    assert_eq!(typing["sender"], "admin");
    let typing = recv_quietly(&mut laptop, "typing_indicator").await;
    assert_eq!(typing["sender"], "admin");

    // The admin's answer reaches both devices.
    admin
        .send(json!({"type": "admin_message", "session_id": id, "content": "Yes, I am here.", "sender": "admin"}))
        .await;
    for device in [&mut phone, &mut laptop] {
        let message = recv_quietly(device, "admin_message").await;
        assert_eq!(message["content"], "Yes, I am here.");
        assert_eq!(message["sender"], "admin");
    }

    // HTTP leave: both devices see it, and the AI answers again.
    let answer = delete(&app, &format!("/admin/takeover/{id}"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["message"], "Takeover ended successfully");
    for device in [&mut phone, &mut laptop] {
        let leave = recv_quietly(device, "admin_leave").await;
        assert_eq!(leave["metadata"]["admin_id"], "root");
    }
    phone
        .send(
            json!({"type": "user_message", "content": "Thanks, back to the bot", "session_id": id}),
        )
        .await;
    let turn = phone.recv_turn().await;
    assert_eq!(turn[0]["type"], "loading", "{turn:?}");
    assert_eq!(turn.last().unwrap()["metadata"]["done"], "true");

    // The conversation is stored in order, the admin's message included.
    let detail = get(&app, &format!("/sessions/{id}"), &app.user_token("alice")).await;
    let senders: Vec<_> = detail.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sender"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(senders, ["user", "ai", "user", "admin", "user", "ai"]);
}

#[tokio::test]
async fn http_a_transfer_hands_the_session_to_the_calling_admin() {
    let app = spawn_app().await;
    let id = chat_turn(&app, "alice", "Hello").await;
    let mut device = app.connect_ws(&app.user_token("alice")).await;
    status(&mut device).await;
    let root = app.admin_token("root");
    let ops = app.admin_token("ops");

    // Nobody assists: a transfer is a takeover.
    let answer = post(&app, &format!("/admin/takeover/{id}/transfer"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["message"], "Takeover initiated successfully");
    assert_eq!(
        device.recv_until("admin_join").await.last().unwrap()["metadata"]["admin_id"],
        "root"
    );

    // Root watches over WebSocket; ops takes the session over explicitly.
    let mut root_ws = app.connect_ws(&root).await;
    status(&mut root_ws).await;
    root_ws
        .send(json!({"type": "admin_join", "session_id": id, "sender": "admin"}))
        .await;
    root_ws.recv_until("admin_join").await;
    device.recv_until("admin_join").await;
    let answer = post(&app, &format!("/admin/takeover/{id}/transfer"), &ops).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"message": "Takeover transferred successfully", "session_id": id, "admin_id": "ops"})
    );
    let leave = device.recv().await;
    assert_eq!(leave["type"], "admin_leave", "{leave}");
    assert_eq!(leave["metadata"]["admin_id"], "root");
    assert_eq!(leave["metadata"]["reason"], "transfer");
    let join = device.recv().await;
    assert_eq!(join["type"], "admin_join", "{join}");
    assert_eq!(join["metadata"]["admin_id"], "ops");
    assert!(leave["seq"].as_i64().unwrap() < join["seq"].as_i64().unwrap());

    // Root no longer assists: its messages are refused, ops' reach the user.
    root_ws.send(json!({"type": "admin_message", "session_id": id, "content": "still me", "sender": "admin"})).await;
    let refused = root_ws.recv_until("error").await;
    assert_eq!(refused.last().unwrap()["type"], "error");
    let session = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(session.assisting_admin_id.as_deref(), Some("ops"));
    let answer = delete(&app, &format!("/admin/takeover/{id}"), &root).await;
    assert_error(
        &answer,
        400,
        "session assisted by another admin: Admin ops (ops)",
        "BAD_REQUEST",
    );
    // Ops transferring to itself again is a plain (repeated) takeover.
    let answer = post(&app, &format!("/admin/takeover/{id}/transfer"), &ops).await;
    assert_eq!(answer.body["message"], "Takeover initiated successfully");
}

/// An administrator ends a user's session: the user's devices and the watching admin are told, the
/// session accepts no more messages, ending again changes nothing, the action is audited, and the ended
/// session stays readable by admins; refusals use the spec's texts.
#[tokio::test]
async fn http_an_admin_ends_a_users_session() {
    let app = spawn_app().await;
    let root = app.admin_token("root");
    let answer = post(
        &app,
        "/admin/sessions/0123456789abcdef0123456789abcdef/end",
        &root,
    )
    .await;
    assert_error(&answer, 404, "Session not found", "NOT_FOUND");
    let (mut phone, mut laptop, id) =
        two_devices_after_one_turn(&app, "alice", "please close this").await;
    let answer = post(
        &app,
        &format!("/admin/sessions/{id}/end"),
        &app.user_token("alice"),
    )
    .await;
    assert_error(&answer, 403, "Insufficient permissions", "FORBIDDEN");

    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    let answer = post(&app, &format!("/admin/sessions/{id}/end"), &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, json!({"status": "ended"}));
    for device in [&mut phone, &mut laptop] {
        let ended = recv_quietly(device, "notification").await;
        assert_eq!(ended["metadata"]["event"], "session_ended", "{ended}");
        assert_eq!(ended["session_id"], id.as_str());
    }
    let session = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert!(session.ended_at.is_some());
    phone
        .send(json!({"type": "user_message", "content": "still there?", "session_id": id}))
        .await;
    let refused = recv_quietly(&mut phone, "error").await;
    assert_eq!(refused["error"]["code"], "SESSION_ENDED", "{refused}");

    // Again: nothing changes, and both calls are audited with what they did.
    let again = post(&app, &format!("/admin/sessions/{id}/end"), &root).await;
    assert_eq!(again.status, 200, "{again:?}");
    let audit = get(&app, "/admin/audit", &root).await;
    assert_eq!(audit.status, 200, "{audit:?}");
    let entries = audit.body["entries"].as_array().unwrap();
    let ended_now: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "session_end")
        .map(|e| {
            assert_eq!(e["session_id"], id.as_str());
            assert_eq!(e["user_id"], "alice");
            assert_eq!(e["admin_id"], "root");
            e["details"]["ended_now"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ended_now, ["false", "true"], "newest first: {entries:?}");

    // The ended session stays readable by an admin (audited), not by another user.
    let viewed = get(&app, &format!("/admin/sessions/{id}"), &root).await;
    assert_eq!(viewed.status, 200, "{viewed:?}");
    assert_eq!(viewed.body["session_id"], id.as_str());
    assert!(viewed.body["end_time"].is_string(), "{viewed:?}");
    let contents: Vec<_> = viewed.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sender"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["user", "ai"]);
    let refused = get(
        &app,
        &format!("/admin/sessions/{id}"),
        &app.user_token("bob"),
    )
    .await;
    assert_error(&refused, 403, "Insufficient permissions", "FORBIDDEN");
    let missing = get(
        &app,
        "/admin/sessions/0123456789abcdef0123456789abcdef",
        &root,
    )
    .await;
    assert_error(&missing, 404, "Session not found", "NOT_FOUND");
    let audit = get(&app, "/admin/audit", &root).await;
    let views: Vec<_> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "session_view")
        .map(|e| (e["session_id"].clone(), e["user_id"].clone()))
        .collect();
    assert_eq!(views, [(json!(id), json!("alice"))]);
}

/// A help request is answered by a takeover: the session no longer waits for help, also after the
/// administrator leaves.
#[tokio::test]
async fn http_a_takeover_answers_the_help_request() {
    let app = spawn_app().await;
    let (mut phone, _laptop, id) = two_devices_after_one_turn(&app, "carol", "help me").await;
    phone
        .send(json!({"type": "help_request", "session_id": id}))
        .await;
    recv_quietly(&mut phone, "connection_status").await;
    let root = app.admin_token("root");
    let listed = get(&app, "/admin/sessions?user_id=carol", &root).await;
    assert_eq!(
        listed.body["sessions"][0]["help_requested"], true,
        "{listed:?}"
    );
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    assert_eq!(
        delete(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    let listed = get(&app, "/admin/sessions?user_id=carol", &root).await;
    // `help_requested` is left out when false.
    assert!(
        listed.body["sessions"][0].get("help_requested").is_none(),
        "{listed:?}"
    );
}

/// The assisting administrator hands the session to a named one: the user sees the first leave and the
/// second join, the second may write at once, and the first can no longer hand it on.
#[tokio::test]
async fn http_an_admin_hands_a_session_to_another_admin() {
    let app = spawn_app().await;
    let id = chat_turn(&app, "dave", "Hello").await;
    let mut device = app.connect_ws(&app.user_token("dave")).await;
    status(&mut device).await;
    let root = app.admin_token("root");
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    device.recv_until("admin_join").await;

    let path = format!("/admin/takeover/{id}/transfer?to_admin_id=ops&to_admin_name=Ops%20Person");
    let answer = post(&app, &path, &root).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"message": "Takeover transferred successfully", "session_id": id, "admin_id": "ops"})
    );
    let leave = recv_quietly(&mut device, "admin_leave").await;
    assert_eq!(leave["metadata"]["admin_id"], "root");
    assert_eq!(leave["metadata"]["reason"], "transfer");
    let join = recv_quietly(&mut device, "admin_join").await;
    assert_eq!(join["metadata"]["admin_id"], "ops");
    assert_eq!(join["metadata"]["admin_name"], "Ops Person");
    let session = app.state.store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(session.assisting_admin_id.as_deref(), Some("ops"));

    // The named admin writes without joining first.
    let mut ops = app.connect_ws(&app.admin_token("ops")).await;
    status(&mut ops).await;
    ops.send(json!({"type": "admin_message", "session_id": id, "content": "Ops here", "sender": "admin"}))
        .await;
    let message = recv_quietly(&mut device, "admin_message").await;
    assert_eq!(message["content"], "Ops here");

    let again = post(&app, &path.replace("ops", "third"), &root).await;
    assert_error(
        &again,
        400,
        "session assisted by another admin: Ops Person (ops)",
        "BAD_REQUEST",
    );
    let audit = get(&app, "/admin/audit", &root).await;
    let handed = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "takeover_transfer")
        .cloned()
        .unwrap();
    assert_eq!(handed["admin_id"], "root");
    assert_eq!(handed["details"]["admin_id"], "ops");
    assert_eq!(handed["details"]["previous_admin_id"], "root");
}
