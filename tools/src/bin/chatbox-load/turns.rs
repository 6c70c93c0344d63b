//! `turns` mode: chat turns at a target rate over many connections (each with at most one turn in flight),
//! timing the `loading` frame, the first answer chunk and the final chunk of each turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;

use crate::Target;
use crate::conn::{FRAMES, FrameHandler, FrameHead, open_all};
use crate::report::{Latency, ProcSample, Report, Tally};

/// Options of `turns`.
#[derive(Args, Debug, Clone)]
pub struct TurnsArgs {
    /// Connections that send turns (each has at most one turn in flight).
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// Distinct users of the sending connections (default: one per connection, so no fan-out traffic).
    #[arg(long)]
    pub users: Option<usize>,
    /// Extra silent connections held open during the run (on their own users, 10 per user).
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// Target turns per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of load before measuring (not recorded).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// The user message sent with each turn.
    #[arg(long, default_value = "Hello there, how are you today?")]
    pub message: String,
    /// Name a session id made up per connection in every message, as the Go service's clients do (the Go
    /// service requires one; this server takes an unknown id for the user's active session).
    #[arg(long)]
    pub client_session_ids: bool,
}

struct InFlight {
    conn: usize,
    sent: Instant,
    record: bool,
    answered: bool,
    frames: u64,
}

/// Matches frames to turns by `client_msg_id` and the connection that sent them; a frame without one (the
/// Go service sends none) belongs to its connection's turn in flight (a connection has one at most).
struct Book {
    inflight: Mutex<HashMap<String, InFlight>>,
    free: mpsc::UnboundedSender<usize>,
    loading: Latency,
    first_token: Latency,
    turn: Latency,
    completed: AtomicU64,
    turn_frames: AtomicU64,
    errors: Tally,
    closes: Tally,
}

impl FrameHandler for Book {
    fn frame(&self, conn: usize, text: &str, at: Instant) {
        let head = FrameHead::parse(text);
        let Ok(mut inflight) = self.inflight.lock() else {
            return;
        };
        let id = match head.client_msg_id.clone() {
            Some(id) => id,
            None => match inflight.iter().find(|(_, t)| t.conn == conn) {
                Some((id, _)) => id.clone(),
                None => {
                    if head.kind == "error" {
                        self.errors.bump(format!(
                            "{} (no id)",
                            head.error.map(|e| e.code).unwrap_or_default()
                        ));
                    }
                    return;
                }
            },
        };
        let id = id.as_str();
        let Some(turn) = inflight.get_mut(id).filter(|t| t.conn == conn) else {
            return;
        };
        turn.frames += 1;
        let elapsed = at.saturating_duration_since(turn.sent);
        let finished = match head.kind.as_str() {
            "loading" => {
                if turn.record {
                    self.loading.record(elapsed);
                }
                false
            }
            "ai_response" => {
                if !turn.answered {
                    turn.answered = true;
                    if turn.record {
                        self.first_token.record(elapsed);
                    }
                }
                head.is_final()
            }
            "error" => {
                self.errors
                    .bump(head.error.map(|e| e.code).unwrap_or_else(|| "error".into()));
                true
            }
            _ => false,
        };
        if finished && let Some(turn) = inflight.remove(id) {
            if turn.record && head.kind != "error" {
                self.turn.record(elapsed);
                self.completed.fetch_add(1, Ordering::Relaxed);
                self.turn_frames.fetch_add(turn.frames, Ordering::Relaxed);
            }
            let _ = self.free.send(turn.conn);
        }
    }

    fn closed(&self, _conn: usize, code: u16) {
        self.closes.bump(code.to_string());
    }
}

/// Runs `turns` and returns its report.
pub async fn run(target: &Target, args: &TurnsArgs) -> anyhow::Result<Report> {
    let users = crate::spread(args.connections, args.users.unwrap_or(args.connections), 0);
    let (free_tx, mut free_rx) = mpsc::unbounded_channel();
    let book = Arc::new(Book {
        inflight: Mutex::new(HashMap::new()),
        free: free_tx.clone(),
        loading: Latency::new("loading frame"),
        first_token: Latency::new("first token"),
        turn: Latency::new("turn (final chunk)"),
        completed: AtomicU64::new(0),
        turn_frames: AtomicU64::new(0),
        errors: Tally::default(),
        closes: Tally::default(),
    });
    let sample = || target.server_pid.and_then(ProcSample::read);
    let before_open = sample();
    let idle_conns = if args.idle > 0 {
        let idle_users = crate::spread(args.idle, args.idle.div_ceil(10), users.len() + 1);
        eprintln!("opening {} idle connections", args.idle);
        let (conns, stats) = open_all(
            &target.urls,
            &target.tokens,
            &idle_users,
            target.concurrency,
            book.clone(),
        )
        .await?;
        eprintln!(
            "  {} idle open, errors: {}",
            conns.len(),
            stats.errors.line()
        );
        conns
    } else {
        Vec::new()
    };
    eprintln!("opening {} sending connections", args.connections);
    let (conns, stats) = open_all(
        &target.urls,
        &target.tokens,
        &users,
        target.concurrency,
        book.clone(),
    )
    .await?;
    let mut senders: Vec<Option<mpsc::UnboundedSender<String>>> = vec![None; users.len()];
    for conn in conns {
        let _ = free_tx.send(conn.id);
        senders[conn.id] = Some(conn.tx);
    }
    let open_count = senders.iter().filter(|s| s.is_some()).count();
    anyhow::ensure!(
        open_count > 0,
        "no connection could be opened: {}",
        stats.errors.line()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!(
        "running {} turns/s: {} s warm-up, {} s measured",
        args.rate, args.warmup, args.duration
    );
    let start = Instant::now();
    let warmup = Duration::from_secs(args.warmup);
    let total = warmup + Duration::from_secs(args.duration);
    let mut issued: u64 = 0;
    // Message ids unique to this run: a later run on the same users' sessions (`--user-prefix`) must not
    // send ids the server already answered (it takes those as retries and answers them no more).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut sent_measured: u64 = 0;
    let mut no_free_connection: u64 = 0;
    let mut measure_start: Option<(Instant, Option<ProcSample>, u64)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= total {
            break;
        }
        let measuring = elapsed >= warmup;
        if measuring && measure_start.is_none() {
            measure_start = Some((Instant::now(), sample(), FRAMES.load(Ordering::Relaxed)));
        }
        let due = (elapsed.as_secs_f64() * args.rate) as u64;
        while issued < due {
            issued += 1;
            let Ok(conn) = free_rx.try_recv() else {
                if measuring {
                    no_free_connection += 1;
                }
                continue;
            };
            let Some(tx) = senders.get(conn).and_then(Option::as_ref) else {
                continue;
            };
            let id = format!("t{run}-{conn}-{issued}");
            let mut frame =
                json!({"type": "user_message", "content": args.message, "client_msg_id": id});
            if args.client_session_ids {
                frame["session_id"] = json!(format!("load-session-{conn}"));
            }
            let frame = frame.to_string();
            if let Ok(mut inflight) = book.inflight.lock() {
                inflight.insert(
                    id,
                    InFlight {
                        conn,
                        sent: Instant::now(),
                        record: measuring,
                        answered: false,
                        frames: 0,
                    },
                );
            }
            if measuring {
                sent_measured += 1;
            }
            let _ = tx.send(frame);
        }
    }
    let (measured_at, sample_start, frames_start) =
        measure_start.unwrap_or((Instant::now(), sample(), FRAMES.load(Ordering::Relaxed)));
    let measured = measured_at.elapsed();
    let frames_measured = FRAMES.load(Ordering::Relaxed).saturating_sub(frames_start);
    let sample_end = sample();
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    while book.inflight.lock().map(|m| !m.is_empty()).unwrap_or(false)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unfinished = book.inflight.lock().map(|m| m.len()).unwrap_or(0);
    // Closes seen during the run; the ones caused by closing the connections below are not errors.
    let closes = book.closes.line();
    drop(senders);
    drop(idle_conns);

    let completed = book.completed.load(Ordering::Relaxed);
    let mut report = Report::default();
    report.line("== chatbox-load turns ==");
    report.field("target", target.described());
    report.field(
        "connections",
        format!(
            "{open_count} sending ({} users), {} idle",
            args.users.unwrap_or(args.connections),
            args.idle
        ),
    );
    report.line(stats.ready.line());
    report.field("connect errors", stats.errors.line());
    report.field(
        "target rate",
        format!(
            "{} turns/s for {} s (+{} s warm-up)",
            args.rate, args.duration, args.warmup
        ),
    );
    report.field(
        "turns",
        format!(
            "{sent_measured} sent, {completed} completed ({:.1}/s), {} errors, {unfinished} unfinished, {no_free_connection} skipped (no idle connection)",
            completed as f64 / measured.as_secs_f64().max(1e-9),
            book.errors.total()
        ),
    );
    report.line(book.loading.line());
    report.line(book.first_token.line());
    report.line(book.turn.line());
    report.field(
        "frames",
        format!(
            "{:.0} frames/s received, {:.1} frames per turn",
            frames_measured as f64 / measured.as_secs_f64().max(1e-9),
            book.turn_frames.load(Ordering::Relaxed) as f64 / completed.max(1) as f64
        ),
    );
    report.field("errors", book.errors.line());
    report.field("closes during run", closes);
    if let (Some(a), Some(b)) = (sample_start, sample_end) {
        let cpu = b.cpu.saturating_sub(a.cpu);
        report.field(
            "server cpu",
            format!(
                "{:.2} s over {:.1} s ({:.0} % of one core), {:.0} µs per completed turn",
                cpu.as_secs_f64(),
                measured.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / measured.as_secs_f64().max(1e-9),
                cpu.as_secs_f64() * 1e6 / completed.max(1) as f64
            ),
        );
    }
    if let Some(b) = before_open {
        report.field("server before open", b.line());
    }
    if let Some(b) = sample_end {
        report.field("server at end", b.line());
    }
    Ok(report)
}
