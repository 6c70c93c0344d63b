//! Configuration: a TOML file (`--config` or `CHATBOX_CONFIG`) overlaid by environment variables, validated
//! once at startup into [`Settings`]. Unknown keys are refused by name; secrets stay in secrecy types;
//! `CHATBOX_ENV=production` refuses development defaults and weak secrets.

mod duration;
mod env;
mod error;
mod raw;
mod secrets;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

pub use duration::parse_duration;
pub use env::EnvVars;
pub use error::ConfigError;
pub use raw::RawConfig;
pub use secrets::{
    PLACEHOLDER_MARKERS, check_jwt_secret, contains_placeholder, create_private_dir,
};

use crate::llm::LlmConfig;
use crate::notify::NotifyConfig;
use crate::store::StoreConfig;

/// Where the server runs: development allows generated secrets and open origins, production does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The zero-config default.
    Development,
    /// `CHATBOX_ENV=production` (or `server.env = "production"`).
    Production,
}

/// HTTP listener and routing.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to bind (`SERVER_HOST`, default `0.0.0.0`).
    pub host: IpAddr,
    /// Port to bind (`SERVER_PORT`, default 8080; 0 picks a free port).
    pub port: u16,
    /// Prefix of every route (`CHATBOX_PATH_PREFIX`, default `/chatbox`), without a trailing slash.
    pub path_prefix: String,
    /// How long running turns may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// Token verification.
#[derive(Clone)]
pub struct AuthSettings {
    /// HMAC secret for HS256/384/512 tokens.
    pub jwt_secret: SecretString,
    /// Whether the secret was generated for development (printed tokens are then offered).
    pub jwt_secret_generated: bool,
    /// PEM public key enabling RS256 or ES256 tokens (`JWT_PUBLIC_KEY_FILE`).
    pub jwt_public_key_pem: Option<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"[REDACTED]")
            .field("jwt_secret_generated", &self.jwt_secret_generated)
            .field("jwt_public_key_pem", &self.jwt_public_key_pem.is_some())
            .finish()
    }
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
    /// How long a session's live state (replay ring, seq counter) stays in memory once nothing uses it
    /// (no connection of its user, no watching admin, no turn, no assistant); reserved session ids of users
    /// without a connection expire after it too.
    pub session_idle: Duration,
}

/// Chat behaviour.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// How many earlier messages of the session are sent to the model with each turn.
    pub history_messages: usize,
    /// Help-request notifications allowed per session per window.
    pub help_rate_limit: usize,
    /// Window of `help_rate_limit`.
    pub help_rate_window: Duration,
    /// How often the answer being streamed is stored as it stands (marked partial), so a crash loses at
    /// most this much of it.
    pub checkpoint_interval: Duration,
}

/// HTTP API protections.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// CORS origins; empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// Networks allowed to read `{P}/metrics/prometheus`; empty allows all.
    pub metrics_allowed_networks: Vec<IpNet>,
    /// Admin requests per admin per window.
    pub admin_rate_limit: usize,
    /// Window of `admin_rate_limit`.
    pub admin_rate_window: Duration,
    /// Public requests per client IP per minute.
    pub public_rate_limit: usize,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `tracing` filter directive, e.g. `info` or `chatbox=debug,info` (`RUST_LOG` or `LOG_LEVEL`).
    pub filter: String,
    /// JSON lines (default in production) or human-readable text.
    pub json: bool,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Development or production.
    pub environment: Environment,
    /// Directory of the embedded store and generated development secrets (`CHATBOX_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Listener and routing.
    pub server: ServerSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// WebSocket transport.
    pub ws: WsSettings,
    /// Chat behaviour.
    pub chat: ChatSettings,
    /// HTTP protections.
    pub http: HttpSettings,
    /// Logging.
    pub log: LogSettings,
    /// LLM providers.
    pub llm: LlmConfig,
    /// Storage.
    pub store: StoreConfig,
    /// Help-request notifications (`[notification]`).
    pub notify: NotifyConfig,
}

impl Settings {
    /// Loads the file named by `path` (or by `CHATBOX_CONFIG`), overlays `env` and validates the result.
    pub fn load(path: Option<&Path>, env: &EnvVars) -> Result<Self, ConfigError> {
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| env.get("CHATBOX_CONFIG").map(PathBuf::from))
            .or_else(|| env.get("RMBASE_FILE_CFG").map(PathBuf::from));
        let raw = match path {
            Some(path) => RawConfig::from_file(&path)?,
            None => RawConfig::default(),
        };
        raw.into_settings(env)
    }

    /// True in production.
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A config file in `dir` setting the port, and its path.
    fn file(dir: &Path, name: &str, port: u16) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("[server]\nport = {port}\n")).unwrap();
        path
    }

    #[test]
    fn the_file_comes_from_the_flag_then_chatbox_config_then_rmbase_file_cfg() {
        let dir = tempfile::tempdir().unwrap();
        let flag = file(dir.path(), "flag.toml", 9001);
        let chatbox = file(dir.path(), "chatbox.toml", 9002);
        let go = file(dir.path(), "go.toml", 9003);
        let data = dir.path().display().to_string();
        let env = |pairs: &[(&str, &Path)]| {
            EnvVars::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.display().to_string()))
                    .chain([("CHATBOX_DATA_DIR".to_string(), data.clone())]),
            )
        };
        let all = env(&[("CHATBOX_CONFIG", &chatbox), ("RMBASE_FILE_CFG", &go)]);
        let port =
            |path: Option<&Path>, env: &EnvVars| Settings::load(path, env).unwrap().server.port;
        assert_eq!(port(Some(&flag), &all), 9001);
        assert_eq!(port(None, &all), 9002);
        assert_eq!(port(None, &env(&[("RMBASE_FILE_CFG", &go)])), 9003);
        assert_eq!(port(None, &env(&[])), 8080);
        // The environment wins over the file.
        let overridden = EnvVars::from_pairs([
            ("CHATBOX_DATA_DIR", data.clone()),
            ("SERVER_PORT", "9100".to_string()),
        ]);
        assert_eq!(port(Some(&flag), &overridden), 9100);
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvVars::from_pairs([("CHATBOX_DATA_DIR", dir.path().display().to_string())]);
        let missing = dir.path().join("missing.toml");
        let err = Settings::load(Some(&missing), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "[server\nport = ").unwrap();
        let err = Settings::load(Some(&broken), &env).unwrap_err().to_string();
        assert!(err.contains("broken.toml"), "{err}");
    }
}
