//! `[chatbox.websocket]` and the connection limits of `[chatbox]`: the WebSocket transport's settings.

use std::time::Duration;

use serde::Deserialize;

use super::raw::{ChatboxSection, NumberOrString};
use crate::settings_kit::{
    ConfigError, EnvVars, count_setting, duration_setting, ensure, list_setting, no_placeholder,
};

/// `[chatbox.websocket]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSection {
    read_buffer_size: Option<usize>,
    write_buffer_size: Option<usize>,
    pong_wait: Option<String>,
    ping_period: Option<String>,
    write_wait: Option<String>,
    outbound_queue: Option<usize>,
    max_backlog_bytes: Option<usize>,
    max_backlog_age: Option<String>,
    replay_buffer: Option<usize>,
    replay_bytes: Option<usize>,
    session_idle: Option<String>,
}

/// WebSocket transport limits and timers.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Largest inbound frame in bytes (`MAX_MESSAGE_SIZE`, default 1 MiB); larger frames close with 1009.
    pub max_message_size: usize,
    /// Allowed `Origin` values; empty allows every origin (development only); `*` allows every origin.
    pub allowed_origins: Vec<String>,
    /// Interval between protocol pings.
    pub ping_period: Duration,
    /// How long to wait for a pong before closing.
    pub pong_wait: Duration,
    /// Deadline for writing a close frame (slow consumer, shutdown, size limit) before the socket is dropped.
    pub write_wait: Duration,
    /// Read buffer size per connection in bytes.
    pub read_buffer_size: usize,
    /// Write buffer size per connection in bytes.
    pub write_buffer_size: usize,
    /// Bytes a connection's outbound backlog may hold behind the frame its writer sends next before the
    /// connection is closed with 1013 (`WS_MAX_BACKLOG_BYTES`, default 4 MiB).
    pub max_backlog_bytes: usize,
    /// How long a frame may wait for the writer, or the writer stay blocked on one frame, before the
    /// connection is closed with 1013 (`WS_MAX_BACKLOG_AGE`, default 30 s).
    pub max_backlog_age: Duration,
    /// The deprecated `outbound_queue` (`WS_OUTBOUND_QUEUE`, frames) when it is set: accepted so that old
    /// configurations still load, ignored (the backlog is bounded by bytes and age); start-up warns.
    pub deprecated_outbound_queue: Option<usize>,
    /// Concurrent connections per user.
    pub max_connections_per_user: usize,
    /// Concurrent connections on this node.
    pub max_connections: usize,
    /// Messages being processed at once per connection.
    pub max_in_flight: usize,
    /// `user_message` frames allowed per user per window.
    pub message_rate_limit: usize,
    /// The window of `message_rate_limit`.
    pub message_rate_window: Duration,
    /// Session frames kept in memory per session for resume.
    pub replay_buffer: usize,
    /// Bytes of frame text kept in memory per session for resume, whatever their count
    /// (`WS_REPLAY_BYTES`, default 16 KiB): bounds the memory of a live session. A resume from before
    /// the ring is served from the stored messages (`resync`), so this trades memory for exact replays of
    /// transient events, never messages.
    pub replay_bytes: usize,
    /// How long a session's live state (replay ring, seq counter) stays in memory once nothing uses it
    /// (no connection of its user, no watching admin, no turn, no assistant); reserved session ids of users
    /// without a connection expire after it too.
    pub session_idle: Duration,
}

impl WsSettings {
    /// Reads `[chatbox]`'s transport keys and `[chatbox.websocket]` with their variables, and checks them;
    /// `production` requires the allowed origins to be set.
    pub(super) fn build(
        env: &EnvVars,
        c: &ChatboxSection,
        production: bool,
    ) -> Result<Self, ConfigError> {
        let w = c.websocket.clone().unwrap_or_default();
        let max_message_size = max_message_size(env, c.max_message_size.as_ref())?;
        let allowed_origins =
            list_setting(env, "WS_ALLOWED_ORIGINS", c.allowed_origins.as_deref(), "");
        for origin in &allowed_origins {
            no_placeholder("chatbox.allowed_origins", origin)?;
        }
        ensure(
            !(production && allowed_origins.is_empty()),
            "chatbox.allowed_origins",
            "must be set in production (WS_ALLOWED_ORIGINS; \"*\" allows every origin explicitly)",
        )?;
        let secs = Duration::from_secs;
        let ws = Self {
            max_message_size,
            allowed_origins,
            ping_period: duration_setting(
                env,
                "WS_PING_PERIOD",
                "chatbox.websocket.ping_period",
                w.ping_period.as_deref(),
                secs(54),
            )?,
            pong_wait: duration_setting(
                env,
                "WS_PONG_WAIT",
                "chatbox.websocket.pong_wait",
                w.pong_wait.as_deref(),
                secs(60),
            )?,
            write_wait: duration_setting(
                env,
                "WS_WRITE_WAIT",
                "chatbox.websocket.write_wait",
                w.write_wait.as_deref(),
                secs(10),
            )?,
            read_buffer_size: count_setting(env, "WS_READ_BUFFER_SIZE", w.read_buffer_size, 1024)?,
            write_buffer_size: count_setting(
                env,
                "WS_WRITE_BUFFER_SIZE",
                w.write_buffer_size,
                1024,
            )?,
            max_backlog_bytes: count_setting(
                env,
                "WS_MAX_BACKLOG_BYTES",
                w.max_backlog_bytes,
                4 * 1024 * 1024,
            )?
            .max(1),
            max_backlog_age: duration_setting(
                env,
                "WS_MAX_BACKLOG_AGE",
                "chatbox.websocket.max_backlog_age",
                w.max_backlog_age.as_deref(),
                secs(30),
            )?,
            deprecated_outbound_queue: match (env.get("WS_OUTBOUND_QUEUE"), w.outbound_queue) {
                (None, None) => None,
                (_, file) => Some(count_setting(env, "WS_OUTBOUND_QUEUE", file, 0)?),
            },
            max_connections_per_user: count_setting(
                env,
                "MAX_CONNECTIONS_PER_USER",
                c.max_connections_per_user,
                10,
            )?
            .max(1),
            max_connections: count_setting(env, "MAX_CONNECTIONS", c.max_connections, 10_000)?
                .max(1),
            max_in_flight: count_setting(env, "MAX_IN_FLIGHT", c.max_in_flight, 3)?.max(1),
            message_rate_limit: count_setting(env, "RATE_LIMIT", c.rate_limit, 100)?,
            message_rate_window: duration_setting(
                env,
                "RATE_LIMIT_WINDOW",
                "RATE_LIMIT_WINDOW",
                c.rate_limit_window.as_deref(),
                secs(60),
            )?,
            replay_buffer: count_setting(env, "WS_REPLAY_BUFFER", w.replay_buffer, 512)?,
            replay_bytes: count_setting(env, "WS_REPLAY_BYTES", w.replay_bytes, 16 * 1024)?,
            session_idle: duration_setting(
                env,
                "WS_SESSION_IDLE",
                "chatbox.websocket.session_idle",
                w.session_idle.as_deref(),
                secs(600),
            )?,
        };
        ensure(
            !ws.max_backlog_age.is_zero(),
            "chatbox.websocket.max_backlog_age",
            "must be longer than zero",
        )?;
        ensure(
            ws.pong_wait > ws.ping_period,
            "chatbox.websocket.pong_wait",
            "must be longer than ping_period",
        )?;
        Ok(ws)
    }
}

/// `MAX_MESSAGE_SIZE` or `chatbox.max_message_size` (a number, or a string as in the Go file): positive.
fn max_message_size(env: &EnvVars, file: Option<&NumberOrString>) -> Result<usize, ConfigError> {
    match (env.get("MAX_MESSAGE_SIZE"), file) {
        (Some(text), _) => text.trim().parse::<usize>().ok(),
        (None, Some(NumberOrString::Text(text))) => text.trim().parse::<usize>().ok(),
        (None, Some(NumberOrString::Number(n))) => usize::try_from(*n).ok(),
        (None, None) => Some(1_048_576),
    }
    .filter(|n| *n > 0)
    .ok_or_else(|| ConfigError::invalid("MAX_MESSAGE_SIZE", "must be a positive integer (bytes)"))
}
