//! The load tool (`chatbox-load`, of the `chatbox-tools` workspace member) run as it is run, against a
//! test server: its `turns`, `soak` and `fanout` scenarios and their reports, `fanout` over the three nodes
//! of a cluster; and `echo-floor --durable`, the floor it is compared with.
//!
//! The tool is a binary of another package, so Cargo does not build it for this test binary: it is the
//! one `cargo build -p chatbox-tools` left in this target directory (`scripts/test.sh` builds it first),
//! or the one `CHATBOX_LOAD_BIN` names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::support::receivers::free_port;
use crate::support::wait::eventually_async;

/// The `chatbox-load` binary: `CHATBOX_LOAD_BIN`, else `target/<profile>/chatbox-load` beside the
/// `deps/` folder this test binary runs from. Fails with how to build it when it is missing.
fn load_tool() -> PathBuf {
    let tool = std::env::var_os("CHATBOX_LOAD_BIN").map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap();
            profile_dir.join("chatbox-load")
        },
        PathBuf::from,
    );
    assert!(
        tool.is_file(),
        "no load tool at {}: build it first with `cargo build -p chatbox-tools` (scripts/test.sh does), \
         or name one with CHATBOX_LOAD_BIN",
        tool.display()
    );
    tool
}

#[tokio::test]
async fn the_load_tool_runs_turns_against_a_server_and_reports_them() {
    let app = crate::support::app::spawn_app().await;
    let report = one_second_of_turns(&app.ws_url, 2).await;
    let line = |name: &str| report_line(&report, name);
    assert_eq!(line("connect errors"), "none", "{report}");
    assert_eq!(line("errors "), "none", "{report}");
    // "9 sent, 9 completed (9.0/s), 0 errors, 0 unfinished, ..."
    let turns: Vec<&str> = line("turns ").split([' ', ',']).collect();
    let (sent, completed) = (turns[0], turns[3]);
    assert!(sent.parse::<u32>().unwrap() > 0, "{report}");
    assert_eq!(sent, completed, "every turn completed: {report}");
    assert!(
        line("turns ").contains(" 0 errors, 0 unfinished"),
        "{report}"
    );
    assert!(line("first token").starts_with("n="), "{report}");
}

#[tokio::test]
async fn the_load_tool_soaks_a_server_with_mixed_traffic_and_samples_it() {
    // Answers long enough for the tool to reconnect in the middle of a turn.
    let app = crate::support::app::TestAppBuilder::default()
        .env("LLM_DEMO_TOKEN_DELAY_MS", "5")
        .spawn()
        .await;
    let report = load_report(&[
        "soak",
        "--url",
        &app.ws_url,
        "--duration",
        "6s",
        "--sample-every",
        "1s",
        "--connections",
        "6",
        "--admins",
        "1",
        "--turn-rate",
        "3",
        "--resume-rate",
        "2",
        "--takeover-rate",
        "1",
        "--fuzz-rate",
        "3",
        "--churn-rate",
        "1",
    ])
    .await;
    let line = |name: &str| report_line(&report, name);
    let number = |name: &str| -> u64 { line(name).split(' ').next().unwrap().parse().unwrap() };
    assert_eq!(line("error total"), "0", "{report}");
    assert_eq!(line("seq violations"), "none", "{report}");
    assert_eq!(line("unexpected closes"), "none", "{report}");
    assert_eq!(line("connect errors"), "none", "{report}");
    assert!(number("turns ") > 0, "{report}");
    assert!(number("takeovers ") > 0, "{report}");
    assert!(number("churn ") > 0, "{report}");
    // "2 during a turn, 3 between turns"
    let resumes: Vec<&str> = line("resumes ").split(' ').collect();
    let resumed = resumes[0].parse::<u64>().unwrap() + resumes[4].parse::<u64>().unwrap();
    assert!(resumed > 0, "{report}");
    let fuzzed: Vec<&str> = line("fuzzed frames").split(' ').collect();
    assert!(fuzzed[0].parse::<u64>().unwrap() > 0, "{report}");
    assert_eq!(
        fuzzed[0], fuzzed[2],
        "every fuzzed frame answered: {report}"
    );
    // The server was found from its port (it runs in this process) and sampled every second.
    assert!(
        line("server").starts_with(&format!("pid {}", std::process::id())),
        "{report}"
    );
    assert!(number("samples") >= 6, "{report}");
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| time"))
        .collect();
    assert!(rows.len() >= 6, "{report}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | time | RSS MiB | fds | threads | connections | active sessions | turns/s | errors |
        assert!(cells[2].parse::<f64>().unwrap() > 0.0, "RSS in {row}");
        assert!(cells[3].parse::<u64>().unwrap() > 0, "fds in {row}");
        assert!(
            cells[5].parse::<f64>().is_ok(),
            "connections gauge in {row}"
        );
        assert_eq!(cells[8], "0", "errors in {row}");
    }
    assert!(
        line("verdict").contains("last third against middle third"),
        "{report}"
    );
}

#[tokio::test]
async fn the_load_tool_spreads_the_devices_of_a_fan_out_over_the_nodes_of_a_cluster() {
    let cluster = crate::support::nodes::Nodes::start(3, &[]).await;
    let urls: Vec<&str> = cluster.nodes.iter().map(|n| n.banner.ws.as_str()).collect();
    let urls = urls.join(",");
    let report = load_report_signed(
        &[
            "fanout",
            "--url",
            &urls,
            "--devices",
            "6",
            "--turns",
            "3",
            "--interval-ms",
            "10",
        ],
        crate::support::nodes::SECRET,
    )
    .await;
    let line = |name: &str| report_line(&report, name);
    assert_eq!(line("target"), urls, "{report}");
    assert_eq!(
        line("turns "),
        "3 sent by device 0, 0 timed out",
        "{report}"
    );
    // Every other device, two on each node, got each final chunk.
    assert!(line("final chunk, others").starts_with("n=15 "), "{report}");
}

/// `echo-floor --durable` has the message and the answer of every turn on disk before it acknowledges
/// them: the journal holds both, in that order, for each completed turn.
#[tokio::test]
async fn the_durable_echo_floor_journals_each_message_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let port = free_port();
    let floor_bin = load_tool().with_file_name("echo-floor");
    let mut floor = Command::new(floor_bin)
        .args(["--port", &port.to_string(), "--chunks", "3", "--durable"])
        .arg(&journal)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/chatbox/healthz");
    eventually_async("echo-floor to start", async || {
        reqwest::get(&health).await.ok()
    })
    .await;
    let url = format!("ws://127.0.0.1:{port}/chatbox/ws");
    // One connection: one turn at a time, so the journal's lines come in pairs.
    let report = one_second_of_turns(&url, 1).await;
    floor.kill().await.unwrap();
    let completed: usize = report_line(&report, "turns ")
        .split([' ', ','])
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(completed > 0, "{report}");
    let lines: Vec<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2 * completed, "{lines:?}");
    for pair in lines.chunks(2) {
        assert!(pair[0].contains("\"user_message\""), "{pair:?}");
        assert_eq!(pair[1], "word0 word1 word2 ", "{pair:?}");
    }
}

/// The report of one second of turns at 10 per second over `connections` connections to `url`.
async fn one_second_of_turns(url: &str, connections: usize) -> String {
    let connections = connections.to_string();
    load_report(&[
        "turns",
        "--url",
        url,
        "--connections",
        &connections,
        "--rate",
        "10",
        "--duration",
        "1",
        "--warmup",
        "0",
    ])
    .await
}

/// Runs `chatbox-load` with `args` (minting tokens with the test secret) and returns its report; it must
/// exit successfully.
async fn load_report(args: &[&str]) -> String {
    load_report_signed(args, crate::support::app::TEST_SECRET).await
}

/// [`load_report`] with tokens signed with `secret`.
async fn load_report_signed(args: &[&str], secret: &str) -> String {
    let output = Command::new(load_tool())
        .args(args)
        .env("JWT_SECRET", secret)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

/// The value of the report line that starts with `name`.
fn report_line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name:?} line in\n{report}"))
}
