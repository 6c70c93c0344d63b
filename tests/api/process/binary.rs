//! The binaries as they are run: `chatbox` with no configuration (the banner's URLs and tokens, the data
//! directory it creates, shutdown on SIGTERM and SIGINT), and `chatbox-load` against a server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::app::{FRAME_DEADLINE, WsClient, answer_text};

/// What the banner told us.
pub(crate) struct Banner {
    pub(crate) base: String,
    pub(crate) ws: String,
    swagger: String,
    pub(crate) user_token: String,
    admin_token: String,
}

/// The server binary started in `dir` with nothing configured but a free loopback port.
fn start(dir: &Path) -> Child {
    start_with(dir, &[])
}

/// The server binary started in `dir` on a free loopback port, with `env` besides.
pub(crate) fn start_with(dir: &Path, env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chatbox"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads standard output until the banner's admin token line.
pub(crate) async fn banner(lines: &mut Lines<BufReader<ChildStdout>>) -> Banner {
    let mut found = std::collections::HashMap::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for key in ["HTTP API:", "WebSocket:", "Swagger UI:", "user:", "admin:"] {
                if let Some(value) = line.trim().strip_prefix(key) {
                    let value = value.split_whitespace().next().unwrap_or_default();
                    found.insert(key, value.to_string());
                }
            }
            if found.contains_key("admin:") {
                return;
            }
        }
        panic!("the server's output ended before the banner's tokens");
    };
    tokio::time::timeout(FRAME_DEADLINE * 4, read)
        .await
        .expect("no banner before the deadline");
    let mut take = |key| found.remove(key).unwrap_or_default();
    Banner {
        base: take("HTTP API:"),
        ws: take("WebSocket:"),
        swagger: take("Swagger UI:"),
        user_token: take("user:"),
        admin_token: take("admin:"),
    }
}

/// Sends `signal` (a `kill` name such as `TERM`) to the child and waits for it to exit successfully.
async fn stop_with(child: &mut Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
    let exit = tokio::time::timeout(FRAME_DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the server did not exit after SIG{signal}"))
        .unwrap();
    assert!(exit.success(), "exit after SIG{signal}: {exit:?}");
}

#[tokio::test]
async fn zero_config_run_prints_working_urls_and_tokens_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = banner(&mut lines).await;
    assert!(banner.base.ends_with("/chatbox"), "{}", banner.base);
    assert!(banner.ws.ends_with("/chatbox/ws"), "{}", banner.ws);
    let data = dir.path().join("data");
    assert!(data.join("dev-jwt-secret").is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "the data directory is the owner's only");
        for file in ["dev-jwt-secret", "chatbox.redb"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }

    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("{}/healthz", banner.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    let docs = http.get(&banner.swagger).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let admin = http
        .get(format!("{}/admin/sessions", banner.base))
        .bearer_auth(&banner.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "the printed admin token is an admin's");

    let mut ws = WsClient::connect(&format!("{}?token={}", banner.ws, banner.user_token)).await;
    let status = ws.recv().await;
    assert_eq!(status["type"], "connection_status");
    assert_eq!(status["models"][0]["id"], "demo");
    ws.send(json!({"type": "user_message", "content": "Hello!"}))
        .await;
    let turn = ws.recv_turn().await;
    assert!(
        !answer_text(&turn).is_empty(),
        "the demo model answers: {turn:?}"
    );

    let (closed, ()) = tokio::join!(ws.closed(), stop_with(&mut child, "TERM"));
    assert_eq!(closed.code, 1001);
    assert_eq!(closed.reason, "Server shutting down");
}

#[tokio::test]
async fn development_secret_is_kept_across_runs_and_sigint_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path());
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let old = banner(&mut lines).await;
    stop_with(&mut first, "INT").await;

    let mut second = start(dir.path());
    let mut lines = BufReader::new(second.stdout.take().unwrap()).lines();
    let new = banner(&mut lines).await;
    let mut ws = WsClient::connect(&format!("{}?token={}", new.ws, old.user_token)).await;
    assert_eq!(
        ws.recv().await["type"],
        "connection_status",
        "a token printed by the first run is still valid"
    );
    stop_with(&mut second, "TERM").await;
}

#[tokio::test]
async fn the_load_tool_runs_turns_against_a_server_and_reports_them() {
    let app = crate::support::app::spawn_app().await;
    let report = load_report(&[
        "turns",
        "--url",
        &app.ws_url,
        "--connections",
        "2",
        "--rate",
        "10",
        "--duration",
        "1",
        "--warmup",
        "0",
    ])
    .await;
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

/// Runs `chatbox-load` with `args` (minting tokens with the test secret) and returns its report; it must
/// exit successfully.
async fn load_report(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_chatbox-load"))
        .args(args)
        .env("JWT_SECRET", crate::support::app::TEST_SECRET)
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
