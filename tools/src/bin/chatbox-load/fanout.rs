//! `fanout` mode: one user with K devices; device 0 sends turns one after another and every device receives
//! the answer. Measures how long the other devices wait for the echoed message, the first chunk and the
//! final chunk, and the spread between the first and the last device to see the end of an answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::Notify;

use crate::Target;
use crate::conn::{FRAMES, FrameHandler, FrameHead, open_all};
use crate::report::{Latency, ProcSample, Report, Tally};

/// Options of `fanout`.
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Devices (connections) of the one user; the server allows 10 by default.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Turns sent by device 0, one after another (the server allows 100 messages per user per minute).
    #[arg(long, default_value_t = 90)]
    pub turns: usize,
    /// Pause between the end of one turn and the next, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// The user message sent with each turn.
    #[arg(long, default_value = "Hello there, how are you today?")]
    pub message: String,
}

struct Current {
    id: String,
    sent: Instant,
    echoed: Vec<bool>,
    answered: Vec<bool>,
    done: Vec<Option<Instant>>,
}

struct Book {
    devices: usize,
    current: Mutex<Option<Current>>,
    finished: Notify,
    echo_others: Latency,
    first_sender: Latency,
    first_others: Latency,
    final_sender: Latency,
    final_others: Latency,
    spread: Latency,
    errors: Tally,
    closes: Tally,
    unmatched: AtomicU64,
}

impl FrameHandler for Book {
    fn frame(&self, conn: usize, text: &str, at: Instant) {
        let head = FrameHead::parse(text);
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        let Some(turn) = current
            .as_mut()
            .filter(|c| head.client_msg_id.as_deref() == Some(c.id.as_str()))
        else {
            if head.kind == "error" {
                self.errors
                    .bump(head.error.map(|e| e.code).unwrap_or_default());
            } else if head.kind != "connection_status" {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let elapsed = at.saturating_duration_since(turn.sent);
        let (first, last) = if conn == 0 {
            (&self.first_sender, &self.final_sender)
        } else {
            (&self.first_others, &self.final_others)
        };
        match head.kind.as_str() {
            "user_message" if conn != 0 && !turn.echoed[conn] => {
                turn.echoed[conn] = true;
                self.echo_others.record(elapsed);
            }
            "ai_response" => {
                if !turn.answered[conn] {
                    turn.answered[conn] = true;
                    first.record(elapsed);
                }
                if head.is_final() && turn.done[conn].is_none() {
                    turn.done[conn] = Some(at);
                    last.record(elapsed);
                }
            }
            "error" => {
                self.errors
                    .bump(head.error.map(|e| e.code).unwrap_or_default());
                turn.done[conn] = Some(at);
            }
            _ => {}
        }
        let arrivals: Vec<Instant> = turn.done.iter().flatten().copied().collect();
        if arrivals.len() == self.devices {
            if let (Some(min), Some(max)) = (arrivals.iter().min(), arrivals.iter().max()) {
                self.spread.record(max.saturating_duration_since(*min));
            }
            *current = None;
            self.finished.notify_one();
        }
    }

    fn closed(&self, _conn: usize, code: u16) {
        self.closes.bump(code.to_string());
    }
}

/// Runs `fanout` and returns its report.
pub async fn run(target: &Target, args: &FanoutArgs) -> anyhow::Result<Report> {
    let devices = args.devices.max(1);
    // One user for all devices, numbered after any user a simultaneous run of other modes would use.
    let users = vec![1_000_000; devices];
    let book = Arc::new(Book {
        devices,
        current: Mutex::new(None),
        finished: Notify::new(),
        echo_others: Latency::new("echo to others"),
        first_sender: Latency::new("first token, sender"),
        first_others: Latency::new("first token, others"),
        final_sender: Latency::new("final chunk, sender"),
        final_others: Latency::new("final chunk, others"),
        spread: Latency::new("final: last - first"),
        errors: Tally::default(),
        closes: Tally::default(),
        unmatched: AtomicU64::new(0),
    });
    let (mut conns, stats) =
        open_all(&target.urls, &target.tokens, &users, 1, book.clone()).await?;
    conns.sort_by_key(|c| c.id);
    anyhow::ensure!(
        conns.len() == devices,
        "only {} of {devices} devices connected: {}",
        conns.len(),
        stats.errors.line()
    );
    // Later devices may still be receiving the frames that announce the session to the earlier ones.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sample_start = target.server_pid.and_then(ProcSample::read);
    let frames_start = FRAMES.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut timeouts = 0;
    for n in 0..args.turns {
        let id = format!("f{n}");
        let frame = json!({"type": "user_message", "content": args.message, "client_msg_id": id})
            .to_string();
        let finished = book.finished.notified();
        if let Ok(mut current) = book.current.lock() {
            *current = Some(Current {
                id,
                sent: Instant::now(),
                echoed: vec![false; devices],
                answered: vec![false; devices],
                done: vec![None; devices],
            });
        }
        let _ = conns[0].tx.send(frame);
        if tokio::time::timeout(Duration::from_secs(10), finished)
            .await
            .is_err()
        {
            timeouts += 1;
            if let Ok(mut current) = book.current.lock() {
                *current = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    let elapsed = started.elapsed();
    let frames = FRAMES.load(Ordering::Relaxed).saturating_sub(frames_start);
    let sample_end = target.server_pid.and_then(ProcSample::read);
    drop(conns);

    let mut report = Report::default();
    report.line("== chatbox-load fanout ==");
    report.field("target", target.described());
    report.field("devices", format!("{devices} connections of one user"));
    report.field(
        "turns",
        format!("{} sent by device 0, {timeouts} timed out", args.turns),
    );
    report.line(book.echo_others.line());
    report.line(book.first_sender.line());
    report.line(book.first_others.line());
    report.line(book.final_sender.line());
    report.line(book.final_others.line());
    report.line(book.spread.line());
    report.field(
        "frames",
        format!(
            "{frames} received ({:.0}/s over {:.1} s), {} not part of a turn",
            frames as f64 / elapsed.as_secs_f64().max(1e-9),
            elapsed.as_secs_f64(),
            book.unmatched.load(Ordering::Relaxed)
        ),
    );
    report.field("errors", book.errors.line());
    report.field("close codes", book.closes.line());
    if let (Some(a), Some(b)) = (sample_start, sample_end) {
        report.field(
            "server cpu",
            format!(
                "{:.0} µs per turn",
                b.cpu.saturating_sub(a.cpu).as_secs_f64() * 1e6 / args.turns.max(1) as f64
            ),
        );
        report.field("server at end", b.line());
    }
    Ok(report)
}
