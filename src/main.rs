//! The `chatbox` binary: parses the command line, loads the configuration, sets up logging and runs the
//! server or one of the maintenance commands.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use chatbox::config::{EnvVars, Settings};
use chatbox::metrics::Metrics;
use chatbox::store::AuditKind;
use chatbox::store::maintenance;

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
    /// Encryption key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Data of one user (privacy requests); each export or deletion is audited (`admin_id` `cli`).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Delete sessions that ended more than `--days` days ago (default: `store.retention_days`).
    Purge {
        /// Retention in days.
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt everything not under the active key, in resumable batches.
    Rotate {
        /// Sessions per batch.
        #[arg(long, default_value_t = maintenance::DEFAULT_ROTATION_BATCH)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Print all data of a user as JSON.
    Export {
        /// The user's id.
        user_id: String,
    },
    /// Delete all data of a user.
    Delete {
        /// The user's id.
        user_id: String,
    },
}

/// The operating-system user running the command (the audit entry's `admin_name`), when known.
fn os_user() -> Option<String> {
    ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = EnvVars::from_process();
    let settings = Settings::load(cli.config.as_deref(), &env).context("configuration")?;
    chatbox::telemetry::init(&settings.log);
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        return chatbox::app::serve(settings).await;
    }
    let (store, keyring) = chatbox::store::open_with_keyring(
        &settings.store,
        &settings.data_dir,
        settings.is_production(),
        Arc::new(Metrics::new()),
    )
    .await
    .context("store")?;
    let files = chatbox::files::Files::new(
        chatbox::files::Objects::open(&settings.uploads, &settings.data_dir).context("uploads")?,
        Arc::clone(&store),
        keyring,
        settings.uploads.clone(),
        &settings.server.path_prefix,
    );
    let mut out = std::io::stdout();
    match command {
        Command::Serve => {}
        Command::Keys {
            command: KeysCommand::Rotate { batch },
        } => {
            let stats = maintenance::rotate_keys(store.as_ref(), batch.max(1), &mut out).await?;
            let rewrapped = files.rotate().await.context("uploaded files")?;
            writeln!(out, "rotated: {rewrapped} uploaded files' keys re-wrapped")?;
            writeln!(out, "{}", serde_json::to_string(&stats)?)?;
        }
        Command::Users {
            command: UsersCommand::Export { user_id },
        } => {
            let (json, sessions) =
                maintenance::export_user_counted(store.as_ref(), &user_id).await?;
            writeln!(out, "{json}")?;
            let details = [("sessions_exported", sessions.to_string())];
            maintenance::audit_cli(
                store.as_ref(),
                AuditKind::UserExport,
                &user_id,
                &details,
                os_user().as_deref(),
            )
            .await
            .context("the data was exported, but its audit entry could not be written")?;
        }
        Command::Users {
            command: UsersCommand::Delete { user_id },
        } => {
            let files_deleted = files
                .remove_user(&user_id)
                .await
                .context("uploaded files")?;
            let stats = maintenance::delete_user(store.as_ref(), &user_id).await?;
            writeln!(out, "{}", serde_json::to_string(&stats)?)?;
            let details = [
                ("sessions_deleted", stats.sessions.to_string()),
                ("messages_deleted", stats.messages.to_string()),
                ("files_deleted", files_deleted.to_string()),
            ];
            maintenance::audit_cli(
                store.as_ref(),
                AuditKind::UserDelete,
                &user_id,
                &details,
                os_user().as_deref(),
            )
            .await
            .context("the data was deleted, but its audit entry could not be written")?;
        }
        Command::Purge { days } => {
            let days = days
                .or(settings.store.retention_days)
                .context("no retention configured: pass --days or set store.retention_days")?;
            let purged = files
                .purge_expired(days, time::OffsetDateTime::now_utc())
                .await?;
            writeln!(
                out,
                "purged {purged} sessions ended more than {days} days ago"
            )?;
        }
    }
    Ok(())
}
