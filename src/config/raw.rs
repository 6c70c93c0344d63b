//! The config file as written (`RawConfig`, every key optional, unknown keys refused) and its assembly,
//! with environment variables applied on top, into validated [`Settings`]: each section builds and checks
//! itself (`server`, `auth`, `ws`, `chat`, `http`, `log` here; `llm`, `store` and `notify` in their
//! modules); this file forwards the Go service's key names and adds the checks that span sections.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::log::LogSection;
use super::server::ServerSection;
use super::ws::WebSocketSection;
use super::{
    AuthSettings, ChatSettings, Environment, HttpSettings, LogSettings, ServerSettings, Settings,
    WsSettings,
};
use crate::cluster::RedisConfig;
use crate::files::UploadsConfig;
use crate::llm::{LlmConfig, TranscriptionConfig};
use crate::notify::{NotifyConfig, SmsConfig};
use crate::settings_kit::{ConfigError, EnvVars, de, ensure, no_placeholder, parse_duration};
use crate::store::StoreConfig;

/// A number written either as a TOML integer or as a string (the Go config has `max_message_size = "1048576"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    /// `1048576`
    Number(u64),
    /// `"1048576"`
    Text(String),
}

/// `[chatbox]`: the Go service's section, with the keys it read and the ones it documented.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatboxSection {
    pub(super) path_prefix: Option<String>,
    pub(super) jwt_secret: Option<SecretString>,
    pub(super) jwt_public_key_file: Option<PathBuf>,
    pub(super) encryption_key: Option<SecretString>,
    pub(super) max_message_size: Option<NumberOrString>,
    pub(super) llm_stream_timeout: Option<String>,
    pub(super) reconnect_timeout: Option<String>,
    #[serde(default, deserialize_with = "de::option_list")]
    pub(super) allowed_origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::option_list")]
    pub(super) cors_allowed_origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::option_list")]
    pub(super) trusted_proxies: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::option_list")]
    pub(super) metrics_allowed_networks: Option<Vec<String>>,
    pub(super) admin_rate_limit: Option<usize>,
    pub(super) admin_rate_window: Option<String>,
    pub(super) public_rate_limit: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_user: Option<usize>,
    pub(super) rate_limit: Option<usize>,
    pub(super) rate_limit_window: Option<String>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) history_messages: Option<usize>,
    pub(super) checkpoint_interval: Option<String>,
    pub(super) help_rate_limit: Option<usize>,
    pub(super) help_rate_window: Option<String>,
    pub(super) websocket: Option<WebSocketSection>,
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
    transcription: TranscriptionConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    notification: NotifyConfig,
    #[serde(default)]
    sms: SmsConfig,
    #[serde(default)]
    redis: RedisConfig,
    #[serde(default)]
    uploads: UploadsConfig,
}

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
        let environment = self.server.environment(env)?;
        let production = environment == Environment::Production;
        let chosen_data_dir = self.server.data_dir(env);
        let data_dir = chosen_data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"));
        let c = &self.chatbox;
        let server = ServerSettings::build(env, &self.server, c)?;
        let auth = AuthSettings::build(env, c, production, &data_dir)?;
        let ws = WsSettings::build(env, c, production)?;
        let chat = ChatSettings::build(env, c)?;
        let http = HttpSettings::build(env, c)?;
        let log = LogSettings::build(env, &self.log, production)?;
        self.forward_go_keys()?;

        let mut llm = self.llm;
        llm.apply_env(env)?;
        llm.validate(production)?;
        let mut transcription = self.transcription;
        transcription.apply_env(env)?;
        transcription.validate(production)?;
        let mut store = self.store;
        store.apply_env(env)?;
        store.validate(production)?;
        // The embedded store is a deliberate single-node choice in production, never the accident of a
        // missing MONGO_URI writing to `./data` under whatever the working directory is.
        ensure(
            !(production && store.mongo_uri.is_none() && chosen_data_dir.is_none()),
            "MONGO_URI",
            "is required in production, or set CHATBOX_DATA_DIR to run on the embedded store",
        )?;
        let mut redis = self.redis;
        redis.apply_env(env)?;
        redis.validate(store.mongo_uri.is_some())?;
        let mut uploads = self.uploads;
        uploads.apply_env(env)?;
        uploads.validate(production)?;
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
            transcription,
            store,
            notify,
            redis,
            uploads,
        })
    }

    /// Moves the Go service's `[chatbox]` keys for other sections to the sections that own them.
    fn forward_go_keys(&mut self) -> Result<(), ConfigError> {
        if let Some(key) = self.chatbox.encryption_key.take() {
            no_placeholder("chatbox.encryption_key", key.expose_secret())?;
            self.store.encryption_key.get_or_insert(key);
        }
        if let Some(text) = &self.chatbox.llm_stream_timeout {
            self.llm.turn_timeout = parse_duration(text)
                .map_err(|e| ConfigError::invalid("chatbox.llm_stream_timeout", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert_eq!(s.ws.replay_buffer, 512);
        assert_eq!(s.ws.replay_bytes, 16 * 1024);
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
    fn the_backlog_and_replay_limits_are_read_and_the_frame_queue_length_is_accepted_but_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawConfig::from_toml(
            "[chatbox.websocket]\noutbound_queue = 64\nmax_backlog_bytes = 65536\nmax_backlog_age = \"5s\"\nreplay_bytes = 4096\n",
        )
        .unwrap();
        let s = raw.clone().into_settings(&dev_env(dir.path())).unwrap();
        assert_eq!(s.ws.max_backlog_bytes, 65536);
        assert_eq!(s.ws.replay_bytes, 4096);
        assert_eq!(s.ws.max_backlog_age, Duration::from_secs(5));
        assert_eq!(s.ws.deprecated_outbound_queue, Some(64));
        let mut env = dev_env(dir.path());
        env.set("WS_MAX_BACKLOG_BYTES", "1024");
        env.set("WS_MAX_BACKLOG_AGE", "250ms");
        env.set("WS_OUTBOUND_QUEUE", "8");
        env.set("WS_REPLAY_BYTES", "2048");
        let s = raw.clone().into_settings(&env).unwrap();
        assert_eq!(s.ws.replay_bytes, 2048);
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
    fn transcription_is_off_by_default_and_configured_by_file_and_environment() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let s = RawConfig::default()
            .into_settings(&dev_env(dir.path()))
            .unwrap();
        assert!(!s.transcription.enabled());
        let raw = RawConfig::from_toml(
            "[transcription]\nurl = \"https://api.openai.com/v1\"\napiKey = \"sk-file-3b7c\"\n",
        )
        .unwrap();
        let s = raw.clone().into_settings(&dev_env(dir.path())).unwrap();
        assert!(s.transcription.enabled());
        assert_eq!(s.transcription.model, "whisper-1");
        assert!(!format!("{s:?}").contains("sk-file-3b7c"));
        let mut env = dev_env(dir.path());
        env.set("TRANSCRIPTION_API_KEY", "sk-env-8d1a");
        env.set("TRANSCRIPTION_MODEL", "whisper-large-v3");
        let s = raw.clone().into_settings(&env).unwrap();
        let key = s.transcription.api_key.as_ref().unwrap().expose_secret();
        assert_eq!(key, "sk-env-8d1a");
        assert_eq!(s.transcription.model, "whisper-large-v3");
        env.set("TRANSCRIPTION_URL", "http://api.example.com/v1");
        let err = raw.into_settings(&env).unwrap_err().to_string();
        assert!(err.starts_with("transcription.url:"), "{err}");
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
