//! `chatbox-load`: a load generator for `chatbox` (and for `echo-floor`, the bare WebSocket server it is
//! compared with). It mints its own user tokens from the server's JWT secret, opens many WebSocket
//! connections and runs one of three modes:
//!
//! * `idle`: open N connections and measure the server's resident memory per connection;
//! * `turns`: chat turns at a target rate, timing `loading`, the first token and the whole turn;
//! * `fanout`: one user with K devices, one sends, all receive; measures delivery to the other devices;
//! * `soak`: N users for a long time doing turns, reconnects with resume, admin takeovers, fuzzed frames and
//!   churn, with the server's memory, descriptors and gauges sampled every few seconds.
//!
//! With `--server-pid` it reads the server's `VmRSS`, `RssAnon` and CPU time from `/proc/<pid>` before
//! and after. It raises its own open-files limit to the hard limit; 10 000 connections need
//! `ulimit -n` of at least about 10 100 for this tool and for the server (see docs/benchmarks.md).

#[path = "chatbox-load/conn.rs"]
mod conn;
#[path = "chatbox-load/fanout.rs"]
mod fanout;
#[path = "chatbox-load/idle.rs"]
mod idle;
#[path = "chatbox-load/report.rs"]
mod report;
#[path = "chatbox-load/sampler.rs"]
mod sampler;
#[path = "chatbox-load/soak.rs"]
mod soak;
#[path = "chatbox-load/soak_admin.rs"]
mod soak_admin;
#[path = "chatbox-load/soak_client.rs"]
mod soak_client;
#[path = "chatbox-load/turns.rs"]
mod turns;

use clap::{Parser, Subcommand};

use crate::conn::Tokens;

/// Load generator for the chatbox WebSocket server.
#[derive(Parser, Debug)]
#[command(version, about = "Load generator for the chatbox WebSocket server", long_about = None)]
struct Cli {
    /// WebSocket URL of the server (`{P}/ws`); the token is added as `?token=`. Several (repeated, or
    /// comma-separated: the nodes of a cluster) spread the connections over them round-robin.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8080/chatbox/ws",
        value_delimiter = ',',
        global = true
    )]
    url: Vec<String>,
    /// The server's HMAC secret, used to mint user tokens (echo-floor accepts any value).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    jwt_secret: Option<String>,
    /// Process id of the server, to read its memory and CPU time from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Handshakes in progress at once while opening connections.
    #[arg(long, default_value_t = 64, global = true)]
    concurrency: usize,
    /// Prefix of the user ids (`<prefix>-<n>`); defaults to one unique to this run.
    #[arg(long, global = true)]
    user_prefix: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Open N silent connections and report memory per connection.
    Idle(idle::IdleArgs),
    /// Run chat turns at a target rate.
    Turns(turns::TurnsArgs),
    /// One user with K devices: one sends, all receive.
    Fanout(fanout::FanoutArgs),
    /// Mixed traffic for a long time, with the server sampled at intervals.
    Soak(soak::SoakArgs),
}

/// Where and how to connect, shared by the modes.
pub struct Target {
    /// WebSocket URLs without the token (connection `i` goes to `urls[i % len]`).
    pub urls: Vec<String>,
    /// Token minting.
    pub tokens: Tokens,
    /// The server's process id.
    pub server_pid: Option<u32>,
    /// Concurrent handshakes.
    pub concurrency: usize,
}

impl Target {
    /// The first URL (the server sampled by the soak mode).
    pub fn url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }

    /// Every URL, as the report names the target.
    pub fn described(&self) -> String {
        self.urls.join(",")
    }
}

/// User numbers for `connections` connections spread round-robin over `users` users starting at `first`.
pub fn spread(connections: usize, users: usize, first: usize) -> Vec<usize> {
    let users = users.max(1);
    if connections.div_ceil(users) > 10 {
        eprintln!(
            "warning: {} connections per user exceed the server's default limit of 10 (MAX_CONNECTIONS_PER_USER)",
            connections.div_ceil(users)
        );
    }
    (0..connections).map(|i| first + i % users).collect()
}

/// Raises the soft open-files limit to the hard limit and says so when it stays low.
fn raise_open_files() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 10_100 => {
            eprintln!(
                "warning: open files limit is {limit}; raise it (ulimit -n 20000) for 10 000 connections"
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open files limit: {e}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    raise_open_files();
    let secret = cli.jwt_secret.ok_or_else(|| {
        anyhow::anyhow!("give --jwt-secret or set JWT_SECRET to the server's secret")
    })?;
    let prefix = cli
        .user_prefix
        .unwrap_or_else(|| format!("load{}", std::process::id()));
    let target = Target {
        urls: cli.url,
        tokens: Tokens::new(&secret, &prefix)?,
        server_pid: cli.server_pid,
        concurrency: cli.concurrency,
    };
    let report = match &cli.mode {
        Mode::Idle(args) => idle::run(&target, args).await?,
        Mode::Turns(args) => turns::run(&target, args).await?,
        Mode::Fanout(args) => fanout::run(&target, args).await?,
        Mode::Soak(args) => soak::run(&target, args).await?,
    };
    report.print()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_spread_round_robin_over_users() {
        assert_eq!(spread(5, 2, 10), vec![10, 11, 10, 11, 10]);
        assert_eq!(spread(3, 0, 0), vec![0, 0, 0]);
    }

    #[test]
    fn the_command_line_parses() {
        let cli =
            Cli::try_parse_from(["chatbox-load", "--jwt-secret", "x", "turns", "--rate", "50"]);
        assert!(cli.is_ok());
        let cli = Cli::try_parse_from([
            "chatbox-load",
            "fanout",
            "--devices",
            "3",
            "--server-pid",
            "1",
        ]);
        assert!(cli.is_ok());
        let cli = Cli::try_parse_from([
            "chatbox-load",
            "soak",
            "--duration",
            "30m",
            "--connections",
            "2000",
            "--sample-every",
            "10s",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            mode: Mode::Soak(args),
            ..
        }) = cli
        else {
            panic!("soak arguments: {cli:?}");
        };
        assert_eq!(args.duration, std::time::Duration::from_secs(1800));
        assert_eq!(args.sample_every, std::time::Duration::from_secs(10));
    }
}
