//! The config file as written (`RawConfig`, every key optional, unknown keys refused) and its conversion,
//! with environment variables applied on top, into validated [`Settings`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use super::secrets::{check_jwt_secret, contains_placeholder, load_or_create_dev_secret};
use super::{
    AuthSettings, ChatSettings, ConfigError, EnvVars, Environment, HttpSettings, LogSettings,
    ServerSettings, Settings, WsSettings, parse_duration,
};
use crate::llm::LlmConfig;
use crate::notify::{NotifyConfig, SmsConfig};
use crate::store::StoreConfig;

/// A list given either as a TOML array or as one comma-separated string (the Go service's form).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringList {
    /// `["a", "b"]`
    List(Vec<String>),
    /// `"a,b"`
    Joined(String),
}

impl StringList {
    fn items(&self) -> Vec<String> {
        match self {
            Self::List(items) => items
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Self::Joined(text) => split_list(text),
        }
    }
}

/// A number written either as a TOML integer or as a string (the Go config has `max_message_size = "1048576"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    /// `1048576`
    Number(u64),
    /// `"1048576"`
    Text(String),
}

/// `[server]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    host: Option<String>,
    port: Option<u16>,
    env: Option<String>,
    data_dir: Option<PathBuf>,
    shutdown_grace: Option<String>,
}

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
    session_idle: Option<String>,
}

/// `[chatbox]`: the Go service's section, with the keys it read and the ones it documented.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatboxSection {
    path_prefix: Option<String>,
    jwt_secret: Option<SecretString>,
    jwt_public_key_file: Option<PathBuf>,
    encryption_key: Option<SecretString>,
    max_message_size: Option<NumberOrString>,
    llm_stream_timeout: Option<String>,
    reconnect_timeout: Option<String>,
    allowed_origins: Option<StringList>,
    cors_allowed_origins: Option<StringList>,
    trusted_proxies: Option<StringList>,
    metrics_allowed_networks: Option<StringList>,
    admin_rate_limit: Option<usize>,
    admin_rate_window: Option<String>,
    public_rate_limit: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_user: Option<usize>,
    rate_limit: Option<usize>,
    rate_limit_window: Option<String>,
    max_in_flight: Option<usize>,
    history_messages: Option<usize>,
    checkpoint_interval: Option<String>,
    help_rate_limit: Option<usize>,
    help_rate_window: Option<String>,
    websocket: Option<WebSocketSection>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    level: Option<String>,
    format: Option<String>,
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    chatbox: ChatboxSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    llm: LlmConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    notification: NotifyConfig,
    #[serde(default)]
    sms: SmsConfig,
}

/// Splits a comma-separated list, trimming items and dropping empty ones.
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Picks the environment variable if set, else the file value.
fn pick<T: Clone>(env: Option<T>, file: &Option<T>) -> Option<T> {
    env.or_else(|| file.clone())
}

fn duration_value(
    key: &str,
    env_value: Option<&str>,
    file: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match env_value.map(String::from).or_else(|| file.clone()) {
        Some(text) => parse_duration(&text).map_err(|e| ConfigError::invalid(key, e)),
        None => Ok(default),
    }
}

fn number_value(
    key: &str,
    env_value: Option<&str>,
    file: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match env_value {
        Some(text) => text.parse::<usize>().map_err(|_| {
            ConfigError::invalid(key, format!("must be a non-negative integer, got {text:?}"))
        }),
        None => Ok(file.unwrap_or(default)),
    }
}

fn networks(key: &str, items: Vec<String>) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::invalid(key, format!("{item:?} is not an IP network")))
        })
        .collect()
}

fn list_value(env_value: Option<&str>, file: &Option<StringList>, default: &str) -> Vec<String> {
    match (env_value, file) {
        (Some(text), _) => split_list(text),
        (None, Some(list)) => list.items(),
        (None, None) => split_list(default),
    }
}

const PRIVATE_NETWORKS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16";
const METRICS_NETWORKS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8";

impl RawConfig {
    /// Reads and parses a TOML config file; unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // The Go service's shipped file put the providers under `[chatbox.llm]`; say where they go.
            let go_layout = toml::from_str::<toml::Table>(text).ok().is_some_and(|table| {
                table
                    .get("chatbox")
                    .and_then(toml::Value::as_table)
                    .is_some_and(|c| c.contains_key("llm"))
            });
            if go_layout {
                return ConfigError::invalid(
                    "chatbox.llm",
                    "the Go service's [[chatbox.llm.providers]] layout is not read: move each provider to \
                     a top-level [[llm.providers]] table with the same keys (id, name, type, endpoint, \
                     apiKey, model); see docs/llm.md",
                );
            }
            ConfigError::Parse {
                path: "<inline>".into(),
                message: e.to_string().trim().to_string(),
            }
        })
    }

    /// Applies `env` over the file values, validates, and produces the settings.
    pub fn into_settings(mut self, env: &EnvVars) -> Result<Settings, ConfigError> {
        let environment =
            match pick(env.get("CHATBOX_ENV").map(String::from), &self.server.env).as_deref() {
                None | Some("development") | Some("dev") => Environment::Development,
                Some("production") | Some("prod") => Environment::Production,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        "CHATBOX_ENV",
                        format!("must be \"development\" or \"production\", got {other:?}"),
                    ));
                }
            };
        let production = environment == Environment::Production;
        let c = &self.chatbox;

        let data_dir = pick(
            env.get("CHATBOX_DATA_DIR").map(PathBuf::from),
            &self.server.data_dir,
        );
        let data_dir_chosen = data_dir.is_some();
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("data"));

        let server = ServerSettings {
            host: match pick(env.get("SERVER_HOST").map(String::from), &self.server.host) {
                Some(h) => h.parse().map_err(|_| {
                    ConfigError::invalid("SERVER_HOST", format!("{h:?} is not an IP address"))
                })?,
                None => IpAddr::from([0, 0, 0, 0]),
            },
            port: match env.get("SERVER_PORT") {
                Some(p) => p.parse().map_err(|_| {
                    ConfigError::invalid("SERVER_PORT", format!("{p:?} is not a port number"))
                })?,
                None => self.server.port.unwrap_or(8080),
            },
            path_prefix: normalise_prefix(
                pick(
                    env.get("CHATBOX_PATH_PREFIX").map(String::from),
                    &c.path_prefix,
                )
                .unwrap_or_else(|| "/chatbox".into()),
            )?,
            shutdown_grace: duration_value(
                "SHUTDOWN_TIMEOUT",
                env.get("SHUTDOWN_TIMEOUT"),
                &self.server.shutdown_grace,
                Duration::from_secs(30),
            )?,
        };

        let auth = self.auth_settings(env, production, &data_dir)?;

        let ws_section = c.websocket.clone().unwrap_or_default();
        let max_message_size = match (env.get("MAX_MESSAGE_SIZE"), &c.max_message_size) {
            (Some(text), _) => text.trim().parse::<usize>().ok(),
            (None, Some(NumberOrString::Text(text))) => text.trim().parse::<usize>().ok(),
            (None, Some(NumberOrString::Number(n))) => usize::try_from(*n).ok(),
            (None, None) => Some(1_048_576),
        }
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ConfigError::invalid("MAX_MESSAGE_SIZE", "must be a positive integer (bytes)")
        })?;

        let allowed_origins = list_value(env.get("WS_ALLOWED_ORIGINS"), &c.allowed_origins, "");
        if allowed_origins.iter().any(|o| contains_placeholder(o)) {
            return Err(ConfigError::invalid(
                "chatbox.allowed_origins",
                "contains a placeholder value",
            ));
        }
        if production && allowed_origins.is_empty() {
            return Err(ConfigError::invalid(
                "chatbox.allowed_origins",
                "must be set in production (WS_ALLOWED_ORIGINS; \"*\" allows every origin explicitly)",
            ));
        }
        let ws = WsSettings {
            max_message_size,
            allowed_origins,
            ping_period: duration_value(
                "chatbox.websocket.ping_period",
                env.get("WS_PING_PERIOD"),
                &ws_section.ping_period,
                Duration::from_secs(54),
            )?,
            pong_wait: duration_value(
                "chatbox.websocket.pong_wait",
                env.get("WS_PONG_WAIT"),
                &ws_section.pong_wait,
                Duration::from_secs(60),
            )?,
            write_wait: duration_value(
                "chatbox.websocket.write_wait",
                env.get("WS_WRITE_WAIT"),
                &ws_section.write_wait,
                Duration::from_secs(10),
            )?,
            read_buffer_size: number_value(
                "WS_READ_BUFFER_SIZE",
                env.get("WS_READ_BUFFER_SIZE"),
                ws_section.read_buffer_size,
                1024,
            )?,
            write_buffer_size: number_value(
                "WS_WRITE_BUFFER_SIZE",
                env.get("WS_WRITE_BUFFER_SIZE"),
                ws_section.write_buffer_size,
                1024,
            )?,
            max_backlog_bytes: number_value(
                "WS_MAX_BACKLOG_BYTES",
                env.get("WS_MAX_BACKLOG_BYTES"),
                ws_section.max_backlog_bytes,
                4 * 1024 * 1024,
            )?
            .max(1),
            max_backlog_age: duration_value(
                "chatbox.websocket.max_backlog_age",
                env.get("WS_MAX_BACKLOG_AGE"),
                &ws_section.max_backlog_age,
                Duration::from_secs(30),
            )?,
            deprecated_outbound_queue: match (
                env.get("WS_OUTBOUND_QUEUE"),
                ws_section.outbound_queue,
            ) {
                (None, None) => None,
                (text, file) => Some(number_value("WS_OUTBOUND_QUEUE", text, file, 0)?),
            },
            max_connections_per_user: number_value(
                "MAX_CONNECTIONS_PER_USER",
                env.get("MAX_CONNECTIONS_PER_USER"),
                c.max_connections_per_user,
                10,
            )?
            .max(1),
            max_connections: number_value(
                "MAX_CONNECTIONS",
                env.get("MAX_CONNECTIONS"),
                c.max_connections,
                10_000,
            )?
            .max(1),
            max_in_flight: number_value(
                "MAX_IN_FLIGHT",
                env.get("MAX_IN_FLIGHT"),
                c.max_in_flight,
                3,
            )?
            .max(1),
            message_rate_limit: number_value(
                "RATE_LIMIT",
                env.get("RATE_LIMIT"),
                c.rate_limit,
                100,
            )?,
            message_rate_window: duration_value(
                "RATE_LIMIT_WINDOW",
                env.get("RATE_LIMIT_WINDOW"),
                &c.rate_limit_window,
                Duration::from_secs(60),
            )?,
            replay_buffer: number_value(
                "WS_REPLAY_BUFFER",
                env.get("WS_REPLAY_BUFFER"),
                ws_section.replay_buffer,
                512,
            )?,
            session_idle: duration_value(
                "chatbox.websocket.session_idle",
                env.get("WS_SESSION_IDLE"),
                &ws_section.session_idle,
                Duration::from_secs(600),
            )?,
        };
        if ws.max_backlog_age.is_zero() {
            return Err(ConfigError::invalid(
                "chatbox.websocket.max_backlog_age",
                "must be longer than zero",
            ));
        }
        if ws.pong_wait <= ws.ping_period {
            return Err(ConfigError::invalid(
                "chatbox.websocket.pong_wait",
                "must be longer than ping_period",
            ));
        }

        let chat = ChatSettings {
            history_messages: number_value(
                "HISTORY_MESSAGES",
                env.get("HISTORY_MESSAGES"),
                c.history_messages,
                20,
            )?,
            help_rate_limit: number_value(
                "HELP_RATE_LIMIT",
                env.get("HELP_RATE_LIMIT"),
                c.help_rate_limit,
                5,
            )?,
            help_rate_window: duration_value(
                "chatbox.help_rate_window",
                env.get("HELP_RATE_WINDOW"),
                &c.help_rate_window,
                Duration::from_secs(300),
            )?,
            checkpoint_interval: duration_value(
                "chatbox.checkpoint_interval",
                env.get("CHECKPOINT_INTERVAL"),
                &c.checkpoint_interval,
                Duration::from_secs(2),
            )?,
        };
        if chat.checkpoint_interval.is_zero() {
            return Err(ConfigError::invalid(
                "chatbox.checkpoint_interval",
                "must be longer than zero",
            ));
        }
        // Accepted for compatibility with Go config files; the resume window is the replay buffer.
        duration_value(
            "chatbox.reconnect_timeout",
            env.get("RECONNECT_TIMEOUT"),
            &c.reconnect_timeout,
            Duration::from_secs(900),
        )?;

        let cors_allowed_origins =
            list_value(env.get("CORS_ALLOWED_ORIGINS"), &c.cors_allowed_origins, "");
        if cors_allowed_origins.iter().any(|o| contains_placeholder(o)) {
            return Err(ConfigError::invalid(
                "chatbox.cors_allowed_origins",
                "contains a placeholder value",
            ));
        }
        let http = HttpSettings {
            cors_allowed_origins,
            trusted_proxies: networks(
                "chatbox.trusted_proxies",
                list_value(
                    env.get("TRUSTED_PROXIES"),
                    &c.trusted_proxies,
                    PRIVATE_NETWORKS,
                ),
            )?,
            metrics_allowed_networks: networks(
                "chatbox.metrics_allowed_networks",
                list_value(
                    env.get("METRICS_ALLOWED_NETWORKS"),
                    &c.metrics_allowed_networks,
                    METRICS_NETWORKS,
                ),
            )?,
            admin_rate_limit: number_value(
                "ADMIN_RATE_LIMIT",
                env.get("ADMIN_RATE_LIMIT"),
                c.admin_rate_limit,
                20,
            )?,
            admin_rate_window: duration_value(
                "chatbox.admin_rate_window",
                env.get("ADMIN_RATE_WINDOW"),
                &c.admin_rate_window,
                Duration::from_secs(60),
            )?,
            public_rate_limit: number_value(
                "PUBLIC_RATE_LIMIT",
                env.get("PUBLIC_RATE_LIMIT"),
                c.public_rate_limit,
                60,
            )?,
        };

        let log = LogSettings {
            filter: env
                .get("RUST_LOG")
                .or_else(|| env.get("LOG_LEVEL"))
                .map(String::from)
                .or_else(|| self.log.level.clone())
                .unwrap_or_else(|| "info".into()),
            json: match pick(env.get("LOG_FORMAT").map(String::from), &self.log.format).as_deref() {
                None => production,
                Some("json") => true,
                Some("text") | Some("pretty") => false,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        "log.format",
                        format!("must be \"json\" or \"text\", got {other:?}"),
                    ));
                }
            },
        };

        // The Go service's key names, forwarded to the sections that own them.
        if let Some(key) = self.chatbox.encryption_key.take() {
            if contains_placeholder(secrecy::ExposeSecret::expose_secret(&key)) {
                return Err(ConfigError::invalid(
                    "chatbox.encryption_key",
                    "contains a placeholder value",
                ));
            }
            self.store.encryption_key.get_or_insert(key);
        }
        if let Some(text) = &self.chatbox.llm_stream_timeout {
            self.llm.turn_timeout = parse_duration(text)
                .map_err(|e| ConfigError::invalid("chatbox.llm_stream_timeout", e))?;
        }

        let mut llm = self.llm;
        llm.apply_env(env)?;
        llm.validate(production)?;
        let mut store = self.store;
        store.apply_env(env)?;
        store.validate(production)?;
        if production && store.mongo_uri.is_none() && !data_dir_chosen {
            // The embedded store is a deliberate single-node choice in production, never the accident of
            // a missing MONGO_URI writing to `./data` under whatever the working directory is.
            return Err(ConfigError::invalid(
                "MONGO_URI",
                "is required in production, or set CHATBOX_DATA_DIR to run on the embedded store",
            ));
        }
        // `[sms]` is the Go service's section for the provider account; the notifier owns it.
        let mut notify = NotifyConfig {
            sms: self.sms,
            ..self.notification
        };
        notify.apply_env(env)?;
        notify.validate(production)?;
        Ok(Settings {
            environment,
            data_dir,
            server,
            auth,
            ws,
            chat,
            http,
            log,
            llm,
            store,
            notify,
        })
    }

    fn auth_settings(
        &self,
        env: &EnvVars,
        production: bool,
        data_dir: &Path,
    ) -> Result<AuthSettings, ConfigError> {
        let jwt_public_key_pem = match pick(
            env.get("JWT_PUBLIC_KEY_FILE").map(PathBuf::from),
            &self.chatbox.jwt_public_key_file,
        ) {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid("JWT_PUBLIC_KEY_FILE", format!("{}: {e}", path.display()))
            })?),
            None => None,
        };
        let (key, secret) = match (env.get("JWT_SECRET"), &self.chatbox.jwt_secret) {
            (Some(value), _) => ("JWT_SECRET", Some(SecretString::from(value.to_string()))),
            (None, Some(value)) => ("chatbox.jwt_secret", Some(value.clone())),
            (None, None) => ("JWT_SECRET", None),
        };
        match secret {
            Some(secret) => {
                check_jwt_secret(key, &secret)?;
                Ok(AuthSettings {
                    jwt_secret: secret,
                    jwt_secret_generated: false,
                    jwt_public_key_pem,
                })
            }
            None if production => Err(ConfigError::invalid(
                key,
                "is required in production (at least 32 random bytes)",
            )),
            None => Ok(AuthSettings {
                jwt_secret: load_or_create_dev_secret(data_dir)?,
                jwt_secret_generated: true,
                jwt_public_key_pem,
            }),
        }
    }
}

/// Checks the path prefix: it must start with `/`; a trailing slash is removed.
fn normalise_prefix(prefix: String) -> Result<String, ConfigError> {
    let trimmed = prefix.trim().trim_end_matches('/').to_string();
    if !prefix.trim().starts_with('/') {
        return Err(ConfigError::invalid(
            "CHATBOX_PATH_PREFIX",
            "must start with \"/\"",
        ));
    }
    if trimmed.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return Err(ConfigError::invalid(
            "CHATBOX_PATH_PREFIX",
            "must be a plain path",
        ));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ";

    fn dev_env(dir: &Path) -> EnvVars {
        EnvVars::from_pairs([("CHATBOX_DATA_DIR", dir.display().to_string())])
    }

    #[test]
    fn the_go_layout_of_providers_points_to_llm_providers() {
        let text = "[[chatbox.llm.providers]]\nid = \"gpt\"\nname = \"GPT\"\ntype = \"openai\"\n";
        let err = RawConfig::from_toml(text).unwrap_err().to_string();
        assert!(err.starts_with("chatbox.llm:"), "{err}");
        assert!(err.contains("[[llm.providers]]"), "{err}");
    }

    #[test]
    fn defaults_match_the_go_service() {
        let dir = tempfile::tempdir().unwrap();
        let s = RawConfig::default()
            .into_settings(&dev_env(dir.path()))
            .unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.server.path_prefix, "/chatbox");
        assert_eq!(s.ws.max_message_size, 1_048_576);
        assert_eq!(s.ws.max_connections_per_user, 10);
        assert_eq!(s.ws.max_in_flight, 3);
        assert_eq!(s.ws.max_backlog_bytes, 4 * 1024 * 1024);
        assert_eq!(s.ws.max_backlog_age, Duration::from_secs(30));
        assert_eq!(s.ws.deprecated_outbound_queue, None);
        assert_eq!(s.ws.message_rate_limit, 100);
        assert_eq!(s.ws.ping_period, Duration::from_secs(54));
        assert_eq!(s.ws.pong_wait, Duration::from_secs(60));
        assert_eq!(s.http.admin_rate_limit, 20);
        assert_eq!(s.http.trusted_proxies.len(), 3);
        assert_eq!(s.http.metrics_allowed_networks.len(), 4);
        assert!(s.auth.jwt_secret_generated);
        assert!(!s.log.json);
    }

    #[test]
    fn the_backlog_limits_are_read_and_the_frame_queue_length_is_accepted_but_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawConfig::from_toml(
            "[chatbox.websocket]\noutbound_queue = 64\nmax_backlog_bytes = 65536\nmax_backlog_age = \"5s\"\n",
        )
        .unwrap();
        let s = raw.clone().into_settings(&dev_env(dir.path())).unwrap();
        assert_eq!(s.ws.max_backlog_bytes, 65536);
        assert_eq!(s.ws.max_backlog_age, Duration::from_secs(5));
        assert_eq!(s.ws.deprecated_outbound_queue, Some(64));
        let mut env = dev_env(dir.path());
        env.set("WS_MAX_BACKLOG_BYTES", "1024");
        env.set("WS_MAX_BACKLOG_AGE", "250ms");
        env.set("WS_OUTBOUND_QUEUE", "8");
        let s = raw.clone().into_settings(&env).unwrap();
        assert_eq!(s.ws.max_backlog_bytes, 1024);
        assert_eq!(s.ws.max_backlog_age, Duration::from_millis(250));
        assert_eq!(s.ws.deprecated_outbound_queue, Some(8));
        env.set("WS_OUTBOUND_QUEUE", "many");
        let err = raw.clone().into_settings(&env).unwrap_err().to_string();
        assert!(err.contains("WS_OUTBOUND_QUEUE"), "{err}");
        env.set("WS_OUTBOUND_QUEUE", "8");
        env.set("WS_MAX_BACKLOG_AGE", "0s");
        let err = raw.into_settings(&env).unwrap_err().to_string();
        assert!(err.contains("max_backlog_age"), "{err}");
    }

    #[test]
    fn the_go_sms_section_and_admin_phones_reach_the_notifier_with_the_environment_on_top() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let text = "[sms]\nprovider = \"twilio\"\naccountSID = \"AC0123456789abcdef0123456789abcdef\"\n\
                    authToken = \"file-token-7f3a\"\nfromNumber = \"+14155550100\"\n\
                    [notification]\nadminPhones = [\"+14155550101\", \"+447700900123\"]\n";
        let raw = RawConfig::from_toml(text).unwrap();
        let s = raw.clone().into_settings(&dev_env(dir.path())).unwrap();
        assert!(s.notify.sms_enabled());
        assert_eq!(s.notify.sms.from_number.as_deref(), Some("+14155550100"));
        assert_eq!(s.notify.admin_phones, ["+14155550101", "+447700900123"]);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("file-token-7f3a") && !debug.contains("AC0123456789"),
            "{debug}"
        );
        let mut env = dev_env(dir.path());
        env.set("SMS_AUTH_TOKEN", "env-token-9c1d");
        env.set("ADMIN_PHONES", "+4915123456789");
        let s = raw.into_settings(&env).unwrap();
        assert_eq!(
            s.notify.sms.auth_token.as_ref().unwrap().expose_secret(),
            "env-token-9c1d"
        );
        assert_eq!(s.notify.admin_phones, ["+4915123456789"]);
        let err = RawConfig::from_toml("[sms]\napiKey = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apiKey"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = RawConfig::from_toml("[chatbox]\nmax_conections = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        let err = RawConfig::from_toml("[nonsense]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawConfig::from_toml(
            "[server]\nport = 9000\n[chatbox]\npath_prefix = \"/chat\"\nmax_message_size = \"2048\"\nallowed_origins = \"https://a.example, https://b.example\"\n",
        )
        .unwrap();
        let mut env = dev_env(dir.path());
        env.set("SERVER_PORT", "9100");
        env.set("CHATBOX_PATH_PREFIX", "/api/chat/");
        let s = raw.into_settings(&env).unwrap();
        assert_eq!(s.server.port, 9100);
        assert_eq!(s.server.path_prefix, "/api/chat");
        assert_eq!(s.ws.max_message_size, 2048);
        assert_eq!(
            s.ws.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn production_refuses_development_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = dev_env(dir.path());
        env.set("CHATBOX_ENV", "production");
        let err = RawConfig::default()
            .into_settings(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
        env.set("JWT_SECRET", STRONG);
        let err = RawConfig::default()
            .into_settings(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed_origins"), "{err}");
    }

    #[test]
    fn production_needs_mongo_or_an_explicit_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().display().to_string();
        let production = [
            ("CHATBOX_ENV", "production"),
            ("JWT_SECRET", STRONG),
            ("WS_ALLOWED_ORIGINS", "https://chat.example"),
            ("ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef"),
            ("LLM_PROVIDER_1_ID", "gpt"),
            ("LLM_PROVIDER_1_NAME", "GPT"),
            ("LLM_PROVIDER_1_TYPE", "openai"),
            ("LLM_PROVIDER_1_ENDPOINT", "https://api.openai.com/v1"),
            ("LLM_PROVIDER_1_MODEL", "gpt-4o"),
            ("LLM_PROVIDER_1_API_KEY", "sk-live-4f8a9b2c7d1e6f3a5b8c9d0e"),
        ];
        let err = RawConfig::default()
            .into_settings(&EnvVars::from_pairs(production))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MONGO_URI"), "{err}");
        let with_dir = production
            .iter()
            .map(|&(k, v)| (k, v.to_string()))
            .chain([("CHATBOX_DATA_DIR", data_dir)]);
        let settings = RawConfig::default()
            .into_settings(&EnvVars::from_pairs(with_dir))
            .unwrap();
        assert!(settings.is_production());
        let with_mongo = production
            .iter()
            .map(|&(k, v)| (k, v.to_string()))
            .chain([("MONGO_URI", "mongodb://db.internal:27017".to_string())]);
        assert!(
            RawConfig::default()
                .into_settings(&EnvVars::from_pairs(with_mongo))
                .is_ok()
        );
    }

    #[test]
    fn weak_configured_secrets_are_refused_in_every_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = dev_env(dir.path());
        env.set(
            "JWT_SECRET",
            "local-development-secret-change-in-production",
        );
        let err = RawConfig::default()
            .into_settings(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = dev_env(dir.path());
        env.set("MAX_MESSAGE_SIZE", "-5");
        assert!(
            RawConfig::default()
                .into_settings(&env)
                .unwrap_err()
                .to_string()
                .contains("MAX_MESSAGE_SIZE")
        );
        let raw = RawConfig::from_toml("[chatbox]\nllm_stream_timeout = \"soon\"\n").unwrap();
        let err = raw
            .into_settings(&dev_env(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("llm_stream_timeout"), "{err}");
        let raw = RawConfig::from_toml("[chatbox]\npath_prefix = \"chatbox\"\n").unwrap();
        assert!(raw.into_settings(&dev_env(dir.path())).is_err());
        let raw = RawConfig::from_toml("[chatbox]\ntrusted_proxies = [\"not-a-net\"]\n").unwrap();
        let err = raw
            .into_settings(&dev_env(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trusted_proxies"), "{err}");
    }
}
