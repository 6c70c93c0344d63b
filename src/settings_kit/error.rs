//! The configuration boundary's error: every message names the key or variable at fault.

/// A configuration that cannot be loaded or is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this server (unknown keys are reported here by name).
    #[error("config file {path}: {message}")]
    Parse {
        /// Path of the file.
        path: String,
        /// What the parser reported, including the offending key.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// The config key or environment variable, e.g. `llm.providers[0].endpoint` or `JWT_SECRET`.
        key: String,
        /// Why it is refused.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
