//! `soak` mode: N users of distinct ids stay connected for a long time doing a mix of chat turns,
//! reconnects with `?last_seq=` resume, admin takeovers, fuzzed frames and churn (users replaced by new
//! ones), each kind at its own rate, while the server's memory, descriptors and gauges are sampled at a
//! fixed interval. The report has the samples as a table and a verdict on growth between the middle and the
//! last third of the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{Semaphore, mpsc};

use crate::Target;
use crate::conn::OpenStats;
use crate::report::Report;
use crate::sampler::{self, Probe, Sample};
use crate::soak_admin::Admin;
use crate::soak_client::{Action, Client, Counters, Shared};

/// Options of `soak`.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long to run the mixed traffic (`90s`, `30m`, `1h`; a bare number is seconds).
    #[arg(long, default_value = "30m", value_parser = chatbox::config::parse_duration)]
    pub duration: Duration,
    /// User connections kept open, one user each.
    #[arg(long, default_value_t = 2_000)]
    pub connections: usize,
    /// Admin connections that take sessions over.
    #[arg(long, default_value_t = 4)]
    pub admins: usize,
    /// Chat turns per second (all users together).
    #[arg(long, default_value_t = 20.0)]
    pub turn_rate: f64,
    /// Reconnects with `?last_seq=` resume per second; half during a turn, half between turns.
    #[arg(long, default_value_t = 2.0)]
    pub resume_rate: f64,
    /// Admin takeovers (join, message, leave) per second.
    #[arg(long, default_value_t = 0.5)]
    pub takeover_rate: f64,
    /// Fuzzed frames per second.
    #[arg(long, default_value_t = 2.0)]
    pub fuzz_rate: f64,
    /// Users closed and replaced by new ones per second.
    #[arg(long, default_value_t = 1.0)]
    pub churn_rate: f64,
    /// Interval between samples of the server.
    #[arg(long, default_value = "10s", value_parser = chatbox::config::parse_duration)]
    pub sample_every: Duration,
    /// The server's Prometheus endpoint (default: derived from `--url`, `{P}/metrics/prometheus`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Growth in percent, of RSS or descriptors, up to which the verdict is "flat".
    #[arg(long, default_value_t = 5.0)]
    pub flat_tolerance: f64,
    /// The user message sent with each turn.
    #[arg(long, default_value = "Hello there, how are you today?")]
    pub message: String,
}

impl SoakArgs {
    /// The actions with their rates per second.
    fn rates(&self) -> Vec<(f64, fn() -> Action)> {
        vec![
            (self.turn_rate, || Action::Turn),
            (self.resume_rate / 2.0, || Action::ResumeMidTurn {
                after: rand::random_range(0..3),
            }),
            (self.resume_rate / 2.0, || Action::ResumeIdle),
            (self.takeover_rate, || Action::Takeover),
            (self.fuzz_rate, || Action::Fuzz),
            (self.churn_rate, || Action::Churn),
        ]
    }
}

/// Runs `soak` and returns its report.
pub async fn run(target: &Target, args: &SoakArgs) -> anyhow::Result<Report> {
    let pid = target.server_pid.or_else(|| {
        let pid = sampler::port_of(target.url()).and_then(sampler::pid_listening_on);
        if pid.is_none() {
            eprintln!("warning: server process not found from the port; give --server-pid");
        }
        pid
    });
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| sampler::metrics_url(target.url()));
    let probe = Probe::new(pid, metrics_url.clone());

    let mut admin_queues = Vec::new();
    let mut admin_inboxes = Vec::new();
    for _ in 0..args.admins {
        let (tx, rx) = mpsc::unbounded_channel();
        admin_queues.push(tx);
        admin_inboxes.push(rx);
    }
    let shared = Arc::new(Shared {
        url: target.url().to_string(),
        tokens: target.tokens.clone(),
        message: args.message.clone(),
        counters: Counters::default(),
        gate: Semaphore::new(target.concurrency.max(1)),
        open: OpenStats::default(),
        admins: std::sync::Mutex::new(admin_queues),
        next_user: AtomicUsize::new(args.connections),
        next_admin: AtomicUsize::new(0),
    });
    let mut tasks = Vec::new();
    for (number, inbox) in admin_inboxes.into_iter().enumerate() {
        let admin = Admin::connect(Arc::clone(&shared), number).await;
        tasks.push(tokio::spawn(admin.run(inbox)));
    }

    eprintln!(
        "opening {} user connections and {} admin connections",
        args.connections, args.admins
    );
    let opening = Instant::now();
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    let mut users = Vec::with_capacity(args.connections);
    for slot in 0..args.connections {
        let (tx, rx) = mpsc::unbounded_channel();
        users.push(tx);
        let shared = Arc::clone(&shared);
        let idle = idle_tx.clone();
        tasks.push(tokio::spawn(async move {
            Client::connect(shared, slot)
                .await
                .run(slot, rx, idle)
                .await;
        }));
    }
    drop(idle_tx);
    let mut idle: Vec<usize> = Vec::with_capacity(args.connections);
    while idle.len() < args.connections {
        match tokio::time::timeout(Duration::from_secs(120), idle_rx.recv()).await {
            Ok(Some(slot)) => idle.push(slot),
            _ => anyhow::bail!("user tasks did not start"),
        }
    }
    let opened = opening.elapsed();
    eprintln!(
        "opened in {:.1} s ({}); running for {} s",
        opened.as_secs_f64(),
        shared.open.errors.line(),
        args.duration.as_secs()
    );

    let rates = args.rates();
    let mut issued = vec![0u64; rates.len()];
    let mut skipped = 0u64;
    let mut samples: Vec<Sample> = Vec::new();
    let start = Instant::now();
    let mut last_sample = (Duration::ZERO, 0u64, 0u64);
    let mut next_sample = Duration::ZERO;
    if let Some(header) = sampler::table(&[]).first() {
        eprintln!("{header}");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= next_sample || elapsed >= args.duration {
            let mut sample = probe.sample(elapsed).await;
            let done = shared.counters.turns_done.load(Ordering::Relaxed);
            let errors = shared.error_total();
            let span = elapsed.saturating_sub(last_sample.0).as_secs_f64();
            sample.turns_per_s = if span > 0.0 {
                (done - last_sample.1) as f64 / span
            } else {
                0.0
            };
            sample.errors = errors - last_sample.2;
            last_sample = (elapsed, done, errors);
            if let Some(row) = sampler::table(std::slice::from_ref(&sample)).last() {
                eprintln!("{row}");
            }
            samples.push(sample);
            next_sample += args.sample_every;
        }
        if elapsed >= args.duration {
            break;
        }
        while let Ok(slot) = idle_rx.try_recv() {
            idle.push(slot);
        }
        for (kind, (rate, action)) in rates.iter().enumerate() {
            let due = (elapsed.as_secs_f64() * rate) as u64;
            while issued[kind] < due {
                issued[kind] += 1;
                if idle.is_empty() {
                    skipped += 1;
                    continue;
                }
                let slot = idle.swap_remove(rand::random_range(0..idle.len()));
                let _ = users[slot].send(action());
            }
        }
    }
    let ran = start.elapsed();
    eprintln!("stopping: waiting for the actions in progress");
    drop(users);
    let admin_tasks: Vec<_> = tasks.drain(..args.admins.min(tasks.len())).collect();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    }
    if let Ok(mut admins) = shared.admins.lock() {
        admins.clear();
    }
    for task in admin_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    Ok(report(
        target,
        args,
        &shared,
        &samples,
        ran,
        opened,
        skipped,
        pid,
        &metrics_url,
    ))
}

/// The report of a run.
#[allow(clippy::too_many_arguments)]
fn report(
    target: &Target,
    args: &SoakArgs,
    shared: &Shared,
    samples: &[Sample],
    ran: Duration,
    opened: Duration,
    skipped: u64,
    pid: Option<u32>,
    metrics_url: &str,
) -> Report {
    let c = &shared.counters;
    let n = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let mut report = Report::default();
    report.line("== chatbox-load soak ==");
    report.field("target", target.described());
    report.field(
        "server",
        match pid {
            Some(pid) => format!("pid {pid}, metrics {metrics_url}"),
            None => format!("process not found, metrics {metrics_url}"),
        },
    );
    report.field(
        "connections",
        format!(
            "{} users of distinct ids + {} admins, opened in {:.1} s",
            args.connections,
            args.admins,
            opened.as_secs_f64()
        ),
    );
    report.field(
        "rates per second",
        format!(
            "turns {}, resumes {} (half mid-turn), takeovers {}, fuzzed {}, churn {}",
            args.turn_rate, args.resume_rate, args.takeover_rate, args.fuzz_rate, args.churn_rate
        ),
    );
    report.field("ran", format!("{:.1} s", ran.as_secs_f64()));
    report.field(
        "turns",
        format!(
            "{} sent, {} completed ({:.1}/s)",
            n(&c.turns_sent),
            n(&c.turns_done),
            n(&c.turns_done) as f64 / ran.as_secs_f64().max(1e-9)
        ),
    );
    report.line(c.turn.line());
    report.field(
        "resumes",
        format!(
            "{} during a turn, {} between turns",
            n(&c.resumes_mid_turn),
            n(&c.resumes_idle)
        ),
    );
    report.field("takeovers", format!("{} completed", n(&c.takeovers)));
    report.field(
        "fuzzed frames",
        format!(
            "{} sent, {} answered with an error frame and the connection still open",
            n(&c.fuzz_sent),
            n(&c.fuzz_answered)
        ),
    );
    report.field("churn", format!("{} users replaced", n(&c.churned)));
    report.field("skipped actions", format!("{skipped} (no idle user)"));
    report.field("seq violations", c.violations.line());
    report.field("unexpected closes", c.closes.line());
    report.field("connect errors", shared.open.errors.line());
    report.field("errors", c.errors.line());
    report.field("error total", shared.error_total());
    report.line(shared.open.ready.line());
    report.field(
        "sampled",
        format!(
            "every {} s: RSS and threads (/proc/<pid>/status), fds (/proc/<pid>/fd), connections and \
             active sessions (metrics); the server exports no tokio task count",
            args.sample_every.as_secs_f64()
        ),
    );
    report.field("samples", samples.len());
    for line in sampler::table(samples) {
        report.line(line);
    }
    report.field(
        "verdict",
        sampler::verdict(samples, ran, args.flat_tolerance),
    );
    report
}
