//! Logging setup: `tracing` with an env filter, JSON lines in production and readable text in development.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber; later calls (as in tests that build several apps) are ignored.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        // stdout carries the command output (the banner, `users export` JSON); logs go to stderr.
        .with_writer(std::io::stderr);
    let result = if settings.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // A subscriber may already be installed (tests); that one keeps logging.
    let _ = result;
}
