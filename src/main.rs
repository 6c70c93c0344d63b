//! The `chatbox` binary: parses the command line, loads the configuration, sets up logging and runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use chatbox::config::{EnvVars, Settings};

/// Self-hosted backend for chatting with LLMs over WebSocket.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (also `CHATBOX_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = EnvVars::from_process();
    let settings = Settings::load(cli.config.as_deref(), &env).context("configuration")?;
    chatbox::telemetry::init(&settings.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => chatbox::app::serve(settings).await,
    }
}
