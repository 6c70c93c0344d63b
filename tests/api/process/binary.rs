//! The server binary as it is run: `chatbox` with no configuration (the banner's URLs and tokens, the data
//! directory it creates, shutdown on SIGTERM and SIGINT).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::json;

use crate::support::app::answer_text;
use crate::support::http::get_json;
use crate::support::process::Server;

/// The server binary started in `dir` with nothing configured but a free loopback port.
async fn start(dir: &Path) -> Server {
    Server::start(dir, &[]).await
}

#[tokio::test]
async fn zero_config_run_prints_working_urls_and_tokens_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let banner = &server.banner;
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

    let health = get_json(&format!("{}/healthz", banner.base), None).await;
    assert_eq!(health["status"], "healthy");
    let http = reqwest::Client::new();
    let docs = http.get(&banner.swagger).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let admin = http
        .get(format!("{}/admin/sessions", banner.base))
        .bearer_auth(&banner.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "the printed admin token is an admin's");
    // The console links carry the printed tokens in their fragment, and their pages are served.
    assert_eq!(
        banner.chat_link,
        format!("{}/#token={}", banner.base, banner.user_token)
    );
    assert_eq!(
        banner.admin_link,
        format!("{}/admin/#token={}", banner.base, banner.admin_token)
    );
    for link in [&banner.chat_link, &banner.admin_link] {
        let page = http.get(link.as_str()).send().await.unwrap();
        assert_eq!(page.status(), 200, "{link}");
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    }

    let mut ws = banner.connect(&banner.user_token).await;
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

    let (closed, ()) = tokio::join!(ws.closed(), server.stop_with("TERM"));
    assert_eq!(closed.code, 1001);
    assert_eq!(closed.reason, "Server shutting down");
}

#[tokio::test]
async fn development_secret_is_kept_across_runs_and_sigint_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path()).await;
    let old_token = first.banner.user_token.clone();
    first.stop_with("INT").await;

    let mut second = start(dir.path()).await;
    let mut ws = second.banner.connect(&old_token).await;
    assert_eq!(
        ws.recv().await["type"],
        "connection_status",
        "a token printed by the first run is still valid"
    );
    second.stop_with("TERM").await;
}
