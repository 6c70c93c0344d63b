//! `[server]`: where the server runs (environment, data directory) and its listener and routing.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::raw::ChatboxSection;
use crate::settings_kit::{ConfigError, EnvVars, duration_setting, ensure, var_or};

/// Where the server runs: development allows generated secrets and open origins, production does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The zero-config default.
    Development,
    /// `CHATBOX_ENV=production` (or `server.env = "production"`).
    Production,
}

/// `[server]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) env: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) shutdown_grace: Option<String>,
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

impl ServerSection {
    /// `CHATBOX_ENV` or `server.env`: development unless it says production.
    pub(super) fn environment(&self, env: &EnvVars) -> Result<Environment, ConfigError> {
        match var_or(env, "CHATBOX_ENV", self.env.as_deref()).as_deref() {
            None | Some("development") | Some("dev") => Ok(Environment::Development),
            Some("production") | Some("prod") => Ok(Environment::Production),
            Some(other) => Err(ConfigError::invalid(
                "CHATBOX_ENV",
                format!("must be \"development\" or \"production\", got {other:?}"),
            )),
        }
    }

    /// `CHATBOX_DATA_DIR` or `server.data_dir`, if chosen (the default `./data` is the caller's).
    pub(super) fn data_dir(&self, env: &EnvVars) -> Option<PathBuf> {
        env.get("CHATBOX_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| self.data_dir.clone())
    }
}

impl ServerSettings {
    /// Reads `[server]`, `chatbox.path_prefix` and their variables.
    pub(super) fn build(
        env: &EnvVars,
        server: &ServerSection,
        chatbox: &ChatboxSection,
    ) -> Result<Self, ConfigError> {
        let host = match var_or(env, "SERVER_HOST", server.host.as_deref()) {
            Some(h) => h.parse().map_err(|_| {
                ConfigError::invalid("SERVER_HOST", format!("{h:?} is not an IP address"))
            })?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        let port = match env.get("SERVER_PORT") {
            Some(p) => p.parse().map_err(|_| {
                ConfigError::invalid("SERVER_PORT", format!("{p:?} is not a port number"))
            })?,
            None => server.port.unwrap_or(8080),
        };
        let prefix = var_or(env, "CHATBOX_PATH_PREFIX", chatbox.path_prefix.as_deref());
        Ok(Self {
            host,
            port,
            path_prefix: normalise_prefix(&prefix.unwrap_or_else(|| "/chatbox".into()))?,
            shutdown_grace: duration_setting(
                env,
                "SHUTDOWN_TIMEOUT",
                "SHUTDOWN_TIMEOUT",
                server.shutdown_grace.as_deref(),
                Duration::from_secs(30),
            )?,
        })
    }
}

/// Checks the path prefix: it must start with `/`; a trailing slash is removed.
fn normalise_prefix(prefix: &str) -> Result<String, ConfigError> {
    let trimmed = prefix.trim().trim_end_matches('/').to_string();
    ensure(
        prefix.trim().starts_with('/'),
        "CHATBOX_PATH_PREFIX",
        "must start with \"/\"",
    )?;
    ensure(
        !trimmed.contains(|c: char| c.is_whitespace() || c == '?' || c == '#'),
        "CHATBOX_PATH_PREFIX",
        "must be a plain path",
    )?;
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_starts_with_a_slash_and_loses_its_trailing_one() {
        assert_eq!(
            normalise_prefix(" /api/chat/ ").ok().as_deref(),
            Some("/api/chat")
        );
        assert!(normalise_prefix("chatbox").is_err());
        assert!(normalise_prefix("/chat box").is_err());
        assert!(normalise_prefix("/chat?x").is_err());
    }
}
