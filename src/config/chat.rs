//! The chat behaviour keys of `[chatbox]`: history sent to the model, help-request limits, checkpoints.

use std::time::Duration;

use super::raw::ChatboxSection;
use crate::settings_kit::{ConfigError, EnvVars, count_setting, duration_setting, ensure};

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

impl ChatSettings {
    /// Reads the chat keys of `[chatbox]` with their variables, and checks them.
    pub(super) fn build(env: &EnvVars, c: &ChatboxSection) -> Result<Self, ConfigError> {
        let chat = Self {
            history_messages: count_setting(env, "HISTORY_MESSAGES", c.history_messages, 20)?,
            help_rate_limit: count_setting(env, "HELP_RATE_LIMIT", c.help_rate_limit, 5)?,
            help_rate_window: duration_setting(
                env,
                "HELP_RATE_WINDOW",
                "chatbox.help_rate_window",
                c.help_rate_window.as_deref(),
                Duration::from_secs(300),
            )?,
            checkpoint_interval: duration_setting(
                env,
                "CHECKPOINT_INTERVAL",
                "chatbox.checkpoint_interval",
                c.checkpoint_interval.as_deref(),
                Duration::from_secs(2),
            )?,
        };
        ensure(
            !chat.checkpoint_interval.is_zero(),
            "chatbox.checkpoint_interval",
            "must be longer than zero",
        )?;
        // Accepted for compatibility with Go config files; the resume window is the replay buffer.
        duration_setting(
            env,
            "RECONNECT_TIMEOUT",
            "chatbox.reconnect_timeout",
            c.reconnect_timeout.as_deref(),
            Duration::from_secs(900),
        )?;
        Ok(chat)
    }
}
