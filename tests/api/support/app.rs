//! `spawn_app()` and typed helpers: a real server on a free loopback port with a fresh data directory (and a
//! fresh database on the MongoDB-compatible server when `MONGODB_URI` is set), real WebSocket clients, and
//! token minting.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use chatbox::Application;
use chatbox::app::AppState;
use chatbox::auth::Claims;
use chatbox::config::{EnvVars, RawConfig};

/// How long a test waits for a frame before failing.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(15);

/// The JWT secret of test servers.
pub const TEST_SECRET: &str = "q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZxx";

/// A running server.
pub struct TestApp {
    /// `http://127.0.0.1:<port>/chatbox`
    pub base: String,
    /// `ws://127.0.0.1:<port>/chatbox/ws`
    pub ws_url: String,
    /// The server's state.
    pub state: Arc<AppState>,
    /// HTTP client.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data_dir: Arc<tempfile::TempDir>,
}

/// A data directory and MongoDB database name that several servers can use one after another (restart
/// tests): pass it to [`TestAppBuilder::data`]. The directory lives as long as a clone of this does.
#[derive(Clone)]
pub struct SharedData {
    dir: Arc<tempfile::TempDir>,
    database: String,
}

impl SharedData {
    /// A fresh temporary directory and database name.
    pub fn new() -> Self {
        Self {
            dir: Arc::new(tempfile::tempdir().unwrap()),
            database: format!("t_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Default for SharedData {
    fn default() -> Self {
        Self::new()
    }
}

/// Configures a test server before it starts.
#[derive(Default)]
pub struct TestAppBuilder {
    env: Vec<(String, String)>,
    toml: Option<String>,
    data: Option<SharedData>,
    embedded: bool,
}

/// A server with the defaults: demo model with no token delay.
pub async fn spawn_app() -> TestApp {
    TestAppBuilder::default().spawn().await
}

/// A builder for a server with extra environment or a config file.
pub fn app() -> TestAppBuilder {
    TestAppBuilder::default()
}

impl TestAppBuilder {
    /// Sets an environment variable of the server's configuration.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Demo answers streamed one token every `token_delay_ms`, with `grace` (`SHUTDOWN_TIMEOUT`) for the
    /// answers running at shutdown.
    pub fn slow_answers(self, token_delay_ms: u64, grace: &str) -> Self {
        self.env("LLM_DEMO_TOKEN_DELAY_MS", token_delay_ms.to_string())
            .env("SHUTDOWN_TIMEOUT", grace)
    }

    /// Uses the embedded store even when `MONGODB_URI` is set (cases that must hold on both stores).
    pub fn embedded(mut self) -> Self {
        self.embedded = true;
        self
    }

    /// Uses this TOML as the config file.
    pub fn toml(mut self, toml: &str) -> Self {
        self.toml = Some(toml.to_string());
        self
    }

    /// Keeps the server's data in `data` (the data directory, and the database when `MONGODB_URI` is set)
    /// instead of a fresh place, so a later server on the same `data` sees it.
    pub fn data(mut self, data: &SharedData) -> Self {
        self.data = Some(data.clone());
        self
    }

    /// Starts the server.
    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.unwrap()
    }

    /// Starts the server, or returns why it refused to start (the error chain, as `main` prints it).
    pub async fn try_spawn(self) -> Result<TestApp, String> {
        let data = self.data.unwrap_or_default();
        let data_dir = Arc::clone(&data.dir);
        let mut env = EnvVars::from_pairs([
            ("CHATBOX_DATA_DIR", data_dir.path().display().to_string()),
            ("SERVER_HOST", "127.0.0.1".into()),
            ("SERVER_PORT", "0".into()),
            ("JWT_SECRET", TEST_SECRET.into()),
            ("LLM_DEMO_TOKEN_DELAY_MS", "0".into()),
            ("LOG_LEVEL", "warn".into()),
        ]);
        if let Some(uri) = std::env::var("MONGODB_URI")
            .ok()
            .filter(|u| !u.is_empty() && !self.embedded)
        {
            env.set("MONGO_URI", uri);
            env.set("MONGO_DATABASE", data.database.clone());
        }
        for (k, v) in self.env {
            env.set(k, v);
        }
        let raw = match &self.toml {
            Some(text) => RawConfig::from_toml(text).unwrap(),
            None => RawConfig::default(),
        };
        let settings = raw.into_settings(&env).unwrap();
        let app = Application::build(settings)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let port = app.port();
        let state = app.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Ok(TestApp {
            base: format!("http://127.0.0.1:{port}/chatbox"),
            ws_url: format!("ws://127.0.0.1:{port}/chatbox/ws"),
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            _data_dir: data_dir,
        })
    }
}

impl TestApp {
    /// A token for an ordinary user.
    pub fn user_token(&self, user_id: &str) -> String {
        self.token(user_id, &["user"], None)
    }

    /// A token for an admin.
    pub fn admin_token(&self, user_id: &str) -> String {
        self.token(user_id, &["admin"], Some(&format!("Admin {user_id}")))
    }

    /// A token with the given roles and name.
    pub fn token(&self, user_id: &str, roles: &[&str], name: Option<&str>) -> String {
        self.state
            .keys
            .mint(&Claims {
                user_id: user_id.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                name: name.map(String::from),
                exp: None,
                nbf: None,
            })
            .unwrap()
    }

    /// Opens a WebSocket with the token in the query string; panics if the upgrade fails.
    pub async fn connect_ws(&self, token: &str) -> WsClient {
        self.try_connect(&format!("{}?token={token}", self.ws_url), &[])
            .await
            .unwrap()
    }

    /// Opens a WebSocket, reads its `connection_status`, sends one `user_message` and returns the
    /// connection with the frames of the answer.
    pub async fn chat_once(&self, token: &str, content: &str) -> (WsClient, Vec<Value>) {
        let mut ws = self.connect_ws(token).await;
        let status = ws.recv().await;
        assert_eq!(status["type"], "connection_status", "{status}");
        ws.send(serde_json::json!({"type": "user_message", "content": content}))
            .await;
        let turn = ws.recv_turn().await;
        (ws, turn)
    }

    /// Opens a WebSocket resuming after `last_seq`.
    pub async fn connect_ws_resume(&self, token: &str, last_seq: i64) -> WsClient {
        self.try_connect(
            &format!("{}?token={token}&last_seq={last_seq}", self.ws_url),
            &[],
        )
        .await
        .unwrap()
    }

    /// Tries to open a WebSocket at `url` with extra headers; returns the HTTP status on refusal.
    pub async fn try_connect(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, (u16, String)> {
        try_connect(url, headers).await
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
        }
    }

    /// The server's `host:port`, for raw TCP connections and `Origin`/`Host` headers.
    pub fn host(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// Connects `user` and sends `content`, returning once the turn's `loading` frame arrived: the user's
    /// token and socket (the answer still streaming).
    pub async fn turn_in_flight(&self, user: &str, content: &str) -> (String, WsClient) {
        let token = self.user_token(user);
        let mut ws = self.connect_ws(&token).await;
        let status = ws.recv().await;
        assert_eq!(status["type"], "connection_status", "{status}");
        ws.send(serde_json::json!({"type": "user_message", "content": content}))
            .await;
        assert_eq!(ws.recv().await["type"], "loading");
        (token, ws)
    }

    /// Sends the stop signal without waiting.
    pub fn signal_stop(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.take()
    }
}

/// Waits (up to the frame deadline) for a server task from [`TestApp::signal_stop`] to end cleanly.
pub async fn stopped(server: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(FRAME_DEADLINE, server)
        .await
        .expect("the server did not stop in time")
        .expect("the server task failed");
}

/// A real WebSocket client. Every text frame it receives must match the published JSON Schema of its
/// Tries to open a WebSocket at `url` with extra headers; returns the HTTP status and body on refusal.
pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, (u16, String)> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, _)) => Ok(WsClient { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

/// `type` (`generated/schemas/ws/`, see `support::schemas`).
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    /// Close code (1005 when the frame had none, 1006 when the socket just ended).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

impl WsClient {
    /// Opens a WebSocket at `url` (token in the query string); panics if the upgrade fails.
    pub async fn connect(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { stream }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends `bytes` as one text frame, whether or not they are UTF-8.
    pub async fn send_text_bytes(&mut self, bytes: &[u8]) {
        let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
        self.stream.send(Message::Frame(frame)).await.unwrap();
    }

    /// Sends `bytes` as one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (pings and pongs skipped), checked against the published schema of its `type`;
    /// fails after [`FRAME_DEADLINE`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(FRAME_DEADLINE, self.stream.next())
                .await
                .expect("no frame before the deadline");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(&text).unwrap();
                    crate::support::schemas::assert_frame(&frame);
                    return frame;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Frames until (and including) the first whose `type` is `kind`.
    pub async fn recv_until(&mut self, kind: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            let done = frame["type"] == kind;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Reads until `count` chunks of an answer still streaming arrived; returns its session id and the
    /// text so far.
    pub async fn recv_chunks(&mut self, count: usize) -> (String, String) {
        let mut streamed = String::new();
        let mut chunks = 0;
        let mut session_id = String::new();
        while chunks < count {
            let frame = self.recv().await;
            if frame["type"] == "ai_response" {
                assert_ne!(
                    frame["metadata"]["done"], "true",
                    "the answer ended too soon"
                );
                streamed.push_str(frame["content"].as_str().unwrap_or_default());
                session_id = frame["session_id"].as_str().unwrap().to_string();
                chunks += 1;
            }
        }
        (session_id, streamed)
    }

    /// Frames until the final chunk of an answer (`ai_response` with `done="true"`) or an error frame.
    pub async fn recv_turn(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            let end = frame["type"] == "error"
                || (frame["type"] == "ai_response" && frame["metadata"]["done"] == "true");
            frames.push(frame);
            if end {
                return frames;
            }
        }
    }

    /// Waits for the server to close the connection and returns the close code (text frames that arrive
    /// meanwhile are checked against their schemas).
    pub async fn closed(&mut self) -> Closed {
        loop {
            let next = tokio::time::timeout(FRAME_DEADLINE, self.stream.next())
                .await
                .expect("connection not closed before the deadline");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(
                        Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                        |f| Closed {
                            code: f.code.into(),
                            reason: f.reason.to_string(),
                        },
                    );
                }
                Some(Ok(Message::Text(text))) => {
                    crate::support::schemas::assert_frame(&serde_json::from_str(&text).unwrap());
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Closed {
                        code: 1006,
                        reason: String::new(),
                    };
                }
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// The text of an answer: the concatenated `content` of its `ai_response` chunks.
pub fn answer_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "ai_response")
        .filter_map(|f| f["content"].as_str())
        .collect()
}

/// A server whose MongoDB URI points at a loopback port nobody listens on, with short store timeouts (the
/// database down while the server runs).
pub async fn without_database() -> TestApp {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    app()
        .env("MONGO_URI", format!("mongodb://127.0.0.1:{port}/"))
        .env("STORE_OPERATION_TIMEOUT", "200ms")
        .env("STORE_LIST_TIMEOUT", "200ms")
        .env("STORE_RETRY_ATTEMPTS", "1")
        .spawn()
        .await
}
