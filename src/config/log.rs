//! `[log]`: the `tracing` filter and the output format.

use serde::Deserialize;

use crate::settings_kit::{ConfigError, EnvVars, var_or};

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    level: Option<String>,
    format: Option<String>,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `tracing` filter directive, e.g. `info` or `chatbox=debug,info` (`RUST_LOG` or `LOG_LEVEL`).
    pub filter: String,
    /// JSON lines (default in production) or human-readable text.
    pub json: bool,
}

impl LogSettings {
    /// Reads `[log]` with its variables; the format defaults to JSON in production.
    pub(super) fn build(
        env: &EnvVars,
        log: &LogSection,
        production: bool,
    ) -> Result<Self, ConfigError> {
        let filter = env
            .get("RUST_LOG")
            .or_else(|| env.get("LOG_LEVEL"))
            .or(log.level.as_deref())
            .unwrap_or("info")
            .to_string();
        let json = match var_or(env, "LOG_FORMAT", log.format.as_deref()).as_deref() {
            None => production,
            Some("json") => true,
            Some("text") | Some("pretty") => false,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("must be \"json\" or \"text\", got {other:?}"),
                ));
            }
        };
        Ok(Self { filter, json })
    }
}
