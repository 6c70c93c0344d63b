//! Measurements and their report: latency histograms (microseconds, HdrHistogram), counters of errors by
//! kind, the server's memory and CPU read from `/proc/<pid>`, and the text the tool prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency distribution safe to record into from many tasks.
pub struct Latency {
    name: &'static str,
    histogram: Mutex<Histogram<u64>>,
}

impl Latency {
    /// An empty distribution of 1 µs to 10 min with three significant figures.
    pub fn new(name: &'static str) -> Self {
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|e| unreachable!("constant histogram bounds: {e}"));
        Self {
            name,
            histogram: Mutex::new(histogram),
        }
    }

    /// Records one sample (values out of range are clamped).
    pub fn record(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.histogram.lock() {
            h.saturating_record(micros);
        }
    }

    /// One report line: count, p50, p90, p99, max in milliseconds.
    pub fn line(&self) -> String {
        let Ok(h) = self.histogram.lock() else {
            return format!("{:<22} (unavailable)", self.name);
        };
        if h.is_empty() {
            return format!("{:<22} n=0", self.name);
        }
        let ms = |v: u64| v as f64 / 1000.0;
        format!(
            "{:<22} n={:<7} p50={:>9.3} ms  p90={:>9.3} ms  p99={:>9.3} ms  max={:>9.3} ms  mean={:>9.3} ms",
            self.name,
            h.len(),
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.mean() / 1000.0,
        )
    }
}

/// Counters by name (error kinds, close codes), safe to bump from many tasks.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    /// Adds one to `kind`.
    pub fn bump(&self, kind: impl Into<String>) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(kind.into()).or_default() += 1;
        }
    }

    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.counts.lock().map(|c| c.values().sum()).unwrap_or(0)
    }

    /// `kind=n, kind=n` or `none`.
    pub fn line(&self) -> String {
        let Ok(counts) = self.counts.lock() else {
            return "unavailable".into();
        };
        if counts.is_empty() {
            return "none".into();
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A snapshot of the server process from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Anonymous resident memory (`RssAnon`: heap and stacks), KiB.
    pub anon_kib: u64,
    /// Threads.
    pub threads: u64,
    /// User + system CPU time consumed so far.
    pub cpu: Duration,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux for every common configuration).
const USER_HZ: u64 = 100;

impl ProcSample {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` when the process cannot be read.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the line.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu_ticks = ticks(11) + ticks(12);
        Some(Self {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:").unwrap_or(0),
            threads: field("Threads:").unwrap_or(0),
            cpu: Duration::from_millis(cpu_ticks * 1000 / USER_HZ),
        })
    }

    /// `rss=.. MiB anon=.. MiB threads=..`.
    pub fn line(&self) -> String {
        format!(
            "rss={:.1} MiB  anon={:.1} MiB  threads={}  cpu={:.2} s",
            self.rss_kib as f64 / 1024.0,
            self.anon_kib as f64 / 1024.0,
            self.threads,
            self.cpu.as_secs_f64()
        )
    }
}

/// The report, written line by line to stdout at the end of a run.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
}

impl Report {
    /// Adds a line.
    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Adds a `key: value` line.
    pub fn field(&mut self, key: &str, value: impl std::fmt::Display) {
        self.lines.push(format!("{key:<22} {value}"));
    }

    /// Writes the report to stdout (the tool's output; progress goes to stderr).
    pub fn print(&self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for line in &self.lines {
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

/// Memory of the server before and after `connections` were opened, as report lines.
pub fn memory_delta(
    report: &mut Report,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    connections: usize,
) {
    match (before, after) {
        (Some(b), Some(a)) => {
            report.field("server before", b.line());
            report.field("server after", a.line());
            let per = |after: u64, before: u64| {
                (after as f64 - before as f64) * 1024.0 / connections.max(1) as f64
            };
            report.field(
                "per connection",
                format!(
                    "rss {:.0} bytes ({:.2} KiB), anon {:.0} bytes ({:.2} KiB)",
                    per(a.rss_kib, b.rss_kib),
                    per(a.rss_kib, b.rss_kib) / 1024.0,
                    per(a.anon_kib, b.anon_kib),
                    per(a.anon_kib, b.anon_kib) / 1024.0,
                ),
            );
        }
        _ => report.field("server memory", "not measured (give --server-pid)"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn latency_lines_show_percentiles_in_milliseconds() {
        let l = Latency::new("turn");
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert!(l.line().contains("n=100"));
        let line = l.line();
        assert!(line.contains("p50=   50.0"), "{line}");
        assert!(line.contains("p99=   99.0"), "{line}");
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
    }

    #[test]
    fn tally_counts_by_kind() {
        let t = Tally::default();
        t.bump("429");
        t.bump("429");
        t.bump("timeout");
        assert_eq!(t.total(), 3);
        assert_eq!(t.line(), "429=2, timeout=1");
    }
}
