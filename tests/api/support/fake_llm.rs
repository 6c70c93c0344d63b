//! A fake LLM provider: a real HTTP/1.1 server on 127.0.0.1 that replays each provider's exact SSE
//! format from `tests/fixtures/{openai,anthropic,dify}/*.sse`, with scripted faults per request.
//!
//! Endpoints (under `base_url()`, which ends in `/v1`): `POST /v1/chat/completions` (OpenAI),
//! `POST /v1/messages` (Anthropic), `POST /v1/chat-messages` (Dify). Each request takes the next
//! [`Fault`] from the script (default [`Fault::None`]); every request is recorded, and a test can
//! wait until the client closed a request's connection (to prove cancellation reaches upstream).
//! [`FakeLlm::burst`] makes it answer (OpenAI format) with many chunks written at once, as a provider
//! flushing a backlog does.
//!
//! It also transcribes, as OpenAI's `POST /v1/audio/transcriptions` does: it parses the multipart body,
//! records its parts ([`RecordedTranscription`]) and answers `{"text": ..}` ([`DEFAULT_TRANSCRIPT`]
//! unless [`FakeLlm::script_transcriptions`] says otherwise: another text, an error status, a stall).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Text inside every error body the fake sends: it must never reach a client.
pub const UPSTREAM_DETAIL: &str = "fake upstream detail 7f3a";

/// What the fake transcribes every audio file to, unless scripted.
pub const DEFAULT_TRANSCRIPT: &str = "Hello from the fake transcription service.";

/// Longest a stalled response waits for the client to give up (a safety net, never reached in tests).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// The provider formats the fake speaks, chosen by request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/chat/completions`.
    OpenAi,
    /// `/messages`.
    Anthropic,
    /// `/chat-messages`.
    Dify,
}

impl Flavor {
    fn dir(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Dify => "dify",
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        if path.ends_with("/chat/completions") {
            Some(Self::OpenAi)
        } else if path.ends_with("/chat-messages") {
            Some(Self::Dify)
        } else if path.ends_with("/messages") {
            Some(Self::Anthropic)
        } else {
            None
        }
    }

    /// The error body this provider sends with `status`; `bad_key` for a rejected API key (real
    /// providers echo a masked key there, which the client must never log or forward).
    fn error_body(self, status: u16, bad_key: bool) -> String {
        let (kind, message) = match (status, bad_key) {
            (_, true) => (
                "authentication_error",
                "Incorrect API key provided: sk-wr***ng".to_string(),
            ),
            (400, _) => ("invalid_request_error", format!("{UPSTREAM_DETAIL} (400)")),
            (403, _) => ("permission_error", format!("{UPSTREAM_DETAIL} (403)")),
            (429, _) => ("rate_limit_error", format!("{UPSTREAM_DETAIL} (429)")),
            (529, _) => ("overloaded_error", format!("{UPSTREAM_DETAIL} (529)")),
            _ => ("api_error", format!("{UPSTREAM_DETAIL} ({status})")),
        };
        let value = match self {
            Self::OpenAi => serde_json::json!({"error": {
                "message": message,
                "type": if bad_key { "invalid_request_error" } else if status >= 500 { "server_error" } else { kind },
                "code": if bad_key { Some("invalid_api_key") } else { None },
            }}),
            Self::Anthropic => {
                serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Self::Dify => serde_json::json!({
                "code": if bad_key { "unauthorized" } else if status == 429 { "too_many_requests" } else if status >= 500 { "internal_server_error" } else { "invalid_param" },
                "message": message,
                "status": status,
            }),
        };
        value.to_string()
    }

    /// A malformed chunk in this flavor's framing.
    fn malformed_event(self) -> &'static str {
        match self {
            Self::Anthropic => {
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{oops\n\n"
            }
            Self::OpenAi | Self::Dify => "data: {\"this is\": not json\n\n",
        }
    }
}

/// What the fake does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Serve the fixture completely.
    None,
    /// Answer with this status (e.g. 429 with `Retry-After`, 500, 401) and a JSON error body.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` header value, if any.
        retry_after: Option<String>,
    },
    /// Send the headers, then nothing until the client gives up.
    StallBeforeFirstToken,
    /// Send the first `after_events` events, then nothing until the client gives up.
    StallMidStream {
        /// Events sent before the stall.
        after_events: usize,
    },
    /// Insert a malformed chunk after `after_events` events, then continue normally.
    MalformedChunk {
        /// Events sent before the bad chunk.
        after_events: usize,
    },
    /// Send `after_events` events, then close the connection without ending the body.
    DropMidStream {
        /// Events sent before the drop.
        after_events: usize,
    },
}

impl Fault {
    /// `429 Too Many Requests` with `Retry-After: <value>`.
    pub fn rate_limited(retry_after: &str) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(retry_after.to_string()),
        }
    }

    /// A bare status.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
        }
    }
}

/// What the fake does with one transcription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptionReply {
    /// `200` with `{"text": <this>}`.
    Text(String),
    /// `200` with this body as it is (to send answers that are not a transcript).
    Raw(String),
    /// This status with an OpenAI-shaped error body holding [`UPSTREAM_DETAIL`].
    Status(u16),
    /// Nothing until the client gives up.
    Stall,
}

/// One part of a recorded multipart/form-data body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// The `filename` of its `Content-Disposition`, if any.
    pub file_name: Option<String>,
    /// Its `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl FormPart {
    /// The bytes as UTF-8 text (a plain field's value).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.data).unwrap()
    }

    /// SHA-256 of the bytes, lower-case hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.data)
    }
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The first value of header `name` (case-insensitive) among `headers` (names lower-cased).
fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// One recorded transcription request.
#[derive(Debug, Clone)]
pub struct RecordedTranscription {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Length of the body received.
    pub body_len: usize,
    /// The multipart parts in order (empty if the body was not multipart/form-data).
    pub parts: Vec<FormPart>,
}

impl RecordedTranscription {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The part named `name`.
    pub fn part(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` if not JSON).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

#[derive(Default)]
struct State {
    script: std::collections::VecDeque<Fault>,
    fixture: Option<String>,
    burst: Option<Vec<String>>,
    api_key: Option<String>,
    requests: Vec<RecordedRequest>,
    closed_by_client: Vec<bool>,
    transcription_script: std::collections::VecDeque<TranscriptionReply>,
    transcriptions: Vec<RecordedTranscription>,
}

/// The running fake provider; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Reads `tests/fixtures/<flavor>/<name>.sse` and splits it into events (blank-line separated).
pub fn fixture_events(flavor: Flavor, name: &str) -> Vec<String> {
    let path = fixtures_dir()
        .join(flavor.dir())
        .join(format!("{name}.sse"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    text.split("\n\n")
        .map(|e| e.trim_matches('\n'))
        .filter(|e| !e.is_empty())
        .map(|e| format!("{e}\n\n"))
        .collect()
}

impl FakeLlm {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let state = state.clone();
            let changed = changed.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, state.clone(), changed.clone()));
                }
            }
        });
        Self {
            addr,
            state,
            changed,
            task,
        }
    }

    /// The endpoint to configure (`http://127.0.0.1:<port>/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A provider entry of type `kind` (`openai`, `anthropic`, `dify`) pointing at this server, with
    /// the API key `sk-fake`, fast retries and short timeouts (first token and idle 2 s).
    pub fn provider_config(&self, id: &str, kind: &str) -> chatbox::llm::ProviderConfig {
        chatbox::llm::ProviderConfig {
            id: id.to_string(),
            name: format!("{id} (fake {kind})"),
            kind: kind.to_string(),
            endpoint: self.base_url(),
            model: format!("fake-{kind}-model"),
            api_key: Some(secrecy::SecretString::from("sk-fake")),
            first_token_timeout: Some(Duration::from_secs(2)),
            idle_timeout: Some(Duration::from_secs(2)),
            retry: Some(chatbox::llm::RetryConfig {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_secs(2),
            }),
            ..chatbox::llm::ProviderConfig::default()
        }
    }

    /// A `[[llm.providers]]` table for a server config file: type `kind` pointing at this server, the
    /// API key `sk-fake`, fast retries; `extra` adds lines (`fallback = [..]`, timeouts...).
    pub fn provider_toml(&self, id: &str, kind: &str, extra: &str) -> String {
        endpoint_toml(id, kind, &self.base_url(), extra)
    }

    /// Appends faults for the next requests, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Serves `<name>.sse` instead of `basic.sse`.
    pub fn use_fixture(&self, name: &str) {
        self.state.lock().unwrap().fixture = Some(name.to_string());
    }

    /// Answers every later request with these deltas, all events written to the socket at once (OpenAI
    /// format only).
    pub fn burst(&self, deltas: Vec<String>) {
        self.state.lock().unwrap().burst = Some(deltas);
    }

    /// Requires this API key (Bearer or `x-api-key`); others get 401.
    pub fn require_api_key(&self, key: &str) {
        self.state.lock().unwrap().api_key = Some(key.to_string());
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Appends replies for the next transcription requests, in order (then [`DEFAULT_TRANSCRIPT`]).
    pub fn script_transcriptions(&self, replies: impl IntoIterator<Item = TranscriptionReply>) {
        self.state
            .lock()
            .unwrap()
            .transcription_script
            .extend(replies);
    }

    /// Every transcription request received so far (not counted in [`FakeLlm::requests`]).
    pub fn transcriptions(&self) -> Vec<RecordedTranscription> {
        self.state.lock().unwrap().transcriptions.clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Waits (up to 5 s) until the client closed the connection of request `index` while the fake
    /// was still holding it open (a stall).
    pub async fn wait_closed_by_client(&self, index: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.changed.notified();
            if self
                .state
                .lock()
                .unwrap()
                .closed_by_client
                .get(index)
                .copied()
                .unwrap_or(false)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the client did not close request {index} within 5 s");
            }
        }
    }
}

struct Head {
    path: String,
    headers: Vec<(String, String)>,
    content_length: usize,
}

fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Some(Head {
        path,
        headers,
        content_length,
    })
}

async fn read_request(socket: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = parse_head(std::str::from_utf8(&buf[..head_end]).ok()?)?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < head.content_length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn write_status(socket: &mut TcpStream, status: u16, retry_after: Option<&str>, body: &str) {
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(status),
        body.len()
    );
    if let Some(value) = retry_after {
        response.push_str(&format!("retry-after: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn write_chunk(socket: &mut TcpStream, data: &str) -> bool {
    let framed = format!("{:x}\r\n{data}\r\n", data.len());
    socket.write_all(framed.as_bytes()).await.is_ok() && socket.flush().await.is_ok()
}

/// Holds the connection open until the client closes it; records that it did.
async fn stall_until_client_closes(
    mut socket: TcpStream,
    index: usize,
    state: &Mutex<State>,
    changed: &Notify,
) {
    let mut byte = [0u8; 1];
    let closed = matches!(
        tokio::time::timeout(STALL_LIMIT, socket.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    );
    if closed {
        state.lock().unwrap().closed_by_client[index] = true;
        changed.notify_waiters();
    }
}

fn key_matches(head: &Head, key: &str) -> bool {
    head.headers.iter().any(|(n, v)| {
        (n == "authorization" && v.strip_prefix("Bearer ") == Some(key))
            || (n == "x-api-key" && v == key)
    })
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    let Some((head, body)) = read_request(&mut socket).await else {
        return;
    };
    if head.path.ends_with("/audio/transcriptions") {
        transcribe(socket, &head, &body, &state).await;
        return;
    }
    let Some(flavor) = Flavor::from_path(&head.path) else {
        write_status(&mut socket, 404, None, "{\"error\":\"not found\"}").await;
        return;
    };
    let (index, fault, fixture, burst, key_ok) = {
        let mut st = state.lock().unwrap();
        st.requests.push(RecordedRequest {
            path: head.path.clone(),
            headers: head.headers.clone(),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
        st.closed_by_client.push(false);
        let key_ok = st.api_key.as_deref().is_none_or(|k| key_matches(&head, k));
        let fault = if key_ok {
            st.script.pop_front().unwrap_or(Fault::None)
        } else {
            Fault::status(401)
        };
        (
            st.requests.len() - 1,
            fault,
            st.fixture.clone(),
            st.burst.clone(),
            key_ok,
        )
    };
    changed.notify_waiters();
    if let Fault::Status {
        status,
        retry_after,
    } = &fault
    {
        let body = flavor.error_body(*status, !key_ok);
        write_status(&mut socket, *status, retry_after.as_deref(), &body).await;
        return;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if let Some(deltas) = burst {
        assert_eq!(flavor, Flavor::OpenAi, "bursts speak the OpenAI format");
        if write_chunk(&mut socket, &openai_events(&deltas)).await {
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
        let _ = socket.shutdown().await;
        return;
    }
    let events = fixture_events(flavor, fixture.as_deref().unwrap_or("basic"));
    let (stop_at, malformed_at) = match fault {
        Fault::StallBeforeFirstToken => (Some(0), None),
        Fault::StallMidStream { after_events } | Fault::DropMidStream { after_events } => {
            (Some(after_events), None)
        }
        Fault::MalformedChunk { after_events } => (None, Some(after_events)),
        Fault::None | Fault::Status { .. } => (None, None),
    };
    for (i, event) in events.iter().enumerate() {
        if stop_at == Some(i) {
            break;
        }
        if malformed_at == Some(i) && !write_chunk(&mut socket, flavor.malformed_event()).await {
            return;
        }
        if !write_chunk(&mut socket, event).await {
            return;
        }
    }
    match fault {
        Fault::StallBeforeFirstToken | Fault::StallMidStream { .. } => {
            let _ = socket.flush().await;
            stall_until_client_closes(socket, index, &state, &changed).await;
        }
        Fault::DropMidStream { .. } => {
            // Close without the terminating zero-length chunk: the body is cut short.
            let _ = socket.shutdown().await;
        }
        Fault::None | Fault::MalformedChunk { .. } | Fault::Status { .. } => {
            let _ = socket.write_all(b"0\r\n\r\n").await;
            let _ = socket.shutdown().await;
        }
    }
}

/// Serves `POST /v1/audio/transcriptions`: records the multipart parts and answers as scripted.
async fn transcribe(mut socket: TcpStream, head: &Head, body: &[u8], state: &Mutex<State>) {
    let parts = head
        .headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .and_then(|(_, v)| v.split_once("boundary="))
        .map(|(_, boundary)| parse_multipart(body, boundary.trim_matches('"')))
        .unwrap_or_default();
    let (reply, key_ok) = {
        let mut st = state.lock().unwrap();
        st.transcriptions.push(RecordedTranscription {
            path: head.path.clone(),
            headers: head.headers.clone(),
            body_len: body.len(),
            parts,
        });
        let key_ok = st.api_key.as_deref().is_none_or(|k| key_matches(head, k));
        let reply = st
            .transcription_script
            .pop_front()
            .unwrap_or_else(|| TranscriptionReply::Text(DEFAULT_TRANSCRIPT.to_string()));
        (reply, key_ok)
    };
    if !key_ok {
        let body = Flavor::OpenAi.error_body(401, true);
        write_status(&mut socket, 401, None, &body).await;
        return;
    }
    match reply {
        TranscriptionReply::Text(text) => {
            let body = serde_json::json!({ "text": text }).to_string();
            write_status(&mut socket, 200, None, &body).await;
        }
        TranscriptionReply::Raw(body) => write_status(&mut socket, 200, None, &body).await,
        TranscriptionReply::Status(status) => {
            let body = Flavor::OpenAi.error_body(status, false);
            write_status(&mut socket, status, None, &body).await;
        }
        TranscriptionReply::Stall => {
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(STALL_LIMIT, socket.read(&mut byte)).await;
        }
    }
}

/// The position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + from)
}

/// Splits a multipart/form-data body (RFC 7578) into its parts.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<FormPart> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let Some(mut at) = find(body, &delimiter, 0) else {
        return parts;
    };
    loop {
        let start = at + delimiter.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(headers_end) = find(body, b"\r\n\r\n", start) else {
            break;
        };
        let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
        let Some(end) = find(body, &next_delimiter, headers_end + 4) else {
            break;
        };
        let headers = std::str::from_utf8(&body[start..headers_end]).unwrap();
        let mut part = FormPart {
            name: String::new(),
            file_name: None,
            content_type: None,
            data: body[headers_end + 4..end].to_vec(),
        };
        for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-type" => part.content_type = Some(value.trim().to_string()),
                "content-disposition" => {
                    for param in value.split(';').skip(1) {
                        let (key, value) = param.trim().split_once('=').unwrap();
                        let value = value.trim_matches('"').to_string();
                        match key {
                            "name" => part.name = value,
                            "filename" => part.file_name = Some(value),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        parts.push(part);
        at = end + 2;
    }
    parts
}

/// One OpenAI stream answering with `deltas`: a chunk per delta, the finish reason, usage and `[DONE]`.
fn openai_events(deltas: &[String]) -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let event = serde_json::json!({
            "id": "chatcmpl-burst", "object": "chat.completion.chunk", "created": 1732500000,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {event}\n\n")
    };
    let mut events: String = deltas
        .iter()
        .map(|d| chunk(serde_json::json!({"content": d}), None))
        .collect();
    events.push_str(&chunk(serde_json::json!({}), Some("stop")));
    let usage = serde_json::json!({"id": "chatcmpl-burst", "object": "chat.completion.chunk",
        "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": deltas.len(), "total_tokens": deltas.len() + 1}});
    events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    events
}

/// A `[[llm.providers]]` table for any endpoint (see [`FakeLlm::provider_toml`]).
pub fn endpoint_toml(id: &str, kind: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[llm.providers]]\nid = \"{id}\"\nname = \"{id} name\"\ntype = \"{kind}\"\nendpoint = \"{endpoint}\"\n\
         model = \"up-{id}\"\napiKey = \"sk-fake\"\nretry = {{ max_attempts = 3, base_delay = \"1ms\", max_delay = \"5s\" }}\n{extra}\n"
    )
}

/// An endpoint on a loopback port where nothing listens: connections are refused.
pub async fn refused_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/v1")
}

/// A listener whose accept queue is full and never drained: a new connection's SYN is dropped, so
/// connecting hangs until the client's connect timeout (Linux drops SYNs to a full queue).
pub struct BlackHole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    /// Binds with a backlog of one and fills the queue.
    pub async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        // Fill the accept queue: connects succeed until it is full, then they hang.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        Self {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// The endpoint to configure.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}
