//! `idle` mode: opens N connections that stay silent and reports what they cost the server in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::Target;
use crate::conn::{FrameHandler, open_all};
use crate::report::{ProcSample, Report, Tally, memory_delta};

/// Options of `idle`.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Distinct users the connections are spread over (the server allows 10 per user by default).
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Seconds to wait after the last connection opened before sampling memory.
    #[arg(long, default_value_t = 5)]
    pub settle: u64,
    /// Seconds to keep the connections open after the sample (a second sample is taken at the end).
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
}

/// Counts unexpected closes.
#[derive(Default)]
struct Closes {
    closed: AtomicU64,
    codes: Tally,
}

impl FrameHandler for Closes {
    fn frame(&self, _conn: usize, _text: &str, _at: Instant) {}

    fn closed(&self, _conn: usize, code: u16) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.codes.bump(code.to_string());
    }
}

/// Runs `idle` and returns its report.
pub async fn run(target: &Target, args: &IdleArgs) -> anyhow::Result<Report> {
    let users = crate::spread(args.connections, args.users, 0);
    let handler = Arc::new(Closes::default());
    let sample = || target.server_pid.and_then(ProcSample::read);
    let before = sample();
    eprintln!(
        "opening {} connections for {} users",
        args.connections, args.users
    );
    let (conns, stats) = open_all(
        &target.urls,
        &target.tokens,
        &users,
        target.concurrency,
        handler.clone(),
    )
    .await?;
    eprintln!(
        "opened {} in {:.1} s; settling {} s",
        conns.len(),
        stats.elapsed.as_secs_f64(),
        args.settle
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = sample();
    let closed_while_open = handler.closed.load(Ordering::Relaxed);
    let held = if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        sample()
    } else {
        None
    };

    let opened = conns.len();
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(20);
    while handler.closed.load(Ordering::Relaxed) < opened as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let released = sample();

    let mut report = Report::default();
    report.line("== chatbox-load idle ==");
    report.field("target", target.described());
    report.field(
        "connections",
        format!(
            "{opened} opened of {} ({} users)",
            args.connections, args.users
        ),
    );
    report.field(
        "opening",
        format!(
            "{:.1} s, {:.0} connections/s",
            stats.elapsed.as_secs_f64(),
            opened as f64 / stats.elapsed.as_secs_f64().max(1e-9)
        ),
    );
    report.line(stats.upgrade.line());
    report.line(stats.ready.line());
    report.field("connect errors", stats.errors.line());
    report.field("closed while open", closed_while_open);
    memory_delta(&mut report, before, after, opened);
    if let Some(held) = held {
        report.field("after hold", held.line());
    }
    if let Some(released) = released {
        report.field("after closing all", released.line());
    }
    report.field("close codes", handler.codes.line());
    Ok(report)
}
