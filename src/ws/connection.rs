//! One upgraded connection: registers with the hub, runs the writer (backlog, heartbeat pings, close frames)
//! and the reader (size limit, pong deadline, in-flight limit), and hands every frame to the chat service,
//! one after another in the order received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use crate::chat::Frame;
use crate::cluster::ClusterSlot;
use crate::hub::{Outbound, Outgoing, Slot};
use crate::state::AppState;

use super::route::Route;

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
    /// Its slot of the cluster-wide per-user limit (cluster mode).
    pub cluster_slot: Option<ClusterSlot>,
}

/// Runs a connection until either side closes it.
pub fn run(socket: WebSocketStream, params: ConnectionParams) -> impl Future<Output = ()> {
    serve(Box::new(socket), Box::new(params))
}

/// [`run`], with the socket and the parameters on the heap: the task of an idle connection holds only
/// what its loop needs.
async fn serve(mut socket: Box<WebSocketStream>, params: Box<ConnectionParams>) {
    let ConnectionParams {
        state,
        identity,
        last_seq,
        slot,
        cluster_slot,
    } = *params;
    let opened = Instant::now();
    // The attach and each frame's handling run boxed: a connection's task then stays small while it waits
    // for frames (their futures are large; inline they would size every idle connection's task).
    let Some((attached, mut route)) = Box::pin(Route::attach(
        &state,
        slot,
        cluster_slot,
        identity,
        last_seq,
    ))
    .await
    else {
        let close = Message::Close(Some((
            CloseCode::from(CLOSE_SLOW_CONSUMER),
            "Try again later".to_string(),
        )));
        let _ = timeout(state.settings.ws.write_wait, socket.send(close)).await;
        return;
    };
    let handle = attached.handle;
    let ctx = attached.ctx;
    let (sink, mut stream) = (*socket).split();
    let mut writer = tokio::spawn(write_loop(
        sink,
        attached.backlog,
        attached.rx,
        handle.kicked(),
        state.shutdown.clone(),
        Arc::clone(&state),
    ));
    // The reader stops when the writer ends (a close frame sent and answered, the socket failed).
    let mut writer_ended = false;

    let ws = &state.settings.ws;
    let mut deadline = tokio::time::Instant::now() + ws.pong_wait;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, stream.next()) => next,
            _ = &mut writer => {
                writer_ended = true;
                break;
            }
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
        let frame = match message {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(bytes) => Frame::Binary(bytes),
            Message::Pong(_) => {
                deadline = tokio::time::Instant::now() + ws.pong_wait;
                continue;
            }
            Message::Ping(_) => continue,
            Message::Close(_) => break,
        };
        // One frame at a time: it has taken effect before the next is read (answers stream on in tasks of
        // their own).
        Box::pin(route.receive(&state, &ctx, frame)).await;
    }

    route.closed(ctx.conn_id());
    state.chat.disconnected(&ctx);
    // Let the writer flush a pending close frame (size limit) before the socket goes away.
    drop(handle);
    if !writer_ended {
        let _ = timeout(state.settings.ws.write_wait, writer).await;
    }
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

/// How one write to the socket ended.
enum Written {
    Sent,
    /// The socket failed: the peer is gone.
    Failed,
    /// The write stayed blocked past the backlog's age limit: the client stopped reading.
    Stalled,
    /// The hub cut the connection as a slow consumer.
    Kicked,
}

/// Writes one message, giving up at `deadline` or when the connection is kicked.
async fn write(
    sink: &mut SplitSink<WebSocketStream, Message>,
    message: Message,
    deadline: tokio::time::Instant,
    kicked: &CancellationToken,
) -> Written {
    tokio::select! {
        biased;
        () = kicked.cancelled() => Written::Kicked,
        sent = tokio::time::timeout_at(deadline, sink.send(message)) => match sent {
            Ok(Ok(())) => Written::Sent,
            Ok(Err(_)) => Written::Failed,
            Err(_) => Written::Stalled,
        },
    }
}

/// Writes text frames in order; each may stay blocked until the backlog's age limit
/// ([`Outgoing::deadline`]), so a long list read steadily (a replay) is never taken for a stalled client.
async fn write_texts(
    sink: &mut SplitSink<WebSocketStream, Message>,
    texts: &[Arc<str>],
    rx: &Outgoing,
    kicked: &CancellationToken,
    state: &AppState,
) -> Written {
    for text in texts {
        let deadline = rx.deadline(tokio::time::Instant::now());
        let message = Message::Text(text.as_ref().to_owned());
        match write(sink, message, deadline, kicked).await {
            Written::Sent => state.metrics.messages_sent.inc(),
            end => return end,
        }
    }
    Written::Sent
}

/// Sends a close frame, then lets the reader run until the client answers it (the reader ends and the
/// connection is unregistered), all within `wait`; then the caller drops the connection. Dropping the socket
/// while the client's frames are still unread would reset it and discard the close frame on its way.
async fn send_close(
    sink: &mut SplitSink<WebSocketStream, Message>,
    rx: &mut Outgoing,
    code: u16,
    reason: &str,
    wait: Duration,
) {
    let frame = Message::Close(Some((CloseCode::from(code), reason.to_string())));
    let _ = timeout(wait, async {
        if sink.send(frame).await.is_ok() {
            rx.unregistered().await;
        }
    })
    .await;
}

/// The writer: the connect-time backlog, then queued frames and heartbeat pings, until the connection is
/// unregistered, a close frame is due, or the socket fails. A slow consumer (cut by the hub, or a write
/// blocked past the backlog's age limit) gets a 1013 close frame within `write_wait`.
async fn write_loop(
    mut sink: SplitSink<WebSocketStream, Message>,
    backlog: Vec<Arc<str>>,
    mut rx: Outgoing,
    kicked: CancellationToken,
    shutdown: CancellationToken,
    state: Arc<AppState>,
) {
    let ws = &state.settings.ws;
    let end = 'frames: {
        let sent = write_texts(&mut sink, &backlog, &rx, &kicked, &state).await;
        if !matches!(sent, Written::Sent) {
            break 'frames sent;
        }
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ws.ping_period, ws.ping_period);
        loop {
            let outbound = tokio::select! {
                biased;
                () = kicked.cancelled() => break 'frames Written::Kicked,
                // Frames already queued (the end of an answer) go out before the shutdown close frame.
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => break 'frames Written::Sent,
                },
                () = shutdown.cancelled() => Outbound::Close { code: 1001, reason: "Server shutting down" },
                _ = ping.tick() => {
                    let deadline = rx.deadline(tokio::time::Instant::now());
                    match write(&mut sink, Message::Ping(Vec::new()), deadline, &kicked).await {
                        Written::Sent => continue,
                        end => break 'frames end,
                    }
                }
            };
            let texts: &[Arc<str>] = match &outbound {
                Outbound::Text(text) => std::slice::from_ref(text),
                Outbound::Batch(texts) => texts,
                Outbound::Close { code, reason } => {
                    send_close(&mut sink, &mut rx, *code, reason, ws.write_wait).await;
                    break 'frames Written::Sent;
                }
            };
            let sent = write_texts(&mut sink, texts, &rx, &kicked, &state).await;
            if !matches!(sent, Written::Sent) {
                break 'frames sent;
            }
        }
    };
    match end {
        Written::Sent | Written::Failed => {}
        Written::Stalled | Written::Kicked => {
            // A stalled write cuts the connection here (counted once); a kick was counted by the hub.
            rx.stalled();
            send_close(
                &mut sink,
                &mut rx,
                CLOSE_SLOW_CONSUMER,
                "Connection too slow",
                ws.write_wait,
            )
            .await;
        }
    }
}
