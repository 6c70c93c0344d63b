//! Heartbeat: protocol pings on a period, a pong deadline that closes silent peers, and `ping` -> `pong`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{FRAME_DEADLINE, app};

#[tokio::test]
async fn the_server_sends_protocol_pings() {
    let app = app()
        .env("WS_PING_PERIOD", "50ms")
        .env("WS_PONG_WAIT", "5s")
        .spawn()
        .await;
    let url = format!("{}?token={}", app.ws_url, app.user_token("pinged"));
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let saw_ping = tokio::time::timeout(FRAME_DEADLINE, async {
        while let Some(message) = stream.next().await {
            if let Ok(Message::Ping(_)) = message {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(saw_ping);
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_disconnected() {
    let app = app()
        .env("WS_PING_PERIOD", "50ms")
        .env("WS_PONG_WAIT", "200ms")
        .spawn()
        .await;
    let address = app.host();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /chatbox/ws?token={} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.user_token("silent")
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // Read (and never answer) until the server gives up on us and closes the socket.
    let mut buf = vec![0u8; 4096];
    let mut received = Vec::new();
    let ended = tokio::time::timeout(FRAME_DEADLINE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap();
    assert!(ended);
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 101"));
    assert_eq!(
        app.state.hub.connection_count(),
        0,
        "the registry forgot the connection"
    );
}

#[tokio::test]
async fn an_application_ping_gets_a_pong() {
    let app = crate::support::app::spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("pinger")).await;
    ws.recv().await;
    ws.send(json!({"type": "ping", "client_msg_id": "p-7"}))
        .await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["client_msg_id"], "p-7");
    assert_eq!(pong["sender"], "system");
}
