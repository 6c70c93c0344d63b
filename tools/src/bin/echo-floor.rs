//! `echo-floor`: a bare WebSocket server on the same stack as `chatbox` (poem's websocket over
//! tokio-tungstenite, the same `WebSocketConfig` buffer sizes and limits), used by `chatbox-load` as the
//! floor that the real server is compared with.
//!
//! It speaks just enough of the chat protocol for the load tool to drive it unchanged:
//! * `GET {prefix}/ws?token=..` upgrades without verifying anything; the first frame is a
//!   `connection_status`.
//! * A `user_message` frame is answered with a `loading` frame, `--chunks` `ai_response` chunks and a final
//!   chunk with `metadata.done="true"`, all carrying the message's `client_msg_id`. Other connections that
//!   presented the same token (the same user's other devices) receive the `user_message` and the whole
//!   answer too, as with the real server.
//! * Any other text frame is echoed back to its sender.
//!
//! * With `--durable FILE`, the message is appended to `FILE` and flushed to disk (`fdatasync`) before the
//!   `loading` frame, and the answer before the final chunk: the two durable writes per turn of the real
//!   server, group-committed by one writer thread, without a database. This is the floor of a server that
//!   loses nothing acknowledged.
//!
//! Per connection it holds what any fan-out capable server must: the socket with its buffers, a reader task,
//! a writer task fed by a bounded queue, and one registry entry. No authentication, storage, sequence
//! numbers, rate limits or model calls: the difference to `chatbox` is what those cost.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use poem::listener::{Listener, TcpListener};

use chatbox::app::listener::NoDelayAcceptor;
use poem::web::websocket::{Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Route, Server, get, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Bare WebSocket echo server: the floor `chatbox` is measured against.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind.
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// Path prefix; the socket is at `{prefix}/ws`.
    #[arg(long, default_value = "/chatbox")]
    prefix: String,
    /// `ai_response` chunks per answer before the final one (the demo model's answer has about 25 words).
    #[arg(long, default_value_t = 25)]
    chunks: usize,
    /// Read buffer per connection (bytes), as `chatbox.websocket.read_buffer_size`.
    #[arg(long, default_value_t = 1024)]
    read_buffer_size: usize,
    /// Write buffer per connection (bytes), as `chatbox.websocket.write_buffer_size`.
    #[arg(long, default_value_t = 1024)]
    write_buffer_size: usize,
    /// Largest frame (bytes), as `chatbox.max_message_size`.
    #[arg(long, default_value_t = 1_048_576)]
    max_message_size: usize,
    /// Outbound queue per connection (frames), as `chatbox.websocket.outbound_queue`.
    #[arg(long, default_value_t = 256)]
    outbound_queue: usize,
    /// Append each message and each answer to this file and flush it to disk before acknowledging.
    #[arg(long)]
    durable: Option<std::path::PathBuf>,
}

/// A record to append, and who waits for it to be on disk.
type Append = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

/// The durable journal of `--durable`: one thread appends every record waiting and flushes once for all
/// of them (group commit), then answers each.
struct Journal {
    appends: std::sync::mpsc::Sender<Append>,
}

impl Journal {
    fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (appends, queue) = std::sync::mpsc::channel::<Append>();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    batch.extend(queue.try_iter());
                    let mut bytes = Vec::new();
                    for (record, _) in &batch {
                        bytes.extend_from_slice(record);
                        bytes.push(b'\n');
                    }
                    if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                        eprintln!("echo-floor: journal write failed: {e}");
                        std::process::exit(1);
                    }
                    for (_, done) in batch {
                        let _ = done.send(());
                    }
                }
            })?;
        Ok(Self { appends })
    }

    /// Appends `record` and waits until it is on disk.
    async fn append(&self, record: Vec<u8>) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.appends.send((record, done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// One connection in a room: its id and its outbound queue.
type Member = (u64, mpsc::Sender<Arc<str>>);

/// Connections grouped by the token they presented.
#[derive(Default)]
struct Rooms {
    next_id: AtomicU64,
    members: Mutex<HashMap<String, Vec<Member>>>,
}

impl Rooms {
    fn join(&self, room: &str, tx: mpsc::Sender<Arc<str>>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut members) = self.members.lock() {
            members.entry(room.to_string()).or_default().push((id, tx));
        }
        id
    }

    fn leave(&self, room: &str, id: u64) {
        if let Ok(mut members) = self.members.lock()
            && let Some(list) = members.get_mut(room)
        {
            list.retain(|(member, _)| *member != id);
            if list.is_empty() {
                members.remove(room);
            }
        }
    }

    /// The queues of the room's members, `except` excluded (taken without holding the lock while sending).
    fn senders(&self, room: &str, except: Option<u64>) -> Vec<mpsc::Sender<Arc<str>>> {
        self.members
            .lock()
            .ok()
            .and_then(|members| {
                members.get(room).map(|list| {
                    list.iter()
                        .filter(|(id, _)| Some(*id) != except)
                        .map(|(_, tx)| tx.clone())
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

/// Shared state of the server.
struct Floor {
    cli: Cli,
    rooms: Rooms,
    /// The journal of `--durable`.
    journal: Option<Journal>,
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(default)]
    token: String,
}

#[handler]
fn ws_handler(
    ws: WebSocket,
    Query(query): Query<WsQuery>,
    Data(floor): Data<&Arc<Floor>>,
) -> impl IntoResponse {
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = floor.cli.read_buffer_size;
    config.write_buffer_size = floor.cli.write_buffer_size;
    config.max_write_buffer_size =
        floor.cli.write_buffer_size.max(floor.cli.max_message_size) * 2 + 1;
    config.max_message_size = Some(floor.cli.max_message_size);
    config.max_frame_size = Some(floor.cli.max_message_size);
    let floor = Arc::clone(floor);
    ws.config(config)
        .on_upgrade(move |socket| run(socket, floor, query.token))
}

#[handler]
fn healthz() -> &'static str {
    "{\"status\":\"healthy\"}"
}

/// Sends `frame` to every queue; a full queue drops the frame (the real server would cut the connection).
fn deliver(queues: &[mpsc::Sender<Arc<str>>], frame: &Value) {
    let text: Arc<str> = Arc::from(frame.to_string());
    for tx in queues {
        let _ = tx.try_send(Arc::clone(&text));
    }
}

/// One connection: a writer task drains the queue; this task reads and answers.
async fn run(socket: WebSocketStream, floor: Arc<Floor>, room: String) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(floor.cli.outbound_queue.max(1));
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink
                .send(Message::Text(text.as_ref().to_owned()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let id = floor.rooms.join(&room, tx.clone());
    deliver(
        std::slice::from_ref(&tx),
        &json!({"type": "connection_status", "sender": "system", "content": "connected"}),
    );
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let Some(frame) = parsed.filter(|v| v["type"] == "user_message") else {
            let _ = tx.try_send(Arc::from(text));
            continue;
        };
        let client_msg_id = frame["client_msg_id"].clone();
        if let Some(journal) = &floor.journal {
            journal.append(text.into_bytes()).await;
        }
        deliver(&floor.rooms.senders(&room, Some(id)), &frame);
        let everyone = floor.rooms.senders(&room, None);
        deliver(
            &everyone,
            &json!({"type": "loading", "sender": "system", "client_msg_id": client_msg_id}),
        );
        let mut answer = String::new();
        for i in 0..floor.cli.chunks {
            let word = format!("word{i} ");
            answer.push_str(&word);
            deliver(
                &everyone,
                &json!({"type": "ai_response", "sender": "ai", "content": word,
                    "client_msg_id": client_msg_id, "model_id": "echo",
                    "metadata": {"streaming": "true", "done": "false"}}),
            );
        }
        if let Some(journal) = &floor.journal {
            journal.append(answer.into_bytes()).await;
        }
        deliver(
            &everyone,
            &json!({"type": "ai_response", "sender": "ai", "client_msg_id": client_msg_id, "model_id": "echo",
                "metadata": {"streaming": "true", "done": "true"}}),
        );
    }
    floor.rooms.leave(&room, id);
    drop(tx);
    let _ = writer.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let address = SocketAddr::new(cli.host, cli.port);
    let prefix = cli.prefix.trim_end_matches('/').to_string();
    let journal = cli.durable.as_deref().map(Journal::open).transpose()?;
    let floor = Arc::new(Floor {
        cli,
        rooms: Rooms::default(),
        journal,
    });
    let routes = Route::new()
        .at(format!("{prefix}/ws"), get(ws_handler))
        .at(format!("{prefix}/healthz"), get(healthz))
        .data(floor);
    eprintln!(
        "echo-floor listening on ws://{address}{prefix}/ws (pid {})",
        std::process::id()
    );
    // The same acceptor as the server (TCP_NODELAY on), so the floor differs only in what runs per frame.
    let acceptor = TcpListener::bind(address).into_acceptor().await?;
    Server::new_with_acceptor(NoDelayAcceptor::new(acceptor))
        .run(routes)
        .await?;
    Ok(())
}
