//! Transport protections over real sockets: the slow-consumer policy, the global connection limit, and
//! tokens from the query string kept out of the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{FRAME_DEADLINE, TestApp, app};
use crate::support::fake_llm::FakeLlm;
use crate::support::logs::capture_logs;
use crate::support::wait::eventually_async;

#[tokio::test]
async fn devices_that_keep_reading_survive_a_burst_of_a_thousand_chunks() {
    let fake = FakeLlm::start().await;
    let deltas: Vec<String> = (0..1000).map(|i| format!("c{i:04} ")).collect();
    fake.burst(deltas.clone());
    let app = app()
        .toml(&fake.provider_toml("gpt", "openai", ""))
        .spawn()
        .await;
    let token = app.user_token("reader");
    let mut phone = app.connect_ws(&token).await;
    let mut laptop = app.connect_ws(&token).await;
    for device in [&mut phone, &mut laptop] {
        assert_eq!(device.recv().await["type"], "connection_status");
    }
    phone
        .send(json!({"type": "user_message", "content": "Count to a thousand"}))
        .await;
    // Both devices read as fast as they can while the provider's chunks arrive all at once.
    let (on_phone, on_laptop) = tokio::join!(phone.recv_turn(), laptop.recv_turn());
    for frames in [&on_phone, &on_laptop] {
        let chunks: Vec<&str> = frames
            .iter()
            .filter(|f| f["type"] == "ai_response" && f["metadata"]["done"] == "false")
            .map(|f| f["content"].as_str().unwrap())
            .collect();
        assert_eq!(chunks, deltas, "every chunk, in order, once");
        let seqs: Vec<i64> = frames.iter().filter_map(|f| f["seq"].as_i64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(frames.last().unwrap()["metadata"]["done"], "true");
    }
    // Neither device was cut: both still answer.
    for device in [&mut phone, &mut laptop] {
        device.send(json!({"type": "ping"})).await;
        assert_eq!(device.recv().await["type"], "pong");
    }
    assert_eq!(cuts(&app), 0);
}

/// The slow-consumer cuts counted so far.
fn cuts(app: &TestApp) -> u64 {
    app.state
        .metrics
        .queue_dropped
        .with_label_values(&["slow_consumer"])
        .get()
}

/// A client with a tiny receive buffer that asks for pongs without reading any, until the server has cut
/// it as a slow consumer; then it reads again and returns the close code it finds after the frames that
/// were already on their way.
async fn stop_reading_until_cut(app: &TestApp) -> Option<u16> {
    assert_eq!(cuts(app), 0);
    let address = app
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(address.parse().unwrap()).await.unwrap();
    let url = format!("{}?token={}", app.ws_url, app.user_token("sluggish"));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let id = "x".repeat(128);
    let deadline = tokio::time::Instant::now() + FRAME_DEADLINE;
    'flood: while cuts(app) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow client was never cut"
        );
        for _ in 0..200 {
            let ping = json!({"type": "ping", "client_msg_id": id}).to_string();
            // Once cut, the server stops reading and the socket may be gone.
            if ws.send(Message::Text(ping.into())).await.is_err() {
                break 'flood;
            }
        }
    }
    assert_eq!(cuts(app), 1);
    // Reading again, the client gets what was already on its way, then the close frame.
    let code = tokio::time::timeout(FRAME_DEADLINE, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(err) => panic!("socket ended without a close frame: {err}"),
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(cuts(app), 1, "one cut counts once");
    code
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1013_and_counted() {
    let app = app()
        .env("WS_MAX_BACKLOG_BYTES", "4096")
        // Only the byte limit can cut it.
        .env("WS_MAX_BACKLOG_AGE", "1h")
        // The writer waits for the socket long enough for the client to read the close frame later.
        .env("WS_WRITE_WAIT", "60s")
        .spawn()
        .await;
    assert_eq!(stop_reading_until_cut(&app).await, Some(1013));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1013_once_its_backlog_is_too_old() {
    let app = app()
        .env("WS_MAX_BACKLOG_AGE", "200ms")
        // Only the age limit can cut it.
        .env("WS_MAX_BACKLOG_BYTES", "1073741824")
        .env("WS_WRITE_WAIT", "60s")
        .spawn()
        .await;
    assert_eq!(stop_reading_until_cut(&app).await, Some(1013));
}

#[tokio::test]
async fn the_global_connection_limit_refuses_before_the_upgrade_and_frees_slots_on_close() {
    let app = app().env("MAX_CONNECTIONS", "2").spawn().await;
    let mut open = Vec::new();
    for user in ["g1", "g2"] {
        let mut ws = app.connect_ws(&app.user_token(user)).await;
        assert_eq!(ws.recv().await["type"], "connection_status");
        open.push(ws);
    }
    let url = format!("{}?token={}", app.ws_url, app.user_token("g3"));
    let (code, body) = app.try_connect(&url, &[]).await.err().unwrap();
    assert_eq!(
        (code, body.as_str()),
        (429, "Connection limit exceeded, please try again later\n")
    );
    let blocked = |app: &crate::support::app::TestApp| {
        app.state
            .metrics
            .ratelimit_blocked
            .with_label_values(&["connection"])
            .get()
    };
    assert_eq!(blocked(&app), 1, "the refused upgrade is counted");
    open.pop().unwrap().close().await;
    let mut admitted = eventually_async("the slot to be released", async || {
        match app.try_connect(&url, &[]).await {
            Ok(ws) => Some(ws),
            Err((429, _)) => None,
            Err(other) => panic!("{other:?}"),
        }
    })
    .await;
    assert_eq!(admitted.recv().await["user_id"], "g3");
    assert_eq!(app.state.hub.connection_count(), 2);
}

#[tokio::test]
async fn a_token_in_the_query_string_never_reaches_the_logs() {
    // The test runs on one thread, and so does the server it spawns: the scoped subscriber sees all.
    let (captured, _guard) = capture_logs();
    let app = app().spawn().await;
    let token = app.user_token("logged");
    let mut ws = app.connect_ws(&token).await;
    assert_eq!(ws.recv().await["type"], "connection_status");
    ws.send(json!({"type": "user_message", "content": "hello"}))
        .await;
    ws.recv_turn().await;
    ws.close().await;
    let forged = format!("{token}tampered");
    let refused = format!("{}?token={forged}", app.ws_url);
    assert_eq!(app.try_connect(&refused, &[]).await.err().unwrap().0, 401);
    app.http
        .get(format!("{}/sessions?token={token}", app.base))
        .send()
        .await
        .unwrap();
    app.stop().await;

    let logs = captured.text();
    assert!(logs.contains("websocket authentication failed"), "{logs}");
    assert!(logs.contains("session created user_id=logged"), "{logs}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature),
        "the token leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains("token="),
        "a query string was logged:\n{logs}"
    );
}
