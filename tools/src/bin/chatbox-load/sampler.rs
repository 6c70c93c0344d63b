//! Periodic samples of the server under a long run: resident memory and threads (`/proc/<pid>/status`), open
//! descriptors (entries of `/proc/<pid>/fd`), and the gauges of `{P}/metrics/prometheus` (open WebSocket
//! connections, active sessions). The server exports no count of tokio tasks, so none is sampled. Also finds
//! the server's process from its listening port, and judges growth between two parts of a run.

use std::time::Duration;

use crate::report::ProcSample;

/// One sample of the server and of the load tool's own counters.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Time since the start of the run.
    pub at: Duration,
    /// The process, when it could be read.
    pub proc: Option<ProcSample>,
    /// Open file descriptors, when `/proc/<pid>/fd` could be listed.
    pub fds: Option<u64>,
    /// `chatbox_websocket_connections_total`.
    pub connections: Option<f64>,
    /// `chatbox_active_sessions_total`.
    pub active_sessions: Option<f64>,
    /// Turns completed per second since the previous sample.
    pub turns_per_s: f64,
    /// Errors counted since the previous sample.
    pub errors: u64,
}

/// Reads the server process and its metrics endpoint.
pub struct Probe {
    pid: Option<u32>,
    metrics_url: String,
    http: reqwest::Client,
}

impl Probe {
    /// A probe of process `pid` whose metrics are served at `metrics_url`.
    pub fn new(pid: Option<u32>, metrics_url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            pid,
            metrics_url,
            http,
        }
    }

    /// Samples the server now; the load tool's figures are filled in by the caller.
    pub async fn sample(&self, at: Duration) -> Sample {
        let proc = self.pid.and_then(ProcSample::read);
        let fds = self.pid.and_then(open_fds);
        let metrics = self.metrics().await.unwrap_or_default();
        Sample {
            at,
            proc,
            fds,
            connections: gauge(&metrics, "chatbox_websocket_connections_total"),
            active_sessions: gauge(&metrics, "chatbox_active_sessions_total"),
            ..Sample::default()
        }
    }

    async fn metrics(&self) -> Option<String> {
        let response = self.http.get(&self.metrics_url).send().await.ok()?;
        response.error_for_status().ok()?.text().await.ok()
    }
}

/// The metrics URL of the server whose WebSocket URL is `ws_url`: `ws://h/P/ws` -> `http://h/P/metrics/prometheus`.
pub fn metrics_url(ws_url: &str) -> String {
    let http = ws_url
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    let base = http.strip_suffix("/ws").unwrap_or(&http);
    format!("{base}/metrics/prometheus")
}

/// The value of an unlabelled metric in the Prometheus text format.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Entries of `/proc/<pid>/fd`.
pub fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

/// The process listening on TCP `port` (IPv4 or IPv6): the socket's inode from `/proc/net/tcp{,6}`, then the
/// process holding `socket:[inode]` among the readable `/proc/<pid>/fd`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                .then_some(pid)
        })
}

/// Inodes of the sockets listening (state `0A`) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listening = fields.get(3)? == &"0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9).map(|inode| inode.to_string()))
                .flatten()
        })
        .collect()
}

/// The port of a `ws://host:port/...` URL (80 or 443 when absent).
pub fn port_of(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port.parse().ok(),
        _ => Some(if scheme == "wss" { 443 } else { 80 }),
    }
}

/// Mean RSS (MiB) and descriptors of the samples in `[from, to)` of the run.
fn means(samples: &[Sample], from: Duration, to: Duration) -> Option<(f64, f64)> {
    let part: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let rss: Vec<f64> = part
        .iter()
        .filter_map(|s| s.proc.map(|p| p.rss_kib as f64 / 1024.0))
        .collect();
    let fds: Vec<f64> = part
        .iter()
        .filter_map(|s| s.fds.map(|f| f as f64))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (!rss.is_empty() && !fds.is_empty()).then(|| (mean(&rss), mean(&fds)))
}

/// The verdict line: mean RSS and descriptors of the last third of the run against the middle third, and
/// `flat` when neither grew by more than `tolerance_pct` percent.
pub fn verdict(samples: &[Sample], run: Duration, tolerance_pct: f64) -> String {
    let third = run / 3;
    let (Some((rss_mid, fds_mid)), Some((rss_last, fds_last))) = (
        means(samples, third, third * 2),
        means(samples, third * 2, run + Duration::from_secs(1)),
    ) else {
        return "not enough samples of the server (give --server-pid, run longer)".into();
    };
    let growth = |last: f64, mid: f64| 100.0 * (last - mid) / mid.max(1e-9);
    let (rss_growth, fds_growth) = (growth(rss_last, rss_mid), growth(fds_last, fds_mid));
    let word = if rss_growth <= tolerance_pct && fds_growth <= tolerance_pct {
        "flat"
    } else {
        "GROWING"
    };
    format!(
        "{word}: last third against middle third: RSS {rss_mid:.1} -> {rss_last:.1} MiB ({rss_growth:+.1} %), \
         fds {fds_mid:.0} -> {fds_last:.0} ({fds_growth:+.1} %); tolerance {tolerance_pct} %"
    )
}

/// The samples as a Markdown table.
pub fn table(samples: &[Sample]) -> Vec<String> {
    let mut lines = vec![
        "| time | RSS MiB | fds | threads | connections | active sessions | turns/s | errors |"
            .into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for s in samples {
        let secs = s.at.as_secs();
        lines.push(format!(
            "| {}:{:02} | {} | {} | {} | {} | {} | {:.1} | {} |",
            secs / 60,
            secs % 60,
            opt(s.proc.map(|p| format!("{:.1}", p.rss_kib as f64 / 1024.0))),
            opt(s.fds.map(|f| f.to_string())),
            opt(s.proc.map(|p| p.threads.to_string())),
            opt(s.connections.map(|c| format!("{c:.0}"))),
            opt(s.active_sessions.map(|c| format!("{c:.0}"))),
            s.turns_per_s,
            s.errors
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metrics_url_follows_the_websocket_url() {
        assert_eq!(
            metrics_url("ws://127.0.0.1:8080/chatbox/ws"),
            "http://127.0.0.1:8080/chatbox/metrics/prometheus"
        );
        assert_eq!(port_of("ws://127.0.0.1:8080/chatbox/ws"), Some(8080));
        assert_eq!(port_of("wss://chat.example.com/chatbox/ws"), Some(443));
    }

    #[test]
    fn gauges_are_read_from_the_text_format() {
        let text = "# HELP x\nchatbox_websocket_connections_total 12\nprocess_open_fds 40\n";
        assert_eq!(
            gauge(text, "chatbox_websocket_connections_total"),
            Some(12.0)
        );
        assert_eq!(gauge(text, "chatbox_active_sessions_total"), None);
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1\n";
        assert_eq!(listening_inodes(table, 8080), vec!["4242".to_string()]);
        assert!(listening_inodes(table, 8081).is_empty());
    }

    #[test]
    fn own_descriptors_are_counted() {
        assert!(open_fds(std::process::id()).unwrap() > 0);
    }

    fn at(secs: u64, rss_mib: u64, fds: u64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            proc: Some(ProcSample {
                rss_kib: rss_mib * 1024,
                ..ProcSample::default()
            }),
            fds: Some(fds),
            ..Sample::default()
        }
    }

    #[test]
    fn the_verdict_compares_the_last_third_with_the_middle_third() {
        let flat: Vec<Sample> = (0..9)
            .map(|i| at(i * 10, if i < 3 { 50 } else { 100 }, 200))
            .collect();
        let line = verdict(&flat, Duration::from_secs(90), 5.0);
        assert!(line.starts_with("flat"), "{line}");
        let growing: Vec<Sample> = (0..9).map(|i| at(i * 10, 100 + i * 10, 200)).collect();
        let line = verdict(&growing, Duration::from_secs(90), 5.0);
        assert!(line.starts_with("GROWING"), "{line}");
        assert!(line.contains("RSS 140.0 -> 170.0 MiB (+21.4 %)"), "{line}");
    }
}
