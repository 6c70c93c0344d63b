//! Client connections: mints tokens, opens many WebSockets with bounded concurrency (timing the upgrade and
//! the first `connection_status` frame), then runs one task per connection that sends what it is told and
//! hands every received frame, stamped with its arrival time, to a [`FrameHandler`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chatbox::auth::{Claims, JwtKeys};
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::report::{Latency, Tally};

/// A client WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for the upgrade plus the first frame.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Mints user tokens with the server's HMAC secret.
#[derive(Clone)]
pub struct Tokens {
    keys: JwtKeys,
    prefix: String,
}

impl Tokens {
    /// Keys from the secret; user ids are `{prefix}-{n}`.
    pub fn new(secret: &str, prefix: &str) -> anyhow::Result<Self> {
        let keys = JwtKeys::new(&SecretString::from(secret.to_string()), None)
            .map_err(|e| anyhow::anyhow!("JWT secret: {e}"))?;
        Ok(Self {
            keys,
            prefix: prefix.to_string(),
        })
    }

    /// A token for user number `user`, valid for a day.
    pub fn user(&self, user: usize) -> anyhow::Result<String> {
        self.mint(format!("{}-{user}", self.prefix), "user")
    }

    /// A token for administrator number `admin` (user id `{prefix}-admin-{n}`, role `admin`), valid for a day.
    pub fn admin(&self, admin: usize) -> anyhow::Result<String> {
        self.mint(format!("{}-admin-{admin}", self.prefix), "admin")
    }

    fn mint(&self, user_id: String, role: &str) -> anyhow::Result<String> {
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 86_400;
        self.keys
            .mint(&Claims {
                user_id,
                roles: vec![role.into()],
                name: None,
                exp: Some(exp),
                nbf: None,
            })
            .map_err(|e| anyhow::anyhow!("minting a token: {e}"))
    }
}

/// The fields of a server frame the tool looks at.
#[derive(Debug, Default, Deserialize)]
pub struct FrameHead {
    /// `type`
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `client_msg_id` (echoed on the answer's frames).
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// `metadata` (`done`, `resumed` and `replayed` are read).
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// `seq` of a session event.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `session_id`.
    #[serde(default)]
    pub session_id: Option<String>,
    /// `last_seq` of `connection_status`: the session's latest `seq`.
    #[serde(default)]
    pub last_seq: Option<u64>,
    /// `error` of an error frame.
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

/// The `metadata` fields the tool reads.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// `"true"` on the final chunk of an answer.
    #[serde(default)]
    pub done: Option<String>,
    /// `"true"` on the `connection_status` that ends a replay.
    #[serde(default)]
    pub resumed: Option<String>,
    /// Frames replayed, on the `connection_status` that ends a replay.
    #[serde(default)]
    pub replayed: Option<String>,
}

/// The `error` object of an error frame.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// The error code, e.g. `TOO_MANY_REQUESTS`.
    #[serde(default)]
    pub code: String,
}

impl FrameHead {
    /// Parses the head of a frame; an unparsable frame becomes an empty head of kind `""`.
    pub fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// True for the final chunk of an answer.
    pub fn is_final(&self) -> bool {
        self.kind == "ai_response"
            && self.metadata.as_ref().and_then(|m| m.done.as_deref()) == Some("true")
    }

    /// The number of frames replayed when this is the `connection_status` that ends a replay.
    pub fn replay_end(&self) -> Option<u64> {
        let metadata = self.metadata.as_ref()?;
        (self.kind == "connection_status" && metadata.resumed.as_deref() == Some("true")).then(
            || {
                metadata
                    .replayed
                    .as_deref()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            },
        )
    }
}

/// Receives the frames of every connection.
pub trait FrameHandler: Send + Sync + 'static {
    /// One text frame `text` arrived on connection `conn` at `at`.
    fn frame(&self, conn: usize, text: &str, at: Instant);
    /// Connection `conn` ended; `code` is the close code (1006 when the socket just ended).
    fn closed(&self, conn: usize, code: u16);
}

/// What the opening of connections measured.
pub struct OpenStats {
    /// From the start of the TCP connect to the HTTP 101.
    pub upgrade: Latency,
    /// From the start of the TCP connect to the first frame (`connection_status`).
    pub ready: Latency,
    /// Failed attempts by reason.
    pub errors: Tally,
    /// Wall time of the whole opening phase.
    pub elapsed: Duration,
}

impl Default for OpenStats {
    fn default() -> Self {
        Self {
            upgrade: Latency::new("upgrade (101)"),
            ready: Latency::new("connected (1st frame)"),
            errors: Tally::default(),
            elapsed: Duration::ZERO,
        }
    }
}

/// An open connection driven by its task.
pub struct Conn {
    /// The connection's number: its index in the list of users it was opened for.
    pub id: usize,
    /// Text frames to send.
    pub tx: mpsc::UnboundedSender<String>,
}

/// Frames received by all connections.
pub static FRAMES: AtomicU64 = AtomicU64::new(0);

fn client_config() -> WebSocketConfig {
    // Small client buffers: 10 000 connections with tungstenite's 128 KiB defaults would need 2.5 GiB here.
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config.write_buffer_size = 0;
    config
}

/// Opens one connection (resuming after `last_seq` when given) and waits for its first frame, the
/// connect-time `connection_status`, which it returns with the socket.
pub async fn open_one(
    url: &str,
    token: &str,
    last_seq: Option<u64>,
    stats: &OpenStats,
) -> Result<(Socket, String), String> {
    let started = Instant::now();
    let request = match last_seq {
        Some(seq) => format!("{url}?token={token}&last_seq={seq}"),
        None => format!("{url}?token={token}"),
    };
    let connect =
        tokio_tungstenite::connect_async_with_config(request, Some(client_config()), true);
    let (mut socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return Err("upgrade timeout".into()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            return Err(format!("http {}", response.status().as_u16()));
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Io(e))) => {
            return Err(format!("io {:?}", e.kind()));
        }
        Ok(Err(e)) => return Err(format!("ws {e}")),
        Ok(Ok(pair)) => pair,
    };
    stats.upgrade.record(started.elapsed());
    let first = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!(
                        "closed {}",
                        frame.map_or(1005, |f| u16::from(f.code))
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("ws {e}")),
                None => return Err("closed 1006".into()),
            }
        }
    })
    .await
    .map_err(|_| "first frame timeout".to_string())??;
    let head = FrameHead::parse(&first);
    if head.kind != "connection_status" {
        return Err(format!("first frame {}", head.kind));
    }
    stats.ready.record(started.elapsed());
    Ok((socket, first.to_string()))
}

/// The task of one connection: sends queued frames, reads frames until either side closes.
async fn drive(
    conn: usize,
    mut socket: Socket,
    mut rx: mpsc::UnboundedReceiver<String>,
    handler: Arc<dyn FrameHandler>,
) {
    let code = loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break 1006;
                    }
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(None)).await;
                    break 1000;
                }
            },
            next = socket.next() => match next {
                Some(Ok(Message::Text(text))) => {
                    FRAMES.fetch_add(1, Ordering::Relaxed);
                    handler.frame(conn, &text, Instant::now());
                }
                Some(Ok(Message::Close(frame))) => break frame.map_or(1005, |f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break 1006,
            },
        }
    };
    handler.closed(conn, code);
}

/// Opens a connection for each user `users[i]` (to `urls[i % urls.len()]`) with at most `concurrency`
/// handshakes at a time, and
/// starts their tasks. Failed connections are left out of the result and counted in the stats.
pub async fn open_all(
    urls: &[String],
    tokens: &Tokens,
    users: &[usize],
    concurrency: usize,
    handler: Arc<dyn FrameHandler>,
) -> anyhow::Result<(Vec<Conn>, OpenStats)> {
    let stats = Arc::new(OpenStats::default());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(users.len());
    let mut cache: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    for (index, &user) in users.iter().enumerate() {
        let token = match cache.get(&user) {
            Some(t) => t.clone(),
            None => {
                let t = tokens.user(user)?;
                cache.insert(user, t.clone());
                t
            }
        };
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let url = urls
            .get(index % urls.len().max(1))
            .cloned()
            .unwrap_or_default();
        let stats = Arc::clone(&stats);
        let handler = Arc::clone(&handler);
        tasks.push(tokio::spawn(async move {
            let result = open_one(&url, &token, None, &stats).await;
            drop(permit);
            match result {
                Ok((socket, _)) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(drive(index, socket, rx, handler));
                    Some(Conn { id: index, tx })
                }
                Err(reason) => {
                    stats.errors.bump(reason);
                    None
                }
            }
        }));
        if (index + 1) % 1000 == 0 {
            eprintln!("  {} connections started", index + 1);
        }
    }
    let mut conns = Vec::with_capacity(users.len());
    for task in tasks {
        if let Some(conn) = task.await? {
            conns.push(conn);
        }
    }
    let mut stats =
        Arc::into_inner(stats).ok_or_else(|| anyhow::anyhow!("connection stats still shared"))?;
    stats.elapsed = started.elapsed();
    Ok((conns, stats))
}
