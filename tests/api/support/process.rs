//! The real `chatbox` binary as a child process: started in a directory of the test's on a free loopback
//! port, its start-up banner read (URLs and ready tokens), stopped by a signal or killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::app::{FRAME_DEADLINE, WsClient};

/// What the banner told us.
pub struct Banner {
    /// The HTTP API's base URL (with the path prefix).
    pub base: String,
    /// The WebSocket URL.
    pub ws: String,
    /// The Swagger UI's URL.
    pub swagger: String,
    /// The link that opens the chat app signed in as the user (`{base}/#token=<user token>`).
    pub chat_link: String,
    /// The link that opens the admin console signed in as the admin (`{base}/admin/#token=<admin token>`).
    pub admin_link: String,
    /// A ready user token.
    pub user_token: String,
    /// A ready admin token.
    pub admin_token: String,
}

impl Banner {
    /// Opens a WebSocket to the server with `token` in the query string.
    pub async fn connect(&self, token: &str) -> WsClient {
        WsClient::connect(&format!("{}?token={token}", self.ws)).await
    }

    /// GETs `path` below the base URL with `token` and returns the JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        crate::support::http::get_json(&format!("{}{path}", self.base), Some(token)).await
    }
}

/// A running `chatbox` binary whose banner was read.
pub struct Server {
    /// The child process (killed on drop).
    pub child: Child,
    /// What it printed at start-up.
    pub banner: Banner,
    /// The rest of its standard output, kept open so that the server can go on writing.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// Starts the server binary in `dir` on a free loopback port, with `env` besides (nothing else of the
    /// test's environment), and reads its banner.
    pub async fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatbox"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("TEST_SERVER_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = banner(&mut stdout).await;
        Self {
            child,
            banner,
            _stdout: stdout,
        }
    }

    /// Sends `signal` (a `kill` name such as `TERM`) and waits for a successful exit.
    pub async fn stop_with(&mut self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
        let exit = tokio::time::timeout(FRAME_DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit after SIG{signal}"))
            .unwrap();
        assert!(exit.success(), "exit after SIG{signal}: {exit:?}");
    }

    /// Kills the server (SIGKILL: no shutdown of any kind) and waits for it to be gone.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Reads standard output until the banner's admin token line.
async fn banner(lines: &mut Lines<BufReader<ChildStdout>>) -> Banner {
    let mut found = std::collections::HashMap::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for key in [
                "HTTP API:",
                "WebSocket:",
                "Swagger UI:",
                "open chat:",
                "open admin:",
                "user:",
                "admin:",
            ] {
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
        chat_link: take("open chat:"),
        admin_link: take("open admin:"),
        user_token: take("user:"),
        admin_token: take("admin:"),
    }
}
