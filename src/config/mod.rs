//! Configuration: a TOML file (`--config` or `CHATBOX_CONFIG`) overlaid by environment variables, validated
//! once at startup into [`Settings`]. Unknown keys are refused by name; secrets stay in secrecy types;
//! `CHATBOX_ENV=production` refuses development defaults and weak secrets.
//!
//! This module assembles the sections: the server's own (`server`, `auth`, `ws`, `chat`, `http`, `log`)
//! and those of `llm` (with `transcription`), `store`, `notify`, `redis` and `uploads`, which own their
//! settings types and validation. All of them are built with [`crate::settings_kit`], the leaf that holds
//! the shared pieces, so the dependencies run one way: `config -> llm/notify/store/files -> settings_kit`.

mod auth;
mod chat;
mod http;
mod jwt_secret;
mod log;
mod raw;
mod server;
mod ws;

use std::path::{Path, PathBuf};

pub use auth::AuthSettings;
pub use chat::ChatSettings;
pub use http::HttpSettings;
pub use jwt_secret::check_jwt_secret;
pub use log::LogSettings;
pub use raw::RawConfig;
pub use server::{Environment, ServerSettings};
pub use ws::WsSettings;

pub use crate::settings_kit::{
    ConfigError, EnvVars, PLACEHOLDER_MARKERS, contains_placeholder, create_private_dir,
    parse_duration,
};

use crate::cluster::RedisConfig;
use crate::files::UploadsConfig;
use crate::llm::{LlmConfig, TranscriptionConfig};
use crate::notify::NotifyConfig;
use crate::store::StoreConfig;

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
    /// Voice transcription (`[transcription]`); build the client with
    /// [`Transcriber::from_config`](crate::llm::Transcriber::from_config), `None` when not configured.
    pub transcription: TranscriptionConfig,
    /// Storage.
    pub store: StoreConfig,
    /// Help-request notifications (`[notification]`).
    pub notify: NotifyConfig,
    /// Cluster mode (`[redis]`).
    pub redis: RedisConfig,
    /// Uploaded files (`[uploads]`).
    pub uploads: UploadsConfig,
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
