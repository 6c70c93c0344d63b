//! One upgraded connection: registers with the hub, runs the writer (queue, heartbeat pings, close frames)
//! and the reader (size limit, pong deadline, in-flight limit), and hands every frame to the chat service,
//! one after another in the order received.

use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::auth::Identity;
use crate::hub::{Outbound, Slot};

/// Close code for a connection that could not keep up with its frames ("Try Again Later").
const CLOSE_SLOW_CONSUMER: u16 = 1013;
/// Close code for a frame above the size limit ("Message Too Big").
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a text frame that is not UTF-8 ("Invalid Frame Payload Data").
const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// What the upgrade hands to the connection.
pub struct ConnectionParams {
    /// Shared state.
    pub state: Arc<AppState>,
    /// The authenticated caller.
    pub identity: Identity,
    /// `last_seq` from the query string, to resume.
    pub last_seq: Option<i64>,
    /// The connection slot taken before the upgrade.
    pub slot: Slot,
}

/// Runs a connection until either side closes it.
pub async fn run(socket: WebSocketStream, params: ConnectionParams) {
    let ConnectionParams {
        state,
        identity,
        last_seq,
        slot,
    } = params;
    let opened = Instant::now();
    let attached = state.chat.attach(slot, identity, last_seq).await;
    let handle = attached.handle;
    let ctx = attached.ctx;
    let (sink, mut stream) = socket.split();
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_loop(
        sink,
        attached.backlog,
        attached.rx,
        handle.kicked(),
        state.shutdown.clone(),
        stop.clone(),
        Arc::clone(&state),
    ));

    let ws = &state.settings.ws;
    let in_flight = Arc::new(Semaphore::new(ws.max_in_flight));
    let mut deadline = tokio::time::Instant::now() + ws.pong_wait;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, stream.next()) => next,
            () = stop.cancelled() => break,
        };
        let message = match next {
            Err(_) => {
                tracing::debug!(conn = ctx.conn_id(), "pong deadline passed, closing");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                if let Some((code, reason)) = close_for_read_error(&err) {
                    tracing::info!(conn = ctx.conn_id(), code, reason, "refused frame, closing");
                    state
                        .hub
                        .send_to(ctx.conn_id(), Outbound::Close { code, reason });
                } else {
                    tracing::debug!(conn = ctx.conn_id(), error = %err, "read error");
                }
                break;
            }
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    state
                        .chat
                        .reject_undecodable(&ctx, "frame is not UTF-8 text");
                    continue;
                }
            },
            Message::Pong(_) => {
                deadline = tokio::time::Instant::now() + ws.pong_wait;
                continue;
            }
            Message::Ping(_) => continue,
            Message::Close(_) => break,
        };
        let Some(inbound) = state.chat.decode(&ctx, &text) else {
            continue;
        };
        let permit = if inbound.needs_slot() {
            match Arc::clone(&in_flight).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    state.chat.reject_busy(&ctx, &inbound);
                    continue;
                }
            }
        } else {
            None
        };
        // One frame at a time: it has taken effect before the next is read (answers stream on in tasks of
        // their own, each holding its in-flight slot).
        state.chat.dispatch(&ctx, inbound, permit).await;
    }

    state.chat.disconnected(&ctx);
    // Let the writer flush a pending close frame (size limit) before the socket goes away.
    drop(handle);
    let _ = timeout(state.settings.ws.write_wait, writer).await;
    state
        .metrics
        .connection_duration
        .observe(opened.elapsed().as_secs_f64());
}

/// The close frame that answers a frame the WebSocket layer refused to read, if any: 1009 for a frame above
/// the size limit, 1007 for a text frame that is not UTF-8.
fn close_for_read_error(err: &std::io::Error) -> Option<(u16, &'static str)> {
    // poem maps tungstenite's errors other than I/O to an I/O error carrying their message:
    // `Error::Capacity` names the limit, `Error::Utf8` starts with "UTF-8 encoding error".
    let text = err.to_string();
    if text.contains("Message too long") {
        Some((CLOSE_TOO_BIG, "Message too big"))
    } else if text.starts_with("UTF-8 encoding error") {
        Some((CLOSE_INVALID_PAYLOAD, "Invalid UTF-8 text"))
    } else {
        None
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocketStream, Message>,
    backlog: Vec<Arc<str>>,
    mut rx: mpsc::Receiver<Outbound>,
    kicked: CancellationToken,
    shutdown: CancellationToken,
    stop_reader: CancellationToken,
    state: Arc<AppState>,
) {
    let ws = &state.settings.ws;
    for frame in backlog {
        if !matches!(
            timeout(
                ws.write_wait,
                sink.send(Message::Text(frame.as_ref().to_owned()))
            )
            .await,
            Ok(Ok(()))
        ) {
            stop_reader.cancel();
            return;
        }
        state.metrics.messages_sent.inc();
    }
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ws.ping_period, ws.ping_period);
    'frames: loop {
        let outbound = tokio::select! {
            biased;
            () = kicked.cancelled() => Outbound::Close { code: CLOSE_SLOW_CONSUMER, reason: "Connection too slow" },
            // Frames already queued (the end of an answer) go out before the shutdown close frame.
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
            () = shutdown.cancelled() => Outbound::Close { code: 1001, reason: "Server shutting down" },
            _ = ping.tick() => {
                if timeout(ws.write_wait, sink.send(Message::Ping(Vec::new()))).await.map_or(true, |r| r.is_err()) {
                    break;
                }
                continue;
            }
        };
        let texts: &[Arc<str>] = match &outbound {
            Outbound::Text(text) => std::slice::from_ref(text),
            Outbound::Batch(texts) => texts,
            Outbound::Close { code, reason } => {
                let frame = Message::Close(Some((CloseCode::from(*code), reason.to_string())));
                let _ = timeout(ws.write_wait, sink.send(frame)).await;
                let _ = timeout(ws.write_wait, sink.close()).await;
                break;
            }
        };
        for text in texts {
            let sent = timeout(
                ws.write_wait,
                sink.send(Message::Text(text.as_ref().to_owned())),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                break 'frames;
            }
            state.metrics.messages_sent.inc();
        }
    }
    stop_reader.cancel();
}
