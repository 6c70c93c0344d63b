//! Session state over time: seqs that never repeat across a restart, idle live state and reservations
//! dropped from memory (resume then served from the store), and devices connecting while the session is
//! being created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chatbox::hub::Outbound;

use serde_json::{Value, json};

use crate::support::app::{SharedData, TestApp, answer_text, app};
use crate::support::http::status;
use crate::support::wait::eventually;

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().filter_map(|f| f["seq"].as_i64()).collect()
}

async fn session_of(app: &TestApp, user: &str) -> String {
    app.state
        .store
        .active_session_id(user)
        .await
        .unwrap()
        .expect("an active session")
}

#[tokio::test]
async fn seqs_keep_rising_across_a_restart_after_events_that_are_not_stored() {
    let data = SharedData::new();
    let first = app().data(&data).spawn().await;
    let token = first.user_token("restarted");
    let (mut ws, turn) = first.chat_once(&token, "Before the restart").await;
    let mut seen = seqs(&turn);
    // Events after the last stored message that take a seq but are not stored.
    for _ in 0..3 {
        ws.send(json!({"type": "model_select", "model_id": "demo"}))
            .await;
        let confirm = ws.recv().await;
        assert_eq!(confirm["type"], "connection_status");
        seen.push(confirm["seq"].as_i64().expect("a session event"));
    }
    let highest = *seen.iter().max().unwrap();
    ws.close().await;
    first.stop().await;

    let second = app().data(&data).spawn().await;
    let mut again = second.connect_ws_resume(&token, highest).await;
    let connected = status(&mut again).await;
    assert!(
        connected["last_seq"].as_i64().unwrap() >= highest,
        "seen {seen:?}, connected {connected}, stored {:?}",
        second
            .state
            .store
            .get_session(connected["session_id"].as_str().unwrap())
            .await
            .unwrap()
    );
    again.recv_until("connection_status").await;
    again
        .send(json!({"type": "user_message", "content": "After the restart"}))
        .await;
    let turn = again.recv_turn().await;
    let after = seqs(&turn);
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|s| *s > highest),
        "seen before {seen:?}, after the restart {after:?}"
    );
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
}

#[tokio::test]
async fn idle_live_state_is_dropped_and_a_resume_is_served_from_the_store() {
    let app = app().env("WS_SESSION_IDLE", "50ms").spawn().await;
    let token = app.user_token("idler");
    let (ws, turn) = app.chat_once(&token, "Remember this").await;
    let question_seq = turn[0]["seq"].as_i64().unwrap();
    let session_id = session_of(&app, "idler").await;
    assert!(app.state.chat.live().get(&session_id).is_some());
    ws.close().await;

    eventually("the live state is dropped once no device is left", || {
        app.state
            .chat
            .live()
            .get(&session_id)
            .is_none()
            .then_some(())
    })
    .await;

    let mut again = app.connect_ws_resume(&token, question_seq).await;
    status(&mut again).await;
    let answer = again.recv().await;
    assert_eq!(answer["type"], "ai_response");
    assert_eq!(answer["metadata"]["done"], "true");
    assert_eq!(answer["content"].as_str().unwrap(), answer_text(&turn));
    let end = again.recv().await;
    assert_eq!(end["type"], "connection_status");
    assert_eq!(end["metadata"]["resumed"], "true");
    assert_eq!(end["metadata"]["resync"], "true");
    assert_eq!(end["metadata"]["replayed"], "1");
    // The session goes on with higher seqs.
    again
        .send(json!({"type": "user_message", "content": "And now?"}))
        .await;
    let next = again.recv_turn().await;
    assert!(
        seqs(&next)
            .iter()
            .all(|s| *s > answer["seq"].as_i64().unwrap())
    );
}

#[tokio::test]
async fn a_live_session_stays_while_a_device_is_connected() {
    let app = app().env("WS_SESSION_IDLE", "10ms").spawn().await;
    let (_ws, _) = app.chat_once(&app.user_token("stayer"), "Hello").await;
    let session_id = session_of(&app, "stayer").await;
    // Several sweeps run while the device is connected (each sweep drops idle reservations of others).
    let mut other = app.connect_ws(&app.user_token("passer-by")).await;
    status(&mut other).await;
    other.close().await;
    eventually("a sweep ran", || {
        (app.state.chat.reservation_count() == 0).then_some(())
    })
    .await;
    assert!(app.state.chat.live().get(&session_id).is_some());
}

#[tokio::test]
async fn reserved_ids_of_users_who_never_write_expire() {
    let app = app().env("WS_SESSION_IDLE", "50ms").spawn().await;
    let token = app.user_token("lurker");
    let mut ws = app.connect_ws(&token).await;
    let reserved = status(&mut ws).await["session_id"].clone();
    assert_eq!(app.state.chat.reservation_count(), 1);
    ws.close().await;
    eventually("the reservation expires", || {
        (app.state.chat.reservation_count() == 0).then_some(())
    })
    .await;
    let mut back = app.connect_ws(&token).await;
    assert_ne!(status(&mut back).await["session_id"], reserved);
}

#[tokio::test]
async fn a_device_connecting_while_the_session_is_created_misses_no_frame() {
    let app = app().spawn().await;
    let token = app.user_token("racer");
    let identity = app.state.keys.verify(&token).unwrap();
    let slot = app.state.hub.reserve("racer").unwrap();
    // A connection coming to life, stopped while it looks the (not yet existing) session up.
    let chat = Arc::clone(&app.state.chat);
    let mut attach = Box::pin(chat.attach(slot, identity, Some(0)));
    let early = futures::poll!(&mut attach);
    assert_eq!(
        app.state.hub.user_connection_count("racer"),
        1,
        "registered before the lookup"
    );
    // Meanwhile another device creates the session and gets its answer.
    let mut writer = app.connect_ws(&token).await;
    status(&mut writer).await;
    writer
        .send(json!({"type": "user_message", "content": "Who wins?"}))
        .await;
    let written = writer.recv_turn().await;
    let mut attached = match early {
        std::task::Poll::Ready(attached) => attached,
        std::task::Poll::Pending => attach.await,
    };
    let mut frames: Vec<Value> = attached
        .backlog
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    while let Some(Outbound::Text(frame)) = attached.rx.try_recv() {
        frames.push(serde_json::from_str(&frame).unwrap());
    }
    let expected: Vec<i64> = (1..=*seqs(&written).last().unwrap()).collect();
    assert_eq!(seqs(&frames), expected, "{frames:?}");
}
