//! Transport-agnostic chat services. The WebSocket layer hands each decoded frame to [`Chat::dispatch`];
//! one module per inbound message kind does the work and answers through the hub. Services never see
//! sockets; storage and models sit behind `Store` and `Llm`.

mod actions;
mod assist;
mod attach;
mod control;
mod error;
mod files;
pub mod frames;
mod help;
mod inbound;
mod lifecycle;
mod live;
mod model_select;
pub mod naming;
pub mod rate_limit;
mod remote;
mod resolve;
mod turn_queue;
mod turns;
mod user_message;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use actions::{ActionOutcome, OrphanedTurn, SessionAction};
pub use assist::Via;
pub use attach::Attached;
pub use error::ChatError;
pub use inbound::Decoded;
pub use live::{LiveSessions, SEQ_BLOCK};

use crate::audit::AuditLog;
use crate::auth::Identity;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::files::Files;
use crate::hub::{BusMessage, ConnId, EventBus, Hub, Outbound, Target};
use crate::llm::{Llm, Transcriber};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::protocol::ws::{ClientMessage, Notification, Sender, ServerMessage};
use crate::store::Store;

pub use files::NOT_TRANSCRIBED;
use rate_limit::RateLimiter;
use turns::{DailyBudget, TurnEngine, TurnSettings};

/// One connection as the chat services see it: its id and its caller.
#[derive(Clone)]
pub struct ConnCtx {
    conn_id: ConnId,
    caller: Arc<ConnCaller>,
    /// The connection's in-flight slots (`ws.max_in_flight`): a frame that is not a control frame holds one
    /// until it has taken effect, or until its turn ends.
    in_flight: Arc<Semaphore>,
}

/// Who a connection is, and what it remembers between frames (one allocation per connection).
struct ConnCaller {
    identity: Identity,
    /// A session id this connection sent that the server does not know (Go clients make up their own),
    /// and the session it stood for: the next frame naming it goes to that session without asking the
    /// store about the unknown id again.
    alias: std::sync::Mutex<Option<(String, String)>>,
}

impl ConnCtx {
    /// The context of connection `conn_id` opened by `identity`, with `max_in_flight` slots.
    pub fn new(conn_id: ConnId, identity: Identity, max_in_flight: usize) -> Self {
        Self {
            conn_id,
            caller: Arc::new(ConnCaller {
                identity,
                alias: std::sync::Mutex::default(),
            }),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    /// The session an unknown id sent by this connection last stood for.
    fn aliased(&self, unknown_id: &str) -> Option<String> {
        let alias = self.caller.alias.lock().unwrap_or_else(|p| p.into_inner());
        alias
            .as_ref()
            .filter(|(unknown, _)| unknown == unknown_id)
            .map(|(_, session)| session.clone())
    }

    /// Remembers that the unknown id `unknown_id` stood for `session_id`.
    fn remember_alias(&self, unknown_id: &str, session_id: &str) {
        *self.caller.alias.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((unknown_id.to_string(), session_id.to_string()));
    }

    /// The connection's id.
    pub fn conn_id(&self) -> ConnId {
        self.conn_id
    }

    /// The caller.
    pub fn identity(&self) -> &Identity {
        &self.caller.identity
    }
}

/// A frame as the transport received it.
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame: accepted when it holds UTF-8 text.
    Binary(Vec<u8>),
}

/// A decoded frame ready for dispatch.
struct Inbound(Decoded);

impl Inbound {
    /// Whether the frame counts against the per-connection in-flight limit. Control frames (`cancel`,
    /// `ping`, `typing_indicator`, `resume`) never do: a busy connection must still be able to cancel.
    fn needs_slot(&self) -> bool {
        !matches!(
            self.0.message,
            ClientMessage::Cancel(_)
                | ClientMessage::Ping(_)
                | ClientMessage::TypingIndicator(_)
                | ClientMessage::Resume(_)
        )
    }
}

/// The chat services and what they share.
pub struct Chat {
    store: Arc<dyn Store>,
    files: Arc<Files>,
    /// Voice transcription (`[transcription]`), when configured.
    transcriber: Option<Arc<Transcriber>>,
    llm: Arc<Llm>,
    bus: Arc<dyn EventBus>,
    hub: Hub,
    live: LiveSessions,
    sessions: resolve::Reservations,
    message_limiter: RateLimiter,
    help_limiter: RateLimiter,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    audit: Arc<dyn AuditLog>,
    turns: TurnEngine,
    /// The other nodes (cluster mode).
    cluster: Option<Arc<Cluster>>,
}

impl Chat {
    /// Builds the services over the store, the uploads and voice transcription. Admin takeovers, leaves and transfers are recorded in `audit`; `cluster` links
    /// them to the other nodes in cluster mode.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        (files, transcriber): (Arc<Files>, Option<Arc<Transcriber>>),
        llm: Arc<Llm>,
        bus: Arc<dyn EventBus>,
        hub: Hub,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        notifier: Arc<Notifier>,
        audit: Arc<dyn AuditLog>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        Self {
            message_limiter: RateLimiter::new(
                settings.ws.message_rate_limit,
                settings.ws.message_rate_window,
            ),
            help_limiter: RateLimiter::new(
                settings.chat.help_rate_limit,
                settings.chat.help_rate_window,
            ),
            live: LiveSessions::new(
                live::ReplayLimit {
                    frames: settings.ws.replay_buffer,
                    bytes: settings.ws.replay_bytes,
                },
                Some(live::SeqMarks::new(
                    Arc::clone(&store),
                    Arc::clone(&bus),
                    live::SEQ_BLOCK,
                )),
            ),
            sessions: resolve::Reservations::default(),
            turns: TurnEngine::new(
                Arc::clone(&store),
                Arc::clone(&files),
                Arc::clone(&llm),
                Arc::clone(&bus),
                Arc::clone(&metrics),
                TurnSettings {
                    history_messages: settings.chat.history_messages,
                    checkpoint_interval: settings.chat.checkpoint_interval,
                    budget: DailyBudget::new(settings.llm.daily_token_budget),
                    text_tokens: settings.uploads.text_tokens,
                },
            ),
            store,
            files,
            transcriber,
            llm,
            bus,
            hub,
            settings,
            metrics,
            notifier,
            audit,
            cluster,
        }
    }

    /// The live sessions of this node.
    pub fn live(&self) -> &LiveSessions {
        &self.live
    }

    /// The one entry point of an inbound frame: decodes it, applies the in-flight limit and does what it
    /// asks; any failure becomes an error frame on this connection. The frame has taken effect when this
    /// returns (stored, echoed, its turn queued), so a connection that hands over its frames one after
    /// another has them take effect in the order sent; an answer then streams in a task of its own.
    pub async fn receive(self: &Arc<Self>, ctx: &ConnCtx, frame: Frame) {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.reject_undecodable(ctx, "frame is not UTF-8 text");
                    return;
                }
            },
        };
        let Some(inbound) = self.decode(ctx, &text) else {
            return;
        };
        let permit = if inbound.needs_slot() {
            match Arc::clone(&ctx.in_flight).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.reject_busy(ctx, &inbound);
                    return;
                }
            }
        } else {
            None
        };
        self.dispatch(ctx, inbound, permit).await;
    }

    /// Decodes a frame; on failure the error frame is already sent to this connection.
    fn decode(&self, ctx: &ConnCtx, text: &str) -> Option<Inbound> {
        match inbound::decode(text) {
            Ok(decoded) => {
                self.metrics.messages_received.inc();
                Some(Inbound(decoded))
            }
            Err((err, hints)) => {
                tracing::debug!(conn = ctx.conn_id, error = %err, "frame refused");
                self.reply_error(
                    ctx,
                    &err,
                    hints.session_id.as_deref(),
                    hints.client_msg_id.as_deref(),
                );
                None
            }
        }
    }

    /// Answers a frame that is not text.
    fn reject_undecodable(&self, ctx: &ConnCtx, reason: &str) {
        tracing::debug!(conn = ctx.conn_id, reason, "frame refused");
        self.reply_error(ctx, &ChatError::Malformed(reason.to_string()), None, None);
    }

    /// Answers a frame refused by the in-flight limit, naming its session and `client_msg_id`.
    fn reject_busy(&self, ctx: &ConnCtx, inbound: &Inbound) {
        self.reply_error(
            ctx,
            &ChatError::Busy,
            inbound.0.session_id.as_deref(),
            inbound.0.client_msg_id.as_deref(),
        );
    }

    /// Does what a decoded frame asks; any failure becomes an error frame on this connection. An answer is
    /// streamed by a task of its own, which holds `permit` (the connection's in-flight slot) until the turn
    /// ends.
    async fn dispatch(
        self: &Arc<Self>,
        ctx: &ConnCtx,
        inbound: Inbound,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let Decoded {
            message,
            session_id,
            client_msg_id,
        } = inbound.0;
        let named_id = session_id.as_deref();
        let result = match message {
            ClientMessage::UserMessage(m) => self.user_message(ctx, named_id, m).await,
            ClientMessage::FileUpload(m) => {
                self.file_upload(ctx, named_id, files::Upload::from(m))
                    .await
            }
            ClientMessage::VoiceMessage(m) => {
                self.file_upload(ctx, named_id, files::Upload::from(m))
                    .await
            }
            ClientMessage::ModelSelect(m) => no_turn(self.model_select(ctx, named_id, m).await),
            ClientMessage::HelpRequest(m) => no_turn(self.help_request(ctx, named_id, m).await),
            ClientMessage::Cancel(_) => no_turn(self.cancel(ctx, named_id).await),
            ClientMessage::Ping(m) => {
                self.send(ctx, &frames::pong(m.client_msg_id));
                Ok(None)
            }
            ClientMessage::TypingIndicator(m) => no_turn(self.typing(ctx, named_id, m).await),
            ClientMessage::Resume(m) => no_turn(self.resume(ctx, named_id, m.last_seq).await),
            ClientMessage::AdminJoin(m) => {
                no_turn(self.admin_join(ctx, &m.session_id, m.last_seq).await)
            }
            ClientMessage::AdminLeave(m) => no_turn(self.admin_leave(ctx, &m.session_id).await),
            ClientMessage::AdminMessage(m) => no_turn(self.admin_message(ctx, m).await),
        };
        match result {
            Ok(Some(turn)) => {
                let chat = Arc::clone(self);
                let ctx = ctx.clone();
                let running = self.cluster.clone().map(|cluster| {
                    let record = OrphanedTurn {
                        client_msg_id: turn.request.client_msg_id.clone(),
                        model_id: self.llm.model_for(&turn.session.model_id).to_string(),
                    };
                    let turn_session = turn.session.id.clone();
                    cluster.turn_started(
                        &turn_session,
                        &serde_json::to_string(&record).unwrap_or_default(),
                    );
                    (cluster, turn_session)
                });
                tokio::spawn(async move {
                    if let Err(err) = chat.turns.run(ctx.conn_id, turn).await {
                        chat.refuse(&ctx, &err, session_id.as_deref(), client_msg_id.as_deref());
                    }
                    if let Some((cluster, turn_session)) = running {
                        cluster.turn_ended(&turn_session);
                    }
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(err) => self.refuse(ctx, &err, named_id, client_msg_id.as_deref()),
        }
    }

    /// Logs why a frame was refused and answers it with an error frame.
    fn refuse(
        &self,
        ctx: &ConnCtx,
        err: &ChatError,
        session_id: Option<&str>,
        client_msg_id: Option<&str>,
    ) {
        match err {
            ChatError::Store(e) => {
                tracing::error!(conn = ctx.conn_id, error = %e, "store failure")
            }
            other => tracing::debug!(conn = ctx.conn_id, error = %other, "frame refused"),
        }
        self.reply_error(ctx, err, session_id, client_msg_id);
    }

    /// Forgets per-connection state when a connection closes.
    pub fn disconnected(&self, ctx: &ConnCtx) {
        tracing::debug!(conn = ctx.conn_id, user_id = %ctx.identity().user_id, "connection closed");
    }

    /// Tells a user's open connections that a new one was refused by the per-user limit.
    pub fn notify_connection_limit(&self, user_id: &str) {
        let frame = frames::encode(&ServerMessage::Notification(Notification {
            session_id: None,
            content: "Connection limit reached. You have reached the maximum number of simultaneous connections. Close an existing connection to open a new one.".into(),
            sender: Sender::System,
            metadata: None,
            timestamp: frames::now(),
        }));
        self.bus.publish(BusMessage {
            target: Target::User(user_id.to_string()),
            frame,
            except: None,
        });
    }

    /// Sends one frame to one connection.
    fn send(&self, ctx: &ConnCtx, message: &ServerMessage) {
        self.bus
            .send_to(ctx.conn_id, Outbound::Text(frames::encode(message)));
    }

    fn reply_error(
        &self,
        ctx: &ConnCtx,
        err: &ChatError,
        session_id: Option<&str>,
        client_msg_id: Option<&str>,
    ) {
        self.metrics.message_errors.inc();
        if let ChatError::RateLimited(_) = err {
            self.metrics
                .ratelimit_blocked
                .with_label_values(&["message"])
                .inc();
        }
        self.send(ctx, &frames::error(err, session_id, client_msg_id, None));
    }
}

/// The outcome of a frame that starts no turn.
fn no_turn(result: Result<(), ChatError>) -> Result<Option<turns::PendingTurn>, ChatError> {
    result.map(|()| None)
}
