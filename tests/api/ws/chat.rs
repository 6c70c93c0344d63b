//! Chat over WebSocket: handshake, multi-device fan-out, streaming turns, resume, limits and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{WsClient, answer_text, app, spawn_app};

async fn status(ws: &mut WsClient) -> Value {
    let frame = ws.recv().await;
    assert_eq!(frame["type"], "connection_status", "{frame}");
    frame
}

/// The error text of an error frame.
fn error_text(frame: &Value) -> &str {
    frame["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error frame: {frame}"))
}

fn seq(frame: &Value) -> i64 {
    frame["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no seq in {frame}"))
}

#[tokio::test]
async fn the_first_frame_names_the_user_the_session_and_the_models() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("alice")).await;
    let first = status(&mut ws).await;
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["session_id"].as_str().unwrap().len(), 32);
    assert_eq!(first["models"][0]["id"], "demo");
    assert_eq!(first["sender"], "system");
    // A second device is told the same (reserved) session.
    let mut other = app.connect_ws(&app.user_token("alice")).await;
    assert_eq!(status(&mut other).await["session_id"], first["session_id"]);
}

#[tokio::test]
async fn a_turn_streams_loading_chunks_and_a_final_chunk() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("u1")).await;
    let session = status(&mut ws).await["session_id"].clone();
    ws.send(json!({"type": "user_message", "content": "Hello there"}))
        .await;
    let frames = ws.recv_turn().await;
    assert_eq!(frames[0]["type"], "loading");
    assert_eq!(frames[0]["session_id"], session);
    let chunks: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "ai_response")
        .collect();
    assert!(chunks.len() > 2, "{frames:?}");
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk["metadata"]["streaming"], "true");
        assert_eq!(chunk["metadata"]["done"], "false");
        assert_eq!(chunk["model_id"], "demo");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true");
    assert!(!answer_text(&frames).is_empty());
    let seqs: Vec<i64> = frames.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs ascend by one: {seqs:?}"
    );
}

#[tokio::test]
async fn two_devices_receive_the_streamed_answer_and_each_others_messages() {
    let app = spawn_app().await;
    let token = app.user_token("bob");
    let mut phone = app.connect_ws(&token).await;
    let mut laptop = app.connect_ws(&token).await;
    status(&mut phone).await;
    status(&mut laptop).await;
    phone
        .send(json!({"type": "user_message", "content": "From the phone", "client_msg_id": "p1"}))
        .await;
    let echo = laptop.recv().await;
    assert_eq!(echo["type"], "user_message");
    assert_eq!(echo["content"], "From the phone");
    assert_eq!(echo["client_msg_id"], "p1");
    let on_laptop = laptop.recv_turn().await;
    let on_phone = phone.recv_turn().await;
    assert_eq!(
        on_phone[0]["type"], "loading",
        "the sender gets no echo of its own message"
    );
    assert_eq!(answer_text(&on_laptop), answer_text(&on_phone));
    assert_eq!(on_laptop.last().unwrap()["metadata"]["done"], "true");

    laptop
        .send(json!({"type": "user_message", "content": "From the laptop"}))
        .await;
    let echo = phone.recv().await;
    assert_eq!(echo["content"], "From the laptop");
    phone.recv_turn().await;
    laptop.recv_turn().await;
}

#[tokio::test]
async fn closing_one_device_never_detaches_another() {
    let app = app().env("LLM_DEMO_TOKEN_DELAY_MS", "20").spawn().await;
    let token = app.user_token("carol");
    let mut a = app.connect_ws(&token).await;
    let mut b = app.connect_ws(&token).await;
    status(&mut a).await;
    status(&mut b).await;
    a.send(json!({"type": "user_message", "content": "Tell me something"}))
        .await;
    assert_eq!(a.recv().await["type"], "loading");
    assert_eq!(b.recv().await["type"], "user_message");
    b.close().await;
    let rest = a.recv_turn().await;
    assert_eq!(rest.last().unwrap()["metadata"]["done"], "true");
    // And a later answer still reaches the remaining device.
    a.send(json!({"type": "user_message", "content": "Again"}))
        .await;
    assert_eq!(
        a.recv_turn().await.last().unwrap()["metadata"]["done"],
        "true"
    );
}

#[tokio::test]
async fn reconnecting_with_last_seq_replays_exactly_the_missed_frames() {
    let app = spawn_app().await;
    let token = app.user_token("dave");
    let mut a = app.connect_ws(&token).await;
    status(&mut a).await;
    a.send(json!({"type": "user_message", "content": "First"}))
        .await;
    let first_turn = a.recv_turn().await;
    let last_seen = seq(first_turn.last().unwrap());

    let mut b = app.connect_ws(&token).await;
    status(&mut b).await;
    b.send(json!({"type": "user_message", "content": "Second"}))
        .await;
    let mut missed = vec![a.recv().await];
    missed.extend(a.recv_turn().await);
    b.recv_turn().await;
    a.close().await;

    let mut again = app.connect_ws_resume(&token, last_seen).await;
    let resumed_status = status(&mut again).await;
    assert_eq!(resumed_status["last_seq"], seq(missed.last().unwrap()));
    let mut replayed = Vec::new();
    for _ in 0..missed.len() {
        replayed.push(again.recv().await);
    }
    let strip = |f: &Value| {
        let mut f = f.clone();
        f.as_object_mut().unwrap().remove("timestamp");
        f
    };
    assert_eq!(
        replayed.iter().map(strip).collect::<Vec<_>>(),
        missed.iter().map(strip).collect::<Vec<_>>()
    );
    let end = again.recv().await;
    assert_eq!(end["type"], "connection_status");
    assert_eq!(end["metadata"]["resumed"], "true");
    assert_eq!(end["metadata"]["replayed"], missed.len().to_string());
    assert!(
        end["metadata"].get("resync").is_none(),
        "every missed frame was in the replay window"
    );
    // Nothing more: the next frame is the answer to a ping.
    again.send(json!({"type": "ping"})).await;
    assert_eq!(again.recv().await["type"], "pong");
}

#[tokio::test]
async fn a_device_joining_mid_answer_first_receives_the_partial_answer() {
    let app = app().env("LLM_DEMO_TOKEN_DELAY_MS", "30").spawn().await;
    let token = app.user_token("erin");
    let mut a = app.connect_ws(&token).await;
    status(&mut a).await;
    a.send(json!({"type": "user_message", "content": "Stream slowly please"}))
        .await;
    assert_eq!(a.recv().await["type"], "loading");
    let first_chunk = a.recv().await;
    assert_eq!(first_chunk["type"], "ai_response");
    let mut late = app.connect_ws(&token).await;
    status(&mut late).await;
    let partial = late.recv().await;
    assert_eq!(partial["type"], "ai_response");
    assert_eq!(partial["metadata"]["partial"], "true");
    let mut late_frames = vec![partial];
    late_frames.extend(late.recv_turn().await);
    let mut full = vec![first_chunk];
    full.extend(a.recv_turn().await);
    assert_eq!(answer_text(&late_frames), answer_text(&full));
}

#[tokio::test]
async fn a_foreign_session_id_gets_an_error_on_the_intruders_connection_only() {
    let app = spawn_app().await;
    let mut owner = app.connect_ws(&app.user_token("owner")).await;
    status(&mut owner).await;
    owner
        .send(json!({"type": "user_message", "content": "mine"}))
        .await;
    let turn = owner.recv_turn().await;
    let session_id = turn[0]["session_id"].as_str().unwrap().to_string();

    let mut intruder = app.connect_ws(&app.user_token("intruder")).await;
    status(&mut intruder).await;
    intruder
        .send(json!({"type": "user_message", "session_id": session_id, "content": "let me in"}))
        .await;
    let error = intruder.recv().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "UNAUTHORIZED");
    assert_eq!(
        error["error"]["message"],
        "You do not have permission to access this session"
    );
    // The owner saw nothing of it: its next frame is the answer to its own ping.
    owner.send(json!({"type": "ping"})).await;
    assert_eq!(owner.recv().await["type"], "pong");
}

#[tokio::test]
async fn the_fourth_concurrent_message_gets_the_busy_error() {
    let app = app().env("LLM_DEMO_TOKEN_DELAY_MS", "40").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("busy")).await;
    status(&mut ws).await;
    for i in 0..4 {
        ws.send(json!({"type": "user_message", "content": format!("message {i}"), "client_msg_id": format!("busy-{i}")}))
            .await;
    }
    let mut busy = None;
    for _ in 0..200 {
        let frame = ws.recv().await;
        if frame["type"] == "error" {
            busy = Some(frame);
            break;
        }
    }
    let busy = busy.expect("a busy error");
    assert_eq!(busy["error"]["code"], "SERVICE_ERROR");
    assert_eq!(
        busy["error"]["message"],
        "Server busy \u{2014} please retry"
    );
    assert_eq!(busy["error"]["recoverable"], true);
    assert_eq!(
        busy["client_msg_id"], "busy-3",
        "the refused frame is named"
    );
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let app = app().env("MAX_MESSAGE_SIZE", "1024").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("big")).await;
    status(&mut ws).await;
    ws.send_text(&"x".repeat(4096)).await;
    assert_eq!(ws.closed().await.code, 1009);
}

#[tokio::test]
async fn malformed_json_gets_the_fixed_error_text_and_the_connection_survives() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("sloppy")).await;
    status(&mut ws).await;
    ws.send_text("{\"type\": \"user_message\", ").await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "INVALID_FORMAT");
    assert_eq!(error_text(&error), "Invalid message format");
    assert!(error.get("client_msg_id").is_none(), "nothing was readable");
    ws.send(json!({"type": "user_message", "content": "x", "metadata": {"size": 12}, "client_msg_id": "c-meta"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error_text(&error), "Invalid message format", "{error}");
    assert_eq!(error["client_msg_id"], "c-meta");
    ws.send(json!({"type": "user_message", "content": "", "client_msg_id": "c-empty"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["message"], "Message validation failed");
    assert_eq!(error["client_msg_id"], "c-empty");
    // A timestamp that is not RFC 3339 fails decoding, as in the reference (1.3 step 2).
    ws.send(json!({"type": "user_message", "content": "x", "timestamp": "12/01/2026", "client_msg_id": "c-ts"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "INVALID_FORMAT");
    assert_eq!(error_text(&error), "Invalid message format", "{error}");
    assert_eq!(error["client_msg_id"], "c-ts");
    ws.send(json!({"type": "ping", "client_msg_id": "still-here"}))
        .await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["client_msg_id"], "still-here");
}

#[tokio::test]
async fn refused_upgrades_answer_before_the_upgrade_and_release_their_slots() {
    let app = app()
        .env("WS_ALLOWED_ORIGINS", "https://app.example")
        .spawn()
        .await;
    let token = app.user_token("frank");
    let url = format!("{}?token={token}", app.ws_url);
    assert_eq!(
        app.try_connect(&app.ws_url, &[("origin", "https://app.example")])
            .await
            .err()
            .unwrap()
            .0,
        401
    );
    let bad = format!("{}?token=nonsense", app.ws_url);
    let (status_code, body) = app
        .try_connect(&bad, &[("origin", "https://app.example")])
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status_code, body.as_str()),
        (401, "Authentication failed\n")
    );
    // Twenty refused upgrades (wrong origin, or not a WebSocket request) must not use up the ten slots.
    for _ in 0..20 {
        assert_eq!(
            app.try_connect(&url, &[("origin", "https://evil.example")])
                .await
                .err()
                .unwrap()
                .0,
            403
        );
        let http_url = url.replacen("ws://", "http://", 1);
        let plain = app
            .http
            .get(&http_url)
            .header("origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert!(plain.status().is_client_error());
    }
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut ws = app
            .try_connect(&url, &[("origin", "https://app.example")])
            .await
            .unwrap();
        status(&mut ws).await;
        open.push(ws);
    }
    let (code, body) = app
        .try_connect(&url, &[("origin", "https://app.example")])
        .await
        .err()
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (429, "Connection limit exceeded, please try again later\n")
    );
    let notice = open[0].recv().await;
    assert_eq!(notice["type"], "notification");
    // Closing one frees one slot.
    open.pop().unwrap().close().await;
    let mut reopened = None;
    for _ in 0..100 {
        match app
            .try_connect(&url, &[("origin", "https://app.example")])
            .await
        {
            Ok(ws) => {
                reopened = Some(ws);
                break;
            }
            Err((429, _)) => tokio::task::yield_now().await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        reopened.is_some(),
        "a slot is released when a connection closes"
    );
}

#[tokio::test]
async fn the_token_may_come_from_the_authorization_header() {
    let app = spawn_app().await;
    let bearer = format!("Bearer {}", app.user_token("gina"));
    let mut ws = app
        .try_connect(&app.ws_url, &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(status(&mut ws).await["user_id"], "gina");
}

#[tokio::test]
async fn cancel_stops_the_answer_and_keeps_what_was_produced() {
    let app = app().env("LLM_DEMO_TOKEN_DELAY_MS", "50").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("hank")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "A long answer please"}))
        .await;
    assert_eq!(ws.recv().await["type"], "loading");
    assert_eq!(ws.recv().await["type"], "ai_response");
    ws.send(json!({"type": "cancel"})).await;
    let rest = ws.recv_turn().await;
    let last = rest.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true");
    assert_eq!(last["metadata"]["finish_reason"], "cancelled");
    assert!(
        last["metadata"].get("partial").is_none(),
        "the empty final chunk carries no partial key: {last}"
    );
    let session_id = last["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    let answer = stored
        .iter()
        .find(|m| m.sender == "ai")
        .expect("the partial answer is stored");
    assert!(answer.partial);
    assert!(!answer.content.is_empty());
    // What was produced cost tokens: they count for the session (and the daily budget).
    let session = app
        .state
        .store
        .get_session(session_id)
        .await
        .unwrap()
        .unwrap();
    assert!(session.total_tokens > 0, "{session:?}");
}

#[tokio::test]
async fn a_retried_client_msg_id_is_not_answered_twice() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("ivy")).await;
    status(&mut ws).await;
    let message =
        json!({"type": "user_message", "content": "Once only", "client_msg_id": "retry-1"});
    ws.send(message.clone()).await;
    let turn = ws.recv_turn().await;
    ws.send(message).await;
    let duplicate = ws.recv().await;
    assert_eq!(duplicate["type"], "user_message");
    assert_eq!(duplicate["metadata"]["duplicate"], "true");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "no second answer");
    let session_id = turn[0]["session_id"].as_str().unwrap();
    let stored = app.state.store.messages(session_id, None).await.unwrap();
    assert_eq!(stored.iter().filter(|m| m.sender == "user").count(), 1);
    assert_eq!(stored.iter().filter(|m| m.sender == "ai").count(), 1);
}

#[tokio::test]
async fn the_message_rate_limit_answers_with_retry_after() {
    let app = app().env("RATE_LIMIT", "2").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("jo")).await;
    status(&mut ws).await;
    for _ in 0..2 {
        ws.send(json!({"type": "user_message", "content": "hi"}))
            .await;
        ws.recv_turn().await;
    }
    ws.send(json!({"type": "user_message", "content": "one too many"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "TOO_MANY_REQUESTS");
    assert_eq!(
        error["error"]["message"],
        "Too many requests, please slow down"
    );
    assert!(error["error"]["retry_after"].as_i64().unwrap() > 0);
    let blocked = app
        .state
        .metrics
        .ratelimit_blocked
        .with_label_values(&["message"])
        .get();
    assert_eq!(blocked, 1, "the refused message is counted");
}

#[tokio::test]
async fn resume_and_upload_frames_count_against_the_message_rate_limit() {
    let app = app().env("RATE_LIMIT", "2").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("replayer")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "hi"}))
        .await;
    let turn = ws.recv_turn().await;
    let last = seq(turn.last().unwrap());
    ws.send(json!({"type": "resume", "last_seq": last})).await;
    assert_eq!(ws.recv().await["metadata"]["resumed"], "true");
    ws.send(json!({"type": "resume", "last_seq": 0})).await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "TOO_MANY_REQUESTS", "{error}");
    assert!(error["error"]["retry_after"].as_i64().unwrap() > 0);
    // Uploads count too (a voice message is answered by the model).
    ws.send(json!({"type": "voice_message", "file_id": "v1", "file_url": "https://93.184.216.34/v.webm"}))
        .await;
    assert_eq!(ws.recv().await["error"]["code"], "TOO_MANY_REQUESTS");
}

#[tokio::test]
async fn ended_sessions_refuse_new_messages() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("kim")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "hello"}))
        .await;
    let session_id = ws.recv_turn().await[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.state
        .store
        .end_session(&session_id, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    ws.send(json!({"type": "user_message", "session_id": session_id, "content": "still there?"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["error"]["code"], "SESSION_ENDED");
}

#[tokio::test]
async fn model_select_confirms_a_known_model_and_refuses_an_unknown_one() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("lee")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "model_select", "model_id": "gpt-99"}))
        .await;
    assert_eq!(
        ws.recv().await["error"]["message"],
        "Invalid model ID: gpt-99"
    );
    ws.send(json!({"type": "model_select", "model_id": "demo"}))
        .await;
    let confirm = ws.recv().await;
    assert_eq!(confirm["type"], "connection_status");
    assert_eq!(confirm["content"], "Model changed to demo");
    assert_ne!(confirm["timestamp"], "0001-01-01T00:00:00Z");
}

#[tokio::test]
async fn whole_frames_match_their_snapshots() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("snap")).await;
    let first = status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "Snapshot me.", "client_msg_id": "c-1"}))
        .await;
    let turn = ws.recv_turn().await;
    ws.send_text("{oops").await;
    let error = ws.recv().await;
    let redactions = |v: &Value| {
        let mut v = v.clone();
        for key in ["session_id", "timestamp"] {
            if v.get(key).is_some() {
                v[key] = json!(format!("[{key}]"));
            }
        }
        v
    };
    insta::assert_json_snapshot!("connection_status", redactions(&first));
    insta::assert_json_snapshot!("loading", redactions(&turn[0]));
    insta::assert_json_snapshot!("first_chunk", redactions(&turn[1]));
    insta::assert_json_snapshot!("final_chunk", redactions(turn.last().unwrap()));
    insta::assert_json_snapshot!("malformed_error", redactions(&error));
}

#[tokio::test]
async fn first_messages_from_several_devices_at_once_create_one_session() {
    let app = spawn_app().await;
    let token = app.user_token("racer");
    let mut devices = Vec::new();
    for _ in 0..5 {
        let mut ws = app.connect_ws(&token).await;
        status(&mut ws).await;
        devices.push(ws);
    }
    let sends = devices
        .iter_mut()
        .enumerate()
        .map(|(i, ws)| ws.send(json!({"type": "user_message", "content": format!("device {i}")})));
    futures::future::join_all(sends).await;
    let mut sessions = std::collections::BTreeSet::new();
    for ws in &mut devices {
        // Every device sees all five turns end (turns of a session run one after another).
        let mut answers = 0;
        while answers < 5 {
            let frame = ws.recv().await;
            sessions.insert(frame["session_id"].as_str().unwrap().to_string());
            if frame["type"] == "ai_response" && frame["metadata"]["done"] == "true" {
                answers += 1;
            }
        }
    }
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let stored = app
        .state
        .store
        .list_user_sessions("racer", 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "no orphan session is left behind");
}

#[tokio::test]
async fn the_session_is_named_after_the_first_message() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("namer")).await;
    status(&mut ws).await;
    ws.send(
        json!({"type": "user_message", "content": "How do lifetimes work? I keep getting errors."}),
    )
    .await;
    let session_id = ws.recv_turn().await[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let session = app
        .state
        .store
        .get_session(&session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.name, "How do lifetimes work?");
    assert!(session.total_tokens > 0, "usage is persisted");
    assert!(session.message_count >= 2);
}

#[tokio::test]
async fn a_resume_message_replays_after_last_seq_on_the_same_connection() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("resumer")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "Remember this"}))
        .await;
    let turn = ws.recv_turn().await;
    // The user's own message took the seq just before `loading`.
    let from = seq(&turn[0]) - 2;
    ws.send(json!({"type": "resume", "last_seq": from})).await;
    let mut replayed = Vec::new();
    for _ in 0..=turn.len() {
        replayed.push(ws.recv().await);
    }
    // The user's own message is in the replay (as an echo), then the answer.
    assert_eq!(replayed[0]["type"], "user_message");
    let replayed_seqs: Vec<i64> = replayed.iter().map(seq).collect();
    assert!(
        replayed_seqs.windows(2).all(|w| w[0] < w[1]),
        "{replayed_seqs:?}"
    );
    assert_eq!(answer_text(&replayed), answer_text(&turn));
    assert_eq!(ws.recv().await["metadata"]["resumed"], "true");
}

#[tokio::test]
async fn a_replay_larger_than_the_backlog_limit_is_delivered_whole() {
    // Each demo turn is about 36 small frames, which the limit holds; the four turns' replay is larger
    // (and the replay ring is made large enough to hold all four).
    const LIMIT: usize = 12 * 1024;
    let app = app()
        .env("WS_MAX_BACKLOG_BYTES", LIMIT.to_string())
        .env("WS_REPLAY_BYTES", (1024 * 1024).to_string())
        .spawn()
        .await;
    let token = app.user_token("longtalk");
    let mut ws = app.connect_ws(&token).await;
    status(&mut ws).await;
    let mut sent = 0;
    for text in ["one", "two", "three", "four"] {
        ws.send(json!({"type": "user_message", "content": text}))
            .await;
        sent += 1 + ws.recv_turn().await.len();
    }
    ws.send(json!({"type": "resume", "last_seq": 0})).await;
    let replayed = ws.recv_until("connection_status").await;
    assert_eq!(
        replayed.len() - 1,
        sent,
        "every event of the session, then the status"
    );
    assert_eq!(replayed.last().unwrap()["metadata"]["resumed"], "true");
    let bytes: usize = replayed.iter().map(|f| f.to_string().len()).sum();
    assert!(
        bytes > LIMIT,
        "the replay ({bytes} bytes) exceeds the limit"
    );
    // The connection is still open, and so is a new one resuming from the start.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    let admin = app.admin_token("ops");
    let mut desk = app.connect_ws(&admin).await;
    status(&mut desk).await;
    let session = replayed[0]["session_id"].as_str().unwrap().to_string();
    desk.send(json!({"type": "admin_join", "session_id": session, "sender": "admin"}))
        .await;
    let history = desk.recv_until("connection_status").await;
    assert_eq!(
        history.len() - 1,
        sent,
        "the admin receives the whole history"
    );
    desk.send(json!({"type": "ping"})).await;
    assert_eq!(
        desk.recv_until("pong").await.last().unwrap()["type"],
        "pong"
    );
}

#[tokio::test]
async fn events_older_than_the_replay_window_come_back_as_stored_messages_with_resync() {
    resume_from_before_the_ring("WS_REPLAY_BUFFER", "4").await;
}

#[tokio::test]
async fn events_older_than_the_replay_bytes_come_back_as_stored_messages_with_resync() {
    resume_from_before_the_ring("WS_REPLAY_BYTES", "512").await;
}

/// A turn, then a resume from seq 0 on a server whose replay ring (bounded by `var`) no longer holds the
/// turn's first frames: the stored question and the complete answer come back, marked `resync`.
async fn resume_from_before_the_ring(var: &str, value: &str) {
    let app = app().env(var, value).spawn().await;
    let token = app.user_token("forgetful");
    let mut ws = app.connect_ws(&token).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "An old question"}))
        .await;
    ws.recv_turn().await;
    ws.close().await;
    let mut again = app.connect_ws_resume(&token, 0).await;
    status(&mut again).await;
    let question = again.recv().await;
    assert_eq!(question["type"], "user_message");
    assert_eq!(question["content"], "An old question");
    let mut frames = vec![question];
    loop {
        let frame = again.recv().await;
        if frame["type"] == "connection_status" {
            assert_eq!(frame["metadata"]["resync"], "true");
            break;
        }
        frames.push(frame);
    }
    let answer = frames
        .iter()
        .find(|f| f["type"] == "ai_response" && f["metadata"]["done"] == "true");
    assert!(
        answer.is_some_and(|a| !a["content"].as_str().unwrap_or_default().is_empty()),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_help_request_reaches_connected_admins_live_and_is_confirmed() {
    let app = spawn_app().await;
    let mut admin = app.connect_ws(&app.admin_token("root")).await;
    status(&mut admin).await;
    let mut user = app.connect_ws(&app.user_token("needy")).await;
    status(&mut user).await;
    user.send(json!({"type": "user_message", "content": "I am stuck"}))
        .await;
    let session_id = user.recv_turn().await[0]["session_id"].clone();
    user.send(json!({"type": "help_request"})).await;
    let confirmation = user.recv().await;
    assert_eq!(confirmation["type"], "connection_status");
    assert_eq!(
        confirmation["content"],
        "Help request sent. An administrator will join your session shortly."
    );
    let event = admin.recv().await;
    assert_eq!(event["type"], "help_request");
    assert_eq!(event["user_id"], "needy");
    assert_eq!(event["session_id"], session_id);
    let stored = app
        .state
        .store
        .get_session(session_id.as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.help_requested);
}

#[tokio::test]
async fn a_spent_daily_token_budget_refuses_the_next_turn_before_calling_the_model() {
    let app = app().env("LLM_DAILY_TOKEN_BUDGET", "5").spawn().await;
    let mut ws = app.connect_ws(&app.user_token("thrifty")).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": "first question"}))
        .await;
    let first = ws.recv_turn().await;
    assert_eq!(first.last().unwrap()["metadata"]["done"], "true");
    let requests_before = app
        .state
        .metrics
        .llm_requests
        .with_label_values(&["demo"])
        .get();
    ws.send(json!({"type": "user_message", "content": "second question"}))
        .await;
    let error = ws.recv().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "TOKEN_BUDGET_EXCEEDED");
    assert!(error["error"]["retry_after"].as_i64().unwrap() > 0);
    assert_eq!(
        app.state
            .metrics
            .llm_requests
            .with_label_values(&["demo"])
            .get(),
        requests_before,
        "the model was not called"
    );
}
